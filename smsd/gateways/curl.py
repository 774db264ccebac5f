"""The "curl" gateway: one HTTP request per message to an SMS provider.

The request is a template from config (``[gateways.curl]``: method, url, body,
headers, success_pattern, timeout_s).  Placeholders, replaced in ``url`` and
``body`` only, each value percent-encoded (RFC 3986, nothing left unescaped,
so ``+`` becomes ``%2B`` and a space ``%20``):

    {number}   the recipient, E.164 ("+447700900123")
    {message}  the text
    {sender}   the sender (DID or alphanumeric ID); empty when none

Anything else in braces is left as it is (JSON bodies keep their braces), and
replacement is one pass, so a message containing "{sender}" stays literal.

Success is a 2xx status and, when ``success_pattern`` is set, a regular
expression found in the response body.  400 and 422 mean the provider refused
this message's content (an invalid number, typically): permanent.  Everything
else (other statuses, a body without the pattern, connection errors, the
timeout) is temporary, so the router tries the next gateway.  After
BREAKER_FAILURES temporary failures in a row the gateway reports itself
unavailable for BREAKER_COOLDOWN_S, so a dead provider does not cost every
message a full timeout before failover.
"""

from __future__ import annotations

import re
import time
from urllib.parse import quote

import aiohttp
import structlog

from smsd.config import CurlGateway as CurlConfig
from smsd.errors import GatewayError
from smsd.gateways.base import OutboundJob, PartHooks

log = structlog.get_logger(__name__)

NAME = "curl"

_PLACEHOLDER = re.compile(r"\{(number|message|sender)\}")
# Provider answers longer than this are not read further: the pattern must
# appear early (providers answer with a short status line or small JSON).
MAX_RESPONSE_BYTES = 64 * 1024
# HTTP statuses that reject the message itself rather than the moment.
PERMANENT_STATUSES = frozenset({400, 422})
# Consecutive temporary failures that trip the breaker, and how long it stays
# open: long enough to move traffic to the next gateway, short enough to notice
# the provider is back within a minute.
BREAKER_FAILURES = 5
BREAKER_COOLDOWN_S = 30.0


def render(template: str, job: OutboundJob) -> str:
    values = {"number": job.recipient, "message": job.text, "sender": job.sender or ""}
    return _PLACEHOLDER.sub(lambda m: quote(values[m.group(1)], safe=""), template)


class CurlGateway:
    name = NAME

    def __init__(self, config: CurlConfig) -> None:
        self._config = config
        self._pattern = re.compile(config.success_pattern) if config.success_pattern else None
        self._session: aiohttp.ClientSession | None = None
        self._failures = 0
        self._open_until = 0.0

    def available(self) -> bool:
        return time.monotonic() >= self._open_until

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # The whole exchange (connect, send, read) is bounded by the
            # configured timeout_s: the provider's own SLA, set by the admin.
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._config.timeout_s)
            )
        return self._session

    async def send(self, job: OutboundJob, hooks: PartHooks) -> None:
        cfg = self._config
        url = render(cfg.url, job)
        body = render(cfg.body, job) if cfg.body else None
        for part in range(1, job.parts + 1):
            await hooks.submitting(part)
        try:
            async with self._client().request(
                cfg.method.upper(),
                url,
                data=body.encode("utf-8") if body is not None else None,
                headers=dict(cfg.headers),
            ) as resp:
                status = resp.status
                raw = await resp.content.read(MAX_RESPONSE_BYTES)
        except TimeoutError as e:
            raise self._temporary(job, f"no answer within {cfg.timeout_s:g} s") from e
        except aiohttp.ClientError as e:
            raise self._temporary(job, f"request failed: {e}") from e
        text = raw.decode("utf-8", "replace")
        if not 200 <= status < 300:
            if status in PERMANENT_STATUSES:
                self._failures = 0
                raise GatewayError(
                    f"provider refused the message: HTTP {status} {text[:200]!r}",
                    temporary=False,
                    gateway=NAME,
                )
            raise self._temporary(job, f"HTTP {status} {text[:200]!r}")
        if self._pattern is not None and not self._pattern.search(text):
            raise self._temporary(
                job, f"HTTP {status} but the answer does not match the pattern: {text[:200]!r}"
            )
        self._failures = 0
        for part in range(1, job.parts + 1):
            await hooks.sent(part, modem=None, reference=None)
        log.info("curl.sent", sms_id=job.message_id, status=status)

    def _temporary(self, job: OutboundJob, why: str) -> GatewayError:
        self._failures += 1
        if self._failures >= BREAKER_FAILURES:
            self._open_until = time.monotonic() + BREAKER_COOLDOWN_S
            log.warning("curl.breaker_open", failures=self._failures, cooldown_s=BREAKER_COOLDOWN_S)
        log.info("curl.failed", sms_id=job.message_id, error=why)
        return GatewayError(why, temporary=True, gateway=NAME)
