"""Migration 0010 (issue 17): a message's routine history lives in its own row, and
every reader still sees the history the table used to hold.

Each scenario drives a message through the daemon's own write functions
(claim, 'submitting', part sent, sent, retry, failure, expiry, recovery,
status and gateway reports) at distinct times, then reads it as the API does
(smsd.store.views.get_message).  The expected history is written out by hand
from what smsd up to version 9 inserted into message_history at each of
those writes (state, time, detail, in insertion order), never computed by the
code under test.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from smsd.config import Policy
from smsd.core.outbox import Outbox, SubmitRequest
from smsd.store import Store, ts
from smsd.store.attempts import (
    mark_not_sent,
    mark_part_sent,
    mark_submitting,
    write_failed,
    write_queued,
    write_sent,
)
from smsd.store.claims import claim_due, expire_stale
from smsd.store.inbound import PartReport, apply_gateway_report, apply_part_report
from smsd.store.recovery import InFlight, resolve_in_flight
from smsd.store.views import get_message, list_messages

from .old_schema import migrations_before, submit_as_version_9

pytestmark = pytest.mark.timeout(60)

NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
TO = "+447700900123"
MODEM = "gsm0"
WHY = "recovered after a crash"

Row = tuple[str, str, str | None]


def t(k: int) -> str:
    """The store text of NOW + k seconds: each step of a scenario has its own time."""
    return ts(NOW + timedelta(seconds=k))


async def _submit(store: Store, text: str = "hello", **kw: Any) -> int:
    outbox = Outbox(store, Policy(country="GB", **kw), clock=lambda: NOW)
    return (await outbox.submit(SubmitRequest([TO], text))).ids[0]


async def _claim(store: Store, k: int) -> list[int]:
    claimed, _ = await store.write(lambda db: claim_due(
        db, t(k), 10, node=None, dead_after_s=60.0, cutoff_s=None,
        expired_error=lambda e: e or "expired"))
    return [m.id for m in claimed]


async def _submitting(store: Store, mid: int, part: int, k: int, *, first: bool) -> None:
    await store.write(lambda db: mark_submitting(db, mid, part, t(k), first=first))


async def _part_sent(store: Store, mid: int, part: int, k: int, ref: int) -> None:
    await store.write(lambda db: mark_part_sent(
        db, mid, part, modem=MODEM, reference=ref, now_s=t(k)))


async def _sent(store: Store, mid: int, k: int, gateway: str = "gsm",
                modem: str | None = MODEM) -> list[tuple[str, str | None]]:
    changes: list[tuple[str, str | None]] = await store.write(
        lambda db: write_sent(db, mid, gateway, modem, t(k)))
    return changes


async def _report(store: Store, ref: int, status: int, state: str, k: int) -> Any:
    report = PartReport(MODEM, TO, TO[1:], ref, status, t(k), t(k), state)
    return await store.write(lambda db: apply_part_report(
        db, report, t(k), ts(NOW - timedelta(days=1))))


async def _history(store: Store, mid: int) -> list[Row]:
    view = await get_message(store, mid)
    assert view is not None
    return [(h["at"], h["state"], h["detail"]) for h in view.history]


async def _table_rows(store: Store, mid: int) -> int:
    row = await store.fetchone(
        "SELECT COUNT(*) FROM message_history WHERE message_id = ?", (mid,))
    assert row is not None
    return int(row[0])


def _queued(k: int = 0) -> Row:
    return (t(k), "queued", "origin=api")


class TestHistoryReadsAsBefore:
    async def test_happy_message_writes_no_history_row(self, store: Store) -> None:
        """Submitted, claimed, submitting, sent by a modem, delivered by its report:
        the five rows of old, with their times and details, and not one row in
        message_history (the whole life is kept in the message's own row)."""
        mid = await _submit(store)
        assert await _claim(store, 1) == [mid]
        await _submitting(store, mid, 1, 2, first=True)
        await _part_sent(store, mid, 1, 3, ref=42)
        assert await _sent(store, mid, 4) == [("sent", None)]
        change = await _report(store, 42, 0, "delivered", 5)
        assert change.state == "delivered"
        assert await _history(store, mid) == [
            _queued(), (t(1), "sending", "attempt 1"), (t(2), "submitting", None),
            (t(4), "sent", "gsm via gsm0"), (t(5), "delivered", "report on gsm0 mr 42"),
        ]
        assert await _table_rows(store, mid) == 0
        listed = await list_messages(store)
        assert [h["state"] for h in listed[0].history] == [
            "queued", "sending", "submitting", "sent", "delivered"]

    async def test_retried_message(self, store: Store) -> None:
        """Queued again after a timeout, then sent by a gateway without a modem: the
        first attempt's rows, the retry's row, then the second attempt's rows."""
        mid = await _submit(store)
        await _claim(store, 1)
        await _submitting(store, mid, 1, 2, first=True)
        await store.write(lambda db: write_queued(db, mid, 1, t(10), "timeout", t(3)))
        assert await _history(store, mid) == [
            _queued(), (t(1), "sending", "attempt 1"), (t(2), "submitting", None),
            (t(3), "queued", f"retry at {t(10)}: timeout"),
        ]
        assert await _claim(store, 11) == [mid]
        await _submitting(store, mid, 1, 12, first=True)
        await _sent(store, mid, 13, gateway="curl", modem=None)
        assert await _history(store, mid) == [
            _queued(), (t(1), "sending", "attempt 1"), (t(2), "submitting", None),
            (t(3), "queued", f"retry at {t(10)}: timeout"),
            (t(11), "sending", "attempt 2"), (t(12), "submitting", None), (t(13), "sent", "curl"),
        ]

    async def test_failed_message(self, store: Store) -> None:
        """Failed by the dispatcher while submitting: the attempt's rows, then 'failed'."""
        mid = await _submit(store)
        await _claim(store, 1)
        await _submitting(store, mid, 1, 2, first=True)
        await store.write(lambda db: write_failed(db, mid, "refused", "gsm", None, t(3)))
        assert await _history(store, mid) == [
            _queued(), (t(1), "sending", "attempt 1"), (t(2), "submitting", None),
            (t(3), "failed", "refused"),
        ]

    async def test_expired_messages(self, store: Store) -> None:
        """One message never claimed and one put back unstarted both expire: 'expired'
        follows their rows, with the last attempt's error in its detail."""
        first = await _submit(store)
        second = await _submit(store, "again")
        await _claim(store, 1)
        await store.write(lambda db: write_queued(db, second, 0, t(3), "not started", t(2)))
        await store.write(lambda db: write_queued(db, first, 0, t(3), "not started", t(2)))
        await store.write(lambda db: db.execute(
            "UPDATE messages SET error = NULL WHERE id = ?", (first,)))
        expired = await store.write(lambda db: expire_stale(
            db, t(5), t(6), 10, lambda e: f"expired ({e})"))
        assert sorted(m.id for m in expired) == sorted([first, second])
        for mid, err in ((first, "expired (None)"), (second, "expired (not started)")):
            assert await _history(store, mid) == [
                _queued(), (t(1), "sending", "attempt 1"),
                (t(2), "queued", f"retry at {t(3)}: not started"), (t(6), "expired", err),
            ]
        untouched = await _submit(store, "never claimed")
        await store.write(lambda db: expire_stale(db, t(5), t(7), 10, lambda e: "too old"))
        assert await _history(store, untouched) == [_queued(), (t(7), "expired", "too old")]

    async def test_recovered_messages(self, store: Store) -> None:
        """Three messages left in flight are resolved by recovery (queued again, sent,
        failed); the requeued one is then claimed and sent again."""
        ids = [await _submit(store, f"m{i}") for i in range(3)]
        await _claim(store, 1)
        for mid in ids:
            await _submitting(store, mid, 1, 2, first=True)
        outcome: dict[int, Any] = dict(zip(ids, ("queued", "sent", "failed"), strict=True))

        def decide(m: InFlight) -> Any:
            return outcome[m.id]

        await resolve_in_flight(store, t(5), decide, why=WHY, error="lost in the crash")
        before = [_queued(), (t(1), "sending", "attempt 1"), (t(2), "submitting", None)]
        assert await _history(store, ids[0]) == [
            *before, (t(5), "queued", f"{WHY}: queued again")]
        assert await _history(store, ids[1]) == [
            *before, (t(5), "sent", f"{WHY}: every part was sent")]
        assert await _history(store, ids[2]) == [*before, (t(5), "failed", "lost in the crash")]
        assert await _claim(store, 6) == [ids[0]]
        await _submitting(store, ids[0], 1, 7, first=True)
        await _sent(store, ids[0], 8)
        assert await _history(store, ids[0]) == [
            *before, (t(5), "queued", f"{WHY}: queued again"),
            (t(6), "sending", "attempt 1"), (t(7), "submitting", None),
            (t(8), "sent", "gsm via gsm0"),
        ]

    async def test_early_reports(self, store: Store) -> None:
        """Reports that beat the dispatcher's 'sent': all parts delivered gives 'sent'
        and 'delivered' at the same time with the sending detail, sent first; a
        failed part gives 'sent' then 'failed' with the report's detail."""
        text = "y" * 200   # 2 parts
        good = await _submit(store, text)
        bad = await _submit(store, text + "!")
        await _claim(store, 1)
        for mid, base in ((good, 10), (bad, 20)):
            await _submitting(store, mid, 1, 2, first=True)
            await _part_sent(store, mid, 1, 3, ref=base + 1)
            await _submitting(store, mid, 2, 4, first=False)
            await _part_sent(store, mid, 2, 5, ref=base + 2)
        assert await _report(store, 11, 0, "delivered", 6) is None
        assert await _report(store, 12, 0, "delivered", 6) is None
        assert await _report(store, 21, 0x41, "failed", 6) is None
        assert await _sent(store, good, 7) == [("sent", None), ("delivered", None)]
        assert [c[0] for c in await _sent(store, bad, 7)] == ["sent", "failed"]
        head = [_queued(), (t(1), "sending", "attempt 1"), (t(2), "submitting", None)]
        assert await _history(store, good) == [
            *head, (t(7), "sent", "gsm via gsm0"), (t(7), "delivered", "gsm via gsm0")]
        assert await _history(store, bad) == [
            *head, (t(7), "sent", "gsm via gsm0"),
            (t(7), "failed", "delivery report for part 1: TP-ST 0x41")]

    async def test_failed_report_and_gateway_report_after_sent(self, store: Store) -> None:
        """A failed status report, and a gateway's whole-message report, on messages
        already 'sent': their rows follow the attempt's."""
        by_modem = await _submit(store)
        by_trunk = await _submit(store, "other")
        await _claim(store, 1)
        await _submitting(store, by_modem, 1, 2, first=True)
        await _part_sent(store, by_modem, 1, 3, ref=7)
        await _sent(store, by_modem, 4)
        await _submitting(store, by_trunk, 1, 2, first=True)
        await _sent(store, by_trunk, 4, gateway="classound", modem=None)
        change = await _report(store, 7, 0x46, "expired", 5)
        assert change.state == "expired"
        await store.write(lambda db: apply_gateway_report(
            db, by_trunk, "classound", "delivered", "trunk: delivered", t(6)))
        head = [_queued(), (t(1), "sending", "attempt 1"), (t(2), "submitting", None)]
        assert await _history(store, by_modem) == [
            *head, (t(4), "sent", "gsm via gsm0"),
            (t(5), "expired", "delivery report for part 1: TP-ST 0x46")]
        assert await _history(store, by_trunk) == [
            *head, (t(4), "sent", "classound"), (t(6), "delivered", "trunk: delivered")]

    async def test_part_handed_to_another_modem_submits_twice(self, store: Store) -> None:
        """A part that never left (the modem failed before the PDU) and was submitted
        again: two 'submitting' rows, in order, then 'sent'."""
        mid = await _submit(store)
        await _claim(store, 1)
        await _submitting(store, mid, 1, 2, first=True)
        await store.write(lambda db: mark_not_sent(db, mid, 1, t(3)))
        await _submitting(store, mid, 1, 4, first=True)
        await _sent(store, mid, 5)
        assert await _history(store, mid) == [
            _queued(), (t(1), "sending", "attempt 1"), (t(2), "submitting", None),
            (t(4), "submitting", None), (t(5), "sent", "gsm via gsm0"),
        ]

    async def test_warnings_and_schedule_at_submit(self, store: Store) -> None:
        """A scheduled message accepted with a warning: its first row says
        'scheduled', the warning follows it, then the attempt's rows."""
        later = NOW + timedelta(hours=1)
        outbox = Outbox(store, Policy(country="GB", link_policy="warn"), clock=lambda: NOW)
        result = await outbox.submit(
            SubmitRequest([TO], "see https://example.org", send_at=later))
        mid = result.ids[0]
        hist = await _history(store, mid)
        assert hist[0] == (t(0), "scheduled", "origin=api")
        assert len(hist) == 2 and hist[1][:2] == (t(0), "scheduled")
        assert hist[1][2] is not None and hist[1][2].startswith("warning: ")
        assert await _claim(store, 3601) == [mid]
        assert await _history(store, mid) == [*hist, (t(3601), "sending", "attempt 1")]


class TestUpgradeFromVersion9:
    async def test_old_histories_stay_and_a_message_in_flight_continues(
        self, tmp_path: Path
    ) -> None:
        """A file written by version 9 (histories in message_history only) keeps every
        old row after the upgrade; a message that was 'sending' at the upgrade goes
        on to 'delivered' and shows its old rows followed by the new ones."""
        path = tmp_path / "smsd.sqlite3"
        store = await Store.open(path, migrations_dir=migrations_before(tmp_path, 10))
        try:
            def old_life(db: Any) -> tuple[int, int]:
                done = submit_as_version_9(db, "alice", TO, "done", 1, NOW, "UTC")
                flying = submit_as_version_9(db, "alice", TO, "flying", 1, NOW, "UTC")
                db.execute("UPDATE messages SET state = 'delivered', attempts = 1, "
                           "gateway = 'gsm', modem = 'gsm0' WHERE id = ?", (done,))
                db.execute("UPDATE messages SET state = 'sending' WHERE id = ?", (flying,))
                db.executemany(
                    "INSERT INTO message_history (message_id, at, state, detail) "
                    "VALUES (?, ?, ?, ?)",
                    [(done, t(1), "sending", "attempt 1"), (done, t(2), "submitting", None),
                     (done, t(3), "sent", "gsm via gsm0"),
                     (done, t(4), "delivered", "report on gsm0 mr 9"),
                     (flying, t(1), "sending", "attempt 1")])
                return done, flying

            done, flying = await store.write(old_life)
        finally:
            await store.close()

        store = await Store.open(path)
        try:
            assert await store.schema_version() == 10
            assert await _history(store, done) == [
                _queued(), (t(1), "sending", "attempt 1"), (t(2), "submitting", None),
                (t(3), "sent", "gsm via gsm0"), (t(4), "delivered", "report on gsm0 mr 9")]
            await _submitting(store, flying, 1, 5, first=True)
            await _part_sent(store, flying, 1, 6, ref=77)
            await _sent(store, flying, 7)
            await _report(store, 77, 0, "delivered", 8)
            assert await _history(store, flying) == [
                _queued(), (t(1), "sending", "attempt 1"), (t(5), "submitting", None),
                (t(7), "sent", "gsm via gsm0"), (t(8), "delivered", "report on gsm0 mr 77")]
        finally:
            await store.close()

