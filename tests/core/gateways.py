"""Fake gateways for dispatcher and router tests.

They follow the Gateway contract of docs/internals.md: report every part
through the hooks (submitting before, sent after) and raise GatewayError with
``temporary`` set the way a real gateway would for the scripted outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from smsd.errors import GatewayError, GatewayUnavailable
from smsd.gateways.base import OutboundJob, PartHooks

# What the fake does for a job: None = accept, else the exception to raise.
Outcome = Callable[[OutboundJob], Exception | None]


def accept(job: OutboundJob) -> Exception | None:
    return None


@dataclass
class FakeGateway:
    name: str
    outcome: Outcome = accept
    up: bool = True
    calls: list[OutboundJob] = field(default_factory=list)
    gate: asyncio.Event | None = None  # when set, every send waits for it
    # when set, every part waits for it once marked submitting ("talking to a modem")
    gate_submitting: asyncio.Event | None = None
    # set once a part's 'submitting' returned (committed, and the send owns it):
    # the moment the real gateway would write AT+CMGS
    talking: asyncio.Event = field(default_factory=asyncio.Event)
    # called just before each part is marked submitting (a test starts a drain there)
    before_submitting: Callable[[], object] | None = None
    active: int = 0
    max_active: int = 0
    modem: str | None = None
    next_reference: int = 0

    def available(self) -> bool:
        return self.up

    async def send(self, job: OutboundJob, hooks: PartHooks) -> None:
        self.calls.append(job)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.gate is not None:
                await self.gate.wait()
            err = self.outcome(job)
            if isinstance(err, GatewayUnavailable):
                raise err
            for part in range(1, job.parts + 1):
                if self.before_submitting is not None:
                    self.before_submitting()
                await hooks.submitting(part)
                self.talking.set()
                if self.gate_submitting is not None:
                    await self.gate_submitting.wait()
                if err is not None:
                    raise err
                await hooks.sent(part, modem=self.modem, reference=self.next_reference)
                self.next_reference = (self.next_reference + 1) % 256
        finally:
            self.active -= 1


def fail_for(recipient: str, *, temporary: bool = True) -> Outcome:
    def outcome(job: OutboundJob) -> Exception | None:
        if job.recipient == recipient:
            return GatewayError(f"refused {recipient}", temporary=temporary)
        return None

    return outcome


def always(err: Exception) -> Outcome:
    return lambda job: err
