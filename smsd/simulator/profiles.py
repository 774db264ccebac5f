"""What each simulated modem model says about itself and which AT dialect it speaks.

The simulator is a test peer: these facts come from the vendors' AT manuals
(Huawei E3372 / HiLink-less "stick" firmware, Quectel EC25 AT Commands Manual,
SIMCom SIM7600 Series AT Command Manual, Sierra Wireless AirPrime MC73xx AT
Command Reference) and from TS 27.005/27.007, not from
what our driver happens to send.  Vendor differences are data here; the AT
engine only looks them up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The +CNMI parameter sets each model accepts, as answered to AT+CNMI=?
# (TS 27.005 3.4.1: <mode>,<mt>,<bm>,<ds>,<bfr>).  The generic profile is a
# deliberately limited phase-2 modem: no <mt>=2/3, no cell broadcast
# indication and <ds>=2 only (reports stored, +CDSI), so a driver has to walk
# its fallback list before it finds a setting that works.
CnmiRanges = tuple[frozenset[int], frozenset[int], frozenset[int], frozenset[int], frozenset[int]]


def _r(*values: int) -> frozenset[int]:
    return frozenset(values)


@dataclass(frozen=True)
class Profile:
    name: str
    manufacturer: str
    model: str
    revision: str
    # +CGMI/+CGMM/+CGMR answers: some vendors prefix the command name.
    cgmr_prefix: str
    ati: tuple[str, ...]
    # Which command reads the ICCID and how the answer is prefixed.
    iccid_command: str
    iccid_prefix: str
    iccid_swapped: bool          # Huawei returns EF_ICCID nibble-swapped ("98..." for "89...")
    cnmi: CnmiRanges
    cnmi_test: str               # the literal AT+CNMI=? answer
    memories: dict[str, int]     # memory -> capacity
    first_index: int             # 27.005 leaves the index base to the ME: 0 or 1
    lte: bool                    # answers +CEREG and reports AcT 7
    boot_urcs: tuple[str, ...]   # emitted on power-up (before the SIM is read)
    ready_urcs: tuple[str, ...]  # emitted once the SIM is ready (after boot or +CPIN=)
    vendor_commands: frozenset[str] = field(default_factory=frozenset)
    cnmi_default: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    periodic_urcs: bool = False  # Huawei ^RSSI/^BOOT flood, silenced by AT^CURC=0
    memory_full_urc: str | None = None
    # AT+CPMS=? answer lists: which memory may serve as mem1 (read/delete),
    # mem2 (write/send) and mem3 (receive).
    mem_roles: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] = (
        ("SM", "ME"), ("SM", "ME"), ("SM", "ME"))
    # Camps on LTE (AcT 7) but its firmware predates +CEREG: ERROR to every
    # +CEREG form (older Sierra MC73xx releases).
    cereg_refused: bool = False


GENERIC = Profile(
    name="generic",
    manufacturer="Generic",
    model="GSM Modem",
    revision="1.00",
    cgmr_prefix="",
    ati=("Generic GSM Modem", "Revision: 1.00"),
    iccid_command="+CCID",
    iccid_prefix="+CCID: ",
    iccid_swapped=False,
    cnmi=(_r(0, 1, 2), _r(0, 1), _r(0), _r(0, 2), _r(0, 1)),
    cnmi_test="+CNMI: (0-2),(0,1),(0),(0,2),(0,1)",
    memories={"SM": 20, "ME": 50, "SR": 10},
    first_index=1,
    lte=False,
    boot_urcs=(),
    ready_urcs=(),
    vendor_commands=frozenset({"+CCID"}),
    mem_roles=(("SM", "ME", "SR"), ("SM", "ME"), ("SM", "ME")),
)

HUAWEI = Profile(
    name="huawei",
    manufacturer="huawei",
    model="E3372",
    revision="22.200.15.00.00",
    cgmr_prefix="",
    ati=("Manufacturer: huawei", "Model: E3372", "Revision: 22.200.15.00.00",
         "IMEI: {imei}", "+GCAP: +CGSM,+DS,+ES"),
    iccid_command="^ICCID",
    iccid_prefix="^ICCID: ",
    iccid_swapped=True,
    cnmi=(_r(0, 1, 2), _r(0, 1, 2, 3), _r(0, 2), _r(0, 1, 2), _r(0, 1)),
    cnmi_test="+CNMI: (0,1,2),(0,1,2,3),(0,2),(0,1,2),(0,1)",
    memories={"SM": 30, "ME": 500},
    first_index=0,
    lte=True,
    boot_urcs=("^BOOT:{boot},0,0,0,75",),
    ready_urcs=("^SIMST:1",),
    vendor_commands=frozenset({"^CURC", "^ICCID", "^CPIN", "^HCSQ", "^SYSINFOEX"}),
    periodic_urcs=True,
    memory_full_urc='^SMMEMFULL: "{mem}"',
    mem_roles=(("SM", "ME"), ("SM", "ME"), ("SM", "ME")),
)

QUECTEL = Profile(
    name="quectel",
    manufacturer="Quectel",
    model="EC25",
    revision="EC25EFAR06A06M4G",
    cgmr_prefix="",
    ati=("Quectel", "EC25", "Revision: EC25EFAR06A06M4G"),
    iccid_command="+QCCID",
    iccid_prefix="+QCCID: ",
    iccid_swapped=False,
    cnmi=(_r(0, 1, 2), _r(0, 1, 2, 3), _r(0, 2), _r(0, 1, 2), _r(0, 1)),
    cnmi_test="+CNMI: (0-2),(0-3),(0,2),(0-2),(0,1)",
    memories={"SM": 50, "ME": 255, "SR": 20},
    first_index=0,
    lte=True,
    boot_urcs=("RDY", "+CFUN: 1"),
    ready_urcs=("+CPIN: READY", "+QUSIM: 1", "+QIND: SMS DONE", "+QIND: PB DONE"),
    vendor_commands=frozenset({"+QCCID", "+QURCCFG", "+QINDCFG", "+QPINC", "+QCSQ",
                               "+QNWINFO"}),
    memory_full_urc='+QIND: "smsfull","{mem}"',
    cnmi_default=(2, 1, 0, 0, 0),
    mem_roles=(("SM", "ME", "SR"), ("SM", "ME", "SR"), ("SM", "ME")),
)

SIMCOM = Profile(
    name="simcom",
    manufacturer="SIMCOM INCORPORATED",
    model="SIMCOM_SIM7600E-H",
    revision="LE20B04SIM7600M22",
    cgmr_prefix="+CGMR: ",
    ati=("Manufacturer: SIMCOM INCORPORATED", "Model: SIMCOM_SIM7600E-H",
         "Revision: SIM7600M22_V2.0", "IMEI: {imei}", "+GCAP: +CGSM"),
    iccid_command="+CICCID",
    iccid_prefix="+ICCID: ",
    iccid_swapped=False,
    cnmi=(_r(0, 1, 2, 3), _r(0, 1, 2, 3), _r(0, 2), _r(0, 1, 2), _r(0, 1)),
    cnmi_test="+CNMI: (0-3),(0-3),(0,2),(0-2),(0,1)",
    memories={"SM": 40, "ME": 100, "SR": 20},
    first_index=0,
    lte=True,
    boot_urcs=("RDY",),
    ready_urcs=("+CPIN: READY", "SMS DONE", "PB DONE"),
    vendor_commands=frozenset({"+CICCID", "+SPIC", "+CPSI", "+CSUB"}),
    cnmi_default=(2, 1, 0, 0, 0),
    mem_roles=(("SM", "ME", "SR"), ("SM", "ME", "SR"), ("SM", "ME", "SR")),
)

# Sierra Wireless MC7304 (Qualcomm MDM9215, firmware SWI9X15C_05.05.xx): an
# M.2/mini-PCIe LTE module; vendor commands start with "!" (AT!GSTATUS?,
# AT!ICCID?), storage indexes start at 0 as on other Qualcomm modems, no
# power-up URCs, and the older firmware answers ERROR to +CEREG.
SIERRA = Profile(
    name="sierra",
    manufacturer="Sierra Wireless, Incorporated",
    model="MC7304",
    revision="SWI9X15C_05.05.58.00 r27038 carmd-fwbuild1 2015/03/04 21:30:23",
    cgmr_prefix="",
    ati=("Manufacturer: Sierra Wireless, Incorporated", "Model: MC7304",
         "Revision: SWI9X15C_05.05.58.00 r27038 carmd-fwbuild1 2015/03/04 21:30:23",
         "IMEI: {imei}", "IMEI SV: 21", "FSN: J8405100581010", "+GCAP: +CGSM,+DS,+ES"),
    iccid_command="!ICCID",
    iccid_prefix="ICCID: ",
    iccid_swapped=False,
    cnmi=(_r(0, 1, 2), _r(0, 1, 2, 3), _r(0, 2), _r(0, 1, 2), _r(0, 1)),
    cnmi_test="+CNMI: (0-2),(0-3),(0,2),(0-2),(0,1)",
    memories={"SM": 30, "ME": 100},
    first_index=0,
    lte=True,
    boot_urcs=(),
    ready_urcs=(),
    vendor_commands=frozenset({"!GSTATUS", "!ICCID"}),
    cereg_refused=True,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (GENERIC, HUAWEI, QUECTEL, SIMCOM, SIERRA)}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"unknown simulator profile {name!r} (known: {known})") from None


def luhn_complete(digits: str) -> str:
    """Append the Luhn check digit (IMEI per 3GPP TS 23.003 B.2, ICCID per ITU-T E.118)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return digits + str((10 - total % 10) % 10)


@dataclass(frozen=True)
class Identity:
    imei: str
    imsi: str
    iccid: str


def identity_for(index: int) -> Identity:
    """Stable identities whose check digits are valid, distinct per modem index."""
    serial = f"{index + 1:06d}"
    return Identity(
        imei=luhn_complete("35000011" + serial),
        imsi="234150000" + serial,
        iccid=luhn_complete("894410000000" + serial),
    )


def swap_nibbles(digits: str) -> str:
    """EF_ICCID byte order as stored on the card (TS 31.102 4.2.2 / TS 102 221 13.2)."""
    if len(digits) % 2:
        digits += "F"
    return "".join(digits[i + 1] + digits[i] for i in range(0, len(digits), 2))
