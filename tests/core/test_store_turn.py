"""The writer's turn: group commits and transactions take it in order, and a
cancelled caller neither runs a write it took back nor stops a group already
running (issue 17: group commits are driven by callbacks, not a task each)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from smsd.store import Store

from .blocklist_writes import insert, numbers

pytestmark = pytest.mark.timeout(30)




class TestWithTransactions:
    async def test_a_write_waits_for_a_transaction_and_sees_its_rows(
        self, store: Store
    ) -> None:
        """A write that arrives while a transaction holds the writer runs after its
        commit (it sees the transaction's row), never between its statements."""
        async with store.transaction() as db:
            writing = asyncio.ensure_future(store.write(insert("+2")))
            await asyncio.sleep(0)
            await db.execute("INSERT INTO blocklist (number, reason, created_at) "
                             "VALUES ('+1', 'x', '2026-11-25 13:00Z')")
            await asyncio.sleep(0)
            assert not writing.done()
        assert await writing == 2
        assert await numbers(store) == ["+1", "+2"]

    async def test_a_write_cancelled_while_queued_is_not_run(self, store: Store) -> None:
        """A caller that gives up while its write still waits for the writer takes the
        write back: it is never run, and the writes queued with it still commit."""
        async with store.transaction():
            gone = asyncio.ensure_future(store.write(insert("+1")))
            kept = asyncio.ensure_future(store.write(insert("+2")))
            await asyncio.sleep(0)
            gone.cancel()
            with pytest.raises(asyncio.CancelledError):
                await gone
        assert await kept == 1
        assert await numbers(store) == ["+2"]

    async def test_a_transaction_waits_for_a_running_group(self, store: Store) -> None:
        """A transaction started while a group commit runs begins after it: it sees
        every row of the group."""
        group = [asyncio.ensure_future(store.write(insert(f"+{i}"))) for i in range(5)]
        await asyncio.sleep(0)
        async with store.transaction() as db:
            cur = await db.execute("SELECT COUNT(*) FROM blocklist")
            row = await cur.fetchone()
            assert row is not None and row[0] == 5
        assert sorted(await asyncio.gather(*group)) == [1, 2, 3, 4, 5]


class TestCancelledWhileRunning:
    async def test_a_running_group_commits_for_a_cancelled_caller(self, db_path: Path) -> None:
        """Cancelling the caller of a write whose group is already on the database
        thread does not undo it: the group commits, the other writers get their answers,
        and the next write finds the writer free."""
        store = await Store.open(db_path)
        try:
            entered, release = threading.Event(), threading.Event()

            def slow(db: sqlite3.Connection) -> int:
                entered.set()
                assert release.wait(10)
                return insert("+1")(db)

            gone = asyncio.ensure_future(store.write(slow))
            other = asyncio.ensure_future(store.write(insert("+2")))
            await asyncio.to_thread(entered.wait, 10)
            queued = asyncio.ensure_future(store.write(insert("+3")))   # the next group
            gone.cancel()
            await asyncio.sleep(0)
            release.set()
            with pytest.raises(asyncio.CancelledError):
                await gone
            assert await other == 2
            assert await queued == 3
            assert await numbers(store) == ["+1", "+2", "+3"]
            assert await store.write(insert("+4")) == 4
        finally:
            await store.close()
