"""``GET /api/v1/nodes``: every smsd node of the database and whether it is alive.

On SQLite there is one node, this daemon: alive by definition, since it is
the one answering.  On the shared PostgreSQL store the list comes from the
``nodes`` table (heartbeat, version, gateways, modems), each node alive while
its heartbeat is recent; the entry of the node answering is its live view.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from smsd import __version__
from smsd.api.common import SERVICES, api_error, json_response, require_user
from smsd.services import Services
from smsd.store import StoreError, ts, utcnow
from smsd.store.pg.store import PgStore


def this_node(services: Services) -> dict[str, Any]:
    """This daemon as a node entry: name, alive, version, its gateways and modems."""
    modems: list[dict[str, Any]] = []
    if services.pool is not None:
        modems = [
            {"id": m.id, "state": m.state, "own_number": m.own_number, "operator": m.operator}
            for m in services.pool.snapshot()
        ]
    return {
        "name": services.config.node,
        "alive": True,
        "this": True,
        "version": __version__,
        "heartbeat_at": ts(utcnow()),
        "gateways": [
            {"name": gw.name, "available": gw.available()} for gw in services.router.gateways()
        ],
        "modems": modems,
    }


async def all_nodes(services: Services) -> list[dict[str, Any]]:
    """Every node of the shared database, this one's entry its live view.

    Raises StoreError when the server does not answer.  On SQLite: this daemon.
    """
    store = services.store
    here = this_node(services)
    if not isinstance(store, PgStore):
        return [here]
    rows = await store.nodes(services.config.node_dead_after_s)
    nodes: list[dict[str, Any]] = [
        here if r.name == here["name"] else {
            "name": r.name, "alive": r.alive, "this": False, "version": r.version,
            "heartbeat_at": str(r.heartbeat_at), "gateways": r.gateways, "modems": r.modems,
        }
        for r in rows
    ]
    if not any(n["this"] for n in nodes):
        nodes.append(here)
    return nodes


async def list_nodes(request: web.Request) -> web.Response:
    user = await require_user(request)
    if isinstance(user, web.Response):
        return user
    services = request.app[SERVICES]
    try:
        nodes = await all_nodes(services)
    except StoreError as exc:
        return api_error(503, str(exc))
    return json_response({"backend": services.store.dialect, "nodes": nodes})


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/nodes", list_nodes, allow_head=False)]
