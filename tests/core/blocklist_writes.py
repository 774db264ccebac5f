"""Store writes whose effect a test can count: blocklist rows (group, turn, linger tests)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from smsd.store import Store


def insert(number: str) -> Callable[[sqlite3.Connection], int]:
    """A write returning how many blocklist rows it saw (its own included), so each
    run's answer is checkable."""
    def fn(db: sqlite3.Connection) -> int:
        db.execute("INSERT INTO blocklist (number, reason, created_at) "
                   "VALUES (?, 'x', '2026-11-25 13:00Z')", (number,))
        return int(db.execute("SELECT COUNT(*) FROM blocklist").fetchone()[0])
    return fn


async def numbers(store: Store) -> list[str]:
    return [r["number"] for r in await store.blocked()]
