"""Group commit without savepoints: a failing write still fails alone.

Store.write runs a group's writes without savepoints and, only when one
raises, undoes the group and runs it again with a savepoint around each.  What
must hold: callers get the results of the run that was committed (not of the
undone one), the failing write leaves nothing behind, and a write function
that would log is logged once (the inbound part store's conflict warning).
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from smsd.codec.pdu import DeliverPdu
from smsd.codec.reassembly import PartKey
from smsd.store import Store, StoreError
from smsd.store.group import SOON_RETRIES
from smsd.store.parts import SqlitePartStore

from .blocklist_writes import insert, numbers
from .polling import eventually
from .store_faults import allow_writes, more_than_fits, refuse_writes

pytestmark = pytest.mark.timeout(30)

T1 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 25, 12, 5, tzinfo=UTC)



def part(text: str, when: datetime) -> DeliverPdu:
    return DeliverPdu(sender="+447700900123", text=text, timestamp=when, smsc=None,
                      reference=7, part=1, parts=2, ref_bits=8, encoding="gsm7",
                      status_report_indication=False)



def _unique_clash(err: BaseException) -> bool:
    """A uniqueness violation, in SQLite's words or PostgreSQL's."""
    return "UNIQUE" in str(err) or "duplicate key" in str(err)


class TestGroupRetry:
    async def test_results_come_from_the_committed_run(self, store: Store) -> None:
        """Writes around a failing one return what they saw in the run that was committed."""
        def boom(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO blocklist (number, reason, created_at) "
                       "VALUES ('+9','x','2026-11-25 13:00Z')")
            raise RuntimeError("boom")

        # Successful writes before the failing one ran once already when the
        # group is undone; they must answer once, from the committed run.
        res = await asyncio.gather(
            store.write(insert("+1")), store.write(insert("+2")), store.write(insert("+3")),
            store.write(boom), store.write(insert("+1")),
            return_exceptions=True,
        )
        assert list(res[:3]) == [1, 2, 3]
        assert isinstance(res[3], RuntimeError)
        assert isinstance(res[4], StoreError) and _unique_clash(res[4])
        assert [r["number"] for r in await store.blocked()] == ["+1", "+2", "+3"]

    async def test_group_without_failure_commits_once(self, store: Store) -> None:
        """Twenty concurrent writes that all succeed commit in fewer than twenty commits."""
        before = store.commits
        res = await asyncio.gather(*(store.write(insert(f"+{i}")) for i in range(20)))
        assert sorted(res) == list(range(1, 21))
        assert store.commits - before < 20


class TestPartConflictLoggedOnce:
    async def test_conflict_warning_once_even_when_group_reruns(self, store: Store) -> None:
        """A conflicting inbound part is refused and warned about exactly once,
        also when a failing write in its group makes the group run twice."""
        parts = SqlitePartStore(store)
        key = PartKey("gsm0", "+447700900123", 7, 2)
        assert await parts.put(key, 1, part("first", T1), T1)

        def boom(db: sqlite3.Connection) -> None:
            raise RuntimeError("boom")

        with capture_logs() as logs:
            res = await asyncio.gather(
                parts.put(key, 1, part("other", T2), T2), store.write(boom),
                return_exceptions=True,
            )
        assert res[0] is False and isinstance(res[1], RuntimeError)
        conflicts = [e for e in logs if e["event"] == "inbox.part_conflict"]
        assert len(conflicts) == 1
        assert conflicts[0]["kept_timestamp"] == T1.isoformat()
        held = await parts.parts(key)
        assert held[1].text == "first"


class Broken:
    """A write that always fails (no such table), counting how often it ran."""

    def __init__(self) -> None:
        self.tries = 0

    def __call__(self, db: sqlite3.Connection) -> None:
        self.tries += 1
        db.execute("INSERT INTO no_such_table VALUES (1)")


class TestWriteSoon:
    async def test_rides_on_the_next_write_in_order(self, store: Store) -> None:
        """write_soon commits nothing by itself; the next write commits it first, in one
        commit, so the later write sees its row (a status report after a part's 'sent').
        (Alone it would start a group after the store's linger: made too long to matter.)"""
        store.linger_s = 3600.0
        before = store.commits
        store.write_soon(insert("+447700900001"))
        assert store.commits == before
        assert await store.fetchone("SELECT 1 FROM blocklist") is None
        seen = await store.write(insert("+447700900002"))
        assert seen == 2
        assert store.commits == before + 1

    async def test_close_commits_what_is_left(self, db_path: Path) -> None:
        """A write_soon with no write after it is committed when the store closes."""
        store = await Store.open(db_path)
        store.write_soon(insert("+447700900001"))
        await store.close()
        store = await Store.open(db_path)
        try:
            assert await store.fetchone("SELECT 1 FROM blocklist") is not None
        finally:
            await store.close()

    async def test_a_failing_one_is_logged_and_the_next_write_commits(
        self, store: Store
    ) -> None:
        """A write_soon that raises does not fail the write it rides on; it is tried
        again with the next groups (SOON_RETRIES in all), then logged once."""
        broken = Broken()
        with capture_logs() as logs:
            store.write_soon(broken)
            assert await store.write(insert("+447700900002")) == 1
            await eventually(lambda: any(e["event"] == "store.write_soon_failed" for e in logs))
        # the first group may run it twice (once more with savepoints)
        assert SOON_RETRIES <= broken.tries <= 2 * SOON_RETRIES
        assert [e["event"] for e in logs].count("store.write_soon_failed") == 1

    async def test_close_gives_a_failing_one_its_tries(self, db_path: Path) -> None:
        """At close, a write_soon that keeps failing still gets all its tries (the
        store runs groups until none is left), is logged once, and close returns."""
        store = await Store.open(db_path)
        store.linger_s = 3600.0        # no timer would start the retries' groups
        broken = Broken()
        with capture_logs() as logs:
            store.write_soon(broken)
            await store.close()
            await asyncio.sleep(0)
        assert broken.tries >= SOON_RETRIES + 1   # the first group runs it twice (savepoints)
        assert [e["event"] for e in logs].count("store.write_soon_failed") == 1

    async def test_one_whose_group_failed_is_tried_again_with_the_next(
        self, store: Store
    ) -> None:
        """The group a write_soon rode on failed as a whole (a full disk): the
        write_soon, whose caller does not wait for it, is not lost; it rides on
        the next group once the store takes writes again."""
        store.linger_s = 3600.0        # only the next write starts a group

        await refuse_writes(store)
        store.write_soon(insert("+447700900001"))
        with pytest.raises(StoreError):
            await store.write(more_than_fits)
        await allow_writes(store)
        await store.write(insert("+447700900002"))
        assert sorted(await numbers(store)) == ["+447700900001", "+447700900002"]
