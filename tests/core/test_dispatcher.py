"""Dispatcher: due and postponed messages, retries with backoff, crash recovery."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from smsd.config import Policy
from smsd.core.dispatcher import INTERRUPTED, Dispatcher
from smsd.core.events import EventBus
from smsd.core.outbox import Outbox, SubmitRequest
from smsd.core.router import Router
from smsd.errors import SubmitInterrupted
from smsd.gateways.base import OutboundJob
from smsd.store import Store, from_ts, ts

from .dispatching import T0, Clock, running, state_of, wait_state
from .gateways import FakeGateway, fail_for
from .polling import eventually
from .store_faults import allow_writes, refuse_writes

pytestmark = pytest.mark.timeout(20)



POLICY = Policy(country="GB", max_attempts=3, retry_base_s=30, retry_max_s=45)


class TestScheduling:
    async def test_queued_messages_are_sent(self, store: Store) -> None:
        """Submitted messages go out through the gateway and end 'sent' with a StatusChange."""
        gw = FakeGateway("gsm", modem="gsm0")
        async with running(store, [gw], POLICY, Clock()) as (_, outbox, events):
            res = await outbox.submit(SubmitRequest(["+447700900123", "+447700900124"], "hi"))
            for mid in res.ids:
                await wait_state(store, mid, "sent")
            await eventually(lambda: len(events) >= 2)
        assert {e.id for e in events} == set(res.ids)
        assert all(e.state == "sent" and e.gateway == "gsm" for e in events)
        view = await store.get_message(res.ids[0])
        assert view is not None and view.gateway == "gsm" and view.modem == "gsm0"
        assert [h["state"] for h in view.history] == ["queued", "sending", "submitting", "sent"]
        assert view.part_states[0]["state"] == "sent" and view.part_states[0]["reference"] == 0

    async def test_postponed_waits_for_its_minute(self, store: Store) -> None:
        """A postponed message stays 'scheduled' while others go, and goes once its time comes."""
        clock = Clock()
        gw = FakeGateway("gsm")
        async with running(store, [gw], POLICY, clock) as (disp, outbox, _):
            later = await outbox.submit(
                SubmitRequest(["+447700900123"], "later", send_at=T0 + timedelta(minutes=5))
            )
            now = await outbox.submit(SubmitRequest(["+447700900124"], "now"))
            await wait_state(store, now.ids[0], "sent")
            assert await state_of(store, later.ids[0]) == "scheduled"
            assert [j.text for j in gw.calls] == ["now"]
            clock.now = T0 + timedelta(minutes=5)
            disp.wake()
            await wait_state(store, later.ids[0], "sent")

    async def test_a_later_message_does_not_wake_a_sleep_that_ends_first(
        self, store: Store
    ) -> None:
        """A submit due only after the dispatcher's sleep ends leaves it asleep (no claim
        and next-due read for nothing); one due before the sleep ends wakes it, and a
        message due now wakes it and is sent."""
        clock = Clock()
        gw = FakeGateway("gsm")
        async with running(store, [gw], POLICY, clock) as (disp, _, _):
            outbox = Outbox(store, POLICY, wake=disp.wake, wake_for=disp.wake_for, clock=clock)
            await eventually(lambda: disp.asleep)
            await outbox.submit(
                SubmitRequest(["+447700900123"], "later", send_at=T0 + timedelta(days=1)))
            commits = store.commits
            for _ in range(5):
                await asyncio.sleep(0)
            assert disp.asleep and store.commits == commits
            commits = store.commits
            disp.wake_for(T0 + timedelta(seconds=1))      # before the idle sleep ends
            await eventually(lambda: store.commits > commits)   # its claim
            now = await outbox.submit(SubmitRequest(["+447700900124"], "now"))
            await wait_state(store, now.ids[0], "sent")
            assert [j.text for j in gw.calls] == ["now"]

    async def test_postponed_goes_after_restart(self, db_path: Path) -> None:
        """A message scheduled before a restart is sent by the new daemon when due."""
        s = await Store.open(db_path)
        res = await Outbox(s, POLICY, clock=Clock()).submit(
            SubmitRequest(["+447700900123"], "x", send_at=T0 + timedelta(hours=1))
        )
        await s.close()
        s = await Store.open(db_path)
        try:
            gw = FakeGateway("gsm")
            async with running(s, [gw], POLICY, Clock(T0 + timedelta(hours=2))):
                await wait_state(s, res.ids[0], "sent")
        finally:
            await s.close()


class TestRetries:
    async def test_failing_message_backs_off_then_fails_without_blocking(
        self, store: Store
    ) -> None:
        """A message that always fails is retried with growing delays, then failed; others go."""
        clock = Clock()
        bad = "+447700900666"
        gw = FakeGateway("gsm", fail_for(bad))
        async with running(store, [gw], POLICY, clock) as (disp, outbox, events):
            res = await outbox.submit(SubmitRequest([bad, "+447700900124"], "hi"))
            bad_id, good_id = res.ids
            await wait_state(store, good_id, "sent")

            async def due() -> tuple[int, datetime | None]:
                row = await store.fetchone(
                    "SELECT attempts, next_attempt_at FROM messages WHERE id = ?", (bad_id,)
                )
                assert row is not None
                return int(row[0]), from_ts(row[1])

            async def attempts_at_least(n: int) -> bool:
                return (await due())[0] >= n

            await eventually(lambda: attempts_at_least(1))
            assert await due() == (1, T0 + timedelta(seconds=30))
            assert await state_of(store, bad_id) == "queued"
            clock.now = T0 + timedelta(seconds=30)
            disp.wake()
            await eventually(lambda: attempts_at_least(2))
            # 30 * 2 = 60 s, capped by retry_max_s = 45 s
            assert await due() == (2, T0 + timedelta(seconds=75))
            clock.now = T0 + timedelta(seconds=75)
            disp.wake()
            await wait_state(store, bad_id, "failed")
            await eventually(lambda: any(e.id == bad_id for e in events))
        view = await store.get_message(bad_id)
        assert view is not None and "after 3 attempts" in (view.error or "")
        assert len([j for j in gw.calls if j.recipient == bad]) == 3
        failed = [e for e in events if e.id == bad_id]
        assert failed[0].state == "failed" and "refused" in (failed[0].error or "")

    async def test_permanent_failure_is_not_retried(self, store: Store) -> None:
        """A permanent gateway error fails the message after one attempt."""
        bad = "+447700900666"
        gw = FakeGateway("gsm", fail_for(bad, temporary=False))
        async with running(store, [gw], POLICY, Clock()) as (_, outbox, _):
            res = await outbox.submit(SubmitRequest([bad], "hi"))
            await wait_state(store, res.ids[0], "failed")
        assert len(gw.calls) == 1
        view = await store.get_message(res.ids[0])
        assert view is not None and view.part_states[0]["state"] == "failed"

    async def test_no_gateway_keeps_messages_queued(self, store: Store) -> None:
        """With every gateway down nothing is claimed and no attempt is spent."""
        gw = FakeGateway("gsm", up=False)
        async with running(store, [gw], POLICY, Clock()) as (disp, outbox, _):
            res = await outbox.submit(SubmitRequest(["+447700900123"], "hi"))
            for _ in range(20):
                await asyncio.sleep(0.005)
            row = await store.fetchone(
                "SELECT state, attempts FROM messages WHERE id = ?", (res.ids[0],)
            )
            assert row is not None and tuple(row) == ("queued", 0)
            gw.up = True
            disp.wake()
            await wait_state(store, res.ids[0], "sent")

    async def test_drain_lets_in_flight_finish(self, store: Store) -> None:
        """drain() stops new claims and waits for the part talking to a gateway to finish."""
        gate = asyncio.Event()
        gw = FakeGateway("gsm", gate_submitting=gate)
        async with running(store, [gw], POLICY, Clock()) as (disp, outbox, _):
            res = await outbox.submit(SubmitRequest(["+447700900123"], "hi"))
            await wait_state(store, res.ids[0], "submitting")
            # The row is committed before the send resumes: wait for the send itself.
            await gw.talking.wait()
            drain = asyncio.create_task(disp.drain(10))
            await asyncio.sleep(0.01)
            assert not drain.done()
            gate.set()
            await drain
            assert await state_of(store, res.ids[0]) == "sent"
            more = await outbox.submit(SubmitRequest(["+447700900124"], "hi"))
            await asyncio.sleep(0.05)
            assert await state_of(store, more.ids[0]) == "queued"

    async def test_drain_waits_for_a_part_whose_submitting_is_being_committed(
        self, store: Store
    ) -> None:
        """A stop that begins while a part's 'submitting' is being committed treats that
        message as talking to a modem (the database already says 'submitting', and the
        PDU follows): drain() waits for it, it ends 'sent', and it is not put back."""
        gate = asyncio.Event()
        drains: list[asyncio.Task[None]] = []
        gw = FakeGateway("gsm", gate_submitting=gate)
        async with running(store, [gw], POLICY, Clock()) as (disp, outbox, _):
            # the drain's first step runs while hooks.submitting() awaits its commit
            gw.before_submitting = lambda: drains.append(asyncio.create_task(disp.drain(10)))
            res = await outbox.submit(SubmitRequest(["+447700900123"], "hi"))

            async def submitting_committed() -> bool:
                view = await store.get_message(res.ids[0])
                return view is not None and "submitting" in [h["state"] for h in view.history]

            await eventually(submitting_committed)
            assert drains and not drains[0].done()
            gate.set()
            await drains[0]
            assert await state_of(store, res.ids[0]) == "sent"
        assert len(gw.calls) == 1
        view = await store.get_message(res.ids[0])
        assert view is not None and "queued" not in [h["state"] for h in view.history[1:]]

    async def test_drain_withdraws_what_waits_for_a_gateway(self, store: Store) -> None:
        """A message handed to a gateway but not yet submitting goes back to 'queued' at
        once on drain (due now, no attempt spent); the drain does not wait for it."""
        gw = FakeGateway("gsm", gate=asyncio.Event())
        async with running(store, [gw], POLICY, Clock()) as (disp, outbox, _):
            res = await outbox.submit(SubmitRequest(["+447700900123"], "hi"))
            await eventually(lambda: gw.calls)
            await disp.drain(10)
            row = await store.fetchone(
                "SELECT state, attempts FROM messages WHERE id = ?", (res.ids[0],))
            assert row is not None and tuple(row) == ("queued", 0)

    async def test_drain_deadline_resolves_by_policy(self, store: Store) -> None:
        """A part still submitting when the drain deadline passes is resolved by
        submitting_after_crash ("fail": failed as interrupted), never left submitting."""
        gw = FakeGateway("gsm", gate_submitting=asyncio.Event())
        policy = dataclasses.replace(POLICY, submitting_after_crash="fail")
        async with running(store, [gw], policy, Clock()) as (disp, outbox, _):
            res = await outbox.submit(SubmitRequest(["+447700900123"], "hi"))
            await wait_state(store, res.ids[0], "submitting")
            # The row is committed before the send resumes: wait for the send itself.
            await gw.talking.wait()
            await disp.drain(0.05)
            view = await store.get_message(res.ids[0])
            assert view is not None and view.state == "failed"
            assert view.error is not None and INTERRUPTED in view.error


async def _crashed(db_path: Path, part_states: list[str], state: str) -> tuple[Path, int]:
    """A database as a crash leaves it: one message mid-send with the given part states."""
    s = await Store.open(db_path)
    try:
        res = await Outbox(s, POLICY, clock=Clock()).submit(
            SubmitRequest(["+447700900123"], "x" * (153 * (len(part_states) - 1) + 10))
        )
        mid = res.ids[0]
        async with s.transaction() as db:
            await db.execute("UPDATE messages SET state = ? WHERE id = ?", (state, mid))
            for n, ps in enumerate(part_states, start=1):
                await db.execute(
                    "UPDATE message_parts SET state = ?, modem = 'gsm0', reference = ?, "
                    "sent_at = ? WHERE message_id = ? AND part = ?",
                    (ps, n, ts(T0), mid, n),
                )
    finally:
        await s.close()
    return db_path, mid


class TestRecovery:
    @pytest.mark.parametrize(
        ("policy_value", "parts", "state", "expected", "resent"),
        [
            ("resend", ["pending"], "sending", "sent", True),
            ("fail", ["pending"], "sending", "sent", True),
            ("resend", ["submitting"], "submitting", "sent", True),
            ("fail", ["submitting"], "submitting", "failed", False),
            ("fail", ["sent", "submitting"], "submitting", "failed", False),
            ("resend", ["sent", "sent"], "submitting", "sent", False),
            ("fail", ["sent", "sent"], "submitting", "sent", False),
        ],
    )
    async def test_policy(
        self,
        db_path: Path,
        policy_value: str,
        parts: list[str],
        state: str,
        expected: str,
        resent: bool,
    ) -> None:
        """After a crash: never-submitted messages are re-queued; parts left 'submitting'
        are resent or failed per policy.submitting_after_crash; fully sent ones are sent."""
        await _crashed(db_path, parts, state)
        pol = dataclasses.replace(POLICY, submitting_after_crash=policy_value)
        s = await Store.open(db_path)
        try:
            gw = FakeGateway("gsm")
            async with running(s, [gw], pol, Clock()):
                await wait_state(s, 1, "sent", "failed")
                await asyncio.sleep(0.02)
            view = await s.get_message(1)
            assert view is not None and view.state == expected
            assert bool(gw.calls) is resent
            if expected == "failed":
                assert view.error == INTERRUPTED
                assert view.history[-1]["detail"] == INTERRUPTED
            else:
                assert "recovered" in " ".join(str(h["detail"]) for h in view.history)
        finally:
            await s.close()


async def test_backoff_doubles_and_caps(store: Store) -> None:
    """backoff(n) = base * 2^(n-1), never above retry_max_s."""
    d = Dispatcher(store, Router(), EventBus(), Policy(retry_base_s=10, retry_max_s=100))
    assert [d.backoff(n) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 80, 100]



class TestReportBeforeSent:
    @pytest.mark.parametrize(("status", "final"), [(0x00, "delivered"), (0x41, "failed")])
    async def test_early_report_applied_after_sent(
        self, store: Store, status: int, final: str
    ) -> None:
        """A status report that arrives before the dispatcher marks the message sent is
        kept on the part and applied right after: history and events go sent -> final."""
        from smsd.codec.pdu import StatusReportPdu, decode, encode_status_report
        from smsd.core.inbox import Inbox

        bus_for_inbox = EventBus()
        inbox = Inbox(store, bus_for_inbox, clock=lambda: T0)

        class ReportingGateway(FakeGateway):
            async def send(self, job, hooks):  # type: ignore[no-untyped-def]
                await super().send(job, hooks)
                pdu = decode(encode_status_report(0, job.recipient, status=status,
                                                  scts=T0, discharge=T0))
                assert isinstance(pdu, StatusReportPdu)
                await inbox.status_report("gsm0", pdu)
                assert await state_of(store, job.message_id) == "submitting"

        gw = ReportingGateway("gsm", modem="gsm0")
        async with running(store, [gw], POLICY, Clock()) as (_, outbox, events):
            res = await outbox.submit(SubmitRequest(["+447700900123"], "hi"))
            await wait_state(store, res.ids[0], final)
            await eventually(lambda: len(events) >= 2)
        assert [e.state for e in events] == ["sent", final]
        view = await store.get_message(res.ids[0])
        assert view is not None
        assert [h["state"] for h in view.history][-2:] == ["sent", final]
        if final == "failed":
            assert "0x41" in (view.error or "")


class TestCommitsPerMessage:
    @pytest.mark.parametrize("parts", [1, 3])
    async def test_a_part_sent_rides_on_the_next_write(self, store: Store, parts: int) -> None:
        """The sending path commits once per part ('submitting', before the modem is
        asked) plus once for the message: each part's 'sent' is committed with the
        next write (issue 17), and every part still ends 'sent' with its reference."""
        marks: list[int] = []

        class Counting(FakeGateway):
            async def send(self, job, hooks):  # type: ignore[no-untyped-def]
                marks.append(store.commits)
                await super().send(job, hooks)
                # Nothing else may commit until the test has counted: no claim
                # meanwhile (an empty claim is a commit too, and whether it joined
                # a group commit of ours depended on timing).  One message in
                # flight blocks claims during the send, no gateway after it.
                self.up = False

        gw = Counting("gsm", modem="gsm0")
        async with running(store, [gw], POLICY, Clock(), max_in_flight=1) as (
            _, outbox, _events
        ):
            res = await outbox.submit(SubmitRequest(["+447700900123"], "x" * 153 * parts))
            await wait_state(store, res.ids[0], "sent")
            # A reader may see the row before the loop has counted its commit
            # (the count is taken when the group's writers are answered).
            await eventually(lambda: store.commits - marks[0] >= parts + 1)
            assert store.commits - marks[0] == parts + 1
        view = await store.get_message(res.ids[0])
        assert view is not None
        assert [(p["state"], p["reference"]) for p in view.part_states] == [
            ("sent", i) for i in range(parts)
        ]


class TestStoreTrouble:
    async def test_claim_failure_is_survived(self, store: Store) -> None:
        """If the store cannot take a claim (disk full) the dispatcher keeps running,
        nothing is lost, and the messages go once the disk has room again."""
        res = await Outbox(store, POLICY, clock=Clock()).submit(
            SubmitRequest([f"+4477009{i:05d}" for i in range(300)], "x" * 150)
        )
        await refuse_writes(store)
        gw = FakeGateway("gsm")
        async with running(store, [gw], POLICY, Clock()) as (disp, _, _):
            await asyncio.sleep(0.1)
            assert gw.calls == []
            assert (await store.queue_depth())["queued"] == 300
            await allow_writes(store)
            disp.wake()
            for mid in (res.ids[0], res.ids[-1]):
                await wait_state(store, mid, "sent")

    async def test_cancel_before_submit_puts_message_back(self, store: Store) -> None:
        """Stopping the dispatcher while a send waits (nothing submitted yet) re-queues the
        message at once, without spending an attempt."""
        gw = FakeGateway("gsm", gate=asyncio.Event())
        async with running(store, [gw], POLICY, Clock()) as (_, outbox, _):
            res = await outbox.submit(SubmitRequest(["+447700900123"], "hi"))
            await eventually(lambda: gw.calls)
        row = await store.fetchone(
            "SELECT state, attempts, next_attempt_at FROM messages WHERE id = ?", res.ids
        )
        assert row is not None and (row[0], row[1]) == ("queued", 0)
        assert from_ts(row[2]) == T0


class TestInterrupted:
    @pytest.mark.parametrize("policy", ["resend", "fail"])
    async def test_interrupted_submit_follows_policy_at_once(self, store: Store,
                                                             policy: str) -> None:
        """A gateway's SubmitInterrupted (the part may have reached the network) is resolved
        at once by submitting_after_crash: "resend" queues it due now (one attempt spent),
        "fail" fails it as "interrupted during submit"; never a retry_base_s wait."""
        calls = 0

        def outcome(job: OutboundJob) -> Exception | None:
            nonlocal calls
            calls += 1
            return SubmitInterrupted("gsm0: port gone after the PDU") if calls == 1 else None

        gw = FakeGateway("gsm", outcome=outcome)
        pol = dataclasses.replace(POLICY, submitting_after_crash=policy)
        async with running(store, [gw], pol, Clock()) as (_, outbox, _):
            res = await outbox.submit(SubmitRequest(["+447700900123"], "hi"))
            await wait_state(store, res.ids[0], "sent" if policy == "resend" else "failed")
        view = await store.get_message(res.ids[0])
        assert view is not None
        if policy == "resend":
            assert len(gw.calls) == 2
            requeued = [h for h in view.history if h["state"] == "queued"][-1]
            assert f"retry at {ts(T0)}:" in requeued["detail"]
            assert INTERRUPTED in requeued["detail"]
        else:
            assert len(gw.calls) == 1
            assert view.error is not None and view.error.startswith(INTERRUPTED)

    async def test_watchdog_resolves_a_stuck_submit(self, store: Store) -> None:
        """A part 'submitting' longer than the send deadline plus the margin is cancelled
        and resolved by the policy ("fail" here), and logged as stuck."""
        gw = FakeGateway("gsm", gate_submitting=asyncio.Event())     # never answers
        pol = dataclasses.replace(POLICY, submitting_after_crash="fail")
        async with running(store, [gw], pol, Clock(), submit_deadline_s=0.05,
                           submit_margin_s=0.05) as (_, outbox, _):
            res = await outbox.submit(SubmitRequest(["+447700900123"], "hi"))
            await wait_state(store, res.ids[0], "failed")
        view = await store.get_message(res.ids[0])
        assert view is not None and view.error is not None and INTERRUPTED in view.error
        assert [p["state"] for p in view.part_states] == ["failed"]

    async def test_watchdog_resolves_rows_nobody_sends(self, store: Store) -> None:
        """A message left 'submitting' with no send behind it (a state write the store
        refused) is resolved as after a crash once it is older than the deadline."""
        clock = Clock()
        gw = FakeGateway("gsm", up=False)
        async with running(store, [gw], POLICY, clock, submit_deadline_s=0.05,
                           submit_margin_s=0.05) as (disp, outbox, _):
            await eventually(lambda: disp._recovered)     # start-up recovery is behind us
            res = await outbox.submit(SubmitRequest(["+447700900123"], "hi"))
            await store.write(lambda db: db.execute(
                "UPDATE messages SET state = 'submitting', updated_at = ? WHERE id = ?",
                (ts(T0), res.ids[0])))
            clock.now = T0 + timedelta(seconds=1)
            await wait_state(store, res.ids[0], "queued")
        view = await store.get_message(res.ids[0])
        assert view is not None
        assert view.history[-1]["detail"] == "left in flight: queued again"


class TestClaimsInBatches:
    async def test_a_backlog_is_claimed_in_batches_not_one_by_one(
        self, store: Store, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With more due than fits in flight and one message sent at a time, the
        dispatcher claims again only once an eighth of its slots is free, not after
        every message (issue 17: that was one claim, a commit, per message); every
        message still goes out once."""
        from smsd.core import dispatcher as dispatcher_mod

        limits: list[int] = []
        real_claim = dispatcher_mod.claim_due

        def counting_claim(db: Any, now_s: str, limit: int, **kw: Any) -> Any:
            limits.append(limit)
            return real_claim(db, now_s, limit, **kw)

        monkeypatch.setattr(dispatcher_mod, "claim_due", counting_claim)
        gw = FakeGateway("gsm")
        bus = EventBus()
        disp = Dispatcher(store, Router([gw], concurrency={"gsm": 1}), bus, POLICY,
                          clock=Clock(), max_in_flight=16)
        n = 60
        res = await Outbox(store, POLICY, wake=disp.wake, clock=Clock()).submit(
            SubmitRequest([f"+4477009{i:05d}" for i in range(n)], "hi"))
        task = asyncio.create_task(disp.run())
        try:
            for mid in res.ids:
                await wait_state(store, mid, "sent")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert sorted(j.message_id for j in gw.calls) == sorted(res.ids)
        rows = [x for x in limits if x > 0]
        assert rows[0] == 16
        assert min(rows) >= 16 // 8, limits
        assert len(rows) <= 2 + (n - 16) // 2, limits
