"""The FastAGI wire format, as pure functions.

Everything here is byte/line level and free of I/O so that it can be tested
against the captures of a real Asterisk 20 (``/work/shared/captures``) line by
line.  The session and server layers only move lines; the meaning of a line is
decided here.

Facts the code relies on (res_agi.c of Asterisk 20, and the captures):

* the environment is ``agi_<name>: <value>`` lines ended by LF, closed by one
  empty line; ``agi_arg_N`` lines follow the fixed variables;
* ``agi_network_script`` is the raw path *and* query of the ``agi://`` URL
  (``kite-sms?did=+15551234567`` or ``kite-sms?did=%2B15551234567``);
* an argument that contains a newline is sent as is, so it breaks the block
  into lines that are not ``agi_*`` lines and ends it early;
* replies are ``200 result=N`` optionally followed by `` (data)`` and
  ``key=value`` pairs, ``510 Invalid or unknown command``, ``511 Command Not
  Permitted on a dead channel or intercept routine``, ``520 ...`` and the
  multi-line ``520-...`` usage block ended by ``520 End of proper usage.``;
* ``HANGUP`` arrives on its own line, unrequested, when the channel hangs up;
* commands are split into words by res_agi's ``parse_args``: blanks separate
  words, double quotes group, a backslash makes the next character literal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from smsd.errors import AgiProtocolError

__all__ = [
    "HANGUP_LINE",
    "AgiEnvironment",
    "AgiReply",
    "ReplyAssembler",
    "format_command",
    "parse_environment",
    "parse_query",
    "parse_reply_line",
    "quote_arg",
    "sanitize_value",
    "split_script",
]

HANGUP_LINE = "HANGUP"

_ENV_LINE = re.compile(r"^agi_([a-z0-9_]+): ?(.*)$")
_ARG_KEY = re.compile(r"^arg_([0-9]+)$")
_REPLY = re.compile(
    r"^(?P<code>[0-9]{3})(?P<sep>[ -])(?P<rest>.*)$",
)
_RESULT = re.compile(
    # `result=N`, then an optional ` (data)` (greedy: variable values may hold
    # parentheses), then optional ` key=value` pairs such as `endpos=1234`.
    r"^result=(?P<result>-?[0-9]+)(?: \((?P<data>.*)\))?(?P<extra>(?: [a-z]+=\S*)*)$",
    re.DOTALL,
)
# Characters that force quoting in a command word (res_agi parse_args splits on
# blank and tab; quote and backslash are its two metacharacters).
_NEEDS_QUOTES = re.compile(r'[ \t"\\]')
# A value we put on the command line must never carry a line end or another
# control character: the line protocol has no escape for them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class AgiEnvironment:
    """The ``agi_*`` block Asterisk sends first, decoded.

    ``damaged`` is true when the block held lines that cannot be Asterisk's own
    (no ``agi_`` prefix, a repeated name, a gap in ``agi_arg_N``): an argument
    carried a newline, so no argument can be trusted (``args`` is then empty)
    and more stray lines may follow the blank line.
    """

    variables: Mapping[str, str]
    args: tuple[str, ...]
    script: str
    query: Mapping[str, str]
    damaged: bool = False
    stray_lines: tuple[str, ...] = field(default=())

    def get(self, name: str, default: str = "") -> str:
        return self.variables.get(name, default)

    @property
    def channel(self) -> str:
        return self.get("channel")

    @property
    def channel_type(self) -> str:
        return self.get("type")

    @property
    def extension(self) -> str:
        return self.get("extension")

    @property
    def uniqueid(self) -> str:
        return self.get("uniqueid")

    @property
    def is_message_channel(self) -> bool:
        """True in a message context (``Message/ast_msg_queue``)."""
        return self.channel_type == "Message" or self.channel.startswith("Message/")

    def param(self, key: str, position: int) -> str | None:
        """The value of query key ``key``, else argument ``position`` (1-based)."""
        if key in self.query:
            return self.query[key]
        if 1 <= position <= len(self.args):
            return self.args[position - 1]
        return None


def split_script(network_script: str) -> tuple[str, str]:
    """Split ``agi_network_script`` into the script name and the raw query.

    Routing must use the name alone: ``kite-sms?did=+1555`` is ``kite-sms``.
    Leading and trailing slashes are dropped and the path is percent-decoded
    (``sms%2Dsend`` is ``sms-send``).
    """
    path, _, query = network_script.partition("?")
    path = unquote(path, errors="replace").strip("/")
    return path, query


def parse_query(query: str) -> dict[str, str]:
    """Decode ``k=v&k2=v2`` where ``+`` is a plus and ``%2B`` is a plus too.

    ``urllib.parse.parse_qs`` turns ``+`` into a space (HTML form rules); a
    dialplan writes ``?did=+15551234567`` and means the plus.  Invalid percent
    escapes are kept literally and undecodable bytes become U+FFFD.  The first
    occurrence of a key wins; a key without ``=`` has the empty value.
    """
    out: dict[str, str] = {}
    for item in query.split("&"):
        if not item:
            continue
        key, _, value = item.partition("=")
        key = unquote(key, errors="replace").strip()
        if not key or key in out:
            continue
        out[key] = unquote(value, errors="replace")
    return out


def parse_environment(lines: Iterable[str]) -> AgiEnvironment:
    """Build the environment from the lines before the first empty line.

    Never raises on odd lines: they mark the environment ``damaged`` (see
    :class:`AgiEnvironment`) and are kept in ``stray_lines`` for the log.
    """
    variables: dict[str, str] = {}
    args: dict[int, str] = {}
    stray: list[str] = []
    damaged = False
    for line in lines:
        m = _ENV_LINE.match(line)
        if m is None:
            stray.append(line)
            damaged = True
            continue
        name, value = m.group(1), m.group(2)
        am = _ARG_KEY.match(name)
        if am is not None:
            index = int(am.group(1))
            if index != len(args) + 1:
                damaged = True
                continue
            args[index] = value
            continue
        if name in variables or args:
            # Asterisk sends each name once and every fixed name before the
            # arguments; anything else was injected through an argument.
            damaged = True
            continue
        variables[name] = value
    script, query = split_script(variables.get("network_script", ""))
    if not script and "request" in variables:
        # agi_network_script is always present for agi:// URLs; be lenient
        # with older or hand-made clients and fall back to agi_request.
        request = variables["request"]
        if "://" in request:
            request = request.split("://", 1)[1].partition("/")[2]
        script, query = split_script(request)
    # Once one argument carried a newline we cannot tell where it ended nor
    # whether later "agi_arg_N" lines are its text: trust no argument at all.
    ordered_args = () if damaged else tuple(args[i] for i in range(1, len(args) + 1))
    return AgiEnvironment(
        variables=variables,
        args=ordered_args,
        script=script,
        query=parse_query(query),
        damaged=damaged,
        stray_lines=tuple(stray),
    )


def sanitize_value(text: str, max_len: int = 500) -> str:
    """Make ``text`` safe to send as one command word: no control characters.

    Line ends and other controls become one space; the result is cut to
    ``max_len`` characters so a long error can never exceed Asterisk's command
    buffer (AGI_BUF_LEN, 2048 bytes in res_agi.c).
    """
    cleaned = _CONTROL.sub(" ", text)
    return cleaned[:max_len]


def quote_arg(value: str) -> str:
    """Quote one command word so res_agi's ``parse_args`` yields ``value``.

    Words without blank, quote or backslash go as they are; others are wrapped
    in double quotes with ``"`` and ``\\`` escaped by a backslash.  The empty
    string becomes ``""``.  Control characters cannot be expressed and raise
    :class:`AgiProtocolError` (run :func:`sanitize_value` first).
    """
    if _CONTROL.search(value):
        raise AgiProtocolError(f"control character in AGI argument {value[:40]!r}")
    if value and not _NEEDS_QUOTES.search(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def format_command(verb: str, *args: str) -> bytes:
    """One command line: the fixed verb words, then each argument quoted."""
    parts = [verb, *(quote_arg(a) for a in args)]
    return (" ".join(parts) + "\n").encode("utf-8")


@dataclass(frozen=True)
class AgiReply:
    """One complete reply to a command.

    ``result`` and ``data`` are set for ``200`` replies; ``text`` holds the
    message of an error reply (for ``520-`` the usage lines, joined by LF).
    """

    code: int
    result: int | None = None
    data: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    text: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 200


def parse_reply_line(line: str) -> AgiReply:
    """Parse one single-line reply; raises :class:`AgiProtocolError` if it is none.

    ``200 result=1 (hello)`` -> code 200, result 1, data ``hello``;
    ``200 result=0`` -> data None (GET VARIABLE of an unset variable);
    ``510 Invalid or unknown command`` -> code 510, text.
    """
    m = _REPLY.match(line)
    if m is None or m.group("sep") != " ":
        raise AgiProtocolError(f"not an AGI reply line: {line[:80]!r}")
    code = int(m.group("code"))
    rest = m.group("rest")
    if code == 200:
        rm = _RESULT.match(rest)
        if rm is None:
            raise AgiProtocolError(f"200 reply without result=: {line[:80]!r}")
        extra: dict[str, str] = {}
        for pair in rm.group("extra").split():
            k, _, v = pair.partition("=")
            extra[k] = v
        return AgiReply(
            code=200, result=int(rm.group("result")), data=rm.group("data"), extra=extra
        )
    return AgiReply(code=code, text=rest)


class ReplyAssembler:
    """Turns reply lines into :class:`AgiReply` objects, one per command.

    Feed lines one at a time; :meth:`feed` returns a reply when one is
    complete, ``None`` while inside a ``520-`` usage block.  ``HANGUP`` lines
    are not replies: the caller must filter them first (they may arrive
    between any two lines).  A usage block longer than ``max_lines`` raises
    :class:`AgiProtocolError` so a hostile peer cannot make us buffer forever.
    """

    def __init__(self, max_lines: int = 200) -> None:
        self._max_lines = max_lines
        self._usage: list[str] | None = None
        self._code = 0

    @property
    def in_block(self) -> bool:
        return self._usage is not None

    def feed(self, line: str) -> AgiReply | None:
        if self._usage is not None:
            m = _REPLY.match(line)
            if m is not None and m.group("sep") == " " and int(m.group("code")) == self._code:
                usage = "\n".join(self._usage)
                self._usage = None
                return AgiReply(code=self._code, text=usage)
            self._usage.append(line)
            if len(self._usage) > self._max_lines:
                self._usage = None
                raise AgiProtocolError("AGI usage block did not end")
            return None
        m = _REPLY.match(line)
        if m is not None and m.group("sep") == "-":
            self._code = int(m.group("code"))
            self._usage = [m.group("rest")]
            return None
        return parse_reply_line(line)
