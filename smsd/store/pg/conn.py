"""asyncpg connections that look like the sqlite3 / aiosqlite ones the core uses.

The core writes ``db.execute(sql, params).fetchone()`` inside ``Store.write``
(synchronous, sqlite3's shape) and ``await db.execute(...)`` inside
``Store.transaction`` (aiosqlite's shape).  :class:`SyncDb` and
:class:`AsyncDb` give asyncpg both shapes, so each statement is written once.

Values keep the SQLite store's Python types, so the core never asks which
backend it runs on (codecs installed on every connection by :func:`setup`):

* ``timestamptz`` reads back as smsd's timestamp text
  (``2026-11-25T13:04:26.123456+00:00``, :func:`smsd.store.timefmt.ts`) and
  accepts that text or an aware datetime;
* ``boolean`` accepts 0/1 as well as True/False;
* ``numeric`` (PostgreSQL's ``sum`` of a ``bigint``) reads back as an int
  when whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

from smsd.store.pg.bridge import wait
from smsd.store.pg.dialect import returns_rows, status_count, translate
from smsd.store.timefmt import ts

Params = Sequence[Any] | Mapping[str, Any]


def _ts_in(value: Any) -> str:
    if isinstance(value, datetime):
        return ts(value)
    return str(value)


def _ts_out(text: str) -> str:
    """PostgreSQL's ISO output in UTC ("2026-11-25 13:04:26.5+00") as smsd's format."""
    date, _, rest = text.partition(" ")
    zone_at = max(rest.rfind("+"), rest.rfind("-"))
    clock, zone = rest[:zone_at], rest[zone_at:]
    whole, _, frac = clock.partition(".")
    if len(zone) == 3:
        zone += ":00"
    return f"{date}T{whole}.{frac.ljust(6, '0')}{zone}"


def _bool_in(value: Any) -> str:
    return "t" if value else "f"


def _bool_out(text: str) -> bool:
    return text == "t"


def _numeric_out(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


async def setup(conn: Any) -> None:
    """Install smsd's codecs on a new asyncpg connection (pool ``init`` hook)."""
    await conn.set_type_codec(
        "timestamptz", schema="pg_catalog", encoder=_ts_in, decoder=_ts_out, format="text"
    )
    await conn.set_type_codec(
        "bool", schema="pg_catalog", encoder=_bool_in, decoder=_bool_out, format="text"
    )
    await conn.set_type_codec(
        "numeric", schema="pg_catalog", encoder=str, decoder=_numeric_out, format="text"
    )


# Session settings of every connection: timestamps are read in UTC, which
# _ts_out relies on; the name shows in pg_stat_activity.
SERVER_SETTINGS = {"timezone": "UTC", "datestyle": "ISO, YMD", "application_name": "smsd"}


class Cursor:
    """The rows and row count of one statement, with sqlite3's cursor methods."""

    def __init__(self, rows: list[Any], rowcount: int, lastrowid: int | None = None) -> None:
        self._rows = rows
        self._at = 0
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    def fetchone(self) -> Any:
        if self._at >= len(self._rows):
            return None
        row = self._rows[self._at]
        self._at += 1
        return row

    def fetchall(self) -> list[Any]:
        rows, self._at = self._rows[self._at :], len(self._rows)
        return rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


async def run(conn: Any, sql: str, params: Params = ()) -> Cursor:
    """One statement on ``conn``: rows when it returns rows, else the count touched."""
    stmt = translate(sql)
    args = stmt.args(params)
    if returns_rows(sql):
        rows = await conn.fetch(stmt.sql, *args)
        return Cursor(list(rows), len(rows))
    status = await conn.execute(stmt.sql, *args)
    return Cursor([], status_count(status))


async def run_many(conn: Any, sql: str, seq: Iterable[Params]) -> Cursor:
    stmt = translate(sql)
    batch = [stmt.args(p) for p in seq]
    if batch:
        await conn.executemany(stmt.sql, batch)
    return Cursor([], len(batch))


class SyncDb:
    """sqlite3.Connection's shape over asyncpg, for functions run by ``run_sync``."""

    dialect = "postgresql"

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        return wait(run(self._conn, sql, params))

    def executemany(self, sql: str, seq: Iterable[Params]) -> Cursor:
        return wait(run_many(self._conn, sql, seq))

    @property
    def in_transaction(self) -> bool:
        return bool(self._conn.is_in_transaction())

    def rollback(self) -> None:
        if self.in_transaction:
            wait(self._conn.execute("ROLLBACK"))


class AsyncCursor:
    """aiosqlite's cursor shape (awaited fetches) over a :class:`Cursor`."""

    def __init__(self, cur: Cursor) -> None:
        self._cur = cur
        self.rowcount = cur.rowcount
        self.lastrowid = cur.lastrowid

    async def fetchone(self) -> Any:
        return self._cur.fetchone()

    async def fetchall(self) -> list[Any]:
        return self._cur.fetchall()


class _Pending:
    """``db.execute(...)``: awaitable, or ``async with``, as aiosqlite's is."""

    def __init__(self, conn: Any, sql: str, params: Params) -> None:
        self._coro = run(conn, sql, params)

    def __await__(self) -> Any:
        cur = yield from self._coro.__await__()
        return AsyncCursor(cur)

    async def __aenter__(self) -> AsyncCursor:
        return AsyncCursor(await self._coro)

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


class AsyncDb:
    """aiosqlite.Connection's shape over asyncpg, for ``Store.transaction``."""

    dialect = "postgresql"

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params = ()) -> _Pending:
        return _Pending(self._conn, sql, params)

    async def executemany(self, sql: str, seq: Iterable[Params]) -> AsyncCursor:
        return AsyncCursor(await run_many(self._conn, sql, seq))

    async def execute_fetchall(self, sql: str, params: Params = ()) -> list[Any]:
        return (await run(self._conn, sql, params)).fetchall()
