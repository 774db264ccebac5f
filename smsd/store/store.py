"""The SQLite store: the one place where smsd's state lives.

Why it looks like this:

* One writer.  The daemon owns the database; every write goes through
  the writer's turn (``smsd.turns.Turns``: a transaction or a group commit of
  :meth:`Store.write` at a time), so two coroutines never interleave
  statements of different transactions on the connection.
* Readers get their own connection.  In WAL mode a second connection reads the
  last committed snapshot, so an API read can never show a row that a
  half-finished transaction might still roll back.
* ``synchronous=FULL``: a commit is on disk when it returns, and callers only
  acknowledge (HTTP answer, SIM delete) after the commit returned.
* Failures of SQLite itself (disk full, read-only file, corrupt database) become
  :class:`StoreError` naming the database and SQLite's reason, after the
  transaction was rolled back: nothing half-written, nothing acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite
import structlog

from smsd.errors import ValidationError
from smsd.store.group import GroupCommits
from smsd.store.sqlite_io import (
    MIGRATIONS_DIR,
    StoreError,
    WriteFn,
    check_version,
    connect,
    migrate,
    post_to_db_thread,
    read_on_thread,
    run_group,
)
from smsd.store.submits import split_blocked
from smsd.store.timefmt import ts, utcnow
from smsd.store.views import MessageView, get_message, list_messages

log = structlog.get_logger(__name__)

MESSAGE_STATES = (
    "queued",
    "scheduled",
    "sending",
    "submitting",
    "sent",
    "delivered",
    "failed",
    "expired",
)
FINAL_STATES = ("delivered", "failed", "expired")
DEFAULT_BLOCK_REASON = "blocked by admin"


class Store(GroupCommits):
    """aiosqlite store: a writer connection taken in turns and a reader connection."""

    # Which SQL a statement that cannot be written once must be written in.
    dialect = "sqlite"

    def __init__(
        self,
        path: Path,
        writer: aiosqlite.Connection | None,
        reader: aiosqlite.Connection,
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._init_writes(path)

    # ----------------------------------------------------------- lifecycle

    @classmethod
    async def open(
        cls, path: Path, *, readonly: bool = False, migrations_dir: Path = MIGRATIONS_DIR
    ) -> Store:
        """Open (creating and migrating unless ``readonly``) the database at ``path``."""
        path = Path(path)
        writer: aiosqlite.Connection | None = None
        try:
            if not readonly:
                writer = await connect(str(path), uri=False)
                await writer.execute("PRAGMA journal_mode=WAL")
                await writer.execute("PRAGMA synchronous=FULL")
                await migrate(writer, path, migrations_dir)
            uri = path.resolve().as_uri() + "?mode=ro"
            reader = await connect(uri, uri=True)
            if readonly:
                await check_version(reader, path, migrations_dir)
        except sqlite3.Error as e:
            if writer is not None:
                await writer.close()
            raise StoreError(path, "open", str(e)) from e
        except BaseException:
            if writer is not None:
                await writer.close()
            raise
        log.info("store.opened", path=str(path), readonly=readonly)
        return cls(path, writer, reader)

    async def close(self) -> None:
        log.info("store.closing", path=str(self.path), commits=self.commits, lingered=self.lingered)
        if self._pending:
            # commits what lingers or write_soon() left queued, and answers its callers
            await self._flush_pending()
        async with self._turn:
            if self._writer is not None:
                await self._writer.close()
                self._writer = None
        await self._reader.close()

    # ------------------------------------------------------------- writing

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One serialised write transaction; committed (to disk) on normal exit.

        Any exception rolls back.  SQLite's own errors surface as StoreError.
        Do not call ``write`` (or open another transaction) inside: the writer's
        turn is not re-entrant.
        """
        async with self._turn:
            conn = self._writer
            if conn is None:
                raise StoreError(self.path, "write", "the store is open read-only")
            try:
                await conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise StoreError(self.path, "begin a transaction", str(e)) from e
            try:
                yield conn
                await conn.commit()
            except BaseException as e:
                try:
                    await asyncio.shield(conn.rollback())
                except sqlite3.Error:
                    log.exception("store.rollback_failed", path=str(self.path))
                if isinstance(e, sqlite3.Error):
                    log.error("store.write_failed", path=str(self.path), reason=str(e))
                    raise StoreError(self.path, "write", str(e)) from e
                raise

    def _submit_group(self, batch: list[tuple[WriteFn, asyncio.Future[Any]]]) -> None:
        """SQLite: the group runs as one call on aiosqlite's database thread.

        One hop there and one back (``call_soon_threadsafe``), whose callback
        answers the writers and hands the turn on: no task per group.
        """
        results: list[tuple[bool, Any]] = []
        conn = self._writer
        if conn is None:
            self._settle(batch, results, StoreError(self.path, "write",
                                                    "the store is open read-only"))
            return
        try:
            done = post_to_db_thread(
                conn, lambda db: run_group(db, batch, results, "BEGIN IMMEDIATE"))
        except ValueError as e:     # aiosqlite's "Connection closed"
            self._settle(batch, results, StoreError(self.path, "write", str(e)))
            return
        done.add_done_callback(lambda d: self._settle(
            batch, results, None if d.cancelled() else d.exception()))

    # ------------------------------------------------------------- reading

    # Reads run whole (execute, fetch, close) in one hop of the reader thread.
    # Spread over several hops, a read keeps its statement open between them,
    # and SQLite keeps the connection's read snapshot while any statement is
    # open: a read queued meanwhile by another task (or left behind by a
    # cancelled caller) saw the database as it was before writes that had
    # already returned.  One hop each, every read starts a fresh snapshot.

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        def read(db: sqlite3.Connection) -> list[sqlite3.Row]:
            cur = db.execute(sql, params)
            try:
                return list(cur.fetchall())
            finally:
                cur.close()

        try:
            return await read_on_thread(self._reader, read)
        except sqlite3.Error as e:
            raise StoreError(self.path, "read", str(e)) from e

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        def read(db: sqlite3.Connection) -> sqlite3.Row | None:
            cur = db.execute(sql, params)
            try:
                row: sqlite3.Row | None = cur.fetchone()
                return row
            finally:
                cur.close()

        try:
            return await read_on_thread(self._reader, read)
        except sqlite3.Error as e:
            raise StoreError(self.path, "read", str(e)) from e

    async def schema_version(self) -> int:
        row = await self.fetchone("PRAGMA user_version")
        return int(row[0]) if row else 0

    # ------------------------------------------------- read side (views.py)

    async def get_message(self, id: int) -> MessageView | None:
        return await get_message(self, id)

    async def list_messages(
        self,
        *,
        state: str | None = None,
        user: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[MessageView]:
        return await list_messages(
            self, state=state, user=user, since=since, until=until, limit=limit, offset=offset
        )

    async def queue_depth(self) -> dict[str, int]:
        rows = await self.fetchall("SELECT state, count(*) FROM messages GROUP BY state")
        depth = dict.fromkeys(MESSAGE_STATES, 0)
        depth.update({r[0]: int(r[1]) for r in rows})
        return depth

    async def parts_sent_per_modem(self, start: datetime, end: datetime) -> dict[str, int]:
        """SMS parts each modem submitted in [start, end): what a daily cap counts.

        Read once at start-up, so a restart does not forget today's count.
        Only parts recorded as sent count: one left ``submitting`` by a crash
        has no ``sent_at`` (its resend is counted when it is sent).
        """
        rows = await self.fetchall(
            "SELECT modem, COUNT(*) FROM message_parts WHERE modem IS NOT NULL "
            "AND sent_at >= ? AND sent_at < ? GROUP BY modem",
            (ts(start), ts(end)),
        )
        return {str(r[0]): int(r[1]) for r in rows}

    async def outbound_pending(self) -> tuple[int, int]:
        """(waiting, in flight): queued + scheduled, and sending + submitting.

        Each count reads only a partial index (messages_due, messages_node_inflight),
        so it stays cheap however much history the table holds: the daemon puts
        it in its systemd status line every few seconds.
        """
        row = await self.fetchone(
            "SELECT (SELECT count(*) FROM messages WHERE state IN ('queued', 'scheduled')),"
            " (SELECT count(*) FROM messages WHERE state IN ('sending', 'submitting'))"
        )
        return (int(row[0]), int(row[1])) if row is not None else (0, 0)

    # ----------------------------------------------------------- blocklist

    async def block(self, number: str, *, by: str | None, reason: str | None) -> None:
        """Block inbound messages from ``number`` (E.164 or an alphanumeric sender).

        ``reason=None`` keeps the reason of a number already blocked (blocking
        again must not erase why it was blocked), else "blocked by admin".
        """
        number = _clean_number(number)
        async with self.transaction() as db:
            await db.execute(
                "INSERT INTO blocklist (number, by, reason, created_at) "
                "VALUES (:n, :by, COALESCE(:reason, :default), :at) "
                "ON CONFLICT (number) DO UPDATE SET by = excluded.by, "
                "reason = COALESCE(:reason, blocklist.reason)",
                {"n": number, "by": by, "reason": reason, "default": DEFAULT_BLOCK_REASON,
                 "at": ts(utcnow())},
            )
        log.info("store.blocked", number=number, by=by)

    async def unblock(self, number: str) -> bool:
        """Remove ``number`` from the blocklist; False when it was not on it."""
        number = _clean_number(number)
        async with self.transaction() as db:
            cur = await db.execute("DELETE FROM blocklist WHERE number = ?", (number,))
            removed = cur.rowcount > 0
        log.info("store.unblocked", number=number, was_blocked=removed)
        return removed

    async def is_blocked(self, number: str) -> bool:
        row = await self.fetchone(
            "SELECT 1 FROM blocklist WHERE number = ?", (_clean_number(number),)
        )
        return row is not None

    async def blocked(self) -> list[dict[str, Any]]:
        rows = await self.fetchall(
            "SELECT number, by, reason, created_at FROM blocklist ORDER BY number"
        )
        return [dict(r) for r in rows]

    # ------------------------------------------------------------ opt-outs

    async def is_opted_out(self, number: str, did: str | None = None) -> bool:
        """Opted out of SMS from ``did`` (None: from any company number)."""
        if did is None:
            row = await self.fetchone("SELECT 1 FROM opt_outs WHERE number = ?", (number,))
        else:
            row = await self.fetchone(
                "SELECT 1 FROM opt_outs WHERE number = ? AND did IN (?, '')", (number, did)
            )
        return row is not None

    async def blocked_and_opted_out(
        self, numbers: list[str]
    ) -> tuple[list[str], list[tuple[str, str | None, str]]]:
        """Which of ``numbers`` are blocked, and (number, did, keyword) of their opt-outs:
        one read."""
        rows = await self.fetchall(
            "SELECT 'blocked', number, NULL, NULL FROM blocklist "
            "WHERE number IN (SELECT value FROM json_each(?1)) "
            "UNION ALL SELECT 'opted_out', number, did, keyword FROM opt_outs "
            "WHERE number IN (SELECT value FROM json_each(?1))",
            (json.dumps(numbers),),
        )
        return split_blocked(rows)

    async def opt_outs(self) -> list[dict[str, Any]]:
        rows = await self.fetchall(
            "SELECT number, did, keyword, created_at FROM opt_outs ORDER BY number"
        )
        return [dict(r) for r in rows]


def _clean_number(number: str) -> str:
    cleaned = number.strip()
    if not cleaned:
        raise ValidationError("the number should not be empty")
    return cleaned
