"""Messages left in 'sending'/'submitting' with nobody sending them: the resolving write.

smsd.core.recovery says when this runs and decides, per message, what it
becomes (queued again, sent, failed: DESIGN.md invariant 2); here is the
one transaction that reads them with their parts' progress and writes each
outcome with its history.  On a shared PostgreSQL store an advisory lock
serialises the recoveries of the nodes, so two live nodes taking over the
same dead node's messages never both resolve them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Literal

from smsd.store.attempts import RESET_PARTS_SQL
from smsd.store.history import CLEAR_ATTEMPT, flush_many_sql
from smsd.store.store import Store

# Advisory lock (smsd's namespace, key 2) serialising recoveries across nodes
# (key 1 is the migration lock, smsd.store.pg.migrate).
RECOVERY_LOCK = (0x534D5344, 2)

Outcome = Literal["queued", "sent", "failed"]


@dataclass(frozen=True)
class InFlight:
    """A message in flight and how far its parts got."""

    id: int
    user: str | None
    recipient: str
    gateway: str | None
    touched: int   # parts submitting, sent or delivered: they may have reached the network
    done: int      # parts sent or delivered
    total: int     # parts recorded


@dataclass
class Outcomes:
    queued: list[InFlight] = field(default_factory=list)
    sent: list[InFlight] = field(default_factory=list)
    failed: list[InFlight] = field(default_factory=list)


async def resolve_in_flight(
    store: Store, now_s: str, decide: Callable[[InFlight], Outcome], *, why: str,
    error: str, ids: Collection[int] | None = None, node: str | None = None,
    dead_nodes_of: tuple[str, float] | None = None,
) -> Outcomes:
    """Give every message in sending/submitting (all, or only ``ids``) the outcome
    ``decide`` picks, in one transaction; failed ones get ``error``.

    ``why`` ends up in the history ("recovered after a crash").  ``node``
    limits it to that node's own messages; ``dead_nodes_of=(me, seconds)``
    to the messages of other nodes whose heartbeat is older than
    ``seconds`` (nothing on SQLite: one daemon per file).
    """
    out = Outcomes()
    only = "" if ids is None else f" AND m.id IN ({','.join(str(int(i)) for i in ids)})"
    if ids is not None and not ids:
        return out
    params: list[object] = []
    if node is not None:
        only += " AND (m.node = ? OR m.node IS NULL)"
        params.append(node)
    if dead_nodes_of is not None:
        if store.dialect != "postgresql":
            return out  # one daemon per SQLite file: no other node to take over from
        only += (" AND m.node IS NOT NULL AND m.node <> ? AND NOT EXISTS (SELECT 1 FROM nodes n"
                 " WHERE n.name = m.node AND n.heartbeat_at > now() - make_interval(secs => ?))")
        params += [dead_nodes_of[0], float(dead_nodes_of[1])]
    async with store.transaction() as db:
        if store.dialect == "postgresql":
            await db.execute("SELECT pg_advisory_xact_lock(?, ?)", RECOVERY_LOCK)
        async with db.execute(
            "SELECT m.id, m.user, m.recipient, m.gateway, "
            "SUM(CASE WHEN p.state IN ('submitting', 'sent', 'delivered') THEN 1 ELSE 0 END) "
            "AS touched, "
            "SUM(CASE WHEN p.state IN ('sent', 'delivered') THEN 1 ELSE 0 END) AS done, "
            "COUNT(p.part) AS total "
            "FROM messages m LEFT JOIN message_parts p ON p.message_id = m.id "
            f"WHERE m.state IN ('sending', 'submitting'){only} GROUP BY m.id",
            params,
        ) as cur:
            rows = list(await cur.fetchall())
        for r in rows:
            msg = InFlight(id=int(r["id"]), user=r["user"], recipient=r["recipient"],
                           gateway=r["gateway"], touched=int(r["touched"] or 0),
                           done=int(r["done"] or 0), total=int(r["total"] or 0))
            getattr(out, decide(msg)).append(msg)
        requeued = [m.id for m in out.queued]
        sent = [m.id for m in out.sent]
        failed = [m.id for m in out.failed]
        if rows:
            # Each attempt's history rows kept in its message go to the table
            # first, ahead of the row saying how recovery ended it.
            await db.execute(flush_many_sql([int(r["id"]) for r in rows]))
        await db.executemany(
            "UPDATE messages SET state = 'queued', next_attempt_at = ?, updated_at = ?, "
            f"{CLEAR_ATTEMPT} WHERE id = ?",
            ((now_s, now_s, i) for i in requeued),
        )
        await db.executemany(RESET_PARTS_SQL, ((i,) for i in requeued))
        await db.executemany(
            f"UPDATE messages SET state = 'sent', updated_at = ?, {CLEAR_ATTEMPT} WHERE id = ?",
            ((now_s, i) for i in sent),
        )
        await db.executemany(
            f"UPDATE messages SET state = 'failed', error = ?, updated_at = ?, {CLEAR_ATTEMPT} "
            "WHERE id = ?",
            ((error, now_s, i) for i in failed),
        )
        await db.executemany(
            "UPDATE message_parts SET state = 'failed' WHERE message_id = ? "
            "AND state IN ('pending', 'submitting')",
            ((i,) for i in failed),
        )
        history = (
            [(i, now_s, "queued", f"{why}: queued again") for i in requeued]
            + [(i, now_s, "sent", f"{why}: every part was sent") for i in sent]
            + [(i, now_s, "failed", error) for i in failed]
        )
        await db.executemany(
            "INSERT INTO message_history (message_id, at, state, detail) VALUES (?,?,?,?)",
            history,
        )
    return out
