"""The simulated modem's AT interpreter: command lines in, framed replies out.

No I/O: the pseudo-terminal side (simulator.py) hands complete command lines
to :meth:`AtEngine.execute` and writes what :meth:`AtEngine.render` returns.
Syntax follows ITU-T V.250 5 (``AT`` prefix, basic commands concatenated,
extended commands separated by ``;``, ``=``/``?``/``=?`` forms) and result
framing V.250 5.7 (``<CR><LF>text<CR><LF>`` with V1, numeric codes with V0).
The commands themselves: general.py, sms.py and vendor.py.
"""

from __future__ import annotations

from collections.abc import Callable

from smsd.simulator.state import (
    CME_TEXT,
    CMS_TEXT,
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
                 handlers: dict[str, Handler]) -> None:
        """``handlers``: every extended command the model knows, by upper-case name
        (simulator.general, simulator.sms and simulator.vendor put it together)."""
        self.state = state
        self.host = host
        self._handlers = handlers
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


# Commands that exist only on the models that list them in vendor_commands.
VENDOR_ONLY = frozenset({"+CICCID", "+SPIC", "+CPSI", "+CSUB", "+CCID"})
