"""The dispatcher's queue: claiming due messages, expiring stale ones, finding orphans.

The database is the queue (smsd.core.dispatcher): due work is read through
the ``messages_due`` index (state queued/scheduled, ``next_attempt_at``
passed) and moved to 'sending' in the same write.  Write functions here run
inside the caller's ``Store.write`` (on the database thread); the reads are
one query each.  Which rows this node may take (``served_here``) and the
claim's row lock (``claim_lock``) are the backends' differences, in
smsd.store.writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from smsd.store.store import Store
from smsd.store.timefmt import from_ts
from smsd.store.writes import claim_lock, served_here

# When a message became due: its requested time, or its creation when it was
# submitted for "now" (or for a time already past).  ISO text compares as time.
DUE_SINCE = ("CASE WHEN send_at IS NOT NULL AND send_at > created_at THEN send_at "
             "ELSE created_at END")


@dataclass(frozen=True)
class DueMessage:
    """A message claimed for sending (or found too old to send)."""

    id: int
    user: str | None
    sender: str | None
    did: str | None
    recipient: str
    text: str
    encoding: str
    parts: int
    attempts: int
    gateway: str | None
    error: str | None
    due_since: str   # store text: when it became due (DUE_SINCE)


@dataclass(frozen=True)
class StaleMessage:
    """A waiting message past the expiry cutoff: what its 'expired' needs."""

    id: int
    user: str | None
    recipient: str
    gateway: str | None
    error: str | None   # the last attempt's error, if any


def _due(r: Any) -> DueMessage:
    return DueMessage(
        id=int(r["id"]), user=r["user"], sender=r["sender"], did=r["did"],
        recipient=r["recipient"], text=r["text"], encoding=r["encoding"],
        parts=int(r["parts"]), attempts=int(r["attempts"]), gateway=r["gateway"],
        error=r["error"], due_since=r["due_since"],
    )


def _stale(r: Any) -> StaleMessage:
    return StaleMessage(id=int(r["id"]), user=r["user"], recipient=r["recipient"],
                        gateway=r["gateway"], error=r["error"])


def claim_due(
    db: sqlite3.Connection, now_s: str, limit: int, *, node: str | None,
    dead_after_s: float, cutoff_s: str | None, expired_error: Callable[[str | None], str],
) -> tuple[list[DueMessage], list[StaleMessage]]:
    """Move up to ``limit`` due messages that ``node`` may take (:func:`served_here`,
    other nodes dead after ``dead_after_s``) to 'sending'; those due at or before
    ``cutoff_s`` are expired instead (``expired_error``: their error text).

    Returns (claimed, expired).  Runs inside the caller's write.
    """
    cond, params = served_here(getattr(db, "dialect", "sqlite"), node, dead_after_s)
    due = db.execute(
        "SELECT id, user, sender, did, recipient, text, encoding, parts, attempts, "
        f"gateway, error, {DUE_SINCE} AS due_since "
        "FROM messages WHERE state IN ('queued', 'scheduled') AND next_attempt_at <= ? "
        f"AND {cond} ORDER BY next_attempt_at, id LIMIT ?" + claim_lock(db),
        (now_s, *params, limit),
    ).fetchall()
    rows: list[DueMessage] = []
    expired: list[StaleMessage] = []
    for r in due:
        if cutoff_s is not None and r["due_since"] <= cutoff_s:
            expired.append(_stale(r))
        else:
            rows.append(_due(r))
    write_expired(db, expired, now_s, expired_error)
    if rows:
        # The 'sending' history row stays in the message (smsd.store.history:
        # a waiting message has none of its attempt's rows there yet).
        db.executemany(
            "UPDATE messages SET state = 'sending', updated_at = ?, node = ?, "
            "hist_sending_at = ? WHERE id = ?",
            [(now_s, node, now_s, r.id) for r in rows],
        )
    return rows, expired


def expire_stale(db: sqlite3.Connection, cutoff_s: str, now_s: str, limit: int,
                 error: Callable[[str | None], str]) -> list[StaleMessage]:
    """Expire up to ``limit`` waiting messages due at or before ``cutoff_s`` (one batch)."""
    rows = [_stale(r) for r in db.execute(
        "SELECT id, user, recipient, gateway, error FROM messages "
        f"WHERE state IN ('queued', 'scheduled') AND {DUE_SINCE} <= ? LIMIT ?",
        (cutoff_s, limit),
    ).fetchall()]
    write_expired(db, rows, now_s, error)
    return rows


def write_expired(db: sqlite3.Connection, rows: Sequence[StaleMessage], now_s: str,
                  error: Callable[[str | None], str]) -> None:
    """'expired' with ``error(last error)``; the state guard keeps in-flight messages safe.

    A waiting message keeps no attempt's history in its row (every way back
    to 'queued' moved it to message_history: smsd.store.history), so the
    'expired' row simply follows the table's rows.
    """
    if not rows:
        return
    errors = [(r.id, error(r.error)) for r in rows]
    db.executemany(
        "UPDATE messages SET state = 'expired', error = ?, updated_at = ? "
        "WHERE id = ? AND state IN ('queued', 'scheduled')",
        [(err, now_s, mid) for mid, err in errors],
    )
    db.executemany(
        "UPDATE message_parts SET state = 'expired' WHERE message_id = ? "
        "AND state IN ('pending', 'submitting')",
        [(r.id,) for r in rows],
    )
    db.executemany(
        "INSERT INTO message_history (message_id, at, state, detail) "
        "VALUES (?, ?, 'expired', ?)",
        [(mid, now_s, err) for mid, err in errors],
    )


async def in_flight_since(store: Store, cutoff_s: str, node: str | None) -> list[int]:
    """Ids of messages in sending/submitting not updated since ``cutoff_s``.

    With ``node`` (a shared PostgreSQL store), only that node's own rows (and
    rows of no node): the others' are theirs while they live.
    """
    if node is None:
        rows = await store.fetchall(
            "SELECT id FROM messages WHERE state IN ('sending', 'submitting') "
            "AND updated_at < ?",
            (cutoff_s,),
        )
    else:
        rows = await store.fetchall(
            "SELECT id FROM messages WHERE state IN ('sending', 'submitting') "
            "AND updated_at < ? AND (node = ? OR node IS NULL)",
            (cutoff_s, node),
        )
    return [int(r[0]) for r in rows]


async def next_due(store: Store, node: str | None,
                   dead_after_s: float) -> tuple[datetime | None, datetime | None]:
    """(when the next message this node may claim is due, when the next of any node is)."""
    here, params = served_here(store.dialect, node, dead_after_s)
    if here == "TRUE":
        # One node serves every row.  A plain MIN lets SQLite read it off the end
        # of the due index; inside a CASE it scanned the whole index on every
        # wake (15 ms per originate with 100,000 messages this month, issue 17).
        row = await store.fetchone(
            "SELECT MIN(next_attempt_at) FROM messages WHERE state IN ('queued', 'scheduled')")
        first = None if row is None else from_ts(row[0])
        return first, first
    # Two subqueries rather than MIN(CASE ...): each can walk the due index in
    # order and stop at its first row.
    row = await store.fetchone(
        "SELECT (SELECT MIN(next_attempt_at) FROM messages "
        f"WHERE state IN ('queued', 'scheduled') AND {here}), "
        "(SELECT MIN(next_attempt_at) FROM messages WHERE state IN ('queued', 'scheduled'))",
        params,
    )
    return (None, None) if row is None else (from_ts(row[0]), from_ts(row[1]))
