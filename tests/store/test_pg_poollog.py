"""asyncpg's pool records become structured events, with no password in them."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from smsd.store.pg.poollog import POOL_LOGGER, route_pool_logs


@pytest.fixture
def pool_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger(POOL_LOGGER)
    handlers, propagate = list(logger.handlers), logger.propagate
    try:
        yield logger
    finally:
        logger.handlers[:] = handlers
        logger.propagate = propagate


class _Seen(logging.Handler):
    """What a plain-text handler on the root logger (stdlib's output) would print."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_failed_reconnect_is_one_event_with_its_reason(pool_logger: logging.Logger) -> None:
    """The pool's "failed to restore" warning with a traceback becomes one
    store.pg_connection_lost event whose reason is the exception's message, its
    URL's password redacted; nothing reaches stdlib logging's plain-text output."""
    route_pool_logs()
    route_pool_logs()   # idempotent: still one event per record
    # Not pytest's caplog: pytest also hooks loggers that do not propagate.
    root, seen = logging.getLogger(), _Seen()
    root.addHandler(seen)
    try:
        with structlog.testing.capture_logs() as events:
            try:
                raise OSError("cannot reach postgresql://smsd:hunter2@db.example/smsd")
            except OSError:
                pool_logger.warning("Failed to restore the pool connection floor; retrying",
                                    exc_info=True)
    finally:
        root.removeHandler(seen)
    assert events == [{
        "event": "store.pg_connection_lost",
        "log_level": "warning",
        "reason": "cannot reach postgresql://smsd:***@db.example/smsd",
        "error_type": "OSError",
        "detail": "Failed to restore the pool connection floor; retrying",
    }]
    assert seen.records == []
