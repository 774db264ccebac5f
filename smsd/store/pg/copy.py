"""``smsd db copy``: a single-node SQLite database into an empty PostgreSQL one.

* The source is opened read-only (``mode=ro``) and read in one read
  transaction: a consistent snapshot even while its daemon keeps writing.
* The target must be migrated to the same version and empty (every table,
  ``nodes`` included); anything else is refused before a row is written.
* Everything is written in one transaction: a failure half-way leaves the
  target empty.  Identity sequences are moved past the copied ids, and each
  table's count in the target is checked against the source's before commit.
* Values keep their meaning: ISO 8601 text times become timestamptz, 0/1
  flags booleans (the mapping of smsd/store/pg/migrations/0001_core.sql).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from smsd.errors import DatabaseError, SchemaVersionError
from smsd.store.pg.connect import connect, redact
from smsd.store.pg.migrate import check_schema
from smsd.store.sqlite_io import migrations as sqlite_migrations

log = structlog.get_logger(__name__)

# Every table of the SQLite schema, parents before children (foreign keys).
# A migration that adds a table adds it here; a source table missing from this
# list is refused, never skipped.
COPY_TABLES = (
    "messages",
    "message_parts",
    "message_history",
    "inbound",
    "inbound_parts",
    "delivery_reports",
    "blocklist",
    "opt_outs",
    "conversations",
    "conversation_participants",
    "inbound_deliveries",
    "inbound_delivery_waits",
    # The usage counter (0006) as it stands: COPY fires no UPDATE/DELETE
    # trigger, so the copied messages do not count twice.
    "usage_months",
    "usage_zone",
    # The console's read marks (0007); after conversations, which they reference.
    "conversation_reads",
)
# Tables of the PostgreSQL schema only; they must be empty in the target too.
PG_ONLY_TABLES = ("nodes",)
# Rows handed to COPY at once: bounds memory on a large database.
BATCH_ROWS = 5000


def _to_time(value: Any) -> datetime | None:
    if value is None:
        return None
    dt = datetime.fromisoformat(str(value))
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _to_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _same(value: Any) -> Any:
    return value


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "timestamp with time zone": _to_time,
    "boolean": _to_bool,
}


def _open_source(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise DatabaseError(str(path), "open the source", "no such file")
    conn = sqlite3.connect(
        path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None,
        check_same_thread=False,
    )
    conn.execute("BEGIN")  # one snapshot for every table read below
    return conn


async def copy_sqlite_to_pg(source: Path, dsn: str) -> list[tuple[str, int]]:
    """Copy every table; the (table, rows) copied, in copy order."""
    target = redact(dsn)
    try:
        src = await asyncio.to_thread(_open_source, source)
    except sqlite3.Error as e:
        raise DatabaseError(str(source), "open the source", str(e)) from e
    try:
        return await _copy(src, source, dsn, target)
    except sqlite3.Error as e:
        raise DatabaseError(str(source), "read the source", str(e)) from e
    finally:
        src.close()


async def _copy(
    src: sqlite3.Connection, source: Path, dsn: str, target: str
) -> list[tuple[str, int]]:
    def q(sql: str) -> list[Any]:
        return src.execute(sql).fetchall()

    version = (await asyncio.to_thread(q, "PRAGMA user_version"))[0][0]
    expected = len(sqlite_migrations())
    if version != expected:
        raise SchemaVersionError(str(source), int(version), expected)
    tables = {r[0] for r in await asyncio.to_thread(
        q, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
    unknown = sorted(tables - set(COPY_TABLES))
    if unknown:
        raise DatabaseError(str(source), "copy", f"tables this smsd cannot copy: {unknown}")

    conn = await connect(dsn)
    try:
        await check_schema(conn, target)
        copied: list[tuple[str, int]] = []
        async with conn.transaction():
            for table in (*COPY_TABLES, *PG_ONLY_TABLES):
                if await conn.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{table}")'):
                    raise DatabaseError(
                        target, "copy", f"the target is not empty (table {table} has rows); "
                        "copy only into a freshly migrated database")
            for table in COPY_TABLES:
                copied.append((table, await _copy_table(src, conn, table, target)))
        log.info("store.pg.copied", source=str(source), database=target,
                 rows=sum(n for _, n in copied))
        return copied
    except asyncpg.PostgresError as e:
        raise DatabaseError(target, "copy", str(e)) from e
    finally:
        await conn.close()


async def _copy_table(src: sqlite3.Connection, conn: Any, table: str, target: str) -> int:
    cols = [r[1] for r in await asyncio.to_thread(
        lambda: src.execute(f'PRAGMA table_info("{table}")').fetchall())]
    types = {
        r["column_name"]: r["data_type"]
        for r in await conn.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = $1", table)
    }
    missing = [c for c in cols if c not in types]
    if missing:
        raise DatabaseError(target, "copy", f"table {table} has no columns {missing} here")
    convert = [_CONVERT.get(types[c], _same) for c in cols]
    col_list = ", ".join(f'"{c}"' for c in cols)
    cur = await asyncio.to_thread(src.execute, f'SELECT {col_list} FROM "{table}"')
    total = 0
    while True:
        rows = await asyncio.to_thread(cur.fetchmany, BATCH_ROWS)
        if not rows:
            break
        try:
            records = [tuple(f(v) for f, v in zip(convert, row, strict=True)) for row in rows]
        except ValueError as e:
            raise DatabaseError(
                target, "copy", f"table {table}: a value cannot be converted: {e}") from e
        await conn.copy_records_to_table(table, records=records, columns=cols)
        total += len(rows)
    source_count = (await asyncio.to_thread(
        lambda: src.execute(f'SELECT count(*) FROM "{table}"').fetchone()))[0]
    target_count = await conn.fetchval(f'SELECT count(*) FROM "{table}"')
    if not (source_count == total == target_count):
        raise DatabaseError(target, "copy", f"table {table}: {source_count} rows in the source, "
                            f"{total} read, {target_count} in the target")
    if "id" in cols and types.get("id") == "bigint":
        await conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f'coalesce((SELECT max(id) FROM "{table}"), 0) + 1, false)')
    return int(total)
