"""Databases as an older smsd left them: the migrations before a given one, and rows
written the way that version wrote them."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import datetime
from pathlib import Path

from smsd.store.sqlite_io import MIGRATIONS_DIR
from smsd.store.timefmt import ts
from smsd.store.usage import month_label, record_submit


def migrations_before(tmp_path: Path, number: int) -> Path:
    """A copy of the SQLite migrations numbered below ``number`` (for Store.open's
    ``migrations_dir``): the schema an smsd of that age wrote."""
    old = tmp_path / f"migrations-{number - 1:04d}"
    old.mkdir()
    for f in sorted(MIGRATIONS_DIR.iterdir()):
        if f.name < f"{number:04d}":
            shutil.copy(f, old / f.name)
    return old


def submit_as_version_9(db: sqlite3.Connection, user: str, recipient: str, text: str,
                        parts: int, now: datetime, zone: str) -> int:
    """One message submitted the way smsd up to schema version 9 wrote it (inside a
    ``Store.write``): the message without the columns of 0010, its pending parts,
    its first history row in message_history, and the user's usage counted.
    Returns its id."""
    now_s = ts(now)
    mid = int(db.execute(
        "INSERT INTO messages (user, recipient, text, encoding, parts, state, created_at, "
        "updated_at, next_attempt_at, origin, usage_month) "
        "VALUES (?, ?, ?, 'gsm7', ?, 'queued', ?, ?, ?, 'api', ?) RETURNING id",
        (user, recipient, text, parts, now_s, now_s, now_s, month_label(now, zone)),
    ).fetchone()[0])
    db.executemany("INSERT INTO message_parts (message_id, part) VALUES (?, ?)",
                   [(mid, p) for p in range(1, parts + 1)])
    db.execute("INSERT INTO message_history (message_id, at, state, detail) "
               "VALUES (?, ?, 'queued', 'origin=api')", (mid, now_s))
    record_submit(db, user, now, zone, parts)
    return mid
