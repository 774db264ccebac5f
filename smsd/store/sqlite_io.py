"""SQLite underneath the Store: its error, the file's opening and migrations,
and calls on aiosqlite's database thread.

Split from store.py (module size): what here talks to sqlite3/aiosqlite
directly, below the Store's own lifecycle, group-commit and typed methods.
``run_group`` and ``StoreError`` serve PgStore too (store/pg/store.py).
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite
import structlog

from smsd.errors import SmsdError

# The logger keeps store.py's name: the events logged here are the same as before the split.
log = structlog.get_logger("smsd.store.store")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_[A-Za-z0-9_]+\.sql$")

# How long a connection waits for a lock held by another process (the CLI
# reading reports, `sqlite3` in a shell, a backup) before giving up.  Five
# seconds is SQLite's usual advice for interactive tools; the daemon's own
# writes never wait on each other (the asyncio lock orders them first).
BUSY_TIMEOUT_MS = 5000


T = TypeVar("T")
WriteFn = Callable[[sqlite3.Connection], Any]


class StoreError(SmsdError):
    """SQLite refused a read or write (disk full, read-only, corrupt).

    Defined here because smsd/errors.py has no storage error; ``reason`` is
    SQLite's own message and ``path`` the database file.
    """

    def __init__(self, path: Path | str, action: str, reason: str) -> None:
        self.path = path
        self.action = action
        self.reason = reason
        super().__init__(f"database {path}: could not {action}: {reason}")


def migrations(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, Path]]:
    """Every ``NNNN_name.sql`` in order; numbering must run 1, 2, 3 ... without gaps."""
    found: list[tuple[int, Path]] = []
    for p in directory.iterdir():
        m = _MIGRATION_NAME.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    found.sort()
    for expected, (number, p) in enumerate(found, start=1):
        if number != expected:
            raise SmsdError(
                f"migration {p.name}: expected number {expected:04d} (gap or duplicate)"
            )
    return found


def run_group(
    db: Any, batch: list[tuple[WriteFn, asyncio.Future[Any]]],
    results: list[tuple[bool, Any]], begin: str,
) -> None:
    """One group commit of ``batch`` on ``db`` (sqlite3's shape), each outcome in ``results``.

    First without savepoints: they would be two more statements per write,
    and on SQLite every statement hands the GIL back and forth with the event
    loop's thread.  Only if a write raises is the group undone and run again
    with one savepoint per write, so the others still commit.
    """
    db.execute(begin)
    try:
        try:
            for fn, _ in batch:
                results.append((True, fn(db)))
        except Exception:
            if db.in_transaction:
                db.execute("ROLLBACK")
            results.clear()
            db.execute(begin)
            for fn, _ in batch:
                db.execute("SAVEPOINT w")
                try:
                    results.append((True, fn(db)))
                except Exception as e:
                    if not db.in_transaction:
                        # The engine rolled the whole transaction back (SQLite on a
                        # full disk or an I/O error): the group fails, with that reason.
                        raise
                    db.execute("ROLLBACK TO w")
                    results.append((False, e))
                db.execute("RELEASE w")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.rollback()
        raise


def post_to_db_thread(
    conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], Any]
) -> asyncio.Future[Any]:
    """Queue ``fn(raw sqlite3 connection)`` on aiosqlite's database thread; its future.

    What ``_execute`` does, without a coroutine around it: the caller adds a
    done callback instead of awaiting, so a group commit needs no task.
    aiosqlite's thread takes ``(future, callable)`` from ``_tx`` and sets the
    future through ``call_soon_threadsafe`` (unchanged since aiosqlite 0.17;
    tests/core/test_store*.py cover it).  Raises ValueError once it is closed.
    """
    if not conn._running or conn._connection is None:
        raise ValueError("Connection closed")
    raw = conn._conn
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    conn._tx.put_nowait((done, lambda: fn(raw)))
    return done


async def on_db_thread(conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``fn(raw sqlite3 connection)`` on aiosqlite's database thread, in one hop.

    aiosqlite has no public API for this; ``_execute`` (queue a callable on the
    connection's thread) and ``_conn`` (the sqlite3 connection) have been there
    unchanged since aiosqlite 0.17 and tests/core/test_store.py covers them.
    """
    raw = conn._conn
    return cast(T, await conn._execute(fn, raw))  # type: ignore[no-untyped-call]


async def read_on_thread(
    conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]
) -> T:
    """Like :func:`on_db_thread`, for a read that is skipped if its caller is gone.

    aiosqlite runs every queued callable, also one whose awaiting task was
    cancelled meanwhile.  Readers that time out or are cancelled in a burst
    (a client that hangs up, an SSE stream closed) would otherwise leave a
    backlog on the one reader thread that every later read waits behind.
    """
    gone = False

    def unless_gone(db: sqlite3.Connection) -> T:
        # The None is never seen: nobody awaits a gone caller's result.
        return cast(T, None) if gone else fn(db)

    try:
        return await on_db_thread(conn, unless_gone)
    except asyncio.CancelledError:
        gone = True
        raise


async def connect(target: str, *, uri: bool) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(target, uri=uri, isolation_level=None)
    conn.row_factory = sqlite3.Row
    await conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    await conn.execute("PRAGMA foreign_keys=ON")
    return conn


async def user_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def check_version(conn: aiosqlite.Connection, path: Path, directory: Path) -> int:
    version = await user_version(conn)
    known = len(migrations(directory))
    if version > known:
        raise StoreError(
            path,
            "open",
            f"schema version {version} is newer than this smsd knows ({known}); "
            "upgrade smsd or restore a matching backup",
        )
    return version


async def migrate(conn: aiosqlite.Connection, path: Path, directory: Path) -> None:
    """Apply each migration above PRAGMA user_version in its own transaction."""
    version = await check_version(conn, path, directory)
    for number, file in migrations(directory):
        if number <= version:
            continue
        sql = file.read_text(encoding="utf-8")
        script = f"BEGIN IMMEDIATE;\n{sql}\n;PRAGMA user_version = {number};\nCOMMIT;\n"
        try:
            await conn.executescript(script)
        except sqlite3.Error as e:
            if conn.in_transaction:
                await conn.rollback()
            raise StoreError(path, f"apply migration {file.name}", str(e)) from e
        log.info("store.migrated", path=str(path), version=number, migration=file.name)
