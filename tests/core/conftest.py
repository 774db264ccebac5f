"""Shared fixtures for the core pipeline tests: a real SQLite file per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from smsd.config import Licence, Policy, User
from smsd.store import Store
from smsd.store.pg.store import PgStore


def make_user(
    username: str = "alice",
    *,
    name: str = "Alice Smith",
    office: str | None = "+447700900100",
    licence: Licence = Licence.UC_BUSINESS,
) -> User:
    return User(
        extension=username,
        name=name,
        username=username,
        office_number=office,
        licence=licence,
        endpoint=f"pjsip:{username}",
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "smsd.sqlite3"


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, db_path: Path) -> AsyncIterator[Store]:
    """Each store test runs on both backends: a SQLite file, a fresh PostgreSQL database."""
    if request.param == "sqlite":
        s = await Store.open(db_path)
    else:
        s = await PgStore.open_url(request.getfixturevalue("pg_smsd_dsn"))
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def policy() -> Policy:
    return Policy(country="GB")
