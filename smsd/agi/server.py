"""The FastAGI TCP server: accept, bound, route on the script name, contain.

Each connection is one task that reads the environment under a byte budget
and a deadline, picks the handler by the script name without its query, and
runs it under a session deadline.  Whatever a peer does (close early, never
finish the block, send megabytes without a newline or bytes that are not
UTF-8) ends that connection only, with one log event; cancellation is always
re-raised.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from smsd.agi.handlers import build_handlers
from smsd.agi.ports import AgiServices, Handler
from smsd.agi.session import (
    COMMAND_TIMEOUT_S,
    AgiClosed,
    AgiSession,
    LineReader,
    read_environment,
)
from smsd.errors import AgiProtocolError, ConfigError

if TYPE_CHECKING:
    from smsd.services import Services

log = structlog.get_logger(__name__)


# Asterisk writes the whole environment right after connecting (the captures
# show it arrive in one segment).  Five seconds covers a loaded PBX; a peer
# that is slower than that is not Asterisk.
ENV_TIMEOUT_S = 5.0
# 22 fixed variables (~700 bytes in the captures) plus arguments; an SMS
# argument is at most 670 characters, 4 bytes each in UTF-8.
ENV_MAX_BYTES = 64 * 1024
# StreamReader limit: the longest line we accept.  Asterisk's own command
# buffer is 2048 bytes (AGI_BUF_LEN); replies and env lines stay far below.
LINE_LIMIT = 16 * 1024
# A whole session: Asterisk handles inbound messages one at a time, so a
# handler that takes longer blocks every later SMS; this is the hard stop.
SESSION_TIMEOUT_S = 30.0
# Above this many open connections new ones are closed at once; far more than
# the "hundreds of concurrent sessions" a PBX produces.
MAX_CONNECTIONS = 2048
# listen(2) backlog: a burst of hundreds of AGI() calls must not overflow the
# accept queue (the kernel then drops SYNs and Asterisk waits a 1 s retransmit).
# Linux caps it at net.core.somaxconn.
LISTEN_BACKLOG = 1024
# How long close() waits for running sessions before cancelling them.
DRAIN_TIMEOUT_S = 2.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allow(allow: Sequence[str]) -> tuple[Network, ...]:
    """``["127.0.0.1", "10.0.0.0/8", "::1"]`` -> networks; bad entries raise ConfigError."""
    nets: list[Network] = []
    problems: list[tuple[str, str]] = []
    for i, entry in enumerate(allow):
        try:
            nets.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as exc:
            problems.append((f"agi_allow[{i}]", f"{entry!r} is not an address or network: {exc}"))
    if problems:
        raise ConfigError(problems)
    return tuple(nets)


def _peer_address(peer: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not isinstance(peer, tuple) or not peer:
        return None
    try:
        addr = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class AgiServer:
    """A FastAGI listener; ``await start()``, read ``port``, ``await close()``."""

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        host: str = "127.0.0.1",
        port: int = 4573,
        allow: Sequence[str] = (),
        *,
        unknown: Handler | None = None,
        env_timeout: float = ENV_TIMEOUT_S,
        session_timeout: float = SESSION_TIMEOUT_S,
        command_timeout: float | None = None,
        drain_timeout: float = DRAIN_TIMEOUT_S,
    ) -> None:
        self._handlers = dict(handlers)
        self._unknown = unknown or refuse_unknown_script
        self.host = host
        self.port = port
        self._allow = parse_allow(allow)
        self._env_timeout = env_timeout
        self._session_timeout = session_timeout
        self._command_timeout = command_timeout
        self._drain_timeout = drain_timeout
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.sessions_total = 0
        self.errors_total = 0

    @property
    def connections(self) -> int:
        """Connections being served right now."""
        return len(self._tasks)

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._on_connect, self.host, self.port, limit=LINE_LIMIT, backlog=LISTEN_BACKLOG
        )
        sockets = self._server.sockets
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info(
            "agi.listening", host=self.host, port=self.port, allow=[str(n) for n in self._allow]
        )

    async def close(self) -> None:
        """Stop accepting, give running sessions a moment, cancel the rest."""
        if self._server is not None:
            self._server.close()
        pending = set(self._tasks)
        if pending:
            _done, still = await asyncio.wait(pending, timeout=self._drain_timeout)
            for task in still:
                task.cancel("AGI server closing")
            if still:
                await asyncio.wait(still)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def _allowed(self, peer: Any) -> bool:
        if not self._allow:
            return True
        addr = _peer_address(peer)
        return addr is not None and any(addr in net for net in self._allow)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        peer_s = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)
        abort = False
        try:
            if not self._allowed(peer):
                log.warning("agi.peer_refused", peer=peer_s)
                abort = True
                return
            if len(self._tasks) > MAX_CONNECTIONS:
                log.warning("agi.too_many_connections", peer=peer_s, limit=MAX_CONNECTIONS)
                abort = True
                return
            abort = not await self._serve(reader, writer, peer_s)
        except asyncio.CancelledError:
            abort = True
            raise
        finally:
            self._tasks.discard(task)
            _close(writer, abort=abort)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> bool:
        """Run one session; True when it ended cleanly (close politely)."""
        lines = LineReader(reader)
        script = None
        try:
            try:
                async with asyncio.timeout(self._env_timeout):
                    env = await read_environment(lines, max_bytes=ENV_MAX_BYTES)
            except TimeoutError:
                log.info("agi.env_timeout", peer=peer, bytes=lines.bytes_read)
                return False
            except AgiClosed:
                # Port checks (monitoring, systemd, a scanner) connect and leave:
                # worth a debug line, not an info line per probe.
                log.debug("agi.closed_before_environment", peer=peer, bytes=lines.bytes_read)
                return False
            script = env.script
            if "network_script" not in env.variables and "request" not in env.variables:
                # Not Asterisk: every FastAGI environment names its script.
                self.errors_total += 1
                log.info("agi.not_agi", peer=peer, lines=len(env.stray_lines))
                return False
            bound = log.bind(peer=peer, script=script, uniqueid=env.uniqueid, channel=env.channel)
            session = AgiSession(
                lines, writer, env, command_timeout=self._command_timeout or COMMAND_TIMEOUT_S
            )
            self.sessions_total += 1
            try:
                async with asyncio.timeout(self._session_timeout):
                    if env.damaged:
                        bound.warning(
                            "agi.env_damaged",
                            stray_lines=len(env.stray_lines),
                            hint="an AGI argument held a newline; read bodies via MESSAGE(body)",
                        )
                        skipped = await session.resync()
                        bound.info("agi.resynced", skipped_lines=skipped)
                    handler = self._handlers.get(script)
                    if handler is None:
                        await self._unknown(session)
                    else:
                        await handler(session)
            except TimeoutError:
                self.errors_total += 1
                bound.warning("agi.session_timeout", seconds=self._session_timeout)
                return False
            return True
        except AgiProtocolError as exc:
            self.errors_total += 1
            log.info(
                "agi.protocol_error",
                peer=peer,
                script=script,
                error=str(exc),
                kind=type(exc).__name__,
            )
            return False
        except (ConnectionError, OSError) as exc:
            self.errors_total += 1
            log.info("agi.connection_error", peer=peer, script=script, error=str(exc))
            return False
        except Exception:
            self.errors_total += 1
            log.exception("agi.session_failed", peer=peer, script=script)
            return False


def _close(writer: asyncio.StreamWriter, *, abort: bool) -> None:
    """Close without waiting on the peer: a slow reader must not hold us."""
    transport = writer.transport
    if abort:
        transport.abort()
    else:
        # close() flushes what is buffered (our last SET VARIABLE) then closes.
        transport.close()


async def refuse_unknown_script(session: AgiSession) -> None:
    """A script we do not serve: log it and tell the dialplan, change nothing."""
    log.warning(
        "agi.unknown_script",
        script=session.env.script,
        uniqueid=session.env.uniqueid,
        context=session.env.get("context"),
        extension=session.env.extension,
    )
    await session.set_variable("SMS_STATUS", "ERROR")
    await session.set_variable("SMS_ERROR", f"unknown AGI script {session.env.script!r}")


async def serve_agi(
    services: Services,
    host: str,
    port: int,
    allow: Sequence[str] = (),
    *,
    started: Callable[[int], None] | None = None,
) -> None:
    """Serve smsd's AGI scripts until cancelled (the daemon's entry point).

    ``started`` is called with the bound port once listening (port 0 picks a
    free one).
    """
    server = AgiServer(build_handlers(AgiServices.from_services(services)), host, port, allow)
    await server.start()
    if started is not None:
        started(server.port)
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()
