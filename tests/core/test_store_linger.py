"""Lingering writes (issue 17): ``Store.write(fn, linger=True)`` rides on the next
group commit another write starts, starts one itself only after the store's
linger, and still answers its caller only once its data is committed, with the
errors and cancellation of any write.  On both backends."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from smsd.store import Store, StoreError
from smsd.store.group import LINGER_S
from smsd.store.pg.store import PgStore

from .blocklist_writes import insert, numbers
from .polling import eventually
from .store_faults import allow_writes, refuse_writes

pytestmark = pytest.mark.timeout(30)

# A linger no test waits out: what a lingering write does then is what another
# write (or close) makes it do, never the timer.
FOREVER_S = 3600.0




async def turns(n: int) -> None:
    """Let the loop run ``n`` times (no timer of a long linger can fire meanwhile)."""
    for _ in range(n):
        await asyncio.sleep(0)


Opener = Callable[[], Awaitable[Store]]


@pytest.fixture(params=["sqlite", "postgresql"])
async def opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens a store on one database as often as asked (both backends), closing each."""
    opened: list[Store] = []
    dsn = request.getfixturevalue("pg_smsd_dsn") if request.param == "postgresql" else ""

    async def open_one() -> Store:
        s: Store = (await PgStore.open_url(dsn) if dsn
                    else await Store.open(tmp_path / "smsd.sqlite3"))
        opened.append(s)
        return s

    try:
        yield open_one
    finally:
        for s in opened:
            await s.close()


class TestRidesOnTheNextGroup:
    async def test_waits_for_another_write_and_commits_with_it(self, store: Store) -> None:
        """A lingering write starts no commit by itself; the next plain write's group
        takes it, runs it first (in arrival order) and answers both with one commit."""
        store.linger_s = FOREVER_S
        before = store.commits
        lingering = asyncio.ensure_future(store.write(insert("+1"), linger=True))
        await turns(20)
        assert not lingering.done()
        assert store.commits == before
        assert await numbers(store) == []
        assert await store.write(insert("+2")) == 2
        assert await lingering == 1
        assert store.commits == before + 1
        assert await numbers(store) == ["+1", "+2"]

    async def test_joins_a_group_already_waiting_for_the_writer(self, store: Store) -> None:
        """A lingering write queued while a group waits for the writer (a transaction
        holds it) commits in that group, once the transaction is done."""
        store.linger_s = FOREVER_S
        async with store.transaction():
            plain = asyncio.ensure_future(store.write(insert("+1")))
            await turns(2)
            lingering = asyncio.ensure_future(store.write(insert("+2"), linger=True))
            await turns(2)
            assert not plain.done() and not lingering.done()
        before = store.commits
        assert await plain == 1
        assert await lingering == 2
        assert store.commits == before + 1

    async def test_many_lingering_writes_share_one_group(self, store: Store) -> None:
        """Lingering writes from many callers wait together for one group: ten of them
        and one plain write cost one commit."""
        store.linger_s = FOREVER_S
        before = store.commits
        lingering = [asyncio.ensure_future(store.write(insert(f"+{i}"), linger=True))
                     for i in range(10)]
        await turns(5)
        assert await store.write(insert("+99")) == 11
        assert sorted(await asyncio.gather(*lingering)) == list(range(1, 11))
        assert store.commits == before + 1


class TestAlone:
    async def test_alone_it_commits_after_its_linger(self, store: Store) -> None:
        """With no other write, a lingering write starts its own group once its linger
        has passed (never before), and its caller gets its result."""
        assert store.linger_s == LINGER_S
        loop = asyncio.get_running_loop()
        before = store.commits
        started = loop.time()
        assert await store.write(insert("+1"), linger=True) == 1
        assert loop.time() - started >= LINGER_S * 0.99   # (the loop's clock resolution)
        assert store.commits == before + 1
        assert await numbers(store) == ["+1"]

    async def test_write_soon_alone_is_committed_after_the_linger(self, store: Store) -> None:
        """A write_soon with nothing after it no longer waits for the next write or
        close(): the linger's group commits it."""
        before = store.commits
        store.write_soon(insert("+1"))
        await eventually(lambda: store.commits > before)
        assert await numbers(store) == ["+1"]

    async def test_a_transaction_holding_the_writer_delays_it_without_losing_it(
        self, store: Store
    ) -> None:
        """A lingering write whose linger ends while a transaction holds the writer
        is committed when the transaction hands the writer on."""
        store.linger_s = 0.0
        async with store.transaction() as db:
            lingering = asyncio.ensure_future(store.write(insert("+2"), linger=True))
            await asyncio.sleep(0.01)       # its timer fires here, behind the transaction
            await db.execute("INSERT INTO blocklist (number, reason, created_at) "
                             "VALUES ('+1', 'x', '2026-11-25 13:00Z')")
            assert not lingering.done()
        assert await lingering == 2


class TestDurableWhenAnswered:
    @pytest.mark.sqlite_only
    async def test_another_connection_sees_it_when_its_caller_is_answered(
        self, db_path: Path
    ) -> None:
        """The moment a lingering write returns, a connection of another process's
        kind (a fresh sqlite3 connection to the file) reads its row: it was committed
        before its caller was answered, as with any write."""
        store = await Store.open(db_path)
        try:
            store.linger_s = FOREVER_S
            seen: list[int] = []

            async def lingering_caller() -> None:
                await store.write(insert("+1"), linger=True)
                # no await between the answer and this read
                other = sqlite3.connect(db_path)
                try:
                    seen.append(other.execute("SELECT COUNT(*) FROM blocklist").fetchone()[0])
                finally:
                    other.close()

            caller = asyncio.ensure_future(lingering_caller())
            await turns(5)
            assert not caller.done()
            await store.write(insert("+2"))
            await caller
            assert seen == [2]
        finally:
            await store.close()

    async def test_close_commits_and_answers_what_lingers(self, opener: Opener) -> None:
        """Closing the store commits a write still lingering and answers its caller;
        the row is there when the database is opened again."""
        store = await opener()
        store.linger_s = FOREVER_S
        lingering = asyncio.ensure_future(store.write(insert("+1"), linger=True))
        await turns(5)
        assert not lingering.done()
        await store.close()
        assert await lingering == 1
        again = await opener()
        assert await numbers(again) == ["+1"]


class TestErrorsAndCancellation:
    async def test_cancelled_while_lingering_is_never_run(self, store: Store) -> None:
        """A caller that gives up while its write lingers takes it back: the next group
        does not run it, and the writes queued with it still commit."""
        store.linger_s = FOREVER_S
        gone = asyncio.ensure_future(store.write(insert("+1"), linger=True))
        kept = asyncio.ensure_future(store.write(insert("+2"), linger=True))
        await turns(5)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert await store.write(insert("+3")) == 2
        assert await kept == 1
        assert await numbers(store) == ["+2", "+3"]

    async def test_cancelled_once_its_group_runs_it_still_commits(self, store: Store) -> None:
        """Once the group a lingering write rides on has started, cancelling its
        caller does not undo it: the group commits for everyone."""
        store.linger_s = FOREVER_S
        async with store.transaction():
            lingering = asyncio.ensure_future(store.write(insert("+1"), linger=True))
            plain = asyncio.ensure_future(store.write(insert("+2")))
            await turns(5)
        # the transaction handed the writer to the group: it runs now
        lingering.cancel()
        assert await plain == 2
        with pytest.raises(asyncio.CancelledError):
            await lingering
        assert await numbers(store) == ["+1", "+2"]

    async def test_a_failing_lingering_write_fails_alone(self, store: Store) -> None:
        """A lingering write that raises gets its exception; the write it rode on
        commits (the group is run again with a savepoint per write)."""
        store.linger_s = FOREVER_S

        def boom(db: sqlite3.Connection) -> None:
            insert("+9")(db)
            raise RuntimeError("boom")

        lingering = asyncio.ensure_future(store.write(boom, linger=True))
        await turns(5)
        assert await store.write(insert("+1")) == 1
        with pytest.raises(RuntimeError, match="boom"):
            await lingering
        assert await numbers(store) == ["+1"]

    async def test_a_refused_lingering_write_raises_store_error(self, store: Store) -> None:
        """When the store refuses writes (disk full, server read-only) a lingering
        write's caller gets StoreError, as any writer does, and nothing is written."""
        def big(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO blocklist (number, reason, created_at) "
                "VALUES (?, ?, '2026-11-25 13:00Z')",
                [(f"+{i}", "x" * 500) for i in range(2000)],   # more than the file holds
            )

        await refuse_writes(store)
        try:
            with pytest.raises(StoreError, match=r"could not write: .*(full|read-only)"):
                await store.write(big, linger=True)
        finally:
            await allow_writes(store)
        assert await numbers(store) == []
