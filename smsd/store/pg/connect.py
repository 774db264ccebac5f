"""Connections to the shared PostgreSQL database, each with a deadline.

The DSN may carry a password, so it is never logged or shown as given:
:func:`redact` replaces the password with ``***`` everywhere smsd prints it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from smsd.config_database import is_postgres_url
from smsd.errors import DatabaseError

__all__ = ["connect", "is_postgres_url", "open_pool", "redact"]

# Opening one connection (TCP + TLS + SCRAM) to a server on the LAN takes
# milliseconds; ten seconds covers a server busy with a checkpoint without
# leaving a start-up hanging on an unreachable host.
CONNECT_TIMEOUT_S = 10.0
# Any one statement: smsd's statements touch a handful of rows by index; a
# statement still running after this is stuck behind a lock or a dead server.
COMMAND_TIMEOUT_S = 30.0
# Waiting for a free connection of the pool (all busy): about the time a
# burst of API requests needs to drain on a sane server.
ACQUIRE_TIMEOUT_S = 10.0
# Pool size per node: the writer paths (outbox, dispatcher, inbox) plus the
# API readers; PostgreSQL's default max_connections (100) fits a dozen nodes.
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 8



def redact(dsn: str) -> str:
    """The DSN with its password (if any) shown as ``***``."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "postgresql://(unreadable URL)"
    if parts.password is None:
        return dsn
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def connect(dsn: str) -> Any:
    """One dedicated connection (asyncpg.Connection); DatabaseError when refused."""
    try:
        return await asyncpg.connect(
            dsn, timeout=CONNECT_TIMEOUT_S, command_timeout=COMMAND_TIMEOUT_S
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        raise DatabaseError(redact(dsn), "connect", str(e) or type(e).__name__) from e


async def open_pool(dsn: str) -> Any:
    """An asyncpg pool with the deadlines above; the caller closes it."""
    try:
        return await asyncpg.create_pool(
            dsn,
            min_size=POOL_MIN_SIZE,
            max_size=POOL_MAX_SIZE,
            timeout=CONNECT_TIMEOUT_S,
            command_timeout=COMMAND_TIMEOUT_S,
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        raise DatabaseError(redact(dsn), "connect", str(e) or type(e).__name__) from e
