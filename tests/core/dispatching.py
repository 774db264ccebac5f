"""A dispatcher running on a fake clock, for the dispatcher and expiry tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from smsd.config import Policy
from smsd.core.dispatcher import Dispatcher
from smsd.core.events import EventBus, StatusChange
from smsd.core.outbox import Outbox
from smsd.core.router import Router
from smsd.store import Store

from .gateways import FakeGateway
from .polling import eventually

T0 = datetime(2026, 11, 25, 13, 0, tzinfo=UTC)


class Clock:
    """Injectable clock that moves only when a test sets ``now``."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def state_of(store: Store, mid: int) -> str:
    row = await store.fetchone("SELECT state FROM messages WHERE id = ?", (mid,))
    assert row is not None
    return str(row[0])


async def wait_state(store: Store, mid: int, *states: str) -> None:
    async def reached() -> bool:
        return await state_of(store, mid) in states

    await eventually(reached)


def collect(bus: EventBus) -> list[StatusChange]:
    events: list[StatusChange] = []

    async def on_status(ev: StatusChange) -> None:
        events.append(ev)

    bus.subscribe_status(on_status)
    return events


@asynccontextmanager
async def running(
    store: Store,
    gateways: Sequence[FakeGateway],
    policy: Policy,
    clock: Clock,
    **dispatcher_kw: float,
) -> AsyncIterator[tuple[Dispatcher, Outbox, list[StatusChange]]]:
    """Dispatcher + outbox + event bus running until the block ends."""
    bus = EventBus()
    events = collect(bus)
    disp = Dispatcher(store, Router(list(gateways)), bus, policy, clock=clock, **dispatcher_kw)
    outbox = Outbox(store, policy, wake=disp.wake, clock=clock)
    tasks = [asyncio.create_task(disp.run()), asyncio.create_task(bus.run())]
    try:
        yield disp, outbox, events
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
