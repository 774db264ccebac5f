"""`[gateways.gsm] autodetect`: modems whose udev link appears later are used without a restart.

A temporary directory stands in for /dev/smsd/; the simulator creates the
link there (as systemd/60-smsd-modems.rules would) after the pool is running.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from smsd.codec import pdu
from smsd.config import config_from_dict
from smsd.errors import ConfigError
from smsd.modem.pool import ModemPool
from smsd.simulator.modem import SimulatedModem

pytestmark = pytest.mark.timeout(60)

# The pool's rescan period in these tests: short so a link is noticed at once;
# the assertions wait on modem events, never on this number.
RESCAN_S = 0.05
READY_DEADLINE_S = 20.0


class StateLog:
    """ModemEvents that records (modem, state) and wakes waiters on every change."""

    def __init__(self) -> None:
        self.states: list[tuple[str, str]] = []
        self.changed = asyncio.Event()

    async def sms_received(self, modem: str, sms: pdu.DeliverPdu) -> None:
        raise AssertionError("no SMS expected")

    async def status_report(self, modem: str, report: pdu.StatusReportPdu) -> None:
        raise AssertionError("no report expected")

    def modem_state(self, modem: str, state: str, detail: str | None) -> None:
        self.states.append((modem, state))
        self.changed.set()

    async def until_ready(self, modem: str) -> None:
        async with asyncio.timeout(READY_DEADLINE_S):
            while (modem, "ready") not in self.states:
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def running(pool: ModemPool) -> AsyncIterator[None]:
    task = asyncio.create_task(pool.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def gsm_pool(extra: dict[str, object]) -> tuple[ModemPool, StateLog]:
    """The pool built from a [gateways.gsm] table, as the daemon builds it."""
    cfg = config_from_dict({"state_dir": "/tmp/unused", "gateways": {"gsm": extra}})
    assert cfg.gsm is not None
    events = StateLog()
    return ModemPool(cfg.gsm.modems, events, rescan_s=RESCAN_S), events


class TestAutodetect:
    async def test_link_appearing_later_is_picked_up(self, tmp_path: Path) -> None:
        """1. the pool runs with no modem; 2. a link appears; 3. that modem becomes ready.

        The modem is named after its link, as the udev rules name it.
        """
        pool, events = gsm_pool({"autodetect": f"{tmp_path}/*-at"})
        sim = SimulatedModem(profile="quectel")
        async with running(pool):
            assert pool.snapshot() == []
            await sim.start(link=str(tmp_path / "quectel-SN1-at"))
            try:
                await events.until_ready("quectel-SN1-at")
                assert [m.id for m in pool.snapshot()] == ["quectel-SN1-at"]
                assert pool.healthy()
            finally:
                await sim.stop()

    async def test_explicit_modem_is_not_opened_twice(self, tmp_path: Path) -> None:
        """A link that is also a configured [[modems]] path is driven by that entry alone."""
        sim = SimulatedModem()
        link = tmp_path / "huawei-SN2-at"
        await sim.start(link=str(link))
        try:
            pool, events = gsm_pool({"autodetect": f"{tmp_path}/*-at",
                                     "modems": [{"id": "main", "path": str(link)}]})
            async with running(pool):
                await events.until_ready("main")
                assert [m.id for m in pool.snapshot()] == ["main"]
                assert {m for m, _ in events.states} == {"main"}
        finally:
            await sim.stop()

    def test_autodetect_must_be_an_absolute_glob(self) -> None:
        """A relative path or one without a wildcard is a config error naming the key."""
        for bad in ("smsd/*", "/dev/smsd/modem"):
            with pytest.raises(ConfigError) as info:
                config_from_dict({"gateways": {"gsm": {"autodetect": bad}}})
            assert "gateways.gsm.autodetect" in str(info.value)
