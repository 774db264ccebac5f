"""EventBus: non-blocking fan-out, one queue per subscriber, handler errors contained."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from smsd.core.events import EventBus, InboundSms, StatusChange

from .polling import eventually

pytestmark = pytest.mark.timeout(10)

T0 = datetime(2026, 11, 25, tzinfo=UTC)


def inbound(i: int) -> InboundSms:
    return InboundSms(i, "+447700900777", None, f"m{i}", T0, "gsm", "gsm0")


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    b = EventBus(max_pending=5)
    task = asyncio.create_task(b.run())
    try:
        yield b
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class TestEventBus:
    async def test_failing_handler_does_not_stop_delivery(self, bus: EventBus) -> None:
        """A handler that raises on one event still gets the next one."""
        seen: list[int] = []

        async def handler(ev: InboundSms) -> None:
            seen.append(ev.id)
            if ev.id == 1:
                raise RuntimeError("consumer bug")

        bus.subscribe_inbound(handler)
        for i in (1, 2, 3):
            bus.publish_inbound(inbound(i))
        await eventually(lambda: len(seen) == 3)
        assert seen == [1, 2, 3]

    async def test_slow_subscriber_does_not_hold_others(self, bus: EventBus) -> None:
        """Each subscriber has its own queue: a stuck one does not delay another,
        and publishing never waits."""
        gate = asyncio.Event()
        fast: list[int] = []

        async def stuck(ev: StatusChange) -> None:
            await gate.wait()

        async def quick(ev: StatusChange) -> None:
            fast.append(ev.id)

        bus.subscribe_status(stuck)
        bus.subscribe_status(quick)
        for i in range(3):
            bus.publish_status(StatusChange(i, "sent", "+447700900123", None, "gsm", None))
        await eventually(lambda: len(fast) == 3)
        gate.set()
        await bus.join()

    async def test_overflow_drops_for_that_subscriber_only(self, bus: EventBus) -> None:
        """Beyond max_pending queued events a stuck subscriber loses the newest (logged);
        a healthy subscriber gets every event."""
        gate = asyncio.Event()
        stuck_seen: list[int] = []
        all_seen: list[int] = []

        async def stuck(ev: InboundSms) -> None:
            await gate.wait()
            stuck_seen.append(ev.id)

        async def healthy(ev: InboundSms) -> None:
            all_seen.append(ev.id)

        bus.subscribe_inbound(stuck)
        bus.subscribe_inbound(healthy)
        await asyncio.sleep(0)
        bus.publish_inbound(inbound(0))
        await eventually(lambda: all_seen == [0])  # the stuck handler holds event 0
        for i in range(1, 10):
            bus.publish_inbound(inbound(i))
            await asyncio.sleep(0)
        gate.set()
        await bus.join()
        assert all_seen == list(range(10))
        assert stuck_seen == [0, 1, 2, 3, 4, 5]

    async def test_late_subscriber_is_served(self, bus: EventBus) -> None:
        """A subscriber added after run() started gets events too."""
        await asyncio.sleep(0)
        seen: list[int] = []

        async def handler(ev: InboundSms) -> None:
            seen.append(ev.id)

        bus.subscribe_inbound(handler)
        bus.publish_inbound(inbound(7))
        await eventually(lambda: seen == [7])


class TestConcurrentSubscriber:
    async def test_runs_several_at_once_in_order_per_key(self) -> None:
        """Issue 16 (5): with concurrency 4, four events of different keys are handled at
        once (each blocks until all four started), while two events of one key run one
        after the other, in their order; join() still waits for all of them."""
        bus = EventBus()
        started: list[int] = []
        all_in = asyncio.Event()
        order: list[int] = []

        async def handler(ev: InboundSms) -> None:
            started.append(ev.id)
            if ev.id < 4:
                if len(started) >= 4:
                    all_in.set()
                await all_in.wait()
            order.append(ev.id)

        bus.subscribe_inbound(handler, concurrency=4, key=lambda ev: ev.sender)
        task = asyncio.create_task(bus.run())
        try:
            for i in range(4):
                bus.publish_inbound(InboundSms(i, f"+4477009000{i}", None, "x", T0, "gsm", None))
            # Same key as event 0: must wait for it, then run.
            bus.publish_inbound(InboundSms(9, "+44770090000", None, "x", T0, "gsm", None))
            await asyncio.wait_for(bus.join(), 5)
            assert sorted(order) == [0, 1, 2, 3, 9]
            assert order.index(9) > order.index(0)
            assert started.index(9) > started.index(0)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def test_default_stays_one_at_a_time(self) -> None:
        """Without concurrency a subscriber still gets events strictly one by one."""
        bus = EventBus()
        running = 0
        peak = 0

        async def handler(ev: InboundSms) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0)
            running -= 1

        bus.subscribe_inbound(handler)
        task = asyncio.create_task(bus.run())
        try:
            for i in range(5):
                bus.publish_inbound(inbound(i))
            await asyncio.wait_for(bus.join(), 5)
            assert peak == 1
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class TestStatusSubscriptionKinds:
    async def test_subscriber_gets_only_the_states_it_wants(self, bus: EventBus) -> None:
        """A subscriber that names its states is offered only those (no wake-up for
        the rest); one that names none gets every state, in order."""
        wanted: list[str] = []
        every: list[str] = []

        async def sent_only(ev: StatusChange) -> None:
            wanted.append(ev.state)

        async def all_states(ev: StatusChange) -> None:
            every.append(ev.state)

        bus.subscribe_status(sent_only, states={"sent", "failed"})
        bus.subscribe_status(all_states)
        for state in ("submitting", "sent", "delivered", "failed"):
            bus.publish_status(StatusChange(1, state, "+447700900123", None, "gsm", None))
        await bus.join()
        await eventually(lambda: len(every) == 4)
        assert wanted == ["sent", "failed"]
        assert every == ["submitting", "sent", "delivered", "failed"]

    async def test_inline_subscriber_runs_inside_publish_and_a_bug_is_contained(
            self, bus: EventBus) -> None:
        """A subscribe_status_now handler has the event when publish_status returns;
        one that raises is logged and neither the next inline handler nor a queued
        subscriber misses the event."""
        now: list[int] = []
        queued: list[int] = []

        def broken(ev: StatusChange) -> None:
            raise RuntimeError("consumer bug")

        async def later(ev: StatusChange) -> None:
            queued.append(ev.id)

        bus.subscribe_status_now(broken)
        bus.subscribe_status_now(lambda ev: now.append(ev.id))
        bus.subscribe_status(later)
        bus.publish_status(StatusChange(7, "sent", "+447700900123", None, "gsm", None))
        assert now == [7]
        await eventually(lambda: queued == [7])
