"""asyncpg's pool logs through stdlib logging; its records become structured events.

While the server is unreachable the pool retries its minimum connection in
the background and logs each failure with a traceback as plain text, which
breaks the one-JSON-object-per-line log that journald and log shippers read.
Here each record of the ``asyncpg.pool`` logger becomes one event:
``store.pg_connection_lost`` (the pool could not restore a connection) with
the reason (the exception's message, not its traceback) or ``store.pg_pool``
for anything else it says.  A PostgreSQL URL in a reason has its password
replaced (smsd.store.pg.connect.redact).
"""

from __future__ import annotations

import logging
import re

import structlog

from smsd.store.pg.connect import redact

log = structlog.get_logger("smsd.store.pg")

POOL_LOGGER = "asyncpg.pool"
_URL = re.compile(r"postgres(?:ql)?://\S+")


def _clean(text: str) -> str:
    return _URL.sub(lambda m: redact(m.group(0)), text)


class _PoolRecords(logging.Handler):
    """Turns each asyncpg.pool record into one structlog event."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            exc = record.exc_info[1] if record.exc_info else None
            level = "warning" if record.levelno < logging.ERROR else "error"
            if exc is not None:
                reason = _clean(str(exc) or type(exc).__name__)
                getattr(log, level)("store.pg_connection_lost", reason=reason,
                                    error_type=type(exc).__name__, detail=message)
            else:
                getattr(log, level)("store.pg_pool", detail=_clean(message))
        except Exception:  # a log record must never break the pool
            self.handleError(record)


def route_pool_logs() -> None:
    """Send asyncpg.pool's records to structlog (once per process; idempotent)."""
    logger = logging.getLogger(POOL_LOGGER)
    if not any(isinstance(h, _PoolRecords) for h in logger.handlers):
        logger.addHandler(_PoolRecords())
    logger.propagate = False
