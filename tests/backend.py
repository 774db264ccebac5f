"""Which store the suite runs on: SQLite (the default) or PostgreSQL.

``SMSD_TEST_BACKEND=postgresql ./scripts/test`` runs every test that builds a
config or opens a store through this module on a fresh PostgreSQL database
of the session's throw-away cluster (tests/fakes/postgres.py), one database
per test, made on first use.  The store and core tests are parametrised over
both backends anyway (tests/core/conftest.py); this is for everything above
them (API, console, AGI, Asterisk, Mail2SMS, CLI, the daemon as a process),
so that "with `database` pointing at PostgreSQL, the whole suite passes" can
be checked without running the suite twice in CI.

What a test uses:

* ``open_store(cfg)``: the config's store, as the daemon opens it
  (``open_database``): SQLite at ``cfg.database``, or PostgreSQL;
* ``database_url()``: this test's DSN in PostgreSQL mode, else None; config
  builders pass it as ``Config(database_url=...)``;
* ``database_toml()``: the ``database = "..."`` line for a config file a
  daemon subprocess reads (empty on SQLite).

The per-test database is set by the autouse fixture ``_test_backend`` in
tests/conftest.py (through monkeypatch, so it ends with the test).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from smsd.config import Config
from smsd.store import Store, open_database

BACKEND_ENV = "SMSD_TEST_BACKEND"
BACKENDS = ("sqlite", "postgresql")


def backend() -> str:
    """The backend the suite was asked to run on (``SMSD_TEST_BACKEND``)."""
    value = os.environ.get(BACKEND_ENV, "sqlite") or "sqlite"
    if value not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV}={value!r}: must be one of {', '.join(BACKENDS)}")
    return value


class TestDatabase:
    """This test's PostgreSQL database, created on first use."""

    __test__ = False  # not a test class

    def __init__(self, make: Callable[[], str]) -> None:
        self._make = make
        self._dsn: str | None = None

    def dsn(self) -> str:
        if self._dsn is None:
            self._dsn = self._make()
        return self._dsn


# Set per test by tests/conftest.py in PostgreSQL mode (monkeypatch restores it).
current: TestDatabase | None = None


def database_url() -> str | None:
    """This test's PostgreSQL DSN in PostgreSQL mode; None on SQLite."""
    return None if current is None else current.dsn()


def database_toml() -> str:
    """The config file line naming this test's database (empty on SQLite)."""
    url = database_url()
    return "" if url is None else f'database = "{url}"\n'


async def open_store(where: Config | Path, *, readonly: bool = False) -> Store:
    """The store a config names (or, given a SQLite path, this test's store), opened
    as the daemon opens it."""
    if isinstance(where, Config):
        return await open_database(where.database, where.database_url, readonly=readonly)
    return await open_database(where, database_url(), readonly=readonly)
