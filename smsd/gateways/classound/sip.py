"""The ``sip`` transport: smsd as a SIP user agent sending MESSAGE (RFC 3428) to the carrier.

One MESSAGE per SMS, whatever its length: the carrier splits it for the
handset.  What the carrier's final answer means for the router:

- 2xx (200, 202): accepted; every part is ``sent``.
- 401/407: answered once with digest credentials (RFC 7616; a second
  challenge for the same request means the credentials are wrong, which is
  our configuration, not the message: temporary, so the router falls back).
- other 4xx: the carrier refuses this message (unknown number, barred):
  permanent.  Except the ones that name a moment rather than the message
  (TEMPORARY_4XX: 408 timeout, 480 temporarily unavailable, 486 busy, ...).
- 5xx, 6xx, no answer within Timer F, no connection: temporary.

Credentials answer the last challenge before the next request asks (nonce
count), so a busy trunk costs one round trip per message.  With
``sip_register`` the trunk keeps a registration (RFC 3261 10) and refreshes it
at half its granted lifetime; while it is not registered the gateway reports
itself unavailable and the router uses the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import ssl
import time

import structlog

from smsd.config import ClassoundGateway as ClassoundConfig
from smsd.errors import GatewayError, SipAuthError
from smsd.gateways.base import InboundSink, OutboundJob, PartHooks
from smsd.gateways.classound import digest
from smsd.gateways.classound.sipmsg import SipMessage, SipRequest, SipResponse
from smsd.gateways.classound.transaction import T2_S, ClientTransactions, TransactionTimeout
from smsd.gateways.classound.transport import Peer, SipEndpoint
from smsd.gateways.classound.uas import InboundServer

log = structlog.get_logger(__name__)

NAME = "classound"
USER_AGENT = "smsd/0.1"
# 4xx answers about the moment, not the message (RFC 3261 21.4): retried or
# handed to the next gateway.  401/407 are handled by authentication first.
TEMPORARY_4XX = frozenset({401, 407, 408, 423, 429, 480, 486, 491})
# Consecutive temporary failures that make the gateway unavailable for a
# while, like the curl gateway's breaker: a dead carrier must not cost every
# message a full Timer F before the router falls back.
BREAKER_FAILURES = 5
BREAKER_COOLDOWN_S = 30.0
# Registration: retry a failed REGISTER after this, doubling up to the cap.
REGISTER_RETRY_S = 5.0
REGISTER_RETRY_MAX_S = 300.0
# Refresh a registration when this share of its granted lifetime has passed.
REGISTER_REFRESH_SHARE = 0.5
# Challenges answered for one request at most (401 and 407, each possibly
# stale once): more is a server that never accepts, not a negotiation.
MAX_AUTH_ROUNDS = 4
# Inbound requests being handled at once (each waits for a store commit,
# milliseconds); beyond it a request is answered 503 so memory stays bounded.
MAX_INBOUND_IN_FLIGHT = 256
# Resolving the carrier's host name at start-up (the system resolver's own
# timeout is usually 5 s x attempts).
RESOLVE_TIMEOUT_S = 10.0


class SipTrunk:
    """The CLASSOUND gateway over SIP: ``start`` binds, ``run`` registers, ``send`` sends."""

    name = NAME

    def __init__(self, config: ClassoundConfig, inbox: InboundSink | None) -> None:
        assert config.sip_host is not None
        self._cfg = config
        self._endpoint = SipEndpoint(
            config.sip_transport, config.sip_local_host, config.sip_local_port, self._on_message,
            on_lost=self._connection_lost, server_hostname=config.sip_host,
        )
        t1 = config.sip_t1_ms / 1000.0
        self._tx = ClientTransactions(
            self._endpoint.send, reliable=config.sip_transport != "udp",
            resend=self._endpoint.send_datagram, t1=t1,
            t2=max(T2_S, t1), timer_f=config.timeout_s,
        )
        self._creds = (
            digest.Credentials(config.username, config.secret or "")
            if config.username else None
        )
        self._dest: tuple[str, int] = (config.sip_host, config.sip_port)
        self._inbound = InboundServer(inbox, config.sip_carrier_addresses, gateway=NAME)
        self._domain = config.from_domain or config.sip_host
        self._registered = not config.sip_register
        # RFC 3261 10.2.4: one Call-ID for every REGISTER of this run, CSeq rising.
        self._reg_call_id = f"{secrets.token_hex(12)}@{config.sip_local_host}"
        self._reg_cseq = 0
        self._failures = 0
        self._open_until = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0

    # --- lifecycle -----------------------------------------------------------

    @property
    def local_port(self) -> int:
        return self._endpoint.port

    @property
    def inbound(self) -> InboundServer:
        return self._inbound

    @property
    def endpoint(self) -> SipEndpoint:
        return self._endpoint

    async def start(self) -> None:
        """Resolve the carrier and bind the local port (a clear start-up error if taken).

        TLS certificates are read here too, so an unreadable one is an OSError
        (ssl.SSLError) the daemon reports as a start-up failure.
        """
        if self._cfg.sip_transport == "tls":
            self._endpoint.set_tls(*_tls_contexts(self._cfg))
        loop = asyncio.get_running_loop()
        host, port = self._cfg.sip_host or "", self._cfg.sip_port
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        addr = str(infos[0][4][0])
        self._dest = (addr, port)
        if not self._cfg.sip_carrier_addresses:
            # Default: only the carrier's own proxy may deliver inbound messages.
            self._inbound = InboundServer(
                self._inbound._sink, {str(i[4][0]) for i in infos}, gateway=NAME
            )
        await self._endpoint.start()

    async def run(self) -> None:
        """Keep the registration alive (when configured) until cancelled."""
        if not self._cfg.sip_register:
            await asyncio.Event().wait()
        retry = REGISTER_RETRY_S
        while True:
            try:
                granted = await self.register(self._cfg.sip_register_expires)
            except GatewayError as exc:
                self._registered = False
                log.warning("sip.register_failed", error=str(exc), retry_s=retry)
                await asyncio.sleep(retry)
                retry = min(retry * 2, REGISTER_RETRY_MAX_S)
                continue
            retry = REGISTER_RETRY_S
            await asyncio.sleep(max(1.0, granted * REGISTER_REFRESH_SHARE))

    async def close(self) -> None:
        if self._cfg.sip_register and self._registered:
            with contextlib.suppress(GatewayError, TimeoutError):
                async with asyncio.timeout(2 * self._cfg.sip_t1_ms / 1000.0 + 1.0):
                    await self.register(0)  # RFC 3261 10.2.2: remove our binding
        for task in self._tasks:
            task.cancel()
        await self._endpoint.close()

    def available(self) -> bool:
        return self._registered and time.monotonic() >= self._open_until

    # --- outbound --------------------------------------------------------------

    def _new_request(self, method: str, uri: str, from_user: str, to_uri: str) -> SipRequest:
        ep = self._endpoint
        req = SipRequest(method=method, uri=uri)
        req.add("Via", self._via())
        req.add("Max-Forwards", "70")
        req.add("From", f"<sip:{from_user}@{self._domain}>;tag={secrets.token_hex(6)}")
        req.add("To", f"<{to_uri}>")
        req.add("Call-ID", f"{secrets.token_hex(12)}@{ep.host}")
        req.add("CSeq", f"1 {method}")
        req.add("User-Agent", USER_AGENT)
        return req

    def _via(self) -> str:
        """Our Via with a fresh branch: each transaction has its own (RFC 3261 8.1.1.7)."""
        ep = self._endpoint
        return (f"SIP/2.0/{ep.transport.upper()} {_hostport(ep.host, ep.port)}"
                f";branch=z9hG4bK{secrets.token_hex(10)};rport")

    async def _exchange(self, req: SipRequest) -> SipResponse:
        """Send with authentication: new branch and CSeq+1 for each challenge answered.

        A challenge is answered once per kind (401 and 407 may both come, proxy
        first); the same kind again means our answer was refused, unless the
        server says the nonce was merely stale (RFC 7616 3.3).  Credentials
        sent up front (a remembered challenge) do not count as an answer.
        """
        if self._creds is not None:
            for name, value in self._creds.headers(req.method, req.uri):
                req.set(name, value)
        answered: set[str] = set()
        for _ in range(MAX_AUTH_ROUNDS):
            try:
                resp = await self._tx.request(req, self._dest)
            except TransactionTimeout as exc:
                raise GatewayError(f"SIP {req.method}: {exc}", temporary=True,
                                   gateway=NAME) from exc
            except ConnectionError as exc:
                raise GatewayError(f"SIP {req.method}: {exc}", temporary=True,
                                   gateway=NAME) from exc
            if resp.status not in (401, 407) or self._creds is None:
                return resp
            header = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
            answer = "Authorization" if resp.status == 401 else "Proxy-Authorization"
            try:
                ch = digest.choose(resp.get_all(header))
            except SipAuthError as exc:
                raise GatewayError(f"SIP {req.method}: {exc}", temporary=True,
                                   gateway=NAME) from exc
            if answer in answered and not ch.stale:
                log.warning("sip.auth_refused", method=req.method, realm=ch.realm)
                return resp
            answered.add(answer)
            self._creds.learn(answer, ch)
            number, method = req.cseq
            req.set("CSeq", f"{number + 1} {method}")
            req.set("Via", self._via())
            req.remove("Authorization")
            req.remove("Proxy-Authorization")
            for name, value in self._creds.headers(req.method, req.uri):
                req.add(name, value)
        return resp

    async def send(self, job: OutboundJob, hooks: PartHooks) -> None:
        cfg = self._cfg
        sender = job.sender or cfg.from_user or cfg.username or "smsd"
        to_uri = f"sip:{job.recipient}@{self._domain}"
        req = self._new_request("MESSAGE", to_uri, sender, to_uri)
        req.add("Content-Type", "text/plain;charset=UTF-8")
        req.body = job.text.encode("utf-8")
        for part in range(1, job.parts + 1):
            await hooks.submitting(part)
        try:
            resp = await self._exchange(req)
        except GatewayError as exc:
            self._temporary_failure(job, str(exc))
            raise
        if 200 <= resp.status < 300:
            self._failures = 0
            self.sent += 1
            for part in range(1, job.parts + 1):
                await hooks.sent(part, modem=None, reference=None)
            log.info("sip.sent", sms_id=job.message_id, status=resp.status,
                     call_id=req.call_id)
            return
        why = f"carrier answered {resp.status} {resp.reason}".strip()
        if 400 <= resp.status < 500 and resp.status not in TEMPORARY_4XX:
            self._failures = 0
            log.info("sip.refused", sms_id=job.message_id, status=resp.status)
            raise GatewayError(why, temporary=False, gateway=NAME)
        self._temporary_failure(job, why)
        raise GatewayError(why, temporary=True, gateway=NAME)

    def _temporary_failure(self, job: OutboundJob, why: str) -> None:
        self._failures += 1
        log.info("sip.failed", sms_id=job.message_id, error=why)
        if self._failures >= BREAKER_FAILURES:
            self._open_until = time.monotonic() + BREAKER_COOLDOWN_S
            log.warning("sip.breaker_open", failures=self._failures,
                        cooldown_s=BREAKER_COOLDOWN_S)

    async def register(self, expires: int) -> int:
        """One REGISTER; returns the lifetime the registrar granted (0 = removed)."""
        cfg = self._cfg
        user = cfg.username or cfg.from_user or "smsd"
        ep = self._endpoint
        req = self._new_request("REGISTER", f"sip:{self._domain}", user,
                                f"sip:{user}@{self._domain}")
        req.set("From", f"<sip:{user}@{self._domain}>;tag={secrets.token_hex(6)}")
        req.set("Call-ID", self._reg_call_id)
        req.set("CSeq", f"{self._reg_cseq + 1} REGISTER")
        req.add("Contact",
                f"<sip:{user}@{_hostport(ep.host, ep.port)};transport={ep.transport}>")
        req.add("Expires", str(expires))
        try:
            resp = await self._exchange(req)
        finally:
            self._reg_cseq = req.cseq[0]
        if not 200 <= resp.status < 300:
            raise GatewayError(f"REGISTER answered {resp.status} {resp.reason}",
                               temporary=True, gateway=NAME)
        granted = _granted(resp, expires)
        self._registered = expires > 0
        log.info("sip.registered" if expires else "sip.unregistered", expires=granted)
        return granted

    # --- incoming -------------------------------------------------------------

    def _connection_lost(self, dest: tuple[str, int]) -> None:
        """The TCP connection to the carrier closed: its transactions fail now, not at Timer F."""
        self._tx.fail_all(ConnectionError(f"connection to {dest[0]}:{dest[1]} closed"))

    def _on_message(self, msg: SipMessage, peer: Peer) -> None:
        if isinstance(msg, SipResponse):
            self._tx.on_response(msg)
            return
        if len(self._tasks) >= MAX_INBOUND_IN_FLIGHT:
            # More requests being committed than the store could absorb: the
            # carrier is asked to retry (RFC 3261 21.5.4) rather than queued here.
            self._inbound.busy(msg, peer)
            return
        task = asyncio.get_running_loop().create_task(self._inbound.handle(msg, peer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _tls_contexts(config: ClassoundConfig) -> tuple[ssl.SSLContext, ssl.SSLContext | None]:
    """The carrier's certificate is always verified (system CAs, or sip_tls_ca_file);
    ours is only needed to accept inbound TLS connections."""
    client = ssl.create_default_context(cafile=config.sip_tls_ca_file)
    server = None
    if config.sip_tls_cert_file:
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(config.sip_tls_cert_file, config.sip_tls_key_file)
    return client, server


def _hostport(host: str, port: int) -> str:
    """RFC 3261 25.1: an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _granted(resp: SipResponse, asked: int) -> int:
    """The expiry the registrar granted: Contact's expires param, else Expires, else ours."""
    for contact in resp.get_all("Contact"):
        for param in contact.split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.lower() == "expires" and value.isdigit():
                return int(value)
    expires = resp.get("Expires")
    if expires is not None and expires.strip().isdigit():
        return int(expires.strip())
    return asked

