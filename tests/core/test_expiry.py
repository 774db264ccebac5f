"""Expiry: messages that could not be sent within policy.expire_after_hours of
becoming due end 'expired' (history row, StatusChange), are never sent later,
leave in-flight and sent messages alone, and do not use the monthly package."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from smsd.config import Policy
from smsd.core.dispatcher import Dispatcher
from smsd.core.events import EventBus
from smsd.core.outbox import Outbox, SubmitRequest
from smsd.core.router import Router
from smsd.core.stats import Stats
from smsd.store import Store

from .conftest import make_user
from .dispatching import T0, Clock, collect, running, state_of, wait_state
from .gateways import FakeGateway, fail_for
from .polling import eventually

pytestmark = pytest.mark.timeout(20)

HOUR = timedelta(hours=1)
# Many attempts and a long backoff: the message keeps failing temporarily
# without running out of attempts, so only expiry can end it.
POLICY = Policy(
    country="GB", max_attempts=100, retry_base_s=600, retry_max_s=600, expire_after_hours=1
)


async def attempts_of(store: Store, mid: int) -> int:
    row = await store.fetchone("SELECT attempts FROM messages WHERE id = ?", (mid,))
    assert row is not None
    return int(row[0])


class TestExpiry:
    async def test_temporarily_failing_message_expires_after_the_age(self, store: Store) -> None:
        """A message whose gateway keeps failing is retried until the age passes, then
        expires with a history row and a StatusChange, and is never tried again."""
        clock = Clock()
        bad = "+447700900666"
        gw = FakeGateway("gsm", fail_for(bad))
        async with running(store, [gw], POLICY, clock) as (disp, outbox, events):
            mid = (await outbox.submit(SubmitRequest([bad], "hi"))).ids[0]
            await eventually(lambda: attempts_of(store, mid))
            # one minute short of the age: retried, still queued
            clock.now = T0 + timedelta(minutes=59)
            disp.wake()

            async def two_attempts() -> bool:
                return await attempts_of(store, mid) >= 2

            await eventually(two_attempts)
            assert await state_of(store, mid) == "queued"
            clock.now = T0 + HOUR
            disp.wake()
            await wait_state(store, mid, "expired")
            await eventually(lambda: any(e.id == mid for e in events))
            tried = len(gw.calls)
            # long after: no further attempt, and other messages still go
            clock.now = T0 + 5 * HOUR
            other = (await outbox.submit(SubmitRequest(["+447700900124"], "go"))).ids[0]
            await wait_state(store, other, "sent")
        assert tried == 2
        assert [j.recipient for j in gw.calls] == [bad, bad, "+447700900124"]
        assert await state_of(store, mid) == "expired"
        view = await store.get_message(mid)
        assert view is not None
        assert view.history[-1]["state"] == "expired"
        assert "not sent within 1 h" in (view.error or "")
        assert f"refused {bad}" in (view.error or "")
        expired = [e for e in events if e.id == mid]
        assert len(expired) == 1 and expired[0].state == "expired"
        assert expired[0].recipient == bad and "not sent within" in (expired[0].error or "")

    async def test_expires_while_no_gateway_is_up(self, store: Store) -> None:
        """With every gateway down the dispatcher claims nothing, yet old messages expire."""
        clock = Clock()
        gw = FakeGateway("gsm", up=False)
        async with running(store, [gw], POLICY, clock) as (disp, outbox, events):
            mid = (await outbox.submit(SubmitRequest(["+447700900123"], "hi"))).ids[0]
            clock.now = T0 + 2 * HOUR
            disp.wake()
            await wait_state(store, mid, "expired")
            await eventually(lambda: events)
            gw.up = True
            disp.wake()
            later = (await outbox.submit(SubmitRequest(["+447700900124"], "x"))).ids[0]
            await wait_state(store, later, "sent")
        assert [j.text for j in gw.calls] == ["x"]
        assert [(e.id, e.state) for e in events if e.id == mid] == [(mid, "expired")]

    async def test_stale_queue_after_outage_is_expired_not_sent(self, store: Store) -> None:
        """Messages left queued across a long outage are expired at start, not sent."""
        res = await Outbox(store, POLICY, clock=Clock()).submit(
            SubmitRequest(["+447700900123", "+447700900124"], "stale")
        )
        gw = FakeGateway("gsm")
        async with running(store, [gw], POLICY, Clock(T0 + 3 * HOUR)) as (_, outbox, _):
            for mid in res.ids:
                await wait_state(store, mid, "expired")
            fresh = (await outbox.submit(SubmitRequest(["+447700900125"], "fresh"))).ids[0]
            await wait_state(store, fresh, "sent")
        assert [j.text for j in gw.calls] == ["fresh"]

    async def test_postponed_message_counts_from_its_send_time(self, store: Store) -> None:
        """A postponed message is not expired before send_at + the age, and is then;
        a send_at already past at submit counts from the submit."""
        outbox = Outbox(store, POLICY, clock=Clock())
        later = (await outbox.submit(
            SubmitRequest(["+447700900123"], "later", send_at=T0 + 5 * HOUR)
        )).ids[0]
        past = (await outbox.submit(
            SubmitRequest(["+447700900124"], "past", send_at=T0 - 3 * HOUR)
        )).ids[0]
        bus = EventBus()
        disp = Dispatcher(store, Router([]), bus, POLICY, clock=Clock())
        assert await disp.expire(T0 + timedelta(minutes=59)) == 0
        assert await state_of(store, past) == "queued"
        assert await disp.expire(T0 + HOUR) == 1
        assert await state_of(store, past) == "expired"
        assert await disp.expire(T0 + 5 * HOUR + timedelta(minutes=59)) == 0
        assert await state_of(store, later) == "scheduled"
        assert await disp.expire(T0 + 6 * HOUR) == 1
        assert await state_of(store, later) == "expired"

    async def test_in_flight_and_sent_messages_are_left_alone(self, store: Store) -> None:
        """Expiry never touches a message being sent or already sent."""
        gate = asyncio.Event()
        gw = FakeGateway("gsm", gate=gate)
        clock = Clock()
        async with running(store, [gw], POLICY, clock) as (disp, outbox, events):
            mid = (await outbox.submit(SubmitRequest(["+447700900123"], "hi"))).ids[0]
            await eventually(lambda: gw.calls)
            assert await state_of(store, mid) == "sending"
            assert await disp.expire(T0 + 10 * HOUR) == 0
            assert await state_of(store, mid) == "sending"
            gate.set()
            await wait_state(store, mid, "sent")
            assert await disp.expire(T0 + 10 * HOUR) == 0
        assert await state_of(store, mid) == "sent"
        assert all(e.state != "expired" for e in events)

    async def test_large_backlog_expires_in_batches(self, store: Store) -> None:
        """More stale messages than one batch all expire, one history row and event each."""
        outbox = Outbox(store, POLICY, clock=Clock())
        numbers = [f"+4477009001{i:02d}" for i in range(7)]
        ids = (await outbox.submit(SubmitRequest(numbers, "old"))).ids
        bus = EventBus()
        events = collect(bus)
        disp = Dispatcher(store, Router([]), bus, POLICY, clock=Clock(), batch=3)
        task = asyncio.create_task(bus.run())
        try:
            assert await disp.expire(T0 + 2 * HOUR) == 7
            await eventually(lambda: len(events) == 7)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert sorted(e.id for e in events) == sorted(ids)
        row = await store.fetchone(
            "SELECT COUNT(*) FROM message_history WHERE state = 'expired'"
        )
        assert row is not None and row[0] == 7
        assert {await state_of(store, i) for i in ids} == {"expired"}

    async def test_zero_means_never(self, store: Store) -> None:
        """expire_after_hours = 0 keeps waiting messages however old they are."""
        policy = Policy(country="GB", expire_after_hours=0)
        mid = (await Outbox(store, policy, clock=Clock()).submit(
            SubmitRequest(["+447700900123"], "hi")
        )).ids[0]
        disp = Dispatcher(store, Router([]), EventBus(), policy, clock=Clock())
        assert await disp.expire(T0 + timedelta(days=400)) == 0
        assert await state_of(store, mid) == "queued"

    async def test_a_reloaded_policy_changes_the_age_at_once(self, store: Store) -> None:
        """A SIGHUP that shortens expire_after_hours (set_policy) applies to the next
        expiry run, and one that sets 0 stops expiring, without a restart."""
        mid = (await Outbox(store, POLICY, clock=Clock()).submit(
            SubmitRequest(["+447700900123"], "hi"))).ids[0]
        other = (await Outbox(store, POLICY, clock=Clock()).submit(
            SubmitRequest(["+447700900124"], "hi"))).ids[0]
        disp = Dispatcher(store, Router([]), EventBus(), POLICY, clock=Clock())
        disp.set_policy(Policy(country="GB", expire_after_hours=0))
        assert await disp.expire(T0 + 5 * HOUR) == 0
        assert await state_of(store, mid) == "queued"
        disp.set_policy(Policy(country="GB", expire_after_hours=0.5))
        assert await disp.expire(T0 + timedelta(minutes=31)) == 2
        assert {await state_of(store, i) for i in (mid, other)} == {"expired"}
        view = await store.get_message(mid)
        assert view is not None and "not sent within 0.5 h" in (view.error or "")

    async def test_expired_messages_do_not_use_the_package(self, store: Store) -> None:
        """After two messages expire, the user's next two are within the package again."""
        policy = Policy(country="GB", monthly_package=2, expire_after_hours=1)
        alice = make_user()
        outbox = Outbox(store, policy, clock=Clock())
        old = (await outbox.submit(
            SubmitRequest(["+447700900123", "+447700900124"], "hi", user=alice)
        )).ids
        disp = Dispatcher(store, Router([]), EventBus(), policy, clock=Clock())
        assert await disp.expire(T0 + 2 * HOUR) == 2
        stats = Stats(store, policy)
        assert (await stats.quota("alice", T0 + 2 * HOUR)).used == 0
        new = (await Outbox(store, policy, clock=Clock(T0 + 2 * HOUR)).submit(
            SubmitRequest(["+447700900125", "+447700900126"], "again", user=alice)
        )).ids
        rows = await store.fetchall(
            "SELECT id, cost_billable FROM messages ORDER BY id"
        )
        assert [(r[0], r[1]) for r in rows] == [(i, 0) for i in old + new]
        usage = await stats.quota("alice", T0 + 2 * HOUR)
        assert usage.used == 2 and usage.billable == 0
