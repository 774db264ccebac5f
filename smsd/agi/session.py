"""One FastAGI conversation: bounded line reading and command/reply pairs.

The session owns the two directions of one TCP connection from Asterisk.  It
sends one command at a time and waits, under a deadline, for the reply that
belongs to it; the asynchronous ``HANGUP`` line is recorded wherever it
appears and never mistaken for a reply.  Typed errors say what went wrong so
that the server can log one precise event per broken connection.
"""

from __future__ import annotations

import asyncio
import secrets

import structlog

from smsd.agi.protocol import (
    HANGUP_LINE,
    AgiEnvironment,
    AgiReply,
    ReplyAssembler,
    format_command,
    parse_environment,
    sanitize_value,
)
from smsd.errors import AgiProtocolError

log = structlog.get_logger(__name__)

# Asterisk answers GET/SET VARIABLE from memory: the captured sessions take
# under 3 ms for six commands.  Five seconds only trips when the PBX (or the
# peer pretending to be it) is stuck, and it stays well inside Asterisk's own
# patience for a FastAGI script.
COMMAND_TIMEOUT_S = 5.0
# Lines we are willing to throw away while resynchronising after an argument
# with newlines broke the environment block (an SMS body of 670 characters has
# at most 670 lines).
MAX_RESYNC_LINES = 2000


class AgiClosed(AgiProtocolError):
    """The peer closed the connection (EOF) where a line was expected."""


class AgiLineTooLong(AgiProtocolError):
    """A line exceeded the reader's limit (garbage or a hostile peer)."""


class AgiTimeout(AgiProtocolError):
    """No (complete) reply within the command deadline."""

    def __init__(self, command: str, seconds: float) -> None:
        self.command = command
        self.seconds = seconds
        super().__init__(f"no AGI reply to {command!r} within {seconds:g} s")


class AgiCommandFailed(AgiProtocolError):
    """Asterisk refused a command (510 unknown, 520 usage, 5xx other)."""

    def __init__(self, command: str, reply: AgiReply) -> None:
        self.command = command
        self.reply = reply
        super().__init__(f"{command!r} -> {reply.code} {reply.text[:120]}")


class AgiDeadChannel(AgiCommandFailed):
    """``511``: the channel hung up and the command needs a live one."""


class AgiEnvironmentTooLarge(AgiProtocolError):
    """The environment block exceeded its byte or line budget."""


class LineReader:
    """Reads LF-terminated lines from a StreamReader whose ``limit`` bounds them.

    Decoding uses U+FFFD for invalid UTF-8: a bad byte must cost a character,
    never the connection.  A trailing CR is dropped as well (a hand-written
    client may send CRLF; Asterisk sends LF only).
    """

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self.bytes_read = 0

    async def readline(self) -> str:
        try:
            raw = await self._reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            self.bytes_read += len(exc.partial)
            raise AgiClosed(
                f"peer closed the connection ({len(exc.partial)} bytes unterminated)"
            ) from None
        except asyncio.LimitOverrunError as exc:
            raise AgiLineTooLong(f"line longer than {exc.consumed} bytes") from None
        except ValueError as exc:  # StreamReader reports a full buffer this way too
            raise AgiLineTooLong(str(exc)) from None
        self.bytes_read += len(raw)
        line = raw[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
        return line.decode("utf-8", errors="replace")


async def read_environment(
    lines: LineReader, *, max_bytes: int, max_lines: int = 512
) -> AgiEnvironment:
    """Read ``agi_*`` lines up to the empty line, within a byte and line budget.

    The caller puts a deadline around this; here only sizes are bounded.
    """
    collected: list[str] = []
    start = lines.bytes_read
    while True:
        line = await lines.readline()
        if line == "":
            return parse_environment(collected)
        collected.append(line)
        if len(collected) > max_lines or lines.bytes_read - start > max_bytes:
            raise AgiEnvironmentTooLarge(
                f"AGI environment over {max_bytes} bytes / {max_lines} lines without its end"
            )


class AgiSession:
    """Commands to Asterisk on one connection, one at a time."""

    def __init__(
        self,
        lines: LineReader,
        writer: asyncio.StreamWriter,
        env: AgiEnvironment,
        *,
        command_timeout: float = COMMAND_TIMEOUT_S,
    ) -> None:
        self._lines = lines
        self._writer = writer
        self.env = env
        self.command_timeout = command_timeout
        self.hung_up = False
        self._assembler = ReplyAssembler()
        self._lock = asyncio.Lock()

    async def command(self, verb: str, *args: str) -> AgiReply:
        """Send one command and return its ``200`` reply.

        Raises :class:`AgiDeadChannel` on 511, :class:`AgiCommandFailed` on any
        other non-200 reply, :class:`AgiTimeout`, :class:`AgiClosed`.
        """
        line = format_command(verb, *args)
        shown = line[:80].decode("utf-8", errors="replace").rstrip("\n")
        async with self._lock:
            try:
                async with asyncio.timeout(self.command_timeout):
                    self._writer.write(line)
                    await self._writer.drain()
                    reply = await self._read_reply()
            except TimeoutError:
                raise AgiTimeout(shown, self.command_timeout) from None
            except (ConnectionError, BrokenPipeError) as exc:
                raise AgiClosed(f"connection lost sending {shown!r}: {exc}") from None
        if reply.code == 511:
            self.hung_up = True
            raise AgiDeadChannel(shown, reply)
        if reply.code != 200:
            raise AgiCommandFailed(shown, reply)
        return reply

    async def _read_reply(self) -> AgiReply:
        while True:
            line = await self._lines.readline()
            if line == HANGUP_LINE and not self._assembler.in_block:
                if not self.hung_up:
                    log.info("agi.hangup", uniqueid=self.env.uniqueid, channel=self.env.channel)
                self.hung_up = True
                continue
            reply = self._assembler.feed(line)
            if reply is not None:
                return reply

    async def get_variable(self, name: str) -> str | None:
        """``GET VARIABLE``: the value, or None when unset (``200 result=0``).

        Only for values without line ends; Asterisk truncates them at 1023
        bytes.  Message bodies go through :func:`smsd.agi.channel.read_message`
        (base64 via GET FULL VARIABLE).
        """
        reply = await self.command("GET VARIABLE", name)
        if reply.result == 0:
            return None
        return reply.data if reply.data is not None else ""

    async def get_full_variable(self, expression: str) -> str:
        """``GET FULL VARIABLE``: the expression with ``${...}`` substituted."""
        reply = await self.command("GET FULL VARIABLE", expression)
        if reply.result == 0:
            return ""
        return reply.data if reply.data is not None else ""

    async def set_variable(self, name: str, value: str) -> None:
        """``SET VARIABLE``; control characters in ``value`` become spaces."""
        await self.command("SET VARIABLE", name, sanitize_value(value))

    async def resync(self) -> int:
        """Skip stray lines until a fresh marker comes back; return how many.

        After an argument with newlines, Asterisk's tail of the broken block
        is still in the stream and would be read as replies.  We ask Asterisk
        to echo a random token with GET FULL VARIABLE and discard everything
        before the echo; the token is unguessable, so a crafted SMS body cannot
        fake it.
        """
        token = "smsd-sync-" + secrets.token_hex(8)
        expected = f"200 result=1 ({token})"
        line_out = format_command("GET FULL VARIABLE", token)
        skipped = 0
        async with self._lock:
            try:
                async with asyncio.timeout(self.command_timeout):
                    self._writer.write(line_out)
                    await self._writer.drain()
                    while True:
                        line = await self._lines.readline()
                        if line == expected:
                            return skipped
                        if line == HANGUP_LINE:
                            self.hung_up = True
                        skipped += 1
                        if skipped > MAX_RESYNC_LINES:
                            raise AgiProtocolError(
                                f"no resync marker after {MAX_RESYNC_LINES} lines"
                            )
            except TimeoutError:
                raise AgiTimeout("GET FULL VARIABLE <sync>", self.command_timeout) from None
