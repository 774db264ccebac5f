"""The curl gateway against a real HTTP provider on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from smsd.config import CurlGateway as CurlConfig
from smsd.errors import GatewayError
from smsd.gateways.base import OutboundJob
from smsd.gateways.curl import BREAKER_FAILURES, CurlGateway, render
from tests.fakes.http_provider import HttpProvider

pytestmark = pytest.mark.timeout(20)

FORM = (("Content-Type", "application/x-www-form-urlencoded"),)
TEXT = "Hi & bye + 100% {sender} é€"
JOB = OutboundJob(7, "+447700900123", TEXT, "Alice Smith", None, 2, "ucs2")


class Hooks:
    def __init__(self) -> None:
        self.log: list[tuple[str, int]] = []

    async def submitting(self, part: int) -> None:
        self.log.append(("submitting", part))

    async def sent(self, part: int, *, modem: str | None, reference: int | None) -> None:
        self.log.append(("sent", part))


@pytest.fixture
async def provider() -> AsyncIterator[HttpProvider]:
    p = HttpProvider()
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


def gateway(provider: HttpProvider, **kw: object) -> CurlGateway:
    cfg: dict[str, object] = {
        "method": "POST",
        "url": provider.url + "/send?user=acme",
        "body": "to={number}&text={message}&from={sender}",
        "headers": (*FORM, ("X-Api-Key", "k")),
        "success_pattern": r"^OK \d+",
        "timeout_s": 5.0,
    }
    cfg.update(kw)
    return CurlGateway(CurlConfig(**cfg))  # type: ignore[arg-type]


class TestCurlGateway:
    async def test_success_sends_exact_values(self, provider: HttpProvider) -> None:
        """2xx with a matching answer: the provider got the exact number, text and sender
        (placeholders URL-encoded, braces in the text untouched), and every part is
        marked submitting before sent."""
        gw = gateway(provider)
        hooks = Hooks()
        try:
            await gw.send(JOB, hooks)
        finally:
            await gw.close()
        (req,) = provider.requests
        assert req.method == "POST" and req.path == "/send" and req.query == {"user": "acme"}
        assert req.form == {"to": "+447700900123", "text": TEXT, "from": "Alice Smith"}
        assert req.headers["X-Api-Key"] == "k"
        assert hooks.log == [("submitting", 1), ("submitting", 2), ("sent", 1), ("sent", 2)]

    async def test_get_with_query_placeholders(self, provider: HttpProvider) -> None:
        """Placeholders in the URL of a GET arrive decoded as query parameters."""
        gw = gateway(provider, method="GET", body="",
                     url=provider.url + "/api?n={number}&m={message}&s={sender}")
        try:
            await gw.send(JOB, Hooks())
        finally:
            await gw.close()
        (req,) = provider.requests
        assert req.query == {"n": "+447700900123", "m": TEXT, "s": "Alice Smith"}

    async def test_pattern_mismatch_is_temporary(self, provider: HttpProvider) -> None:
        """A 200 whose body lacks the success pattern is a temporary failure, nothing sent."""
        provider.answer = "ERR 17 throttled"
        gw = gateway(provider)
        hooks = Hooks()
        try:
            with pytest.raises(GatewayError) as exc:
                await gw.send(JOB, hooks)
        finally:
            await gw.close()
        assert exc.value.temporary and "ERR 17" in str(exc.value)
        assert ("sent", 1) not in hooks.log

    async def test_500_is_temporary_400_is_permanent(self, provider: HttpProvider) -> None:
        """HTTP 500 fails over (temporary); HTTP 400 rejects the message (permanent)."""
        gw = gateway(provider)
        try:
            provider.status, provider.answer = 500, "oops"
            with pytest.raises(GatewayError) as exc:
                await gw.send(JOB, Hooks())
            assert exc.value.temporary and "HTTP 500" in str(exc.value)
            provider.status, provider.answer = 400, "invalid destination"
            with pytest.raises(GatewayError) as exc:
                await gw.send(JOB, Hooks())
            assert not exc.value.temporary and "invalid destination" in str(exc.value)
        finally:
            await gw.close()

    async def test_timeout_is_temporary(self, provider: HttpProvider) -> None:
        """A provider that never answers is given up after timeout_s: temporary."""
        provider.hang = True
        gw = gateway(provider, timeout_s=0.2)
        try:
            with pytest.raises(GatewayError, match="no answer") as exc:
                await gw.send(JOB, Hooks())
        finally:
            await gw.close()
        assert exc.value.temporary and len(provider.requests) == 1

    async def test_connection_refused_and_breaker(self, provider: HttpProvider) -> None:
        """A closed port is temporary; enough failures in a row make it unavailable."""
        url = provider.url
        await provider.stop()
        gw = gateway(provider, url=url + "/send")
        try:
            for _ in range(BREAKER_FAILURES):
                assert gw.available()
                with pytest.raises(GatewayError) as exc:
                    await gw.send(JOB, Hooks())
                assert exc.value.temporary
            assert not gw.available()
        finally:
            await gw.close()


def test_render_is_one_pass() -> None:
    """A message containing a placeholder name is not expanded a second time."""
    job = OutboundJob(1, "+15550100", "{number}", None, None, 1, "gsm7")
    assert render("n={number}&m={message}&s={sender}&j={json}", job) == (
        "n=%2B15550100&m=%7Bnumber%7D&s=&j={json}"
    )
