"""The rows a submit writes: its messages, their parts and their history.

smsd.core.outbox decides everything about a submit (recipients, sender,
quota, billable parts) and calls these inside its own ``Store.write``, one per
chunk of recipients, with the ids from smsd.store.writes.new_message_ids and
the usage counter of smsd.store.usage moved in the same transaction.  Rows
are streamed into ``executemany``: a chunk's rows are never one list.

A small submit also reads its recipients' blocklist entries and opt-outs
there (:func:`screen_numbers`), in the transaction that inserts the accepted
ones: no read hop of its own before the write (issue 17), and nothing can
block or opt out a number between the check and the insert.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

# Most numbers screen_numbers looks up in one statement.  Its IN lists are
# padded to a power of two (the last number repeated), so the backends
# prepare a handful of statement texts (1, 2, 4 ... 128), not one per size.
SCREEN_MAX = 128


class NewMessage(NamedTuple):
    """One outbound message as inserted (the column order of the INSERT)."""

    id: int
    user: str | None
    sender: str | None
    did: str | None
    recipient: str
    text: str
    encoding: str
    parts: int
    state: str                  # 'queued', or 'scheduled' for a later send_at
    send_at: str | None
    created_at: str
    updated_at: str
    next_attempt_at: str
    origin: str
    conversation_id: int | None
    cost_billable: int          # parts beyond the user's package, fixed now
    usage_month: str            # smsd.store.usage.month_label


def insert_messages(db: sqlite3.Connection, messages: Iterable[NewMessage]) -> None:
    """Insert ``messages``; each keeps its first history row ('queued' or
    'scheduled', origin=...) in its own ``hist_queued`` (smsd.store.history)."""
    db.executemany(
        "INSERT INTO messages (id, user, sender, did, recipient, text, encoding, parts, "
        "state, send_at, created_at, updated_at, next_attempt_at, origin, "
        "conversation_id, cost_billable, usage_month, hist_queued) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        ((*m, m.state) for m in messages),
    )


def insert_parts_and_history(db: sqlite3.Connection, ids: Sequence[int], parts: int,
                             state: str, now_s: str,
                             notes: Iterable[tuple[int, str]] = ()) -> None:
    """``parts`` pending parts per message, then history rows for its ``notes``
    (message id, detail: the warnings it was accepted with).

    The first history line (``state``, ``origin=<origin>`` at ``now_s``) is
    not a row: insert_messages kept it in the message (smsd.store.history).
    """
    db.executemany(
        "INSERT INTO message_parts (message_id, part) VALUES (?, ?)",
        ((i, p) for i in ids for p in range(1, parts + 1)),
    )
    db.executemany(
        "INSERT INTO message_history (message_id, at, state, detail) VALUES (?,?,?,?)",
        ((i, now_s, state, detail) for i, detail in notes),
    )


def screen_numbers(
    db: sqlite3.Connection, numbers: Sequence[str]
) -> tuple[list[str], list[tuple[str, str | None, str]]]:
    """Which of ``numbers`` (at most SCREEN_MAX) are on the blocklist, and the
    (number, did, keyword) of their opt-outs: one statement, inside the caller's write.

    The same answer as ``Store.blocked_and_opted_out``, which is the separate
    read that bigger submits make before their chunked writes.
    """
    if not numbers:
        return [], []
    if len(numbers) > SCREEN_MAX:
        raise ValueError(f"screen_numbers takes at most {SCREEN_MAX} numbers")
    size = 1 << (len(numbers) - 1).bit_length()
    padded = [*numbers, *[numbers[-1]] * (size - len(numbers))]
    marks = ",".join("?" * size)
    rows: list[Any] = db.execute(
        f"SELECT 'blocked', number, NULL, NULL FROM blocklist WHERE number IN ({marks}) "
        f"UNION ALL SELECT 'opted_out', number, did, keyword FROM opt_outs "
        f"WHERE number IN ({marks})",
        padded * 2,
    ).fetchall()
    return split_blocked(rows)


def split_blocked(
    rows: Sequence[Any],
) -> tuple[list[str], list[tuple[str, str | None, str]]]:
    """Rows ('blocked' | 'opted_out', number, did, keyword) as (blocked numbers, opt-outs):
    the answer of screen_numbers and of the stores' ``blocked_and_opted_out``."""
    blocked = [str(r[1]) for r in rows if r[0] == "blocked"]
    return blocked, [(str(r[1]), r[2], str(r[3])) for r in rows if r[0] != "blocked"]
