"""Read marks: when each user last opened each conversation, and the unread counts.

The console shows, per conversation, how many inbound messages came after the
user last opened its thread.  The mark is stored (migration 0007), so a
daemon restart does not make every old message unread again.  Users are
named by extension, as conversation participants are.

The SQL is plain and portable between SQLite and PostgreSQL: ``?``
parameters, an ``ON CONFLICT ... DO UPDATE ... WHERE`` upsert both engines
know, and ISO 8601 UTC times that compare in order (``timestamptz`` there).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from smsd.store.store import Store
from smsd.store.timefmt import ts
from smsd.store.views import Reader

# SQLite allows 32,766 parameters per statement; a console page lists far fewer
# conversations, but a long list is asked in chunks rather than refused.
MAX_IDS_PER_QUERY = 900


async def mark_read(store: Store, conv_id: int, extension: str, at: datetime) -> None:
    """``extension`` has seen conversation ``conv_id`` up to ``at`` (never moves back)."""
    async with store.transaction() as db:
        await db.execute(
            "INSERT INTO conversation_reads (conversation_id, extension, read_at) "
            "VALUES (?, ?, ?) ON CONFLICT (conversation_id, extension) "
            "DO UPDATE SET read_at = excluded.read_at "
            "WHERE conversation_reads.read_at < excluded.read_at",
            (conv_id, extension, ts(at)))


async def unread_counts(store: Reader, extension: str,
                        conv_ids: Sequence[int]) -> dict[int, int]:
    """Inbound messages of each conversation received after ``extension`` last read it
    (all of them when it never did); conversations with none are left out."""
    out: dict[int, int] = {}
    ids = list(conv_ids)
    for start in range(0, len(ids), MAX_IDS_PER_QUERY):
        chunk = ids[start:start + MAX_IDS_PER_QUERY]
        marks = ",".join("?" * len(chunk))
        rows = await store.fetchall(
            "SELECT i.conversation_id AS conversation_id, COUNT(*) AS unread FROM inbound i "
            "LEFT JOIN conversation_reads r "
            "ON r.conversation_id = i.conversation_id AND r.extension = ? "
            f"WHERE i.conversation_id IN ({marks}) "
            "AND (r.read_at IS NULL OR i.received_at > r.read_at) "
            "GROUP BY i.conversation_id", [extension, *chunk])
        out.update({int(r["conversation_id"]): int(r["unread"]) for r in rows})
    return out
