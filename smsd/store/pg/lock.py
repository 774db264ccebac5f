"""One daemon per node name on the shared database (DESIGN.md invariant 6).

A session-level advisory lock, ``pg_try_advisory_lock(namespace,
hashtext(node))``, held on a connection of its own for the daemon's whole life.
PostgreSQL releases it when that session ends, so a node that dies (SIGKILL,
power loss, network cut noticed by TCP keepalive) frees its name without any
clean-up; a second daemon with the same name is refused at once and touches
nothing.  Taken before anything else is read or written.

hashtext is 32 bits: two different node names may in theory share a lock,
which refuses the second one with a clear message (rename one) - never two
daemons under one name.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog

from smsd.errors import DatabaseError, NodeLocked
from smsd.store.pg.connect import connect, redact
from smsd.store.pg.migrate import LOCK_NAMESPACE

log = structlog.get_logger(__name__)


class NodeLock:
    """The node-name lock; ``await NodeLock.acquire(dsn, node)``, then ``release()``."""

    def __init__(self, node: str, conn: Any, dsn: str = "") -> None:
        self.node = node
        self._conn = conn
        self._dsn = dsn

    @classmethod
    async def acquire(cls, dsn: str, node: str) -> NodeLock:
        conn = await connect(dsn)
        try:
            got = await conn.fetchval(
                "SELECT pg_try_advisory_lock($1, hashtext($2))", LOCK_NAMESPACE, node
            )
        except asyncpg.PostgresError as e:
            await conn.close()
            raise DatabaseError(redact(dsn), "take the node lock", str(e)) from e
        except BaseException:
            await conn.close()
            raise
        if not got:
            await conn.close()
            raise NodeLocked(
                redact(dsn), f"take the lock of node {node!r}",
                "another smsd runs under this node name (or a name with the same hash); "
                "stop it or give this one another `node`",
            )
        log.info("store.pg.node_locked", node=node)
        return cls(node, conn, dsn)

    async def ensure(self) -> bool:
        """Hold the lock again after its session was lost (the server restarted).

        The lock went with the session, so for as long as this daemon could
        not reach the server another daemon could have taken the name.  True
        once held again; False while the server is still unreachable (try
        later); NodeLocked when another daemon holds the name now: this one
        must stop, two daemons under one name would share one set of leases.
        """
        if self.held:
            return True
        try:
            conn = await connect(self._dsn)
        except DatabaseError:
            return False
        try:
            got = await conn.fetchval(
                "SELECT pg_try_advisory_lock($1, hashtext($2))", LOCK_NAMESPACE, self.node
            )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            await conn.close()
            return False
        if not got:
            await conn.close()
            raise NodeLocked(
                redact(self._dsn), f"take the lock of node {self.node!r} again",
                "another smsd took this node name while the server was unreachable; "
                "this one stops",
            )
        self._conn = conn
        log.info("store.pg.node_relocked", node=self.node)
        return True

    @property
    def held(self) -> bool:
        """False once the connection holding the lock is closed or lost."""
        return not self._conn.is_closed()

    async def release(self) -> None:
        """Give the name up: closing the session releases the lock."""
        if not self._conn.is_closed():
            await self._conn.close()
        log.info("store.pg.node_unlocked", node=self.node)
