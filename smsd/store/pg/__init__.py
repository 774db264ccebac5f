"""smsd.store.pg: the PostgreSQL store shared by several nodes (issue 18, groundwork).

What exists: the schema (``migrations/``, same versions as the SQLite files),
``migrate`` and the start-up schema check, a connection pool with deadlines,
the node-name lock and ``copy`` (SQLite -> PostgreSQL).  The daemon itself
does not run on PostgreSQL yet: the core's SQL must first move behind typed
store methods (see README, "Several hosts").
"""

from smsd.store.pg.connect import (
    CONNECT_TIMEOUT_S,
    is_postgres_url,
    open_pool,
    redact,
)
from smsd.store.pg.lock import NodeLock
from smsd.store.pg.migrate import check_schema, migrate, pg_migrations, schema_version
from smsd.store.pg.nodes import NODE_DEAD_AFTER_S, heartbeat, list_nodes

__all__ = [
    "CONNECT_TIMEOUT_S",
    "NODE_DEAD_AFTER_S",
    "NodeLock",
    "check_schema",
    "heartbeat",
    "is_postgres_url",
    "list_nodes",
    "migrate",
    "open_pool",
    "pg_migrations",
    "redact",
    "schema_version",
]
