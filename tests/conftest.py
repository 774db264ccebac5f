"""Suite-wide settings.

CI runs hypothesis derandomised: the same examples every run, so a landing is
never refused for an example no one has seen locally.  Developers keep the
random search (and its example database) to find new failures.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


# --- PostgreSQL (issue 18) -------------------------------------------------
# One throw-away cluster for the whole session, started only when a test asks
# for it; each test gets its own fresh database (pg_dsn).

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from tests.fakes.postgres import PgCluster, remove_cluster, start_cluster, why_unavailable  # noqa: E402


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A real PostgreSQL server on 127.0.0.1 and a private unix socket."""
    reason = why_unavailable()
    if reason is not None:
        pytest.skip(reason)
    cluster = start_cluster()
    print(f"\n[postgres] cluster on 127.0.0.1:{cluster.port} started in {cluster.started_s:.2f}s")
    try:
        yield cluster
    finally:
        remove_cluster(cluster)


@pytest.fixture
def pg_smsd_dsn(pg_cluster: PgCluster) -> str:
    """The DSN of a fresh database already at smsd's schema (a copy of a migrated one)."""
    return pg_cluster.new_database(pg_cluster.migrated_template())


@pytest.fixture
def pg_dsn(pg_cluster: PgCluster) -> str:
    """The DSN of a fresh, empty database owned by a least-privilege role."""
    return pg_cluster.new_database()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``sqlite_only`` run on the SQLite backend only (not deselected silently:
    they are reported as deselected)."""
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        backend = params.get("store", params.get("world"))
        if backend == "postgresql" and item.get_closest_marker("sqlite_only"):
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


# --- the whole suite on PostgreSQL (SMSD_TEST_BACKEND=postgresql) ----------
# tests/backend.py: config builders and open_store() then name a fresh
# database of the session's cluster, made the first time a test asks.

import tests.backend as test_backend  # noqa: E402


@pytest.fixture(autouse=True)
def _test_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if test_backend.backend() != "postgresql":
        return

    def make() -> str:
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        return cluster.new_database(cluster.migrated_template())

    monkeypatch.setattr(test_backend, "current", test_backend.TestDatabase(make))


def pytest_report_header(config: pytest.Config) -> str:
    return f"smsd store backend: {test_backend.backend()} ({test_backend.BACKEND_ENV})"
