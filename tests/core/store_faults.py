"""Make the store refuse writes, on either backend, as a full disk does.

SQLite: the database may not grow by one more page (``max_page_count``), so
the next write fails with "database or disk is full".  PostgreSQL: the
writer's session turns read-only, so the next write fails with "cannot
execute ... in a read-only transaction".  Reads keep working in both.
"""

from __future__ import annotations

import sqlite3

from smsd.store import Store


async def refuse_writes(store: Store) -> None:
    async with store.transaction() as db:
        if store.dialect == "postgresql":
            await db.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            return
        async with db.execute("PRAGMA page_count") as cur:
            row = await cur.fetchone()
        assert row is not None
        await db.execute(f"PRAGMA max_page_count = {row[0]}")


async def allow_writes(store: Store) -> None:
    async with store.transaction() as db:
        if store.dialect == "postgresql":
            await db.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
        else:
            await db.execute("PRAGMA max_page_count = 1073741823")


def more_than_fits(db: sqlite3.Connection) -> None:
    """A write too big for a store that refuses to grow: its whole group fails."""
    db.executemany(
        "INSERT INTO blocklist (number, reason, created_at) "
        "VALUES (?, ?, '2026-11-25 13:00Z')",
        [(f"+{i}", "x" * 500) for i in range(2000)],
    )
