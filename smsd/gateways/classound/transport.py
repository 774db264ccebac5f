"""The trunk's sockets: one UDP socket, or a TCP listener plus a connection to the carrier.

The only module of the trunk that touches the network.  Every message that
arrives, on any socket, is parsed here and handed up with a ``Peer`` that
knows how to answer on the same path (RFC 3261 18.2.2: a response goes back
over the connection or to the address and port the request came from, as
with ``rport``, RFC 3581).  Bytes that are not SIP never leave this module:
a request whose head could be read is answered with the parser's status; the
rest is dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import structlog

from smsd.errors import SipParseError
from smsd.gateways.classound.framing import FramingLost, StreamFramer
from smsd.gateways.classound.sipmsg import (
    SipMessage,
    SipRequest,
    parse,
    response_to,
)

log = structlog.get_logger(__name__)

# Connecting to the carrier's TCP port: a reachable proxy accepts within a few
# round trips; longer means it is down and the router should fail over.
CONNECT_TIMEOUT_S = 5.0
# Idle inbound TCP connections are closed after this (carriers keep theirs
# busy with CRLF keep-alives every 30 s or so, RFC 5626 4.4.1).
IDLE_TIMEOUT_S = 300.0
# At most one "dropped garbage" warning per this many seconds; the count says how many.
DROP_LOG_EVERY_S = 60.0

REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    481: "Call/Transaction Does Not Exist",
    500: "Server Internal Error",
    503: "Service Unavailable",
    505: "Version Not Supported",
    513: "Message Too Large",
}


@dataclass(frozen=True)
class Peer:
    """Where a message came from and how to answer it."""

    host: str
    port: int
    transport: str  # "udp" | "tcp"
    reply: Callable[[bytes], None]


OnMessage = Callable[[SipMessage, Peer], None]


class _Drops:
    """Counts what was dropped; logs a summary at most every DROP_LOG_EVERY_S."""

    def __init__(self) -> None:
        self.count = 0
        self._since_log = 0
        self._last_log = 0.0

    def drop(self, host: str, reason: str) -> None:
        self.count += 1
        self._since_log += 1
        now = time.monotonic()
        if now - self._last_log >= DROP_LOG_EVERY_S:
            log.warning("sip.dropped", host=host, reason=reason, dropped=self._since_log)
            self._last_log = now
            self._since_log = 0


class SipEndpoint:
    """The local SIP address: bound by ``start()``, messages to ``on_message``."""

    def __init__(self, transport: str, host: str, port: int, on_message: OnMessage,
                 on_lost: Callable[[tuple[str, int]], None] | None = None, *,
                 server_hostname: str | None = None) -> None:
        self.transport = transport
        self.on_lost = on_lost
        # tls: the context that checks the carrier's certificate (and the name
        # it must carry), and ours for inbound connections (none = the carrier
        # can only answer on the connection we opened)
        self._tls_client: ssl.SSLContext | None = None
        self._tls_server: ssl.SSLContext | None = None
        self._server_hostname = server_hostname
        self.host = host
        self.port = port
        self._on_message = on_message
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._conns: dict[tuple[str, int], _StreamProtocol] = {}
        self._connecting: dict[tuple[str, int], asyncio.Future[_StreamProtocol]] = {}
        self.drops = _Drops()
        self.answered_errors = 0

    def set_tls(self, client: ssl.SSLContext, server: ssl.SSLContext | None) -> None:
        """tls: ``client`` checks the carrier's certificate; ``server`` (ours) accepts inbound."""
        self._tls_client = client
        self._tls_server = server

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.transport == "udp":
            tr, _ = await loop.create_datagram_endpoint(
                lambda: _DatagramProtocol(self), local_addr=(self.host, self.port)
            )
            self._udp = tr
            self.port = int(tr.get_extra_info("sockname")[1])
        elif self.transport == "tcp" or self._tls_server is not None:
            self._server = await loop.create_server(
                lambda: _StreamProtocol(self, None), self.host, self.port, reuse_address=True,
                ssl=self._tls_server,
            )
            self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("sip.listening", transport=self.transport, host=self.host, port=self.port)

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        for conn in list(self._conns.values()):
            conn.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    def send_datagram(self, data: bytes, dest: tuple[str, int]) -> None:
        if self._udp is None:
            raise ConnectionError("the SIP socket is closed")
        self._udp.sendto(data, dest)

    async def send(self, data: bytes, dest: tuple[str, int]) -> None:
        """Send to ``dest``: a datagram, or over the (re)opened TCP connection."""
        if self.transport == "udp":
            self.send_datagram(data, dest)
            return
        conn = await self._connection(dest)
        conn.write(data)

    async def _connection(self, dest: tuple[str, int]) -> _StreamProtocol:
        conn = self._conns.get(dest)
        if conn is not None and not conn.closed:
            return conn
        pending = self._connecting.get(dest)
        if pending is not None:
            return await asyncio.shield(pending)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[_StreamProtocol] = loop.create_future()
        self._connecting[dest] = fut
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                _, proto = await loop.create_connection(
                    lambda: _StreamProtocol(self, dest), dest[0], dest[1],
                    ssl=self._tls_client,
                    server_hostname=self._server_hostname if self._tls_client else None,
                )
        except BaseException as exc:
            fut.set_exception(ConnectionError(f"cannot connect to {dest[0]}:{dest[1]}: {exc}"))
            fut.exception()  # retrieved: waiters get it through shield
            raise ConnectionError(f"cannot connect to {dest[0]}:{dest[1]}: {exc}") from exc
        finally:
            self._connecting.pop(dest, None)
        self._conns[dest] = proto
        fut.set_result(proto)
        return proto

    # --- incoming ---------------------------------------------------------------

    def received(self, data: bytes, peer: Peer, *, stream: bool) -> bool:
        """Handle one message; False when it was dropped unread (on a stream that
        means its framing cannot be trusted: the caller closes the connection)."""
        if not data.strip(b"\r\n"):
            return True  # keep-alive (RFC 5626 3.5.1)
        try:
            msg = parse(data, stream=stream)
        except SipParseError as exc:
            return self.rejected(exc, peer)
        try:
            self._on_message(msg, peer)
        except Exception:  # contain: one bad message must not stop the socket
            log.exception("sip.handler_failed", host=peer.host)
        return True

    def rejected(self, exc: SipParseError, peer: Peer) -> bool:
        """Answer what can be answered (a request with readable headers), drop the
        rest; whether it was answered."""
        req = exc.message
        if isinstance(req, SipRequest) and req.method != "ACK" and req.get("Via"):
            status = exc.status
            resp = response_to(req, status, REASONS.get(status, "Bad Request"))
            resp.add("Warning", f'399 smsd "{str(exc)[:120]}"')
            self.answered_errors += 1
            log.info("sip.request_rejected", host=peer.host, status=status, reason=str(exc))
            peer.reply(resp.encode())
            return True
        self.drops.drop(peer.host, str(exc))
        return False


class _DatagramProtocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: SipEndpoint) -> None:
        self._endpoint = endpoint
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        host, port = str(addr[0]), int(addr[1])
        tr = self._transport

        def reply(payload: bytes) -> None:
            if tr is not None and not tr.is_closing():
                tr.sendto(payload, (host, port))

        self._endpoint.received(data, Peer(host, port, "udp", reply), stream=False)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable) for an earlier datagram: the client
        # transaction's timers decide what a lost request means.
        log.debug("sip.udp_error", error=str(exc))


class _StreamProtocol(asyncio.Protocol):
    """One TCP connection, inbound (dest None) or to the carrier."""

    def __init__(self, endpoint: SipEndpoint, dest: tuple[str, int] | None) -> None:
        self._endpoint = endpoint
        self._dest = dest
        self._framer = StreamFramer()
        self._transport: asyncio.Transport | None = None
        self._idle: asyncio.TimerHandle | None = None
        self.closed = False
        self._peer: Peer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        host, port = transport.get_extra_info("peername")[:2]
        self._peer = Peer(str(host), int(port), "tcp", self.write)
        if self._dest is None:
            self._endpoint._conns[(str(host), int(port))] = self
        self._touch()

    def _touch(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(IDLE_TIMEOUT_S, self.close)

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        assert self._peer is not None
        self._touch()
        try:
            messages = self._framer.feed(data)
        except FramingLost as exc:
            messages = []
            try:
                parse(exc.head, stream=True)
            except SipParseError as perr:
                perr.status = 513
                self._endpoint.rejected(perr, self._peer)
            else:
                self._endpoint.drops.drop(self._peer.host, str(exc))
            self.close()
        for raw in messages:
            if not self._endpoint.received(raw, self._peer, stream=True):
                # Unreadable even as a request to answer: whatever framed it
                # (a blank line inside random bytes) says nothing about where
                # the next message starts, so the connection ends here
                # (RFC 3261 18.3: a stream whose framing is lost is closed).
                self.close()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._idle is not None:
            self._idle.cancel()
        if self._peer is not None:
            key = self._dest or (self._peer.host, self._peer.port)
            if self._endpoint._conns.get(key) is self:
                del self._endpoint._conns[key]
        if self._dest is not None and self._endpoint.on_lost is not None:
            self._endpoint.on_lost(self._dest)
