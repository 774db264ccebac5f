"""The ``http`` transport: the carrier's REST API.

What smsd sends (``url`` is the API's base, the token comes from ``secret`` /
``secret_file`` and goes in ``Authorization: Bearer``):

- SMS: ``POST {url}/messages``, JSON ``{"from", "to", "text", "reference"}``;
- MMS: ``POST {url}/mms``, multipart/form-data with fields ``from``, ``to``,
  ``reference`` and one ``media`` part per file (file name and content type).

``reference`` is ``smsd-<message id>``: the carrier echoes it in delivery
status webhooks, and sends it as ``Idempotency-Key`` too, so a retry after a
lost answer does not send the SMS twice.  Any 2xx is accepted.  4xx means
this message is refused (permanent), except 408 and 429 which, like 5xx,
connection errors and the per-request timeout, are retried here with
exponential backoff (RETRY_BASE_S, doubling, HTTP_ATTEMPTS tries in all; a
``Retry-After`` in seconds is honoured up to RETRY_MAX_S) before the router
hears of a temporary failure.

Inbound SMS/MMS and delivery status arrive as webhooks on smsd's own HTTP API
(smsd/api/classound.py), signed with HMAC-SHA256 over the raw body
(``webhook_secret``); ``verify_signature`` is the check.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from smsd.config import ClassoundGateway as ClassoundConfig
from smsd.errors import GatewayError
from smsd.gateways.base import InboundSink, OutboundJob, PartHooks

log = structlog.get_logger(__name__)

NAME = "classound"
# Tries per message before the router is told (temporary): the first plus two
# retries covers a carrier's brief restart without holding a slot for long.
HTTP_ATTEMPTS = 3
# Backoff before retry n is RETRY_BASE_S * 2**(n-1); a Retry-After answer is
# honoured up to RETRY_MAX_S (longer waits belong to the dispatcher's retry).
RETRY_BASE_S = 0.5
RETRY_MAX_S = 10.0
# Carrier answers are small JSON; more than this is not read.
MAX_RESPONSE_BYTES = 64 * 1024
RETRY_STATUSES = frozenset({408, 429})
SIGNATURE_HEADER = "X-Classound-Signature"
BREAKER_FAILURES = 5
BREAKER_COOLDOWN_S = 30.0


@dataclass(frozen=True)
class MediaFile:
    """One MMS attachment as it goes to the carrier."""

    filename: str
    content_type: str
    data: bytes


def reference(message_id: int) -> str:
    return f"smsd-{message_id}"


def message_id_of(ref: str) -> int | None:
    """``smsd-123`` -> 123; None for anything else (not one of ours)."""
    prefix, _, number = ref.partition("-")
    return int(number) if prefix == "smsd" and number.isdigit() else None


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time check of ``X-Classound-Signature: sha256=<hex>`` over the raw body."""
    if not header:
        return False
    return hmac.compare_digest(sign(secret, body), header.strip())


class HttpTrunk:
    name = NAME

    def __init__(self, config: ClassoundConfig, inbox: InboundSink | None) -> None:
        assert config.url is not None
        self._cfg = config
        self._base = config.url.rstrip("/")
        self._inbox = inbox
        self._session: aiohttp.ClientSession | None = None
        self._failures = 0
        self._open_until = 0.0
        self.retry_base_s = RETRY_BASE_S

    async def start(self) -> None:
        return None

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def available(self) -> bool:
        return time.monotonic() >= self._open_until

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # timeout_s bounds each request (connect, send, read): the carrier's SLA.
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._cfg.timeout_s)
            )
        return self._session

    def _headers(self, ref: str) -> dict[str, str]:
        h = {"Idempotency-Key": ref, "User-Agent": "smsd/0.1"}
        if self._cfg.secret:
            h["Authorization"] = f"Bearer {self._cfg.secret}"
        return h

    async def send(self, job: OutboundJob, hooks: PartHooks) -> None:
        body = {
            "from": job.sender or self._cfg.from_user or "",
            "to": job.recipient,
            "text": job.text,
            "reference": reference(job.message_id),
        }
        for part in range(1, job.parts + 1):
            await hooks.submitting(part)
        answer = await self._post(reference(job.message_id), "/messages", body=body)
        for part in range(1, job.parts + 1):
            await hooks.sent(part, modem=None, reference=None)
        log.info("classound.http_sent", sms_id=job.message_id, carrier_id=answer.get("id"))

    async def send_mms(self, ref: str, sender: str, recipient: str,
                       files: Sequence[MediaFile]) -> dict[str, Any]:
        """One MMS (multipart upload); the caller has already applied the MMS rules.

        ``ref`` is the reference (and Idempotency-Key) the carrier echoes back.
        """

        def form() -> aiohttp.FormData:
            data = aiohttp.FormData()
            data.add_field("from", sender)
            data.add_field("to", recipient)
            data.add_field("reference", ref)
            for f in files:
                data.add_field("media", f.data, filename=f.filename, content_type=f.content_type)
            return data

        return await self._post(ref, "/mms", form=form)

    async def _post(self, ref: str, path: str, *, body: dict[str, Any] | None = None,
                    form: Any = None) -> dict[str, Any]:
        url = self._base + path
        last = ""
        for attempt in range(1, HTTP_ATTEMPTS + 1):
            wait = self.retry_base_s * 2 ** (attempt - 1)
            try:
                async with self._client().post(
                    url, json=body, data=form() if form is not None else None,
                    headers=self._headers(ref),
                ) as resp:
                    status = resp.status
                    raw = await resp.content.read(MAX_RESPONSE_BYTES)
                    retry_after = resp.headers.get("Retry-After", "")
            except TimeoutError:
                last = f"no answer within {self._cfg.timeout_s:g} s"
            except aiohttp.ClientError as exc:
                last = f"request failed: {exc}"
            else:
                text = raw.decode("utf-8", "replace")
                if 200 <= status < 300:
                    self._failures = 0
                    return _json_object(raw)
                last = f"HTTP {status} {text[:200]!r}"
                if 400 <= status < 500 and status not in RETRY_STATUSES:
                    self._failures = 0
                    raise GatewayError(f"carrier refused the message: {last}",
                                       temporary=False, gateway=NAME)
                if retry_after.isdigit():
                    wait = min(float(retry_after), RETRY_MAX_S)
            log.info("classound.http_retry", reference=ref, attempt=attempt, error=last)
            if attempt < HTTP_ATTEMPTS:
                await asyncio.sleep(wait)
        self._failures += 1
        if self._failures >= BREAKER_FAILURES:
            self._open_until = time.monotonic() + BREAKER_COOLDOWN_S
            log.warning("classound.http_breaker_open", failures=self._failures)
        raise GatewayError(f"{last} (after {HTTP_ATTEMPTS} attempts)", temporary=True,
                           gateway=NAME)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
