"""The ``nodes`` table: each node's heartbeat and what it serves.

A node writes its row at start and every ``HEARTBEAT_INTERVAL_S``; a node
whose heartbeat is older than ``NODE_DEAD_AFTER_S`` is shown dead and (once
leases exist) loses its parts' leases.  Times come from the database server
(``now()``), never from the nodes' own clocks, so clock skew between hosts
cannot make a live node look dead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# How often a node proves it is alive: a few round trips a minute per node.
HEARTBEAT_INTERVAL_S = 5.0
# Serialises the modem-id check and claim of nodes starting together, so two
# nodes declaring the same id at the same moment cannot both pass.  A single
# 64-bit key: that key space never overlaps the (namespace, key) pairs of the
# node and migration locks (smsd.store.pg.lock, smsd.store.pg.migrate).
MODEM_CLAIM_LOCK = (0x534D5344 << 32) | 2   # "SMSD", 2
# Silence after which a node counts as dead: three missed heartbeats, so one
# slow checkpoint or a short network blip does not declare a node dead.
NODE_DEAD_AFTER_S = 3 * HEARTBEAT_INTERVAL_S


@dataclass(frozen=True)
class NodeRow:
    name: str
    alive: bool
    version: str
    started_at: datetime
    heartbeat_at: datetime
    gateways: list[Any]
    modems: list[Any]


async def heartbeat(
    conn: Any, name: str, version: str, gateways: list[Any], modems: list[Any],
    *, starting: bool = False,
) -> None:
    """Insert or refresh this node's row (``starting`` resets started_at)."""
    await conn.execute(
        "INSERT INTO nodes (name, heartbeat_at, started_at, version, gateways, modems) "
        "VALUES ($1, now(), now(), $2, $3::jsonb, $4::jsonb) "
        "ON CONFLICT (name) DO UPDATE SET heartbeat_at = now(), version = excluded.version, "
        "gateways = excluded.gateways, modems = excluded.modems"
        + (", started_at = now()" if starting else ""),
        name, version, json.dumps(gateways), json.dumps(modems),
    )


async def list_nodes(conn: Any, dead_after_s: float = NODE_DEAD_AFTER_S) -> list[NodeRow]:
    """Every node, by name, alive when its heartbeat is within ``dead_after_s``."""
    rows = await conn.fetch(
        "SELECT name, heartbeat_at > now() - make_interval(secs => $1) AS alive, version, "
        "started_at, heartbeat_at, gateways::text AS gateways, modems::text AS modems "
        "FROM nodes ORDER BY name",
        dead_after_s,
    )
    return [
        NodeRow(r["name"], bool(r["alive"]), r["version"], r["started_at"], r["heartbeat_at"],
                json.loads(r["gateways"]), json.loads(r["modems"]))
        for r in rows
    ]


async def claim_modems(
    conn: Any, name: str, version: str, modem_ids: list[str], dead_after_s: float,
) -> list[tuple[str, str]]:
    """Declare ``modem_ids`` as this node's unless another live node declares one.

    Returns the clashes as (modem id, other node), sorted, and then writes
    nothing; else this node's row lists the ids (state ``opening``, no number:
    no other node routes a DID to them) until its first real heartbeat.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MODEM_CLAIM_LOCK)
        rows = await conn.fetch(
            "SELECT DISTINCT md->>'id' AS modem, n.name FROM nodes n, "
            "jsonb_array_elements(n.modems) md WHERE n.name <> $1 "
            "AND n.heartbeat_at > now() - make_interval(secs => $2) "
            "AND md->>'id' = ANY($3::text[]) ORDER BY 1, 2",
            name, dead_after_s, modem_ids,
        )
        if rows:
            return [(r["modem"], r["name"]) for r in rows]
        await heartbeat(conn, name, version, [],
                        [{"id": m, "state": "opening"} for m in modem_ids], starting=True)
    return []
