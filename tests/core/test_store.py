"""The store: migrations, durability, read views, blocklist, SQLite failures."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from smsd.errors import SmsdError, ValidationError
from smsd.store import Store, StoreError, ts
from smsd.store.sqlite_io import MIGRATIONS_DIR, migrations
from tests.core.store_faults import more_than_fits, refuse_writes

pytestmark = pytest.mark.timeout(30)

NOW = datetime(2026, 11, 25, 13, 0, tzinfo=UTC)


async def _insert_message(store: Store, recipient: str = "+447700900123") -> int:
    async with store.transaction() as db:
        cur = await db.execute(
            "INSERT INTO messages (recipient, text, encoding, parts, state, created_at, "
            "updated_at, next_attempt_at, origin) VALUES (?, 'hi', 'gsm7', 1, 'queued', ?, ?, ?, "
            "'api') RETURNING id",
            (recipient, ts(NOW), ts(NOW), ts(NOW)),
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])



def _unique_clash(err: BaseException) -> bool:
    """A uniqueness violation, in SQLite's words or PostgreSQL's."""
    return "UNIQUE" in str(err) or "duplicate key" in str(err)


class TestMigrations:
    async def test_fresh_database_is_at_latest_version(self, store: Store) -> None:
        """A new file gets every migration and PRAGMA user_version equals the last number."""
        assert await store.schema_version() == len(migrations())
        assert len(migrations()) >= 1

    @pytest.mark.sqlite_only
    async def test_wal_and_full_sync(self, store: Store, db_path: Path) -> None:
        """The file is in WAL mode (other connections see it) and the writer syncs fully."""
        raw = sqlite3.connect(db_path)
        try:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            raw.close()
        async with store.transaction() as db:
            async with db.execute("PRAGMA synchronous") as cur:
                row = await cur.fetchone()
        assert row is not None and row[0] == 2  # FULL

    async def test_new_migration_is_applied_on_reopen(self, tmp_path: Path) -> None:
        """A migration added later is applied once, in order, when an old file is reopened."""
        mig = tmp_path / "migrations"
        shutil.copytree(MIGRATIONS_DIR, mig)
        path = tmp_path / "db.sqlite3"
        s = await Store.open(path, migrations_dir=mig)
        before = await s.schema_version()
        await s.close()
        (mig / f"{before + 1:04d}_extra.sql").write_text("CREATE TABLE extra (x INTEGER);")
        s = await Store.open(path, migrations_dir=mig)
        try:
            assert await s.schema_version() == before + 1
            assert await s.fetchall("SELECT * FROM extra") == []
        finally:
            await s.close()
        s = await Store.open(path, migrations_dir=mig)  # idempotent: no "table exists" error
        await s.close()

    async def test_failing_migration_changes_nothing(self, tmp_path: Path) -> None:
        """A broken migration is rolled back whole and the version stays where it was."""
        mig = tmp_path / "migrations"
        shutil.copytree(MIGRATIONS_DIR, mig)
        n = len(migrations(mig))
        (mig / f"{n + 1:04d}_broken.sql").write_text(
            "CREATE TABLE half (x INTEGER);\nTHIS IS NOT SQL;"
        )
        path = tmp_path / "db.sqlite3"
        with pytest.raises(StoreError, match="broken"):
            await Store.open(path, migrations_dir=mig)
        raw = sqlite3.connect(path)
        try:
            assert raw.execute("PRAGMA user_version").fetchone()[0] == n
            tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master")}
            assert "half" not in tables
        finally:
            raw.close()

    async def test_gap_in_numbering_is_refused(self, tmp_path: Path) -> None:
        """Migration files must be numbered without gaps, or the runner refuses to guess."""
        mig = tmp_path / "migrations"
        shutil.copytree(MIGRATIONS_DIR, mig)
        (mig / "0099_far.sql").write_text("SELECT 1;")
        with pytest.raises(SmsdError, match=r"0099_far\.sql"):
            await Store.open(tmp_path / "db.sqlite3", migrations_dir=mig)

    async def test_newer_database_is_refused(self, db_path: Path) -> None:
        """A file written by a newer smsd (higher user_version) is not opened."""
        raw = sqlite3.connect(db_path)
        raw.execute("PRAGMA user_version = 999")
        raw.close()
        with pytest.raises(StoreError, match="newer"):
            await Store.open(db_path)


class TestDurability:
    async def test_committed_rows_survive_reopen(self, db_path: Path) -> None:
        """What a transaction committed is there after closing and reopening the file."""
        s = await Store.open(db_path)
        mid = await _insert_message(s)
        await s.close()
        s = await Store.open(db_path)
        try:
            view = await s.get_message(mid)
            assert view is not None
            assert view.recipient == "+447700900123"
            assert view.state == "queued"
        finally:
            await s.close()

    async def test_exception_in_transaction_rolls_back(self, store: Store) -> None:
        """An error inside a transaction leaves nothing of it behind."""
        with pytest.raises(RuntimeError):
            async with store.transaction() as db:
                await db.execute(
                    "INSERT INTO blocklist (number, reason, created_at) "
                    "VALUES ('+1', 'x', '2026-11-25 13:00Z')"
                )
                raise RuntimeError("boom")
        assert await store.blocked() == []

    async def test_reader_does_not_see_uncommitted_rows(self, store: Store) -> None:
        """Reads use their own connection: an open write transaction is invisible to them."""
        async with store.transaction() as db:
            await db.execute(
                "INSERT INTO blocklist (number, reason, created_at) "
                "VALUES ('+1', 'x', '2026-11-25 13:00Z')"
            )
            assert not await store.is_blocked("+1")
        assert await store.is_blocked("+1")

    async def test_a_read_sees_every_write_that_returned_before_it(self, store: Store) -> None:
        """Read-your-writes, also while other tasks read: a read begun after write() returned
        sees that write.  (A read spread over several hops of the reader thread, or one whose
        caller was cancelled, used to hold the reader connection's snapshot open, so a read
        queued meanwhile saw the database as it was before: the dispatcher test saw a message
        'sending' that its stop had already put back to 'queued'.)"""
        mid = await _insert_message(store)
        stop = asyncio.Event()

        async def keep_reading() -> None:
            while not stop.is_set():
                await store.fetchall("SELECT id, text FROM messages")

        async def read_cancelled() -> None:
            while not stop.is_set():
                t = asyncio.create_task(store.fetchone("SELECT text FROM messages"))
                await asyncio.sleep(0)
                t.cancel()
                await asyncio.gather(t, return_exceptions=True)

        others = [asyncio.create_task(keep_reading()) for _ in range(4)]
        others.append(asyncio.create_task(read_cancelled()))
        stale: list[tuple[str, str]] = []
        try:
            for i in range(200):
                text = f"version {i}"
                await store.write(
                    lambda db, t=text: db.execute(
                        "UPDATE messages SET text = ? WHERE id = ?", (t, mid)))
                row = await store.fetchone("SELECT text FROM messages WHERE id = ?", (mid,))
                assert row is not None
                if row[0] != text:
                    stale.append((text, row[0]))
        finally:
            stop.set()
            await asyncio.gather(*others)
        assert stale == []

    @pytest.mark.sqlite_only
    async def test_a_cancelled_read_is_not_run(self, store: Store) -> None:
        """Reads whose callers were cancelled while queued never reach SQLite, so a burst of
        them (clients hanging up) leaves no backlog that later reads wait behind."""
        from smsd.store.sqlite_io import on_db_thread

        runs: list[int] = []

        def counted(db: sqlite3.Connection) -> None:
            db.create_function("counted", 0, lambda: runs.append(1) or 1)

        await on_db_thread(store._reader, counted)
        release = asyncio.Event()
        loop = asyncio.get_running_loop()
        held = asyncio.ensure_future(on_db_thread(
            store._reader,
            lambda db: asyncio.run_coroutine_threadsafe(release.wait(), loop).result()))
        queued = [asyncio.create_task(store.fetchone("SELECT counted()")) for _ in range(50)]
        await asyncio.sleep(0)
        for t in queued:
            t.cancel()
        await asyncio.gather(*queued, return_exceptions=True)
        release.set()
        await held
        row = await store.fetchone("SELECT counted()")
        assert row is not None and row[0] == 1
        assert len(runs) == 1

    @pytest.mark.sqlite_only
    async def test_disk_full_is_a_clear_error(self, store: Store) -> None:
        """SQLITE_FULL surfaces as StoreError naming the file and SQLite's reason; rolled back."""
        async with store.transaction() as db:
            async with db.execute("PRAGMA page_count") as cur:
                row = await cur.fetchone()
            assert row is not None
            await db.execute(f"PRAGMA max_page_count = {row[0]}")
        with pytest.raises(StoreError, match="full") as exc:
            async with store.transaction() as db:
                await db.executemany(
                    "INSERT INTO blocklist (number, reason, created_at) VALUES (?, ?, 'now')",
                    ((f"+{i}", "x" * 500) for i in range(2000)),
                )
        assert str(store.path) in str(exc.value)
        assert await store.blocked() == []

    @pytest.mark.sqlite_only
    async def test_readonly_store_refuses_writes(self, store: Store, db_path: Path) -> None:
        """A store opened read-only (CLI reports) reads, and a write is a StoreError."""
        await store.block("+447700900999", by="admin", reason="spam")
        ro = await Store.open(db_path, readonly=True)
        try:
            assert await ro.is_blocked("+447700900999")
            with pytest.raises(StoreError, match="read-only"):
                await ro.block("+447700900111", by=None, reason="x")
        finally:
            await ro.close()


class TestViews:
    async def test_get_message_missing_is_none(self, store: Store) -> None:
        """An unknown id reads as None, not an error."""
        assert await store.get_message(12345) is None

    async def test_list_and_depth(self, store: Store) -> None:
        """list_messages filters by state and pages newest first; queue_depth counts states."""
        ids = [await _insert_message(store, f"+44770090012{i}") for i in range(3)]
        listed = await store.list_messages(state="queued", limit=2)
        assert [m.id for m in listed] == [ids[2], ids[1]]
        assert (await store.list_messages(state="sent")) == []
        depth = await store.queue_depth()
        assert depth["queued"] == 3 and depth["failed"] == 0
        js = listed[0].to_json()
        assert js["id"] == ids[2] and js["state"] == "queued"


    async def test_list_filters_by_user_and_time(self, store: Store) -> None:
        """since is inclusive, until exclusive (created_at); user filters exactly."""
        mid = await _insert_message(store)
        async with store.transaction() as db:
            await db.execute("UPDATE messages SET user = 'alice' WHERE id = ?", (mid,))
        assert [m.id for m in await store.list_messages(user="alice")] == [mid]
        assert await store.list_messages(user="bob") == []
        assert [m.id for m in await store.list_messages(since=NOW)] == [mid]
        assert await store.list_messages(until=NOW) == []
        assert await store.list_messages(since=NOW.replace(minute=1)) == []


class TestBlocklist:
    async def test_block_unblock(self, store: Store) -> None:
        """block() adds (idempotently, updating the reason), unblock() removes."""
        await store.block(" +447700900999 ", by="admin", reason="spam")
        await store.block("+447700900999", by="admin", reason="still spam")
        assert await store.is_blocked("+447700900999")
        rows = await store.blocked()
        assert len(rows) == 1 and rows[0]["reason"] == "still spam"
        await store.unblock("+447700900999")
        assert not await store.is_blocked("+447700900999")

    async def test_empty_number_refused(self, store: Store) -> None:
        """Blocking an empty number is a ValidationError and stores nothing."""
        with pytest.raises(ValidationError):
            await store.block("  ", by="admin", reason="x")
        assert await store.blocked() == []


class TestGroupWrite:
    async def test_concurrent_writes_share_commits(self, store: Store) -> None:
        """Writes arriving while a commit runs are committed together, each returning
        its own result only once committed."""
        def put(i: int) -> Callable[[sqlite3.Connection], int]:
            def fn(db: sqlite3.Connection) -> int:
                db.execute(
                    "INSERT INTO blocklist (number, reason, created_at) "
                    "VALUES (?, 'x', '2026-11-25 13:00Z')",
                    (f"+{i}",),
                )
                return i

            return fn

        before = store.commits
        results = await asyncio.gather(*(store.write(put(i)) for i in range(50)))
        assert results == list(range(50))
        assert store.commits - before < 50
        assert len(await store.blocked()) == 50

    async def test_failing_write_is_rolled_back_alone(self, store: Store) -> None:
        """A write that raises is undone (its own statements too) and gets its error;
        the others of its group commit."""
        def good(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO blocklist (number, reason, created_at) "
                       "VALUES ('+1','x','2026-11-25 13:00Z')")

        def bad(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO blocklist (number, reason, created_at) "
                       "VALUES ('+2','x','2026-11-25 13:00Z')")
            raise ValueError("no")

        def dup(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO blocklist (number, reason, created_at) "
                       "VALUES ('+1','x','2026-11-25 13:00Z')")

        res = await asyncio.gather(store.write(good), store.write(bad), store.write(dup),
                                   return_exceptions=True)
        assert res[0] is None
        assert isinstance(res[1], ValueError)
        assert isinstance(res[2], StoreError) and _unique_clash(res[2])
        assert [r["number"] for r in await store.blocked()] == ["+1"]

    async def test_write_on_full_disk_fails_and_keeps_nothing(self, store: Store) -> None:
        """When the commit cannot be written every caller gets StoreError naming the
        engine's reason (not the savepoint retry's "no such savepoint", which SQLite
        says once a full disk has rolled the whole transaction back); nothing persists.
        (The reason is matched after "could not write:": the test's own path says "full".)"""
        await refuse_writes(store)
        with pytest.raises(StoreError, match=r"could not write: .*(full|read-only)"):
            await store.write(more_than_fits)
        assert await store.blocked() == []

    @pytest.mark.sqlite_only
    async def test_write_on_readonly_store(self, store: Store, db_path: Path) -> None:
        """A read-only store refuses write() with StoreError."""
        ro = await Store.open(db_path, readonly=True)
        try:
            with pytest.raises(StoreError, match="read-only"):
                await ro.write(lambda db: None)
        finally:
            await ro.close()
