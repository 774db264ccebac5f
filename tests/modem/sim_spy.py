"""Test-side helpers for driver tests on the simulator: an event recorder and a command spy."""

from __future__ import annotations

import asyncio

from smsd.codec.pdu import DeliverPdu, StatusReportPdu
from smsd.simulator.modem import SimulatedModem
from smsd.simulator.state import Reply

# Bound for what the local simulator does at once; only a broken driver gets near it.
EVENT_TIMEOUT_S = 10.0


class Recorder:
    """ModemEvents that keep what arrives, for assertions."""

    def __init__(self) -> None:
        self.sms: asyncio.Queue[DeliverPdu] = asyncio.Queue()

    async def sms_received(self, modem: str, sms: DeliverPdu) -> None:
        await self.sms.put(sms)

    async def status_report(self, modem: str, report: StatusReportPdu) -> None:
        return None

    def modem_state(self, modem: str, state: str, detail: str | None) -> None:
        return None


class Spy:
    """Every command line the simulated modem executed, with its reply (evidence)."""

    def __init__(self, sim: SimulatedModem) -> None:
        self.replies: list[tuple[str, Reply | None]] = []
        self.seen = asyncio.Event()
        original = sim.engine.execute

        def execute(line: str) -> Reply | None:
            reply = original(line)
            self.replies.append((line.strip(), reply))
            self.seen.set()
            return reply

        sim.engine.execute = execute  # type: ignore[method-assign]

    @property
    def lines(self) -> list[str]:
        return [line for line, _ in self.replies]

    def count(self, prefix: str) -> int:
        return sum(1 for line in self.lines if line.upper().startswith(prefix.upper()))

    def answers(self, prefix: str) -> list[Reply]:
        return [r for line, r in self.replies
                if r is not None and line.upper().startswith(prefix.upper())]

    async def wait_for(self, prefix: str) -> None:
        async def loop() -> None:
            while not self.count(prefix):
                self.seen.clear()
                await self.seen.wait()
        await asyncio.wait_for(loop(), EVENT_TIMEOUT_S)

    def listed_a_message(self) -> bool:
        """Some AT+CMGL answer carried a stored message (the sweep path)."""
        return any(line.startswith("+CMGL:") for r in self.answers("AT+CMGL") for line in r.lines)
