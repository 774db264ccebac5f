"""PostgreSQL schema versions: applied by ``smsd db migrate``, checked at start.

Versioned like the SQLite store: one ``NNNN_name.sql`` per version, the same
number and name as ``smsd/store/migrations`` (tests/store/test_pg_migrate.py
holds the two lists equal), each applied in its own transaction.  The version
is a row per applied file in ``schema_version`` (SQLite's PRAGMA user_version).

Several nodes may run ``smsd db migrate`` at once: each transaction first
takes a transaction-scoped advisory lock and reads the version again under
it, so a version is applied exactly once.  A daemon never migrates by itself
on PostgreSQL (other nodes may still run the old code); it checks that the
schema is exactly its own and says which way it differs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from smsd import __version__
from smsd.errors import DatabaseError, SchemaVersionError, SmsdError

log = structlog.get_logger(__name__)

PG_MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^(\d{4})_[A-Za-z0-9_]+\.sql$")

# Advisory-lock namespace of smsd (the first key of pg_advisory_lock(int, int)),
# so smsd's locks never collide with another application's on the same server.
LOCK_NAMESPACE = 0x534D5344  # "SMSD"
# Second key of the migration lock.  Node locks use hashtext(node) instead.
MIGRATION_LOCK_KEY = 1

_CREATE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version      integer PRIMARY KEY,
    name         text NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    smsd_version text NOT NULL
)
"""


def pg_migrations(directory: Path = PG_MIGRATIONS_DIR) -> list[tuple[int, Path]]:
    """Every ``NNNN_name.sql`` in order; numbering must run 1, 2, 3 ... without gaps."""
    found = sorted(
        (int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))
    )
    for expected, (number, p) in enumerate(found, start=1):
        if number != expected:
            raise SmsdError(
                f"migration {p.name}: expected number {expected:04d} (gap or duplicate)")
    return found


async def schema_version(conn: Any) -> int:
    """The version of the database on ``conn`` (0 when smsd never migrated it)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    value = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
    return int(value)


async def check_schema(conn: Any, target: str, directory: Path = PG_MIGRATIONS_DIR) -> int:
    """The version, when it is exactly this smsd's; SchemaVersionError otherwise."""
    expected = len(pg_migrations(directory))
    found = await schema_version(conn)
    if found != expected:
        raise SchemaVersionError(target, found, expected)
    return found


async def migrate(conn: Any, target: str, directory: Path = PG_MIGRATIONS_DIR) -> int:
    """Apply every missing version, each in its own transaction; the final version.

    Refuses (SchemaVersionError) a database newer than this smsd knows.
    """
    known = pg_migrations(directory)
    try:
        await conn.execute(_CREATE_VERSION_TABLE)
        for number, file in known:
            sql = file.read_text(encoding="utf-8")
            async with conn.transaction():
                await conn.execute(
                    "SELECT pg_advisory_xact_lock($1, $2)", LOCK_NAMESPACE, MIGRATION_LOCK_KEY
                )
                current = await schema_version(conn)
                if current > len(known):
                    raise SchemaVersionError(target, current, len(known))
                if number <= current:
                    continue
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_version (version, name, smsd_version) VALUES ($1, $2, $3)",
                    number, file.name, __version__,
                )
            log.info("store.pg.migrated", database=target, version=number, migration=file.name)
        # Nothing to apply still refuses a newer database.
        current = await schema_version(conn)
        if current > len(known):
            raise SchemaVersionError(target, current, len(known))
        return current
    except asyncpg.PostgresError as e:
        raise DatabaseError(target, "migrate", str(e)) from e
