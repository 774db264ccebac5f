"""The PostgreSQL store: the same Store, its statements run over asyncpg.

Why it looks like this:

* Same interface, same statements.  ``PgStore`` is a :class:`Store`: the core
  calls ``write(fn)`` (also ``linger=True``), ``write_soon``, ``transaction()``,
  ``fetchall`` and ``fetchone`` exactly as on SQLite, and every statement is
  written once (see :mod:`smsd.store.pg.dialect` for the little that is
  rewritten).
* One writer connection per node, under the same writer's turn and group
  commit as SQLite (``smsd.store.group``): one node's writes never
  interleave.  Several nodes write concurrently; what must happen once
  across nodes is made so by the schema (unique keys, ``FOR UPDATE SKIP
  LOCKED`` claims), not by this turn.
* Readers use a pool, so the API's reads never wait behind a commit.
* ``synchronous_commit`` is the server's (on by default): a commit returned
  is on the server's disk, which is all an acknowledgement relies on.
* When the server is unreachable every read and write raises StoreError (the
  API answers 503, nothing is acknowledged); the writer connection is opened
  again on the next write, so sending resumes by itself when the server does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import asyncpg
import structlog

from smsd import __version__
from smsd.errors import DatabaseError
from smsd.store.pg.bridge import run_sync
from smsd.store.pg.conn import SERVER_SETTINGS, AsyncDb, SyncDb, setup
from smsd.store.pg.connect import (
    ACQUIRE_TIMEOUT_S,
    COMMAND_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    POOL_MAX_SIZE,
    POOL_MIN_SIZE,
    redact,
)
from smsd.store.pg.dialect import translate
from smsd.store.pg.migrate import check_schema, migrate, schema_version
from smsd.store.pg.nodes import (
    NODE_DEAD_AFTER_S,
    NodeRow,
    claim_modems,
    heartbeat,
    list_nodes,
)
from smsd.store.pg.poollog import route_pool_logs
from smsd.store.sqlite_io import StoreError, WriteFn, run_group
from smsd.store.store import Store
from smsd.store.submits import split_blocked
from smsd.store.writes import WORK_CHANNEL

log = structlog.get_logger(__name__)

# What a lost or refusing server looks like from asyncpg: its own errors, the
# socket's (OSError covers ConnectionError and TimeoutError) and a closed pool.
PG_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
)

# After the LISTEN connection is lost: how long before trying again (the
# dispatchers poll meanwhile, so a slower retry only costs latency).
LISTEN_RETRY_S = 2.0


async def _connect(dsn: str) -> Any:
    conn = await asyncpg.connect(
        dsn,
        timeout=CONNECT_TIMEOUT_S,
        command_timeout=COMMAND_TIMEOUT_S,
        server_settings=SERVER_SETTINGS,
    )
    await setup(conn)
    return conn


class PgStore(Store):
    """A Store on a shared PostgreSQL database (issue 18)."""

    dialect = "postgresql"
    db_errors = PG_ERRORS

    def __init__(self, dsn: str, writer: Any | None, pool: Any) -> None:
        # Store.__init__ is SQLite's (two aiosqlite connections): not called.
        self._init_writes(redact(dsn))
        self._dsn = dsn
        self._pg_writer = writer
        self._pool = pool
        self._readonly = writer is None
        # The writer connection runs one operation at a time: only whoever holds
        # the writer's turn (_turn: a transaction, or a group commit until its
        # writers are answered) uses it.

    @classmethod
    async def open_url(
        cls, dsn: str, *, readonly: bool = False, apply_migrations: bool = False
    ) -> PgStore:
        """Connect; migrate when asked (``smsd db migrate``, tests), else check the version.

        A daemon never migrates a shared database by itself: the other nodes
        may still run the old code.  It refuses a schema that is not exactly
        its own (SchemaVersionError says which way it differs).
        """
        target = redact(dsn)
        writer: Any | None = None
        pool: Any | None = None
        try:
            writer = await _connect(dsn)
            if apply_migrations and not readonly:
                await migrate(writer, target)
            else:
                await check_schema(writer, target)
            if readonly:
                await writer.close()
                writer = None
            route_pool_logs()   # its reconnect failures: structured events, not tracebacks
            pool = await asyncpg.create_pool(
                dsn,
                min_size=POOL_MIN_SIZE,
                max_size=POOL_MAX_SIZE,
                timeout=CONNECT_TIMEOUT_S,
                command_timeout=COMMAND_TIMEOUT_S,
                server_settings=SERVER_SETTINGS,
                init=setup,
            )
        except PG_ERRORS as e:
            if writer is not None:
                await writer.close()
            raise DatabaseError(target, "connect", str(e) or type(e).__name__) from e
        except BaseException:
            if writer is not None:
                await writer.close()
            raise
        log.info("store.opened", database=target, readonly=readonly)
        return cls(dsn, writer, pool)

    async def close(self) -> None:
        log.info("store.closing", database=self.path, commits=self.commits, lingered=self.lingered)
        if self._pending:
            with suppress(StoreError):
                await self._flush_pending()
        async with self._turn:
            if self._pg_writer is not None:
                with suppress(*PG_ERRORS):
                    await self._pg_writer.close()
                self._pg_writer = None
        with suppress(*PG_ERRORS):
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await self._pool.close()

    # ------------------------------------------------------------- writing

    async def _writer_conn(self) -> Any:
        """The writer connection, opened again after the server dropped it."""
        if self._readonly:
            raise StoreError(self.path, "write", "the store is open read-only")
        conn = self._pg_writer
        if conn is None or conn.is_closed():
            try:
                conn = await _connect(self._dsn)
            except PG_ERRORS as e:
                raise StoreError(self.path, "connect", str(e) or type(e).__name__) from e
            self._pg_writer = conn
            log.info("store.reconnected", database=self.path)
        return conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """One write transaction on the node's writer connection (see Store.transaction)."""
        async with self._turn:
            conn = await self._writer_conn()
            try:
                await conn.execute("BEGIN")
            except PG_ERRORS as e:
                self._drop_writer(conn)
                raise StoreError(self.path, "begin a transaction", str(e)) from e
            try:
                yield AsyncDb(conn)
                await conn.execute("COMMIT")
            except BaseException as e:
                if isinstance(e, asyncio.CancelledError):
                    # A statement may still be running: the server rolls the
                    # transaction back when the connection goes.
                    self._drop_writer(conn)
                elif not conn.is_closed() and conn.is_in_transaction():
                    try:
                        await asyncio.shield(conn.execute("ROLLBACK"))
                    except PG_ERRORS:
                        log.warning("store.rollback_failed", database=self.path)
                        self._drop_writer(conn)
                if isinstance(e, PG_ERRORS):
                    log.error("store.write_failed", database=self.path, reason=str(e))
                    raise StoreError(self.path, "write", str(e)) from e
                raise

    def _submit_group(self, batch: list[tuple[WriteFn, asyncio.Future[Any]]]) -> None:
        """PostgreSQL: the group's statements are awaited over asyncpg, so it is a task."""
        results: list[tuple[bool, Any]] = []
        task = asyncio.ensure_future(self._group_commit(batch, results))
        self._runners.add(task)

        def finished(t: asyncio.Future[None]) -> None:
            self._runners.discard(t)
            error = (StoreError(self.path, "write", "interrupted") if t.cancelled()
                     else t.exception())
            self._settle(batch, results, error)

        task.add_done_callback(finished)

    async def _group_commit(
        self, batch: list[tuple[WriteFn, asyncio.Future[Any]]], results: list[tuple[bool, Any]]
    ) -> None:
        conn = await self._writer_conn()
        try:
            await run_sync(run_group, SyncDb(conn), batch, results, "BEGIN")
        except BaseException:
            # BEGIN, COMMIT or ROLLBACK itself failed, or we were cancelled
            # mid-statement: the connection's state is unknown, so it goes
            # (the server rolls back what it had not committed).
            self._drop_writer(conn)
            raise

    def _drop_writer(self, conn: Any) -> None:
        """Close the writer connection at once; the next write opens a new one."""
        if not conn.is_closed():
            conn.terminate()
        if self._pg_writer is conn:
            self._pg_writer = None

    # ------------------------------------------------------------- reading

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        stmt = translate(sql)
        try:
            return list(await self._pool.fetch(stmt.sql, *stmt.args(params),
                                               timeout=ACQUIRE_TIMEOUT_S))
        except PG_ERRORS as e:
            raise StoreError(self.path, "read", str(e) or type(e).__name__) from e

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any:
        stmt = translate(sql)
        try:
            return await self._pool.fetchrow(stmt.sql, *stmt.args(params),
                                             timeout=ACQUIRE_TIMEOUT_S)
        except PG_ERRORS as e:
            raise StoreError(self.path, "read", str(e) or type(e).__name__) from e

    async def schema_version(self) -> int:
        try:
            async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                return await schema_version(conn)
        except PG_ERRORS as e:
            raise StoreError(self.path, "read", str(e)) from e

    # ------------------------------------------- statements in PostgreSQL's words

    async def blocked_and_opted_out(
        self, numbers: list[str]
    ) -> tuple[list[str], list[tuple[str, str | None, str]]]:
        rows = await self._pg_fetch(
            "SELECT 'blocked', number, NULL, NULL FROM blocklist "
            "WHERE number = ANY($1::text[]) "
            "UNION ALL SELECT 'opted_out', number, did, keyword FROM opt_outs "
            "WHERE number = ANY($1::text[])",
            numbers,
        )
        return split_blocked(rows)

    async def _pg_fetch(self, sql: str, *args: Any) -> list[Any]:
        """A read written in PostgreSQL's own SQL ($n parameters, untranslated)."""
        try:
            return list(await self._pool.fetch(sql, *args, timeout=ACQUIRE_TIMEOUT_S))
        except PG_ERRORS as e:
            raise StoreError(self.path, "read", str(e) or type(e).__name__) from e

    # ------------------------------------------------------ nodes and wake-ups

    async def heartbeat(
        self, node: str, gateways: list[Any], modems: list[Any], *, starting: bool = False
    ) -> None:
        """This node's row in ``nodes``: alive now, serving these gateways and modems."""
        try:
            async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                await heartbeat(conn, node, __version__, gateways, modems, starting=starting)
        except PG_ERRORS as e:
            raise StoreError(self.path, "write the heartbeat", str(e) or type(e).__name__) from e

    async def claim_modems(self, node: str, modem_ids: list[str],
                           dead_after_s: float) -> list[tuple[str, str]]:
        """(modem id, other node) for each id another live node declares; none: claimed."""
        try:
            async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                return await claim_modems(conn, node, __version__, modem_ids, dead_after_s)
        except PG_ERRORS as e:
            raise StoreError(self.path, "claim the modem ids", str(e) or type(e).__name__) from e

    async def nodes(self, dead_after_s: float = NODE_DEAD_AFTER_S) -> list[NodeRow]:
        """Every node; alive when its heartbeat is within ``dead_after_s`` (config
        ``node_dead_after_s``, the same limit the dispatchers' take-over uses)."""
        try:
            async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                return await list_nodes(conn, dead_after_s)
        except PG_ERRORS as e:
            raise StoreError(self.path, "read", str(e) or type(e).__name__) from e

    async def listen_work(self, wake: Callable[[], None], stop: asyncio.Event) -> None:
        """Call ``wake`` on every NOTIFY of new work until ``stop``; reconnects when lost.

        A dedicated connection (a pooled one would lose its LISTEN on release).
        While the server is unreachable the dispatchers still poll, so nothing
        waits longer than their idle poll.
        """
        while not stop.is_set():
            conn: Any | None = None
            try:
                conn = await _connect(self._dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, gone=lost: gone.set())
                await conn.add_listener(WORK_CHANNEL, lambda *_: wake())
                log.info("store.listening", database=self.path, channel=WORK_CHANNEL)
                wake()  # anything committed while we were not listening
                waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())}
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waits:
                        w.cancel()
            except PG_ERRORS as e:
                log.warning("store.listen_failed", database=self.path, reason=str(e))
            finally:
                if conn is not None:
                    with suppress(*PG_ERRORS):
                        await conn.close()
            if not stop.is_set():
                with suppress(TimeoutError):
                    async with asyncio.timeout(LISTEN_RETRY_S):
                        await stop.wait()
