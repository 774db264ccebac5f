"""Hardware-in-the-loop: the driver against the simulator, or against a real modem.

By default every test runs against a SimulatedModem on a local pty.  With
``SMSD_HIL_DEVICE=/dev/serial/by-id/...`` the same tests run against that
modem (``SMSD_HIL_PIN`` if its SIM has one); ``SMSD_HIL_PEER=+E164`` names a
number that will receive the test SMS; when it equals ``SMSD_HIL_OWN_NUMBER``
(the SIM's own number) the messages loop back and the receive checks run too.
Tests that need to control the far side (unplug, inject garbage, remove
coverage, lock the SIM) skip on real hardware with the reason.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from smsd.codec.pdu import DeliverPdu, StatusReportPdu
from smsd.modem.device import Modem
from smsd.modem.spec import ModemSpec
from smsd.simulator.modem import SimulatedModem

HIL_DEVICE = os.environ.get("SMSD_HIL_DEVICE")
HIL_PEER = os.environ.get("SMSD_HIL_PEER")
HIL_PIN = os.environ.get("SMSD_HIL_PIN")
SIM_OWN_NUMBER = "+447700900001"

# How long a test waits for something the network must do.  A simulator does
# it at once; a real network delivers an SMS or a report within seconds, but
# a busy SMSC can take a minute or two (operators quote < 2 min for 95 %).
EVENT_TIMEOUT_S = 180.0 if HIL_DEVICE else 10.0


class Events:
    """ModemEvents that record everything, for assertions."""

    def __init__(self) -> None:
        self.sms: asyncio.Queue[DeliverPdu] = asyncio.Queue()
        self.reports: asyncio.Queue[StatusReportPdu] = asyncio.Queue()
        self.states: list[tuple[str, str | None]] = []
        self.state_changed = asyncio.Event()

    async def sms_received(self, modem: str, sms: DeliverPdu) -> None:
        await self.sms.put(sms)

    async def status_report(self, modem: str, report: StatusReportPdu) -> None:
        await self.reports.put(report)

    def modem_state(self, modem: str, state: str, detail: str | None) -> None:
        self.states.append((state, detail))
        self.state_changed.set()

    async def wait_state(self, state: str, deadline_s: float = EVENT_TIMEOUT_S) -> None:
        async def loop() -> None:
            while not self.states or self.states[-1][0] != state:
                self.state_changed.clear()
                await self.state_changed.wait()
        await asyncio.wait_for(loop(), deadline_s)


@dataclass
class Target:
    """The modem under test, how to reach it, and whom to send to."""

    path: str
    peer: str | None
    sim: SimulatedModem | None
    pin: str | None
    modems: list[Modem] = field(default_factory=list)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @property
    def loops_back(self) -> bool:
        """Messages to the peer come back to this modem (peer is its own number)."""
        if self.sim is not None:
            return True
        own = os.environ.get("SMSD_HIL_OWN_NUMBER")
        return bool(self.peer and own and self.peer == own)

    def need_sim(self, why: str) -> SimulatedModem:
        if self.sim is None:
            pytest.skip(f"real modem: {why} needs control of the far side (simulator only)")
        return self.sim

    async def driver(self, events: Events, *, pin: str | None = None,
                     registration_s: float = 30.0) -> Modem:
        """A driver instance opened on the target (closed at teardown)."""
        spec = ModemSpec(id="hil", path=self.path, pin=pin if pin is not None else self.pin)
        modem = Modem(spec, events, registration_s=registration_s)
        await modem.open()
        self.modems.append(modem)
        return modem

    def run(self, modem: Modem) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(modem.run())
        self.tasks.append(task)
        return task


MakeTarget = Callable[..., Awaitable[Target]]


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[MakeTarget]:
    """``await target(**simulator_options)``: the simulator, or the real modem."""
    made: list[Target] = []

    async def make(**sim_kw: Any) -> Target:
        if HIL_DEVICE:
            if sim_kw:
                pytest.skip(f"real modem: the test needs a simulated modem set up with "
                            f"{sorted(sim_kw)} (simulator only)")
            t = Target(HIL_DEVICE, HIL_PEER, None, HIL_PIN)
        else:
            sim = SimulatedModem(own_number=SIM_OWN_NUMBER, **sim_kw)
            await sim.start(str(tmp_path / f"hil{len(made)}"))
            t = Target(sim.path, SIM_OWN_NUMBER, sim, sim_kw.get("pin"))
        made.append(t)
        return t

    yield make
    for t in made:
        for task in t.tasks:
            task.cancel()
            await asyncio.wait({task}, timeout=5)
        for m in t.modems:
            await asyncio.wait_for(m.close(), 5)
        if t.sim is not None:
            await t.sim.stop()


@pytest.fixture
def events() -> Events:
    return Events()
