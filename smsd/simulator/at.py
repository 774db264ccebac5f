"""The simulated modem's AT interpreter: command lines in, framed replies out.

No I/O: the pseudo-terminal side (simulator.py) hands complete command lines
to :meth:`AtEngine.execute` and writes what :meth:`AtEngine.render` returns.
Syntax follows ITU-T V.250 5 (``AT`` prefix, basic commands concatenated,
extended commands separated by ``;``, ``=``/``?``/``=?`` forms) and result
framing V.250 5.7 (``<CR><LF>text<CR><LF>`` with V1, numeric codes with V0).
General and identity commands live here; SMS commands in simulator_sms.py.
"""

from __future__ import annotations

from collections.abc import Callable

from smsd.simulator.profiles import swap_nibbles
from smsd.simulator.state import (
    CME_TEXT,
    CMS_TEXT,
    PIN_ATTEMPTS,
    PUK_ATTEMPTS,
    CommandFailed,
    EngineHost,
    ModemState,
    Prompt,
    Reply,
    Settings,
    cme,
    error,
)

Handler = Callable[["AtEngine", str, list[str]], "list[str] | Prompt"]

# The AT+CUSD answer a real network takes a second or two to send back; the
# simulator answers sooner but still asynchronously, as an unsolicited +CUSD.
USSD_ANSWER_DELAY_S = 0.2
USSD_BALANCE = "Your balance is 12.34 GBP. Valid until 31/12/2026."

# V.250 5.4.1: extended commands start with "+"; vendors use other marks
# (Huawei "^", Sierra "!", some "$" and "%").
_EXTENDED = "+^$%!"

# V.250 6.2.6 numeric result codes for ATV0.
_NUMERIC = {"OK": "0", "ERROR": "4"}


def split_args(text: str) -> list[str]:
    """Split a parameter list on commas outside double quotes; quotes removed."""
    args: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
            continue
        if ch == "," and not quoted:
            args.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if quoted:
        raise error()
    args.append("".join(cur).strip())
    return args


def int_arg(args: list[str], i: int, allowed: frozenset[int] | range | None = None,
            default: int | None = None) -> int:
    if i >= len(args) or args[i] == "":
        if default is None:
            raise error()
        return default
    try:
        value = int(args[i])
    except ValueError:
        raise error() from None
    if allowed is not None and value not in allowed:
        raise error()
    return value


class AtEngine:
    """One modem's command interpreter; state lives in :class:`ModemState`."""

    def __init__(self, state: ModemState, host: EngineHost,
                 extra_handlers: dict[str, Handler] | None = None) -> None:
        self.state = state
        self.host = host
        self._handlers: dict[str, Handler] = dict(GENERAL_HANDLERS)
        if extra_handlers:
            self._handlers.update(extra_handlers)
        self.last_line = ""

    # --- power --------------------------------------------------------------

    def reset_settings(self) -> None:
        self.state.settings = Settings(cnmi=self.state.profile.cnmi_default)

    def power_on(self) -> None:
        """Session settings back to defaults, PIN entry forgotten (SIM power cycle)."""
        self.reset_settings()
        self.state.sim.verified = False
        self.state.boot_count += 1

    # --- sim checks used by handlers ---------------------------------------

    def require_sim(self, *, sms: bool = False) -> None:
        """27.007 9.2 / 27.005 3.2.5: no SIM 10/310, PIN 11/311, PUK 12/316."""
        sim = self.state.sim
        code = None
        if not sim.present:
            code = (10, 310)
        elif sim.puk_required:
            code = (12, 316)
        elif not sim.ready:
            code = (11, 311)
        if code is not None:
            raise CommandFailed("CMS", code[1]) if sms else cme(code[0])

    # --- execution ----------------------------------------------------------

    def execute(self, line: str) -> Reply | None:
        """Run one command line; None when the line holds no ``AT`` (V.250 5.2.1: ignored)."""
        stripped = line.strip()
        if stripped.upper() == "A/":
            stripped = self.last_line
        pos = stripped.upper().find("AT")
        if pos < 0:
            return None
        self.last_line = stripped[pos:]
        body = stripped[pos + 2:]
        lines: list[str] = []
        try:
            for name, rest in _split_commands(body):
                result = self._run_one(name, rest)
                if isinstance(result, Prompt):
                    return Reply(lines, None, result)
                lines.extend(result)
        except CommandFailed as exc:
            return Reply(lines, self._final_error(exc))
        return Reply(lines, "OK")

    def _run_one(self, name: str, rest: str) -> list[str] | Prompt:
        if name[0] in _EXTENDED:
            key = name.upper()
            handler = self._handlers.get(key)
            if handler is None:
                raise error()
            vendor = key in self.state.profile.vendor_commands
            if key.startswith(("^", "+Q", "!")):
                if not vendor:
                    raise error()
            if key in VENDOR_ONLY and not vendor:
                raise error()
            if rest.startswith("=?"):
                return handler(self, "test", [])
            if rest.startswith("?"):
                return handler(self, "read", [])
            if rest.startswith("="):
                return handler(self, "set", split_args(rest[1:]))
            if rest:
                raise error()
            return handler(self, "exec", [])
        return self._basic(name.upper(), rest)

    def _basic(self, name: str, value: str) -> list[str]:
        s = self.state.settings
        if name in ("E", "V", "Q"):
            if value not in ("", "0", "1"):
                raise error()
            n = int(value) if value else 0
            if name == "E":
                s.echo = bool(n)
            elif name == "V":
                s.verbose = bool(n)
            else:
                s.quiet = bool(n)
            return []
        if name in ("Z", "&F"):
            echo = s.echo if name == "Z" else True
            self.reset_settings()
            self.state.settings.echo = echo
            return []
        if name == "I":
            ident = self.state.identity
            return [x.format(imei=ident.imei) for x in self.state.profile.ati]
        if name in ("X", "H", "L", "M", "&C", "&D", "&K", "&W", "&V", "S"):
            return []
        raise error()

    def _final_error(self, exc: CommandFailed) -> str:
        cmee = self.state.settings.cmee
        if exc.kind == "CMS" and exc.code is not None:
            if cmee == 2 and exc.code in CMS_TEXT:
                return f"+CMS ERROR: {CMS_TEXT[exc.code]}"
            return f"+CMS ERROR: {exc.code}"
        if exc.kind == "CME" and exc.code is not None and cmee:
            if cmee == 2:
                return f"+CME ERROR: {CME_TEXT.get(exc.code, 'unknown')}"
            return f"+CME ERROR: {exc.code}"
        return "ERROR"

    def render(self, reply: Reply) -> bytes:
        """Frame a reply as V.250 5.7.1 (V1) or 5.7.2 (V0) says."""
        s = self.state.settings
        out: list[str] = []
        if s.verbose:
            if reply.lines:
                out.append("\r\n" + "\r\n".join(reply.lines) + "\r\n")
            if reply.final is not None and not s.quiet:
                out.append("\r\n" + reply.final + "\r\n")
            if reply.prompt is not None:
                out.append("\r\n> ")
        else:
            out.extend(line + "\r\n" for line in reply.lines)
            if reply.final is not None and not s.quiet:
                code = _NUMERIC.get(reply.final)
                out.append((code or reply.final) + "\r")   # V.250 5.7.2: <code><cr>
            if reply.prompt is not None:
                out.append("> ")
        return "".join(out).encode("latin-1", "replace")

    def render_urc(self, text: str) -> bytes:
        if self.state.settings.verbose:
            return f"\r\n{text}\r\n".encode("latin-1", "replace")
        return f"{text}\r\n".encode("latin-1", "replace")


def _split_commands(body: str) -> list[tuple[str, str]]:
    """V.250 5.3: basic commands back to back, extended ones up to ``;``."""
    out: list[tuple[str, str]] = []
    i = 0
    n = len(body)
    while i < n:
        ch = body[i]
        if ch in " ;":
            i += 1
            continue
        if ch in _EXTENDED:
            j = i + 1
            while j < n and (body[j].isalnum() or body[j] in "_.!"):
                j += 1
            name = body[i:j]
            k = j
            quoted = False
            while k < n and (quoted or body[k] != ";"):
                if body[k] == '"':
                    quoted = not quoted
                k += 1
            out.append((name, body[j:k].strip()))
            i = k
            continue
        if ch == "&":
            name = body[i:i + 2]
            i += 2
        elif ch.upper() == "S" and i + 1 < n and body[i + 1].isdigit():
            # S-register: Sn=v or Sn? ; accepted and ignored
            j = i + 1
            while j < n and (body[j].isdigit() or body[j] in "=?"):
                j += 1
            out.append(("S", ""))
            i = j
            continue
        elif ch.isalpha():
            name = ch
            i += 1
        else:
            raise error()
        j = i
        while j < n and body[j].isdigit():
            j += 1
        out.append((name, body[i:j]))
        i = j
    return out


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


# Commands that exist only on the models that list them in vendor_commands.
VENDOR_ONLY = frozenset({"+CICCID", "+SPIC", "+CPSI", "+CSUB", "+CCID"})

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
