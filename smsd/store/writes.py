"""Helpers for write functions that differ between the backends.

New message ids:

A submit writes its messages, their parts and their history in one
transaction, so it needs the ids before the rows.  On SQLite the writer is
alone (the database is locked for the whole transaction): the next ids are
simply above the largest.  On PostgreSQL several nodes insert at once, so the
ids come from the table's identity sequence, which never gives one twice.
"""

from __future__ import annotations

from typing import Any


def new_message_ids(db: Any, count: int) -> list[int]:
    """``count`` unused ids for ``messages`` (``db``: the write function's connection)."""
    if count <= 0:
        return []
    if getattr(db, "dialect", "sqlite") == "postgresql":
        rows = db.execute(
            "SELECT nextval(pg_get_serial_sequence('messages', 'id')) "
            "FROM generate_series(1, CAST(? AS integer))",
            (count,),
        ).fetchall()
        return sorted(int(r[0]) for r in rows)
    row = db.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()
    first = (int(row[0]) if row else 0) + 1
    return list(range(first, first + count))


# The NOTIFY channel of "new work is due" (smsd.store.pg.store listens on it).
WORK_CHANNEL = "smsd_work"


def announce_work(db: Any) -> None:
    """Wake every node's dispatcher when this write commits (PostgreSQL NOTIFY).

    Sent inside the transaction, so it is delivered only if the rows are
    committed, and costs no extra round trip.  SQLite has one daemon, which
    the outbox wakes directly.
    """
    if getattr(db, "dialect", "sqlite") == "postgresql":
        db.execute(f"SELECT pg_notify('{WORK_CHANNEL}', '')")


def claim_lock(db: Any) -> str:
    """The tail of a claim's SELECT: on PostgreSQL, rows another node is claiming
    right now are skipped rather than waited for (and never claimed twice)."""
    if getattr(db, "dialect", "sqlite") == "postgresql":
        return " FOR UPDATE SKIP LOCKED"
    return ""


# The numbers of the ready modems of the other live nodes, less this node's
# own ready modems (from each node's last heartbeat, smsd.store.pg.nodes).
_OTHERS_DIDS = (
    "SELECT md->>'own_number' FROM nodes n, jsonb_array_elements(n.modems) md "
    "WHERE n.name <> ? AND n.heartbeat_at > now() - make_interval(secs => ?) "
    "AND md->>'state' = 'ready' AND md->>'own_number' IS NOT NULL "
    "EXCEPT SELECT md->>'own_number' FROM nodes n, jsonb_array_elements(n.modems) md "
    "WHERE n.name = ? AND md->>'state' = 'ready'"
)


def served_here(dialect: str, node: str | None,
                dead_after_s: float) -> tuple[str, tuple[object, ...]]:
    """A condition on ``messages`` (and its parameters): may this node claim the row?

    A message goes out from its DID's own SIM, so that replies come back to
    that number.  When that SIM sits in a ready modem of another live node
    (and in none of ours), the message is left to that node, whose dispatcher
    the submit's NOTIFY wakes.  When the modem is not ready or its node has
    stopped heartbeating for ``dead_after_s``, any node may send it, from
    another SIM, as one node does when the DID's modem is down.  On SQLite
    (one node) every row is served here.
    """
    if dialect != "postgresql" or node is None:
        return "TRUE", ()
    return (f"(did IS NULL OR did NOT IN ({_OTHERS_DIDS}))",
            (node, float(dead_after_s), node))
