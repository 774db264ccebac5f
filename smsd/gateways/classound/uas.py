"""Inbound MESSAGE from the carrier (RFC 3428 section 7, RFC 3261 8.2): checks, inbox, answer.

Checked in the order RFC 3261 8.2 gives, each failure answered with its own
status so the carrier's logs say what was wrong:

1. the request's mandatory headers (400), its source (403: only the
   configured carrier addresses may deliver messages);
2. the method (405 with Allow; OPTIONS is answered 200, carriers use it to
   check the trunk is alive), the URI scheme (416), Require (420);
3. the content: text/plain in UTF-8 (or US-ASCII) only, no content coding
   (415 with Accept), a body that decodes (400), within the size limit (413).

Only then is the message committed to the inbox, and only once it is
committed is 200 sent: a crash before that makes the carrier retransmit, and
the Call-ID/CSeq dedupe key makes the retransmission a no-op.  If the commit
fails the answer is 500 with Retry-After, and the request is forgotten so a
retransmission is handled afresh.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection

import structlog

from smsd.errors import SipParseError, ValidationError
from smsd.gateways.base import InboundSink
from smsd.gateways.classound.sipmsg import (
    SipRequest,
    addr_uri,
    check_request,
    response_to,
    uri_user,
)
from smsd.gateways.classound.transaction import ServerTransactions
from smsd.gateways.classound.transport import REASONS, Peer
from smsd.numbers import sip_uri_to_e164

log = structlog.get_logger(__name__)

ALLOW = "MESSAGE, OPTIONS"
ACCEPT = "text/plain"
# An SMS body: 670 characters is the conversation limit, a carrier may join a
# long concatenated SMS into one MESSAGE; 8 KiB of UTF-8 covers both with room.
MAX_BODY_BYTES = 8 * 1024
# Seconds a carrier is asked to wait before retrying after our store failed.
RETRY_AFTER_S = 30
_TEXT_CHARSETS = ("utf-8", "utf8", "us-ascii")


def _content_type_ok(value: str | None) -> bool:
    if value is None:
        return False
    mime, _, params = value.partition(";")
    if mime.strip().lower() != "text/plain":
        return False
    for p in params.split(";"):
        key, _, val = p.strip().partition("=")
        if key.lower() == "charset" and val.strip().strip('"').lower() not in _TEXT_CHARSETS:
            return False
    return True


def _number(value: str) -> str | None:
    """E.164 when the URI carries one, else its user part as sent (a national number)."""
    return sip_uri_to_e164(value) or uri_user(addr_uri(value))


class InboundServer:
    """Handles requests from the trunk; ``handle`` never raises."""

    def __init__(self, sink: InboundSink | None, allowed: Collection[str], *,
                 gateway: str) -> None:
        self._sink = sink
        self._allowed = frozenset(allowed)
        self._gateway = gateway
        self._tx = ServerTransactions()
        self.received = 0

    async def handle(self, req: SipRequest, peer: Peer) -> None:
        if req.method == "ACK" or not req.get("Via"):
            # ACK is never answered (RFC 3261 17.2.1); without Via no answer can be
            # routed (RFC 3261 18.2.2), so both are dropped.
            return
        try:
            check_request(req)
        except SipParseError as exc:
            self._answer(req, peer, exc.status, warning=str(exc))
            return
        if peer.host not in self._allowed:
            log.warning("sip.inbound_forbidden", host=peer.host, method=req.method)
            self._answer(req, peer, 403, warning="not a configured carrier address")
            return
        new, cached = self._tx.begin(req)
        if not new:
            if cached is not None:
                peer.reply(cached)  # the carrier did not hear our answer
            return
        try:
            status, warning = await self._process(req, peer)
        except Exception:
            log.exception("sip.inbound_failed", call_id=req.call_id)
            self._tx.forget(req)
            self._answer(req, peer, 500, extra=[("Retry-After", str(RETRY_AFTER_S))],
                         remember=False)
            return
        extra: list[tuple[str, str]] = []
        if status == 405:
            extra.append(("Allow", ALLOW))
        elif status == 415:
            extra.append(("Accept", ACCEPT))
        elif status == 420:
            extra.append(("Unsupported", req.get("Require") or ""))
        elif status == 200 and req.method == "OPTIONS":
            extra += [("Allow", ALLOW), ("Accept", ACCEPT)]
        self._answer(req, peer, status, warning=warning, extra=extra)

    def busy(self, req: SipRequest, peer: Peer) -> None:
        """Too many requests in progress: 503 with Retry-After, nothing remembered."""
        if req.method != "ACK" and req.get("Via"):
            self._answer(req, peer, 503, extra=[("Retry-After", "1")], remember=False)

    async def _process(self, req: SipRequest, peer: Peer) -> tuple[int, str | None]:
        scheme = req.uri.partition(":")[0].lower()
        if scheme not in ("sip", "sips", "tel"):
            return 416, f"URI scheme {scheme!r}"
        if req.get("Require"):
            return 420, None
        if req.method == "OPTIONS":
            return 200, None
        if req.method != "MESSAGE":
            return 405, None
        if self._sink is None:
            return 403, "this trunk does not take inbound messages"
        if not _content_type_ok(req.get("Content-Type")):
            return 415, f"content type {req.get('Content-Type')!r}"
        coding = (req.get("Content-Encoding") or "identity").strip().lower()
        if coding != "identity":
            return 415, f"content coding {coding!r}"
        if len(req.body) > MAX_BODY_BYTES:
            return 413, f"body of {len(req.body)} bytes, limit {MAX_BODY_BYTES}"
        try:
            text = req.body.decode("utf-8")
        except UnicodeDecodeError:
            return 400, "body is not UTF-8"
        sender = _number(req.get("From") or "")
        if not sender:
            return 400, "From carries no number"
        recipient = _number(req.get("To") or "") or uri_user(req.uri)
        number, _ = req.cseq
        try:
            sms_id = await self._sink.receive(
                sender, recipient, text, gateway=self._gateway,
                dedupe_key=f"sip:{req.call_id}/{number}",
            )
        except ValidationError as exc:
            return 400, str(exc)
        self.received += 1
        log.info("sip.inbound_message", sms_id=sms_id, host=peer.host, call_id=req.call_id)
        return 200, None

    def _answer(self, req: SipRequest, peer: Peer, status: int, *, warning: str | None = None,
                extra: list[tuple[str, str]] | None = None, remember: bool = True) -> None:
        resp = response_to(req, status, REASONS.get(status, "OK" if status == 200 else "Error"),
                           to_tag=secrets.token_hex(6))
        for name, value in extra or []:
            resp.add(name, value)
        if warning:
            resp.add("Warning", f'399 smsd "{warning[:120].replace(chr(34), chr(39))}"')
        data = resp.encode()
        if remember and status != 403 and status != 400:
            self._tx.answered(req, data)
        peer.reply(data)
