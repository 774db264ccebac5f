"""The state writes of one send attempt: its parts as they go, and how it ends.

A part is marked 'submitting' (committed before its PDU leaves), 'pending'
again when it never left, and 'sent' (riding on the message's next write);
the attempt ends queued again, failed, or sent (smsd.core.dispatcher decides
which and publishes the change once the write returned).  Each function runs
on the store's database thread inside one ``Store.write`` (or ``write_soon``),
so it only touches the database.
"""

from __future__ import annotations

import sqlite3

from smsd.store.history import CLEAR_ATTEMPT, flush, sent_detail

# A message queued again is sent whole: its parts forget the last attempt.
RESET_PARTS_SQL = (
    "UPDATE message_parts SET state = 'pending', modem = NULL, reference = NULL, "
    "sent_at = NULL WHERE message_id = ?"
)


# --- parts -----------------------------------------------------------------------------


def mark_submitting(db: sqlite3.Connection, message_id: int, part: int, now_s: str,
                    *, first: bool) -> None:
    """Part ``part`` is about to be submitted; the ``first`` one moves the message too.

    The first 'submitting' of an attempt is kept in the message's row; another
    one (a part that never left, handed to the next modem) is a history row
    after the ones before it (smsd.store.history).
    """
    db.execute(
        "INSERT INTO message_parts (message_id, part, state) VALUES (?, ?, 'submitting') "
        "ON CONFLICT (message_id, part) DO UPDATE SET state = 'submitting'",
        (message_id, part),
    )
    if first:
        cur = db.execute(
            "UPDATE messages SET state = 'submitting', updated_at = ?, hist_submitting_at = ? "
            "WHERE id = ? AND state = 'sending' AND hist_submitting_at IS NULL",
            (now_s, now_s, message_id),
        )
        if cur.rowcount == 1:
            return
        # Not the attempt's first (or not 'sending' at all): an explicit row,
        # after the attempt's rows so far.
        flush(db, message_id)
        db.execute(
            f"UPDATE messages SET {CLEAR_ATTEMPT}, "
            "state = CASE WHEN state = 'sending' THEN 'submitting' ELSE state END, "
            "updated_at = CASE WHEN state = 'sending' THEN ? ELSE updated_at END "
            "WHERE id = ?",
            (now_s, message_id),
        )
        db.execute(
            "INSERT INTO message_history (message_id, at, state, detail) "
            "VALUES (?, ?, 'submitting', NULL)",
            (message_id, now_s),
        )


def mark_not_sent(db: sqlite3.Connection, message_id: int, part: int, now_s: str) -> None:
    """The part never left: pending again, and the message back to 'sending'."""
    db.execute(
        "UPDATE message_parts SET state = 'pending' WHERE message_id = ? AND part = ?",
        (message_id, part),
    )
    db.execute(
        "UPDATE messages SET state = 'sending', updated_at = ? "
        "WHERE id = ? AND state = 'submitting'",
        (now_s, message_id),
    )


def mark_part_sent(db: sqlite3.Connection, message_id: int, part: int, *, modem: str | None,
                   reference: int | None, now_s: str) -> None:
    """The part was accepted (by ``modem`` with TP-MR ``reference``, when a modem sent it)."""
    db.execute(
        "UPDATE message_parts SET state = 'sent', modem = ?, reference = ?, sent_at = ? "
        "WHERE message_id = ? AND part = ?",
        (modem, reference, now_s, message_id, part),
    )


# --- the attempt's end -----------------------------------------------------------------


def write_queued(db: sqlite3.Connection, message_id: int, attempts: int, due_s: str,
                 error: str, now_s: str) -> None:
    """Back to 'queued', due at ``due_s``; its parts forget the attempt (its
    history rows kept in the message move to message_history first)."""
    flush(db, message_id)
    db.execute(
        "UPDATE messages SET state = 'queued', attempts = ?, next_attempt_at = ?, "
        f"error = ?, updated_at = ?, {CLEAR_ATTEMPT} WHERE id = ?",
        (attempts, due_s, error, now_s, message_id),
    )
    db.execute(RESET_PARTS_SQL, (message_id,))
    db.execute(
        "INSERT INTO message_history (message_id, at, state, detail) "
        "VALUES (?, ?, 'queued', ?)",
        (message_id, now_s, f"retry at {due_s}: {error}"),
    )


def write_failed(db: sqlite3.Connection, message_id: int, error: str, gateway: str | None,
                 attempts: int | None, now_s: str) -> None:
    """'failed' with ``error``; ``attempts`` None counts this attempt (its history
    rows kept in the message move to message_history first)."""
    flush(db, message_id)
    db.execute(
        "UPDATE messages SET state = 'failed', error = ?, gateway = COALESCE(?, gateway), "
        f"attempts = COALESCE(?, attempts + 1), updated_at = ?, {CLEAR_ATTEMPT} WHERE id = ?",
        (error, gateway, attempts, now_s, message_id),
    )
    db.execute(
        "UPDATE message_parts SET state = 'failed' WHERE message_id = ? "
        "AND state IN ('pending', 'submitting')",
        (message_id,),
    )
    db.execute(
        "INSERT INTO message_history (message_id, at, state, detail) "
        "VALUES (?, ?, 'failed', ?)",
        (message_id, now_s, error),
    )


def write_sent(db: sqlite3.Connection, message_id: int, gateway: str, modem: str | None,
               now_s: str) -> list[tuple[str, str | None]]:
    """'sent', then any final state early status reports imply; returns the changes.

    The inbox only moves 'sent' messages on, so a report that arrives while the
    message is still 'submitting' is kept on its part and applied here, in
    order: sent, then delivered/failed.  Nothing when the message is no longer
    in flight.  'sent' (and 'delivered') are kept in the message's row, with
    the detail :func:`smsd.store.history.sent_detail`; a failed or expired
    part makes them history rows, after the attempt's rows so far.
    """
    # One read for the message's state and its parts (issue 17: statements
    # are most of the database thread's time per message).
    rows = db.execute(
        "SELECT m.state, p.part, p.state, p.report_status FROM messages m "
        "LEFT JOIN message_parts p ON p.message_id = m.id WHERE m.id = ? ORDER BY p.part",
        (message_id,),
    ).fetchall()
    if not rows or rows[0][0] not in ("sending", "submitting"):
        return []
    parts = [{"part": r[1], "state": r[2], "report_status": r[3]}
             for r in rows if r[1] is not None]
    unsent = [p for p in parts if p["state"] in ("pending", "submitting")]
    if unsent:
        # Usually none: a part's own 'sent' rides on this write, ahead of it.
        db.execute(
            "UPDATE message_parts SET state = 'sent', sent_at = COALESCE(sent_at, ?) "
            "WHERE message_id = ? AND state IN ('pending', 'submitting')",
            (now_s, message_id),
        )
        for p in unsent:
            p["state"] = "sent"
    detail = sent_detail(gateway, modem)
    changes: list[tuple[str, str | None]] = [("sent", None)]
    bad = [p for p in parts if p["state"] in ("failed", "expired")]
    if bad:
        changes.append(
            (
                bad[0]["state"],
                f"delivery report for part {bad[0]['part']}: "
                f"TP-ST 0x{(bad[0]['report_status'] or 0):02X}",
            )
        )
    elif parts and all(p["state"] == "delivered" for p in parts):
        changes.append(("delivered", None))
    final, error = changes[-1]
    if not bad:
        # The routine end: the history stays in the row, no INSERT.
        delivered = now_s if final == "delivered" else None
        db.execute(
            "UPDATE messages SET state = ?, gateway = ?, modem = ?, error = ?, "
            "attempts = attempts + 1, updated_at = ?, hist_sent_at = ?, "
            "hist_delivered_at = ?, hist_delivered_detail = ? WHERE id = ?",
            (final, gateway, modem, error, now_s, now_s, delivered,
             None if delivered is None else detail, message_id),
        )
        return changes
    flush(db, message_id)
    db.execute(
        "UPDATE messages SET state = ?, gateway = ?, modem = ?, error = ?, "
        f"attempts = attempts + 1, updated_at = ?, {CLEAR_ATTEMPT} WHERE id = ?",
        (final, gateway, modem, error, now_s, message_id),
    )
    db.executemany(
        "INSERT INTO message_history (message_id, at, state, detail) VALUES (?,?,?,?)",
        [(message_id, now_s, state, err or detail) for state, err in changes],
    )
    return changes
