"""``GET /healthz``: can this daemon send an SMS right now?

Healthy means the database answers and at least one configured gateway is
available; the body says which gateway or modem is not, so a monitoring check
shows the reason without a second request.  On the shared PostgreSQL store it
also lists every node and whether it is alive (``smsd status`` prints them).
No authentication: it reveals states, never message content, and listens on
loopback.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from smsd.api.common import SERVICES, json_response
from smsd.api.nodes import all_nodes, this_node
from smsd.services import Services
from smsd.store import StoreError


async def health_report(services: Services) -> tuple[bool, dict[str, Any]]:
    problems: list[str] = []
    try:
        # Two counts over the partial indexes of the waiting and in-flight
        # messages, taken at most once a second whatever the probe rate, with
        # this daemon's submits added as they commit (smsd.core.pending):
        # 30-50 ms of the reader thread at 100,000 queued (issue 17).
        # Counting every state (store.queue_depth) scanned the whole table,
        # 130 ms at 200,000 messages; /metrics has it.
        waiting, in_flight = await services.outbox.queue.get()
        queue: dict[str, int] = {"waiting": waiting, "in_flight": in_flight}
    except Exception as exc:  # any database failure is exactly what this reports
        queue = {}
        problems.append(f"database: {exc}")
    gateways = {}
    for gw in services.router.gateways():
        gateways[gw.name] = {"available": gw.available()}
    if not gateways:
        problems.append("no gateway configured")
    elif not any(g["available"] for g in gateways.values()):
        problems.append("no gateway available")
    modems = []
    if services.pool is not None:
        snap = services.pool.snapshot()
        modems = [dataclasses.asdict(m) for m in snap]
        ready = [m for m in snap if m.state == "ready"]
        if ready and all(m.limit is not None for m in ready):
            # Ready, yet none may send: say why ("daily cap reached (3)"),
            # not just that nothing goes out.
            problems.extend(f"modem {m.id}: {m.limit}" for m in ready)
    body: dict[str, Any] = {
        "status": "ok" if not problems else "unhealthy",
        "problems": problems,
        "gateways": gateways,
        "modems": modems,
        "queue": queue,
        "timezone": services.config.policy.timezone,
        "ami": None if services.ami is None else {"connected": services.ami.connected},
    }
    if services.store.dialect == "postgresql":
        # Every node of the shared database and whether it is alive, for
        # `smsd status`; another node's death is not this daemon's problem.
        body["backend"] = "postgresql"
        try:
            nodes = await all_nodes(services)
        except StoreError:   # already a problem: "database: ..."
            nodes = [this_node(services)]
        body["nodes"] = [{k: n[k] for k in ("name", "alive", "this", "version", "heartbeat_at")}
                         for n in nodes]
    return not problems, body


async def healthz(request: web.Request) -> web.Response:
    ok, body = await health_report(request.app[SERVICES])
    return json_response(body, 200 if ok else 503)


def routes() -> list[web.RouteDef]:
    return [web.get("/healthz", healthz, allow_head=False)]
