"""Migration 0009 (issue 17): state changes cost less, and nothing they record changes.

On SQLite the state CHECKs no longer build a temporary b-tree per row
written, the usage counter's two triggers are one, and messages_inflight is
gone; on PostgreSQL the usage trigger is filtered by a WHEN.  These tests
hold the cheaper form (a state UPDATE compiles without a temporary table,
on a new file and on one upgraded from version 8) and the unchanged rules:
bad states still refused, and the usage counter equal to the full sum
through a message's whole life on both backends.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from smsd.config import Policy
from smsd.core.outbox import Outbox, SubmitRequest
from smsd.store import Store, ts
from smsd.store.attempts import (
    mark_part_sent,
    mark_submitting,
    write_failed,
    write_queued,
    write_sent,
)
from smsd.store.claims import claim_due
from smsd.store.inbound import PartReport, apply_part_report
from smsd.store.usage import full_month_usage, month_usage

from .conftest import make_user
from .old_schema import migrations_before, submit_as_version_9

pytestmark = pytest.mark.timeout(60)

ZONE = "Europe/London"
NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
TEXTS = ("one part", "y" * 200, "z" * 400)   # 1, 2 and 3 parts
MODEM = "gsm0"

# A state UPDATE of each table, as the send path runs them.
STATE_UPDATES = (
    "UPDATE messages SET state = 'submitting', updated_at = ? WHERE id = ? AND state = 'sending'",
    "UPDATE message_parts SET state = 'sent', modem = ?, reference = ? "
    "WHERE message_id = ? AND part = 1",
    "UPDATE inbound SET route_state = 'routed', conversation_id = ? WHERE id = ?",
)


async def _usage(store: Store) -> tuple[int, int]:
    """(the counter a submit reads, the full sum over the month's rows) for alice."""
    counted: int = await store.write(lambda db: month_usage(db, "alice", NOW, ZONE))
    full: int = await store.write(lambda db: full_month_usage(db, "alice", NOW, ZONE))
    return counted, full


class TestUsageThroughTheSendPath:
    async def test_counter_equals_full_sum_at_every_step(self, store: Store) -> None:
        """Three messages of alice (1, 2 and 3 parts) go through the daemon's own
        writes: claimed, submitting, part sent, sent, delivered by a report; one
        failed by a report, one failed by the dispatcher, queued again and failed.
        After every write the counter equals the sum over the rows, and it drops
        exactly by the parts of each message that failed."""
        outbox = Outbox(store, Policy(country="GB", timezone=ZONE), clock=lambda: NOW)
        ids = []
        for text in TEXTS:
            result = await outbox.submit(
                SubmitRequest(["+447700900123"], text, user=make_user("alice")))
            ids.extend(result.ids)
        assert await _usage(store) == (6, 6)
        now_s = ts(NOW)

        claimed, _ = await store.write(lambda db: claim_due(
            db, now_s, 10, node=None, dead_after_s=60.0, cutoff_s=None,
            expired_error=lambda e: e or "expired"))
        assert sorted(m.id for m in claimed) == sorted(ids)
        assert await _usage(store) == (6, 6)

        for n, mid in enumerate(ids):
            parts = n + 1
            for part in range(1, parts + 1):
                await store.write(lambda db, mid=mid, part=part: mark_submitting(
                    db, mid, part, now_s, first=part == 1))
                assert await _usage(store) == (6, 6)
                await store.write(lambda db, mid=mid, part=part: mark_part_sent(
                    db, mid, part, modem=MODEM, reference=(mid * 4 + part) % 256, now_s=now_s))
            if n < 2:
                await store.write(lambda db, mid=mid: write_sent(
                    db, mid, "gsm", MODEM, now_s))
            assert await _usage(store) == (6, 6)

        def report(mid: int, part: int, status: int, state: str) -> PartReport:
            return PartReport(MODEM, "+447700900123", "447700900123", (mid * 4 + part) % 256,
                              status, now_s, now_s, state)

        window_s = ts(NOW - timedelta(days=7))
        # The 1-part message is delivered: still counted.
        await store.write(lambda db: apply_part_report(
            db, report(ids[0], 1, 0, "delivered"), now_s, window_s))
        assert await _usage(store) == (6, 6)
        # The 2-part message fails by a report on its part 2: its 2 parts go.
        await store.write(lambda db: apply_part_report(
            db, report(ids[1], 2, 0x41, "failed"), now_s, window_s))
        assert await _usage(store) == (4, 4)
        # The 3-part message (still 'submitting') is queued again: counted;
        # then failed by the dispatcher: its 3 parts go.
        due_s = ts(NOW + timedelta(minutes=1))
        await store.write(lambda db: write_queued(db, ids[2], 1, due_s, "timeout", now_s))
        assert await _usage(store) == (4, 4)
        await store.write(lambda db: write_failed(db, ids[2], "refused", "gsm", None, now_s))
        assert await _usage(store) == (1, 1)
        states = await store.fetchall(
            "SELECT state FROM messages WHERE id IN (?, ?, ?) ORDER BY id", ids)
        assert [r[0] for r in states] == ["delivered", "failed", "failed"]


def _explain_ops(db: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> list[str]:
    return [str(r[1]) for r in db.execute("EXPLAIN " + sql, params)]


def _check_schema(path: Path) -> None:
    """The version-9 schema on ``path``: cheap state CHECKs (messages, parts,
    inbound's route_state) that still refuse,
    one usage trigger, no messages_inflight."""
    db = sqlite3.connect(path)
    try:
        for sql, params in zip(STATE_UPDATES, (("t", 1), ("m", 1, 1), (1, 1)), strict=True):
            assert "OpenEphemeral" not in _explain_ops(db, sql, params), sql
        names = {r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('index', 'trigger')")}
        assert {"usage_update", "usage_delete", "messages_node_inflight"} <= names
        assert not names & {"usage_update_out", "usage_update_in", "messages_inflight"}
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        mid = db.execute("SELECT min(id) FROM messages").fetchone()[0]
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            db.execute("UPDATE messages SET state = 'lost' WHERE id = ?", (mid,))
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            db.execute("UPDATE message_parts SET state = 'queued' WHERE message_id = ?", (mid,))
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            db.execute(
                "INSERT INTO inbound (sender, text, received_at, gateway, route_state) "
                "VALUES ('+447700900123', 't', 'now', 'gsm', 'lost')")
        db.rollback()
    finally:
        db.close()


class TestSqliteSchema:
    async def test_new_file(self, tmp_path: Path) -> None:
        """A new file's state UPDATEs compile to plain comparisons (no temporary
        b-tree per row), its CHECKs still refuse an unknown state, and the usage
        trigger is the one of version 9."""
        path = tmp_path / "smsd.sqlite3"
        store = await Store.open(path)
        try:
            outbox = Outbox(store, Policy(country="GB", timezone=ZONE), clock=lambda: NOW)
            await outbox.submit(SubmitRequest(["+447700900123"], "hi", user=make_user("alice")))
        finally:
            await store.close()
        _check_schema(path)

    async def test_file_upgraded_from_version_8(self, tmp_path: Path) -> None:
        """A file written by version 8 keeps its messages, parts and usage figures when
        upgraded, gets the version-9 schema, and its counter follows a state change
        into 'failed' made after the upgrade."""
        old = migrations_before(tmp_path, 9)
        path = tmp_path / "smsd.sqlite3"
        store = await Store.open(path, migrations_dir=old)
        try:
            for parts, text in enumerate(TEXTS, start=1):
                await store.write(lambda db, text=text, parts=parts: submit_as_version_9(
                    db, "alice", "+447700900123", text, parts, NOW, ZONE))
            before = await store.fetchall(
                "SELECT m.id, m.state, p.part, p.state FROM messages m "
                "JOIN message_parts p ON p.message_id = m.id ORDER BY m.id, p.part")
            assert await _usage(store) == (6, 6)
        finally:
            await store.close()

        store = await Store.open(path)
        try:
            assert await store.schema_version() >= 9
            after = await store.fetchall(
                "SELECT m.id, m.state, p.part, p.state FROM messages m "
                "JOIN message_parts p ON p.message_id = m.id ORDER BY m.id, p.part")
            assert [tuple(r) for r in after] == [tuple(r) for r in before]
            assert await _usage(store) == (6, 6)
            mid = int(after[-1][0])   # the 3-part message
            await store.write(
                lambda db: write_failed(db, mid, "refused", None, 1, ts(NOW)))
            assert await _usage(store) == (3, 3)
        finally:
            await store.close()
        _check_schema(path)
