"""Messages left in 'sending' or 'submitting' with nobody sending them: resolved by policy.

Three moments leave such messages: a crash (resolved at the next start), a
stop whose drain deadline passed while a modem still had a part (resolved
before the daemon exits, so a clean stop leaves nothing 'submitting'), and a
state write the store refused mid-send (found by the dispatcher's watchdog).
The rule is the same each time (DESIGN.md invariant 2):

* No part was marked submitting: nothing left the daemon, so the message is
  simply queued again.
* Every part is marked sent: the last part was accepted before the
  interruption, so the message is sent.
* Otherwise some parts may have reached the network.  With
  ``policy.submitting_after_crash == "resend"`` the message is queued again
  and sent whole (a phone cannot join new parts to old ones: each send gets a
  fresh concatenation reference), which may duplicate exactly this message.
  With ``"fail"`` it fails with the error "interrupted during submit" and
  nothing is sent twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from smsd.config import Policy
from smsd.core.events import EventBus, StatusChange
from smsd.store import Store, ts

log = structlog.get_logger(__name__)

INTERRUPTED = "interrupted during submit"
# Advisory lock (smsd's namespace, key 2) serialising recoveries across nodes
# (key 1 is the migration lock, smsd.store.pg.migrate).
RECOVERY_LOCK = (0x534D5344, 2)

# A message queued again is sent whole: its parts forget the last attempt.
RESET_PARTS_SQL = (
    "UPDATE message_parts SET state = 'pending', modem = NULL, reference = NULL, "
    "sent_at = NULL WHERE message_id = ?"
)


@dataclass
class Resolved:
    requeued: list[int] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.requeued) + len(self.sent) + len(self.failed)


async def resolve_unfinished(
    store: Store, bus: EventBus, policy: Policy, now: datetime, *, why: str,
    ids: Collection[int] | None = None, node: str | None = None,
    dead_nodes_of: tuple[str, float] | None = None,
) -> Resolved:
    """Resolve 'sending'/'submitting' messages (all, or only ``ids``) as the module says.

    ``why`` ends up in each message's history ("recovered after a crash").
    On a shared PostgreSQL store, ``node`` limits it to that node's own
    messages (at its start: the others' belong to live nodes), and
    ``dead_nodes_of=(me, seconds)`` to the messages of other nodes whose
    heartbeat is older than ``seconds``: their leases have expired.
    """
    now_s = ts(now)
    out = Resolved()
    failed_rows: list[sqlite3.Row] = []
    resend = policy.submitting_after_crash != "fail"
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
            # Two live nodes taking over the same dead node's messages must not
            # both resolve them: one recovery at a time across the nodes.
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
            if r["total"] and r["done"] == r["total"]:
                out.sent.append(r["id"])
            elif not r["touched"] or resend:
                out.requeued.append(r["id"])
            else:
                out.failed.append(r["id"])
                failed_rows.append(r)
        await db.executemany(
            "UPDATE messages SET state = 'queued', next_attempt_at = ?, updated_at = ? "
            "WHERE id = ?",
            ((now_s, now_s, i) for i in out.requeued),
        )
        await db.executemany(RESET_PARTS_SQL, ((i,) for i in out.requeued))
        await db.executemany(
            "UPDATE messages SET state = 'sent', updated_at = ? WHERE id = ?",
            ((now_s, i) for i in out.sent),
        )
        await db.executemany(
            "UPDATE messages SET state = 'failed', error = ?, updated_at = ? WHERE id = ?",
            ((INTERRUPTED, now_s, i) for i in out.failed),
        )
        await db.executemany(
            "UPDATE message_parts SET state = 'failed' WHERE message_id = ? "
            "AND state IN ('pending', 'submitting')",
            ((i,) for i in out.failed),
        )
        history = (
            [(i, now_s, "queued", f"{why}: queued again") for i in out.requeued]
            + [(i, now_s, "sent", f"{why}: every part was sent") for i in out.sent]
            + [(i, now_s, "failed", INTERRUPTED) for i in out.failed]
        )
        await db.executemany(
            "INSERT INTO message_history (message_id, at, state, detail) VALUES (?,?,?,?)",
            history,
        )
    for r in failed_rows:
        bus.publish_status(
            StatusChange(r["id"], "failed", r["recipient"], r["user"], r["gateway"], INTERRUPTED)
        )
    return out
