"""An Inbox on a real store with its event bus running, for the inbox tests.

The inbox publishes InboundSms and StatusChange events; the harness records
them so a test can assert on what reached the rest of the daemon.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from smsd.core.events import EventBus, InboundSms, StatusChange
from smsd.core.inbox import Inbox
from smsd.store import Store

T0 = datetime(2026, 11, 25, 13, 0, tzinfo=UTC)
OWN = "+447700900001"  # the own number of modem gsm0 (other modems have none)


class Harness:
    def __init__(self, store: Store, now: datetime = T0) -> None:
        self.store = store
        self.bus = EventBus()
        self.inbound: list[InboundSms] = []
        self.status: list[StatusChange] = []
        self.now = now
        self.inbox = Inbox(
            store, self.bus, own_number=lambda m: OWN if m == "gsm0" else None,
            clock=lambda: self.now,
        )
        self.bus.subscribe_inbound(self._on_inbound)
        self.bus.subscribe_status(self._on_status)

    async def _on_inbound(self, ev: InboundSms) -> None:
        self.inbound.append(ev)

    async def _on_status(self, ev: StatusChange) -> None:
        self.status.append(ev)


@asynccontextmanager
async def harness(store: Store, now: datetime = T0) -> AsyncIterator[Harness]:
    h = Harness(store, now)
    task = asyncio.create_task(h.bus.run())
    try:
        yield h
        await asyncio.sleep(0)
        await h.bus.join()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
