"""A fake Asterisk 20 FastAGI client, written from res_agi's behaviour and the
wire captures in /work/shared/captures/asterisk-20/ (not from smsd's code).

It connects to a FastAGI server over TCP, sends the ``agi_*`` environment in
Asterisk's order byte for byte as the captures show (LF line ends, values as
is, ``agi_arg_N`` after ``agi_threadid``, one empty line), then answers
commands the way res_agi.c does:

* words are split like res_agi's ``parse_args`` (blanks, double quotes,
  backslash makes the next character literal);
* ``GET VARIABLE name`` -> ``200 result=1 (value)`` or ``200 result=0`` when
  unset or when a function read fails (``MESSAGE(...)`` with no message);
  values longer than 1023 bytes are cut as res_agi's 1024-byte buffer does;
* ``GET FULL VARIABLE expr`` -> ``200 result=1 (substituted)``, with
  ``${...}`` nesting, ``MESSAGE()``, ``MESSAGE_DATA()``, ``BASE64_ENCODE()``;
* ``SET VARIABLE name value`` -> ``200 result=1``; ``VERBOSE`` ->
  ``200 result=1``; ``NOOP`` -> ``200 result=0``;
* a wrong number of words -> the multi-line ``520-`` usage block;
* anything else -> ``510 Invalid or unknown command``;
* after a hangup it sends ``HANGUP`` once and answers commands that need a
  live channel with ``511 Command Not Permitted on a dead channel or
  intercept routine`` (GET/SET VARIABLE, VERBOSE, NOOP, EXEC still work on a
  dead channel in res_agi's command table).

Values are sent raw, so a newline inside an argument or a variable breaks the
line protocol exactly as it does with the real thing.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# How long the fake waits for the server's next command before giving up.
# Only a broken server hits it; it keeps a broken test from hanging.
IDLE_TIMEOUT_S = 10.0

DEAD_CHANNEL = "511 Command Not Permitted on a dead channel or intercept routine"
UNKNOWN_COMMAND = "510 Invalid or unknown command"


@dataclass
class SipMessage:
    """What MESSAGE()/MESSAGE_DATA() return on a message channel."""

    from_: str
    to: str
    body: str
    data: dict[str, str] = field(default_factory=dict)


def parse_args(line: str) -> list[str]:
    """Split a command line as res_agi.c parse_args does."""
    words: list[str] = []
    cur: list[str] | None = None
    quoted = escaped = False
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and cur is None:
                cur = []
                words.append("")
            continue
        if ch in " \t" and not quoted and not escaped:
            if cur is not None:
                words[-1] = "".join(cur)
                cur = None
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if cur is None:
            cur = []
            words.append("")
        cur.append(ch)
        escaped = False
    if cur is not None:
        words[-1] = "".join(cur)
    return words


# (words, minimum argc, maximum argc, allowed on a dead channel, usage text)
_COMMANDS: list[tuple[tuple[str, ...], int, int, bool, str]] = [
    (
        ("get", "full", "variable"),
        4,
        5,
        True,
        " Usage: GET FULL VARIABLE <variablename> [<channel name>]",
    ),
    (("get", "variable"), 3, 3, True, " Usage: GET VARIABLE <variablename>"),
    (("set", "variable"), 4, 4, True, " Usage: SET VARIABLE <variablename> <value>"),
    (("verbose",), 2, 3, True, " Usage: VERBOSE <message> <level>"),
    (("noop",), 1, 99, True, " Usage: NOOP"),
    (("answer",), 1, 1, False, " Usage: ANSWER"),
    (("channel", "status"), 2, 3, False, " Usage: CHANNEL STATUS [<channelname>]"),
    (("hangup",), 1, 2, False, " Usage: HANGUP [<channelname>]"),
]


class FakeAsteriskAgi:
    """One AGI() execution of Asterisk against a FastAGI server."""

    def __init__(
        self,
        port: int,
        script: str,
        *,
        host: str = "127.0.0.1",
        args: Sequence[str] = (),
        channel: str = "Local/s@agi-test-00000000;2",
        channel_type: str = "Local",
        context: str = "agi-test",
        extension: str = "s",
        priority: int = 6,
        uniqueid: str = "1795609785.1",
        threadid: str = "140154602936000",
        variables: Mapping[str, str] | None = None,
        message: SipMessage | None = None,
        hangup_after: int | None = None,
        close_after: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.script = script
        self.args = list(args)
        self.channel = channel
        self.channel_type = channel_type
        self.context = context
        self.extension = extension
        self.priority = priority
        self.uniqueid = uniqueid
        self.threadid = threadid
        self.variables: dict[str, str] = dict(variables or {})
        self.message = message
        self.hangup_after = hangup_after
        self.close_after = close_after
        self.dead = False
        self.commands: list[str] = []  # every command line received (evidence)
        self.replies: list[str] = []  # every reply sent
        self.verbose: list[str] = []
        self.closed_by_server = False
        self.timed_out = False

    # --- ready-made calls matching the captures ---------------------------

    @classmethod
    def _message(
        cls, port: int, script: str, msg: SipMessage, *, extension: str, context: str,
        args: Sequence[str], uniqueid: str, threadid: str, priority: int = 3, **kw: object,
    ) -> FakeAsteriskAgi:
        """A SIP MESSAGE run in the dialplan on Asterisk's Message/ast_msg_queue channel."""
        return cls(
            port,
            script,
            args=args,
            channel="Message/ast_msg_queue",
            channel_type="Message",
            context=context,
            extension=extension,
            priority=priority,
            uniqueid=uniqueid,
            threadid=threadid,
            message=msg,
            **kw,  # type: ignore[arg-type]
        )

    @classmethod
    def message_chan_sip(
        cls,
        port: int,
        script: str,
        *,
        from_: str,
        to: str,
        body: str,
        extension: str,
        context: str = "sms-in",
        args: Sequence[str] = (),
        peer: str = "",
        recvaddr: str = "127.0.0.1:5061",
        **kw: object,
    ) -> FakeAsteriskAgi:
        """An out-of-dialog SIP MESSAGE through chan_sip (message-transcript.txt)."""
        msg = SipMessage(from_, to, body, {"SIP_PEERNAME": peer, "SIP_RECVADDR": recvaddr})
        return cls._message(port, script, msg, extension=extension, context=context, args=args,
                            uniqueid="1795609787.2", threadid="140154611803840", **kw)

    @classmethod
    def message_pjsip(
        cls,
        port: int,
        script: str,
        *,
        from_: str,
        to: str,
        body: str,
        extension: str,
        context: str = "sms-in",
        args: Sequence[str] = (),
        callerid_name: str = "",
        recvaddr: str = "127.0.0.1:5061",
        headers: Mapping[str, str] | None = None,
        uniqueid: str = "1795609644.0",
        threadid: str = "139895736751808",
        **kw: object,
    ) -> FakeAsteriskAgi:
        """The same through PJSIP (pjsip-message-transcript.txt, pjsip-phone-sms-out.transcript).

        res_pjsip_messaging.c sets ``PJSIP_ENDPOINT`` to the identified endpoint's
        caller-ID *name* (``callerid = "Alice Agent" <100>`` gives ``Alice Agent``),
        not its id, which no dialplan function shows; it is empty for an endpoint
        without a caller-ID name.  Every SIP header of the request is a message
        variable too (``MESSAGE_DATA(From)``, ``MESSAGE_DATA(Authorization)``):
        ``headers`` gives them.
        """
        data = {"PJSIP_ENDPOINT": callerid_name, "PJSIP_RECVADDR": recvaddr, **(headers or {})}
        msg = SipMessage(from_, to, body, data)
        return cls._message(port, script, msg, extension=extension, context=context, args=args,
                            uniqueid=uniqueid, threadid=threadid, **kw)

    # --- the environment ---------------------------------------------------

    def environment(self) -> bytes:
        """The block exactly as res_agi's setup_env writes it."""
        pairs = [
            ("network", "yes"),
            ("network_script", self.script),
            ("request", f"agi://{self.host}:{self.port}/{self.script}"),
            ("channel", self.channel),
            ("language", "en"),
            ("type", self.channel_type),
            ("uniqueid", self.uniqueid),
            ("version", "20.20.1"),
            ("callerid", "unknown"),
            ("calleridname", "unknown"),
            ("callingpres", "67"),
            ("callingani2", "0"),
            ("callington", "0"),
            ("callingtns", "0"),
            ("dnid", "unknown"),
            ("rdnis", "unknown"),
            ("context", self.context),
            ("extension", self.extension),
            ("priority", str(self.priority)),
            ("enhanced", "0.0"),
            ("accountcode", ""),
            ("threadid", self.threadid),
        ]
        pairs += [(f"arg_{i}", a) for i, a in enumerate(self.args, start=1)]
        text = "".join(f"agi_{k}: {v}\n" for k, v in pairs) + "\n"
        return text.encode("utf-8")

    # --- dialplan evaluation -------------------------------------------------

    def _builtin(self, name: str) -> str | None:
        builtins = {
            "CHANNEL": self.channel,
            "EXTEN": self.extension,
            "CONTEXT": self.context,
            "UNIQUEID": self.uniqueid,
            "PRIORITY": str(self.priority),
        }
        if name in self.variables:
            return self.variables[name]
        return builtins.get(name)

    def _function(self, call: str) -> str | None:
        """Read a dialplan function; None when the read fails."""
        name, _, rest = call.partition("(")
        arg = rest[: rest.rfind(")")] if ")" in rest else rest
        name = name.strip().upper()
        if name == "MESSAGE":
            if self.message is None:
                return None  # "No message associated with this channel"
            field_ = arg.strip().lower()
            return {
                "from": self.message.from_,
                "to": self.message.to,
                "body": self.message.body,
            }.get(field_)
        if name == "MESSAGE_DATA":
            if self.message is None:
                return None
            return self.message.data.get(arg.strip(), "")
        if name == "BASE64_ENCODE":
            if not arg:
                return None  # func_base64.c: "missing argument!" warning, read fails
            return base64.b64encode(arg.encode("utf-8")).decode("ascii")
        return None

    def substitute(self, expr: str) -> str:
        """pbx_substitute_variables: ``${...}`` with nesting, functions and variables."""
        out: list[str] = []
        i = 0
        while i < len(expr):
            if expr.startswith("${", i):
                j = i + 2
                depth = 1
                while j < len(expr) and depth:
                    if expr[j] == "{":
                        depth += 1
                    elif expr[j] == "}":
                        depth -= 1
                    j += 1
                inner = expr[i + 2 : j - 1] if depth == 0 else expr[i + 2 :]
                inner = self.substitute(inner)
                value = self._function(inner) if inner.endswith(")") else self._builtin(inner)
                out.append(value or "")
                i = j
            else:
                out.append(expr[i])
                i += 1
        return "".join(out)

    # --- commands ---------------------------------------------------------------

    def answer(self, line: str) -> str:
        """The reply (possibly several lines, without the final LF) to one command line."""
        argv = parse_args(line)
        lowered = [w.lower() for w in argv]
        for words, lo, hi, dead_ok, usage in _COMMANDS:
            if tuple(lowered[: len(words)]) != words:
                continue
            if self.dead and not dead_ok:
                return DEAD_CHANNEL
            if not lo <= len(argv) <= hi:
                return (
                    "520-Invalid command syntax.  Proper usage follows:\n"
                    f"{usage}\n520 End of proper usage."
                )
            return self._run(words, argv)
        return UNKNOWN_COMMAND

    def _run(self, words: tuple[str, ...], argv: list[str]) -> str:
        if words == ("get", "variable"):
            name = argv[2]
            value = self._function(name) if name.endswith(")") else self._builtin(name)
            if value is None:
                return "200 result=0"
            value = value.encode("utf-8")[:1023].decode("utf-8", errors="ignore")
            return f"200 result=1 ({value})"
        if words == ("get", "full", "variable"):
            return f"200 result=1 ({self.substitute(argv[3])})"
        if words == ("set", "variable"):
            self.variables[argv[2]] = argv[3]
            return "200 result=1"
        if words == ("verbose",):
            self.verbose.append(argv[1])
            return "200 result=1"
        if words == ("noop",):
            return "200 result=0"
        if words == ("answer",):
            return "200 result=0"
        if words == ("channel", "status"):
            return "200 result=6"
        if words == ("hangup",):
            self.dead = True
            return "200 result=1"
        return UNKNOWN_COMMAND

    # --- the connection ------------------------------------------------------------

    async def run(self) -> None:
        """Connect, send the environment, answer until the server closes."""
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, OSError):
            # The server reset the connection (allow-list, limits): for
            # Asterisk that is the end of the AGI, with AGISTATUS set by res_agi.
            self.closed_by_server = True
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(self.environment())
        await writer.drain()
        count = 0
        while True:
            if self.close_after is not None and count >= self.close_after:
                return
            if self.hangup_after is not None and count == self.hangup_after and not self.dead:
                self.dead = True
                writer.write(b"HANGUP\n")
                await writer.drain()
            try:
                async with asyncio.timeout(IDLE_TIMEOUT_S):   # not wait_for: gh-86296
                    raw = await reader.readline()
            except TimeoutError:
                self.timed_out = True  # the server neither sent a command nor closed
                return
            if not raw:
                self.closed_by_server = True
                return
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            self.commands.append(line)
            reply = self.answer(line)
            self.replies.append(reply)
            writer.write((reply + "\n").encode("utf-8"))
            await writer.drain()
            count += 1
