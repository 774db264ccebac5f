"""The attempt's 'sent' write (smsd.store.attempts.write_sent) on both backends: parts a
gateway never marked sent become sent with the attempt's time, parts already sent keep
theirs, and reports that beat the dispatcher decide the final state."""

from __future__ import annotations

from datetime import timedelta

import pytest

from smsd.config import Policy
from smsd.core.outbox import Outbox, SubmitRequest
from smsd.store import Store, ts
from smsd.store.attempts import write_sent

from .inbox_harness import T0

pytestmark = pytest.mark.timeout(20)

TO = "+447700900123"


async def _in_flight(store: Store, parts: list[tuple[str, int | None]]) -> int:
    """A message 'submitting' on gsm, its parts in the given (state, report_status)."""
    text = "x" * (153 * (len(parts) - 1) + 10)
    mid = (await Outbox(store, Policy(country="GB")).submit(SubmitRequest([TO], text))).ids[0]
    async with store.transaction() as db:
        await db.execute("UPDATE messages SET state = 'submitting' WHERE id = ?", (mid,))
        for n, (state, status) in enumerate(parts, start=1):
            sent_at = ts(T0) if state != "submitting" else None
            await db.execute(
                "UPDATE message_parts SET state = ?, report_status = ?, sent_at = ? "
                "WHERE message_id = ? AND part = ?", (state, status, sent_at, mid, n))
    return mid


async def _parts(store: Store, mid: int) -> list[tuple[str, str | None]]:
    rows = await store.fetchall(
        "SELECT state, sent_at FROM message_parts WHERE message_id = ? ORDER BY part", (mid,))
    return [(r[0], r[1]) for r in rows]


async def _sent(store: Store, mid: int, now_s: str) -> list[tuple[str, str | None]]:
    result: list[tuple[str, str | None]] = await store.write(
        lambda db: write_sent(db, mid, "gsm", "gsm0", now_s))
    return result


class TestWriteSent:
    async def test_parts_left_submitting_become_sent_and_sent_ones_keep_their_time(
        self, store: Store
    ) -> None:
        """Part 1 was marked sent by the gateway at T0; part 2 never was (its own write
        did not come): both end 'sent', part 1 keeping T0 and part 2 taking now."""
        mid = await _in_flight(store, [("sent", None), ("submitting", None)])
        now_s = ts(T0 + timedelta(seconds=5))
        assert await _sent(store, mid, now_s) == [("sent", None)]
        assert await _parts(store, mid) == [("sent", ts(T0)), ("sent", now_s)]
        view = await store.get_message(mid)
        assert view is not None and view.state == "sent" and view.modem == "gsm0"

    async def test_every_part_already_delivered_makes_the_message_delivered(
        self, store: Store
    ) -> None:
        """Reports for every part came before the 'sent' write: sent, then delivered,
        both in the history, and no part is touched."""
        mid = await _in_flight(store, [("delivered", 0), ("delivered", 0)])
        now_s = ts(T0 + timedelta(seconds=5))
        assert await _sent(store, mid, now_s) == [("sent", None), ("delivered", None)]
        assert await _parts(store, mid) == [("delivered", ts(T0))] * 2
        view = await store.get_message(mid)
        assert view is not None and view.state == "delivered"
        assert [h["state"] for h in view.history][-2:] == ["sent", "delivered"]

    async def test_a_failed_part_fails_the_message_even_if_another_is_still_out(
        self, store: Store
    ) -> None:
        """Part 2 failed (TP-ST 0x41) before the write, part 1 still submitting: the
        message goes sent, then failed with that part's status; part 1 is sent."""
        mid = await _in_flight(store, [("submitting", None), ("failed", 0x41)])
        now_s = ts(T0 + timedelta(seconds=5))
        changes = await _sent(store, mid, now_s)
        assert [c[0] for c in changes] == ["sent", "failed"]
        assert changes[1][1] == "delivery report for part 2: TP-ST 0x41"
        assert await _parts(store, mid) == [("sent", now_s), ("failed", ts(T0))]

    async def test_a_message_no_longer_in_flight_is_left_alone(self, store: Store) -> None:
        """A message already resolved elsewhere (here: failed) is not moved to 'sent'."""
        mid = await _in_flight(store, [("submitting", None)])
        async with store.transaction() as db:
            await db.execute("UPDATE messages SET state = 'failed' WHERE id = ?", (mid,))
        assert await _sent(store, mid, ts(T0)) == []
        assert await _parts(store, mid) == [("submitting", None)]
