"""The simulated modem's general and identity commands (27.007 5, 7, 8).

Identification, the SIM's PIN, registration, operator, signal, functionality,
own number, character set and USSD: what every profile answers alike, read
from and written to :class:`ModemState`.  The interpreter (at.py) looks them
up by name; SMS commands are in sms.py, vendor ones in vendor.py.
"""

from __future__ import annotations

from collections.abc import Callable

from smsd.simulator.at import AtEngine, Handler, int_arg
from smsd.simulator.profiles import swap_nibbles
from smsd.simulator.state import PIN_ATTEMPTS, PUK_ATTEMPTS, cme, error

# The AT+CUSD answer a real network takes a second or two to send back; the
# simulator answers sooner but still asynchronously, as an unsolicited +CUSD.
USSD_ANSWER_DELAY_S = 0.2
USSD_BALANCE = "Your balance is 12.34 GBP. Valid until 31/12/2026."


# --- general and identity commands (27.007 5, 7, 8) ----------------------------

def _ident(value: Callable[[AtEngine], str], prefix: str = "") -> Handler:
    def handler(e: AtEngine, op: str, args: list[str]) -> list[str]:
        if op == "test":
            return []
        if op != "exec":
            raise error()
        return [prefix + value(e)]
    return handler


def _cgmr(e: AtEngine, op: str, args: list[str]) -> list[str]:
    if op == "test":
        return []
    if op != "exec":
        raise error()
    return [e.state.profile.cgmr_prefix + e.state.profile.revision]


def _cimi(e: AtEngine, op: str, args: list[str]) -> list[str]:
    if op == "test":
        return []
    if op != "exec":
        raise error()
    e.require_sim()
    return [e.state.identity.imsi]


def _iccid(e: AtEngine, op: str, args: list[str]) -> list[str]:
    """ICCID is readable without the PIN (EF_ICCID is ALWAYS-readable, TS 102 221 13.2)."""
    if op == "test":
        return []
    if op not in ("exec", "read"):
        raise error()
    if not e.state.sim.present:
        raise cme(10)
    p = e.state.profile
    value = e.state.identity.iccid
    if p.iccid_swapped:
        value = swap_nibbles(value)
    return [p.iccid_prefix + value]


def _cmee(e: AtEngine, op: str, args: list[str]) -> list[str]:
    s = e.state.settings
    if op == "test":
        return ["+CMEE: (0-2)"]
    if op == "read":
        return [f"+CMEE: {s.cmee}"]
    if op == "set":
        s.cmee = int_arg(args, 0, range(3), default=0)
        return []
    raise error()


def _cpin(e: AtEngine, op: str, args: list[str]) -> list[str]:
    sim = e.state.sim
    if op == "test":
        return []
    if op == "read":
        if not sim.present:
            raise cme(10)
        if sim.puk_required and sim.puk_attempts <= 0:
            raise cme(13)
        return [f"+CPIN: {sim.state}"]
    if op != "set" or not args or not args[0]:
        raise error()
    if not sim.present:
        raise cme(10)
    code = args[0]
    if sim.puk_required:
        if sim.puk_attempts <= 0:
            raise cme(13)
        if len(args) < 2 or not args[1]:
            raise cme(12)
        if code != sim.puk:
            sim.puk_attempts -= 1
            raise cme(16)
        sim.pin = args[1]
        sim.puk_required = False
        sim.pin_attempts = PIN_ATTEMPTS
        sim.puk_attempts = PUK_ATTEMPTS
    elif sim.ready:
        raise cme(3)
    elif code != sim.pin:
        sim.pin_attempts -= 1
        if sim.pin_attempts <= 0:
            sim.puk_required = True
        raise cme(16)
    else:
        sim.pin_attempts = PIN_ATTEMPTS
    sim.verified = True
    e.host.sim_became_ready()
    return []


def _reg(name: str, attr: str, lte_only: bool = False) -> Handler:
    """+CREG / +CGREG / +CEREG (27.007 7.2, 10.1.19, 10.1.22)."""
    def handler(e: AtEngine, op: str, args: list[str]) -> list[str]:
        if lte_only and (not e.state.profile.lte or e.state.profile.cereg_refused):
            raise error()
        s = e.state.settings
        if op == "test":
            return [f"{name}: (0-2)"]
        if op == "set":
            setattr(s, attr, int_arg(args, 0, range(3), default=0))
            return []
        if op == "read":
            return [reg_line(e, name, int(getattr(s, attr)), include_n=True)]
        raise error()
    return handler


def reg_line(e: AtEngine, name: str, n: int, *, include_n: bool) -> str:
    stat = e.state.creg_stat()
    head = f"{name}: {n},{stat}" if include_n else f"{name}: {stat}"
    if n == 2 and stat in (1, 5):
        act = 7 if e.state.profile.lte else 0
        return f'{head},"1A2B","01C3D4E5",{act}'
    return head


def _cops(e: AtEngine, op: str, args: list[str]) -> list[str]:
    s = e.state.settings
    act = 7 if e.state.profile.lte else 0
    if op == "test":
        if not e.state.registered:
            return ["+COPS: ,,(0-4),(0-2)"]
        return [f'+COPS: (2,"{e.state.operator}","SimMob","{e.state.operator_numeric}",{act}),'
                ',(0-4),(0-2)']
    if op == "set":
        mode = int_arg(args, 0, range(5), default=0)
        if mode == 3:
            s.cops_format = int_arg(args, 1, range(3), default=0)
        return []
    if op != "read":
        raise error()
    if not e.state.registered:
        return ["+COPS: 0"]
    name = {0: e.state.operator, 1: "SimMob", 2: e.state.operator_numeric}[s.cops_format]
    return [f'+COPS: 0,{s.cops_format},"{name}",{act}']


def _csq(e: AtEngine, op: str, args: list[str]) -> list[str]:
    if op == "test":
        return ["+CSQ: (0-31,99),(0-7,99)"]
    if op != "exec":
        raise error()
    rssi = e.state.rssi if e.state.registered else 99
    return [f"+CSQ: {rssi},99"]


def _cfun(e: AtEngine, op: str, args: list[str]) -> list[str]:
    s = e.state.settings
    if op == "test":
        return ["+CFUN: (0,1,4),(0-1)"]
    if op == "read":
        return [f"+CFUN: {s.cfun}"]
    if op != "set":
        raise error()
    fun = int_arg(args, 0, frozenset({0, 1, 4}))
    reset = int_arg(args, 1, range(2), default=0)
    if reset:
        if fun != 1:
            raise cme(3)
        e.host.power_cycle()
        return []
    before = e.state.registered
    s.cfun = fun
    if before != e.state.registered:
        e.host.registration_changed()
    return []


def _cnum(e: AtEngine, op: str, args: list[str]) -> list[str]:
    if op == "test":
        return []
    if op != "exec":
        raise error()
    e.require_sim()
    own = e.state.sim.own_number
    if not own:
        return []
    toa = 145 if own.startswith("+") else 129
    return [f'+CNUM: "","{own}",{toa}']


def _cscs(e: AtEngine, op: str, args: list[str]) -> list[str]:
    s = e.state.settings
    if op == "test":
        return ['+CSCS: ("IRA","GSM","UCS2")']
    if op == "read":
        return [f'+CSCS: "{s.cscs}"']
    if op == "set" and args and args[0].upper() in ("IRA", "GSM", "UCS2"):
        s.cscs = args[0].upper()
        return []
    raise error()


def _cusd(e: AtEngine, op: str, args: list[str]) -> list[str]:
    """27.007 7.15: the answer arrives later as an unsolicited ``+CUSD``."""
    s = e.state.settings
    if op == "test":
        return ["+CUSD: (0-2)"]
    if op == "read":
        return [f"+CUSD: {s.cusd}"]
    if op != "set":
        raise error()
    n = int_arg(args, 0, range(3), default=0)
    if n == 2:
        return []
    s.cusd = n
    if len(args) > 1 and args[1]:
        e.require_sim()
        if not e.state.registered:
            raise cme(30)
        answer = f'+CUSD: 0,"{USSD_BALANCE}",15'
        e.host.after(USSD_ANSWER_DELAY_S, lambda: e.host.urc(answer))
    return []


def _gcap(e: AtEngine, op: str, args: list[str]) -> list[str]:
    if op != "exec":
        raise error()
    return ["+GCAP: +CGSM"]


GENERAL_HANDLERS: dict[str, Handler] = {
    "+CGMI": _ident(lambda e: e.state.profile.manufacturer),
    "+GMI": _ident(lambda e: e.state.profile.manufacturer),
    "+CGMM": _ident(lambda e: e.state.profile.model),
    "+GMM": _ident(lambda e: e.state.profile.model),
    "+CGMR": _cgmr,
    "+GMR": _cgmr,
    "+CGSN": _ident(lambda e: e.state.identity.imei),
    "+GSN": _ident(lambda e: e.state.identity.imei),
    "+CIMI": _cimi,
    "+CCID": _iccid,
    "^ICCID": _iccid,
    "+QCCID": _iccid,
    "+CICCID": _iccid,
    "!ICCID": _iccid,
    "+CMEE": _cmee,
    "+CPIN": _cpin,
    "+CREG": _reg("+CREG", "creg"),
    "+CGREG": _reg("+CGREG", "cgreg"),
    "+CEREG": _reg("+CEREG", "cereg", lte_only=True),
    "+COPS": _cops,
    "+CSQ": _csq,
    "+CFUN": _cfun,
    "+CNUM": _cnum,
    "+CSCS": _cscs,
    "+CUSD": _cusd,
    "+GCAP": _gcap,
}
