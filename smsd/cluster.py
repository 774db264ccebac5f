"""What a node does on the shared PostgreSQL store besides its own work.

* Heartbeat: its row in ``nodes`` (version, gateways, modems) every
  ``HEARTBEAT_INTERVAL_S``.  The heartbeat is also the renewal of every lease
  the node holds: a message a node claimed stays its own while the node's
  heartbeat is fresh, and is taken over by the others once it is older than
  ``node_dead_after_s`` (see smsd/core/recovery.py).
* Modem ids: unique across the nodes (delivery reports and claims name the
  modem); a node whose configured modem id another live node declares is
  refused at start, before any modem is opened.
* Wake-ups: a submit on any node NOTIFYs the others, whose dispatchers look
  for due work at once instead of at their next poll.

Nothing here runs on SQLite: one daemon owns the file.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

from smsd.api.nodes import this_node
from smsd.errors import ModemIdTaken
from smsd.services import Services
from smsd.store import StoreError
from smsd.store.pg.lock import NodeLock
from smsd.store.pg.nodes import HEARTBEAT_INTERVAL_S
from smsd.store.pg.store import PgStore

log = structlog.get_logger(__name__)

# The last heartbeat at a stop (no modems any more) may take this long; the
# stop does not wait longer for a database that does not answer.
LAST_HEARTBEAT_S = 2.0


async def heartbeats(services: Services, store: PgStore, stop: asyncio.Event,
                     lock: NodeLock | None = None) -> None:
    """This node's heartbeat until ``stop``; a failed one is logged and tried again.

    After the server was unreachable the node-name lock is taken again first
    (its session is gone); NodeLocked, when another daemon took the name
    meanwhile, ends this task and so the daemon.
    """
    node = services.config.node
    starting = True
    try:
        while not stop.is_set():
            here = this_node(services)  # the same view /api/v1/nodes shows
            gateways, modems = here["gateways"], here["modems"]
            try:
                if lock is not None and not await lock.ensure():
                    raise StoreError(store.path, "take the node lock again",
                                     "server unreachable")
                await store.heartbeat(node, gateways, modems, starting=starting)
                starting = False
            except StoreError as e:
                log.warning("node.heartbeat_failed", node=node, error=str(e))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HEARTBEAT_INTERVAL_S):
                    await stop.wait()
    finally:
        # Leaving: a last row with no modems, so the other nodes serve this
        # node's DIDs at once instead of waiting for its heartbeat to age.
        with contextlib.suppress(StoreError, TimeoutError, asyncio.CancelledError):
            async with asyncio.timeout(LAST_HEARTBEAT_S):
                await store.heartbeat(node, [], [])


async def claim_modem_ids(services: Services) -> None:
    """Declare this node's configured modem ids, or raise ModemIdTaken naming the node
    that already declares one (exit 2 before anything was served).

    Check and declaration are one transaction under an advisory lock, so two
    nodes started together with the same id cannot both pass.  A node that
    stopped declares no modems (its last heartbeat); one that died holds its
    ids until its heartbeat is older than ``node_dead_after_s``.
    """
    store, pool = services.store, services.pool
    if not isinstance(store, PgStore) or pool is None:
        return
    node = services.config.node
    ids = pool.configured_ids()
    if not ids:
        return
    clashes = await store.claim_modems(node, ids, services.config.node_dead_after_s)
    if clashes:
        log.error("node.modem_id_taken", node=node,
                  clashes=[{"modem": m, "node": other} for m, other in clashes])
        raise ModemIdTaken(node, clashes)


def node_tasks(services: Services, stop: asyncio.Event,
               lock: NodeLock | None = None) -> list[tuple[str, Any]]:
    """The node's background coroutines (none on SQLite)."""
    store = services.store
    if not isinstance(store, PgStore):
        return []
    return [
        ("heartbeat", heartbeats(services, store, stop, lock)),
        ("listen", store.listen_work(services.dispatcher.wake, stop)),
    ]
