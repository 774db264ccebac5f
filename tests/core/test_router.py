"""Router: priority order, skipping unavailable gateways, failover, permanent failure."""

from __future__ import annotations

import asyncio

import pytest

from smsd.core.router import Router
from smsd.errors import GatewayError, GatewayUnavailable
from smsd.gateways.base import OutboundJob

from .gateways import FakeGateway, always
from .polling import eventually

pytestmark = pytest.mark.timeout(10)

JOB = OutboundJob(1, "+447700900123", "hi", None, None, 1, "gsm7")


class _Hooks:
    def __init__(self) -> None:
        self.log: list[tuple[str, int]] = []

    async def submitting(self, part: int) -> None:
        self.log.append(("submitting", part))

    async def sent(self, part: int, *, modem: str | None, reference: int | None) -> None:
        self.log.append(("sent", part))


class TestRouter:
    async def test_priority_order_from_config(self) -> None:
        """The first gateway in the routing order takes the job, whatever the registration order."""
        gsm, curl = FakeGateway("gsm"), FakeGateway("curl")
        router = Router([gsm, curl], ("curl", "gsm", "classound"))
        assert await router.send(JOB, _Hooks()) == "curl"
        assert gsm.calls == [] and len(curl.calls) == 1

    async def test_unavailable_is_skipped(self) -> None:
        """A gateway that is down is not called; the next one sends."""
        curl, gsm = FakeGateway("curl", up=False), FakeGateway("gsm")
        router = Router([curl, gsm])
        assert await router.send(JOB, _Hooks()) == "gsm"
        assert curl.calls == []

    async def test_temporary_failure_fails_over(self) -> None:
        """A temporary GatewayError hands the job to the next gateway."""
        curl = FakeGateway("curl", always(GatewayError("HTTP 503", temporary=True)))
        gsm = FakeGateway("gsm")
        assert await Router([curl, gsm]).send(JOB, _Hooks()) == "gsm"
        assert len(curl.calls) == 1 and len(gsm.calls) == 1

    async def test_permanent_failure_stops(self) -> None:
        """A permanent failure is raised at once; later gateways are not tried."""
        curl = FakeGateway("curl", always(GatewayError("invalid number", temporary=False)))
        gsm = FakeGateway("gsm")
        with pytest.raises(GatewayError) as exc:
            await Router([curl, gsm]).send(JOB, _Hooks())
        assert exc.value.temporary is False and "invalid number" in str(exc.value)
        assert gsm.calls == []

    async def test_all_fail_temporarily(self) -> None:
        """Every gateway failing temporarily is a temporary error naming each one."""
        a = FakeGateway("curl", always(GatewayError("503", temporary=True)))
        b = FakeGateway("gsm", always(GatewayError("+CMS ERROR: 42", temporary=True)))
        with pytest.raises(GatewayError) as exc:
            await Router([a, b]).send(JOB, _Hooks())
        assert exc.value.temporary and "curl: 503" in str(exc.value)
        assert "gsm: +CMS ERROR: 42" in str(exc.value)
        assert not isinstance(exc.value, GatewayUnavailable)

    async def test_nothing_available(self) -> None:
        """No gateway up (or none configured) is GatewayUnavailable."""
        with pytest.raises(GatewayUnavailable):
            await Router([FakeGateway("gsm", up=False)]).send(JOB, _Hooks())
        with pytest.raises(GatewayUnavailable):
            await Router([]).send(JOB, _Hooks())
        gone = FakeGateway("gsm", always(GatewayUnavailable("no ready modem")))
        with pytest.raises(GatewayUnavailable):
            await Router([gone]).send(JOB, _Hooks())

    async def test_gateway_not_in_routing_is_ignored(self) -> None:
        """A registered gateway that the routing order leaves out is never used."""
        router = Router([FakeGateway("curl")], ("gsm",))
        assert not router.available()
        with pytest.raises(GatewayUnavailable):
            await router.send(JOB, _Hooks())

    async def test_per_gateway_concurrency(self) -> None:
        """No more than the configured number of jobs run in one gateway at once."""
        gate = asyncio.Event()
        gw = FakeGateway("gsm", gate=gate)
        router = Router([gw], concurrency={"gsm": 2})
        tasks = [asyncio.create_task(router.send(JOB, _Hooks())) for _ in range(5)]
        await eventually(lambda: len(gw.calls) >= 2)
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(gw.calls) == 2
        gate.set()
        assert await asyncio.gather(*tasks) == ["gsm"] * 5
        assert gw.max_active == 2
