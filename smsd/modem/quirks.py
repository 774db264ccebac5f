"""Vendor differences as data, chosen from +CGMI/+CGMM.

The device code runs one sequence for every modem; a profile only adds
commands, orders fallbacks and names extra URCs.  Where a vendor routes URCs
to one particular USB interface, the note says so: a modem opened on the
other interface still sends and receives, but only by the periodic sweep.
"""

from __future__ import annotations

from dataclasses import dataclass

# +CNMI=<mode>,<mt>,<bm>,<ds>,<bfr> (TS 27.005 3.4.1), most wanted first.
# mt=1 stores the SMS and indicates it with +CMTI: it stays on the SIM until
# smsd has committed it, so nothing is lost if the daemon dies meanwhile.
# ds=2 stores status reports (+CDSI), ds=1 routes them directly (+CDS).
GENERIC_CNMI: tuple[str, ...] = (
    "AT+CNMI=2,1,0,2,0",
    "AT+CNMI=2,1,0,1,0",
    "AT+CNMI=1,1,0,2,0",
    "AT+CNMI=1,1,0,1,0",
    "AT+CNMI=2,1,0,0,0",
    "AT+CNMI=1,1,0,0,0",
)


@dataclass(frozen=True)
class Profile:
    name: str
    init_extra: tuple[str, ...] = ()          # after the standard init; failures only logged
    cnmi: tuple[str, ...] = GENERIC_CNMI
    storage: tuple[str, ...] = ("SM", "ME", "MT")   # +CPMS preference
    extra_urcs: tuple[str, ...] = ()
    lte: bool = True                          # also ask +CEREG for registration
    ussd_packed: bool = False                 # +CUSD text arrives as packed GSM 7-bit hex
    urc_port_note: str | None = None


PROFILES: dict[str, Profile] = {
    "generic": Profile("generic"),
    # Huawei E3372 / E173: ^CURC=0 stops the periodic ^RSSI/^MODE/^DSFLOWRPT
    # chatter (Huawei AT reference, "^CURC").  Stores SMS on the SIM.
    "huawei": Profile(
        "huawei",
        init_extra=("AT^CURC=0",),
        ussd_packed=True,
        extra_urcs=("^CEND:", "^ORIG:", "^CONF:", "^CONN:", "^STIN:", "^NDISSTAT:"),
        urc_port_note="Huawei sends URCs on the PC UI interface (usually ttyUSB2 of the "
                      "three serial ports); the modem port gets none",
    ),
    # Quectel EC2x/EG2x: URCs go to the port chosen by AT+QURCCFG="urcport"
    # (default usbmodem, ttyUSB3 of ttyUSB0..3).
    "quectel": Profile(
        "quectel",
        extra_urcs=("+QSTK:", "+QCSQ:", "+QNITZ:"),
        urc_port_note='Quectel sends URCs only to the AT+QURCCFG="urcport" port '
                      "(default usbmodem = ttyUSB3); open that one for +CMTI",
    ),
    # SIMCom SIM7600: AT on ttyUSB2, URCs on every AT port.
    "simcom": Profile(
        "simcom",
        extra_urcs=("+CGEV:", "VOICE CALL:", "+CNSMOD:"),
        urc_port_note="SIMCom SIM7600: use the AT port (ttyUSB2); URCs are sent on it",
    ),
    # Sierra Wireless MC73xx/EM74xx: AT on ttyUSB2, no +CEREG on older firmware.
    "sierra": Profile(
        "sierra",
        extra_urcs=("!GSTATUS:",),
        urc_port_note="Sierra: AT commands and URCs on ttyUSB2 (the 'AT' interface)",
    ),
}

_VENDORS = (("huawei", "huawei"), ("quectel", "quectel"), ("simcom", "simcom"),
            ("sim com", "simcom"), ("sierra", "sierra"))


def choose_profile(requested: str, manufacturer: str | None, model: str | None) -> Profile:
    """``requested`` from ModemSpec.profile; "auto" matches the +CGMI answer."""
    if requested != "auto":
        return PROFILES.get(requested, PROFILES["generic"])
    text = f"{manufacturer or ''} {model or ''}".lower()
    for needle, name in _VENDORS:
        if needle in text:
            return PROFILES[name]
    return PROFILES["generic"]
