"""Vendor differences as data, chosen from +CGMI/+CGMM.

The device code runs one sequence for every modem; a profile only adds
commands, orders fallbacks and names extra URCs.  Where a vendor routes URCs
to one particular USB interface, the note says so: a modem opened on the
other interface still sends and receives, but only by the periodic sweep.
Where the vendor lets the host choose that interface (Quectel
AT+QURCCFG="urcport"), the profile carries the commands and
:func:`point_urcs_here` makes the port smsd holds the one that gets them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

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


def cnmi_ds(command: str) -> int | None:
    """<ds> of ``AT+CNMI=<mode>,<mt>,<bm>,<ds>,<bfr>`` (None when absent)."""
    params = command.split("=", 1)[-1].split(",")
    return int(params[3]) if len(params) > 3 and params[3].isdigit() else None


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
    # URCs go to one port the host chooses: the query, the set command
    # ("{port}" stands for the port name), the answer's prefix, and which USB
    # interface number is which port in the vendor's default USB layout.
    urc_port_query: str | None = None
    urc_port_set: str | None = None
    urc_port_prefix: str | None = None
    urc_port_by_interface: tuple[tuple[int, str], ...] = ()

    def urc_port_for_interface(self, interface: int | None) -> str | None:
        """The port name of USB interface ``interface`` in this vendor's layout, if known."""
        return dict(self.urc_port_by_interface).get(interface) if interface is not None else None


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
    # Quectel EC2x/EG2x: URCs go only to the port AT+QURCCFG="urcport" names
    # (EC25 AT manual, AT+QURCCFG; saved to NV by the modem): "usbat" (the
    # default; USB interface 2, usually ttyUSB2), "usbmodem" (interface 3,
    # ttyUSB3) or "uart1" (the main UART).  Interfaces 0 and 1 are DM and NMEA.
    # In the RNDIS USB composition (AT+QCFG="usbnet",3) the serial interfaces
    # shift up by two; 2 and 3 are then DM and NMEA, which do not speak AT, so
    # the map is never wrongly applied to an AT port: the driver just cannot tell.
    "quectel": Profile(
        "quectel",
        extra_urcs=("+QSTK:", "+QCSQ:", "+QNITZ:"),
        urc_port_note='Quectel sends URCs only to the port AT+QURCCFG="urcport" names '
                      "(default usbat = the AT interface, if02, usually ttyUSB2); smsd "
                      "points it at the port it opens (set urc_port when it cannot tell)",
        urc_port_query='AT+QURCCFG="urcport"',
        urc_port_set='AT+QURCCFG="urcport","{port}"',
        urc_port_prefix="+QURCCFG:",
        urc_port_by_interface=((2, "usbat"), (3, "usbmodem")),
    ),
    # SIMCom SIM7600: AT on ttyUSB2, URCs on every AT port.
    "simcom": Profile(
        "simcom",
        extra_urcs=("+CGEV:", "VOICE CALL:", "+CNSMOD:"),
        urc_port_note="SIMCom SIM7600: use the AT port (ttyUSB2); URCs are sent on it",
    ),
    # Sierra Wireless MC73xx/EM74xx: AT on ttyUSB2.  Older firmware answers
    # ERROR to AT+CEREG? / AT+CEREG=1; both are optional in init (failures
    # tolerated, +CREG decides), so lte stays on for firmware that has it.
    # "!GSTATUS:" is the answer to AT!GSTATUS?, not a URC: listing it here
    # would take the answer's first line away from the command.
    "sierra": Profile(
        "sierra",
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


def parse_urc_port(lines: list[str], prefix: str) -> str | None:
    """``+QURCCFG: "urcport","usbat"`` -> "usbat"; None when the answer has no value."""
    for line in lines:
        if line.startswith(prefix):
            fields = [f.strip().strip('"') for f in line.split(":", 1)[1].split(",")]
            if len(fields) >= 2 and fields[0].lower() == "urcport" and fields[1]:
                return fields[1].lower()
    return None


# A command whose failure is tolerated: its answer lines, or None when it failed.
TryCommand = Callable[[str], Awaitable[list[str] | None]]


async def point_urcs_here(profile: Profile, try_cmd: TryCommand, *, configured: str | None,
                          interface: int | None, claim: bool, log: Any) -> str | None:
    """Make the port smsd holds the one that gets URCs; returns where they go, if known.

    The port is named by config (``configured``), else by the USB interface
    number.  The modem keeps the setting in NV memory, so it is read first
    and written only when it differs (no flash write on every reconnect).
    With ``claim`` False (a CLI command on a port the daemon may not hold)
    nothing is written.  When smsd cannot tell which port it holds (a pty,
    ser2net), it says where the modem sends URCs and how to fix it.
    """
    if profile.urc_port_query is None or profile.urc_port_prefix is None:
        return None
    current = parse_urc_port(await try_cmd(profile.urc_port_query) or [],
                             profile.urc_port_prefix)
    wanted = configured or profile.urc_port_for_interface(interface)
    if wanted is None:
        log.warning("modem.urc_port_unknown", current=current, usb_interface=interface,
                    note=f"cannot tell which {profile.name} port this is; the modem sends "
                         f"URCs to {current or 'an unknown port'}; if new SMS only arrive "
                         "with the periodic sweep (no +CMTI), set urc_port in this "
                         "modem's config")
        return current
    if current == wanted or not claim or profile.urc_port_set is None:
        if current != wanted:
            log.info("modem.urc_port_elsewhere", current=current, this_port=wanted)
        return current
    if await try_cmd(profile.urc_port_set.format(port=wanted)) is None:
        log.warning("modem.urc_port_not_set", current=current, wanted=wanted,
                    note="new SMS arrive only with the periodic sweep")
        return current
    log.info("modem.urc_port_set", port=wanted, was=current)
    return wanted
