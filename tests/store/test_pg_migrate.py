"""The PostgreSQL schema: versions, the start-up check, equivalence with SQLite."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import asyncpg
import pytest

from smsd.errors import SchemaVersionError
from smsd.store import Store, open_database
from smsd.store.pg import check_schema, migrate, pg_migrations, redact, schema_version
from smsd.store.pg.migrate import PG_MIGRATIONS_DIR
from smsd.store.sqlite_io import migrations as sqlite_migrations
from smsd.store.views import get_message


class TestVersions:
    def test_one_postgres_file_per_sqlite_version(self) -> None:
        """Every SQLite migration has a PostgreSQL file of the same number and name.

        A branch that adds smsd/store/migrations/0006_x.sql fails here until
        it adds smsd/store/pg/migrations/0006_x.sql (mapping in 0001_core.sql).
        """
        assert [p.name for _, p in pg_migrations()] == [p.name for _, p in sqlite_migrations()]

    def test_redact_hides_the_password(self) -> None:
        """A DSN shown in a message or log carries *** instead of its password."""
        shown = redact("postgresql://smsd:s3cret@db.example:5433/smsd")
        assert "s3cret" not in shown
        assert shown == "postgresql://smsd:***@db.example:5433/smsd"


class TestMigrate:
    async def test_fresh_database_reaches_the_latest_version(self, pg_dsn: str) -> None:
        """A fresh database gets every version, one schema_version row each."""
        conn = await asyncpg.connect(pg_dsn)
        try:
            assert await schema_version(conn) == 0
            assert await migrate(conn, "test") == len(pg_migrations())
            rows = await conn.fetch("SELECT version, name FROM schema_version ORDER BY version")
            assert [(r["version"], r["name"]) for r in rows] == [
                (n, p.name) for n, p in pg_migrations()]
            assert await check_schema(conn, "test") == len(pg_migrations())
        finally:
            await conn.close()

    async def test_migrating_twice_changes_nothing(self, pg_dsn: str) -> None:
        """A second `migrate` (another node, a re-run) applies nothing and keeps the data."""
        conn = await asyncpg.connect(pg_dsn)
        try:
            await migrate(conn, "test")
            await conn.execute(
                "INSERT INTO blocklist (number, reason, created_at) "
                "VALUES ('+447700900001', 'x', now())")
            assert await migrate(conn, "test") == len(pg_migrations())
            versions = await conn.fetchval("SELECT count(*) FROM schema_version")
            assert versions == len(pg_migrations())
            assert await conn.fetchval("SELECT count(*) FROM blocklist") == 1
        finally:
            await conn.close()

    async def test_newer_schema_is_refused_and_named(self, pg_dsn: str) -> None:
        """A database migrated by a newer smsd is neither migrated nor used;
        the error says newer."""
        conn = await asyncpg.connect(pg_dsn)
        try:
            await migrate(conn, "test")
            latest = len(pg_migrations())
            await conn.execute(
                "INSERT INTO schema_version (version, name, smsd_version) "
                "VALUES ($1, 'future', '9')",
                latest + 1)
            with pytest.raises(SchemaVersionError, match="newer") as info:
                await migrate(conn, "test")
            assert info.value.found == latest + 1
            with pytest.raises(SchemaVersionError, match="newer"):
                await check_schema(conn, "test")
        finally:
            await conn.close()

    async def test_older_schema_is_refused_at_start_and_named(
        self, pg_dsn: str, tmp_path: Path
    ) -> None:
        """A daemon finding an older schema refuses and says to run `smsd db migrate`."""
        partial = tmp_path / "m"
        partial.mkdir()
        first = pg_migrations()[0][1]
        (partial / first.name).write_text(first.read_text())
        conn = await asyncpg.connect(pg_dsn)
        try:
            assert await migrate(conn, "test", partial) == 1
            with pytest.raises(SchemaVersionError, match=r"older.*smsd db migrate"):
                await check_schema(conn, "test")
            assert await migrate(conn, "test", PG_MIGRATIONS_DIR) == len(pg_migrations())
        finally:
            await conn.close()

    async def test_same_tables_and_columns_as_sqlite(self, pg_dsn: str, tmp_path: Path) -> None:
        """After migration both backends hold the same tables and columns
        (plus `nodes` on PostgreSQL)."""
        store = await Store.open(tmp_path / "s.sqlite3")
        await store.close()
        db = sqlite3.connect(tmp_path / "s.sqlite3")
        lite = {
            t: {r[1] for r in db.execute(f'PRAGMA table_info("{t}")')}
            for (t,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")
        }
        db.close()
        conn = await asyncpg.connect(pg_dsn)
        try:
            await migrate(conn, "test")
            rows = await conn.fetch(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema()")
        finally:
            await conn.close()
        pg: dict[str, set[str]] = {}
        for r in rows:
            pg.setdefault(r["table_name"], set()).add(r["column_name"])
        assert set(pg) - set(lite) == {"nodes", "schema_version"}
        for table, cols in lite.items():
            assert pg[table] == cols, table


class TestVersion9:
    async def test_usage_trigger_is_filtered_and_still_follows(
        self, pg_dsn: str, tmp_path: Path
    ) -> None:
        """A database at version 8 migrated to 9: the usage trigger has a WHEN (the
        send path's state changes no longer call its function), messages_inflight
        is gone, and the counter still follows every kind of change: nothing for
        sending/submitting/sent/delivered, out on failed, back in when queued
        again, moved when the parts change."""
        upto8, upto9 = tmp_path / "m8", tmp_path / "m9"
        for d, last in ((upto8, 8), (upto9, 9)):
            d.mkdir()
            for number, p in pg_migrations():
                if number <= last:
                    (d / p.name).write_text(p.read_text())
        conn = await asyncpg.connect(pg_dsn)
        try:
            assert await migrate(conn, "test", upto8) == 8
            await conn.execute(
                "INSERT INTO messages (\"user\", recipient, text, encoding, parts, state, "
                "created_at, updated_at, next_attempt_at, origin, usage_month) VALUES "
                "('alice', '+447700900123', 't', 'gsm7', 3, 'queued', now(), now(), now(), "
                "'api', '2026-11')")
            await conn.execute(
                "INSERT INTO usage_months (\"user\", month, parts) VALUES ('alice', '2026-11', 3)")
            assert await migrate(conn, "test", upto9) == 9
            when = await conn.fetchval(
                "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = 'usage_update'")
            assert " WHEN " in when
            assert await conn.fetchval("SELECT to_regclass('messages_inflight')") is None

            async def used() -> int:
                return int(await conn.fetchval(
                    "SELECT parts FROM usage_months WHERE \"user\" = 'alice' "
                    "AND month = '2026-11'"))

            for state, expected in (("sending", 3), ("submitting", 3), ("sent", 3),
                                    ("delivered", 3), ("failed", 0), ("expired", 0),
                                    ("queued", 3)):
                await conn.execute("UPDATE messages SET state = $1", state)
                assert await used() == expected, state
            await conn.execute("UPDATE messages SET parts = 2")
            assert await used() == 2
        finally:
            await conn.close()


class TestVersion10:
    async def test_old_history_reads_the_same_after_the_upgrade(
        self, pg_dsn: str, tmp_path: Path
    ) -> None:
        """A database at version 9 with a message and its history rows migrated to
        10: the new columns are there and empty, and the API's view of that
        history is exactly the rows version 9 wrote, in order."""
        upto9 = tmp_path / "m9"
        upto9.mkdir()
        for number, p in pg_migrations():
            if number <= 9:
                (upto9 / p.name).write_text(p.read_text())
        at = [f"2026-11-10T12:00:0{k}.000000+00:00" for k in range(4)]
        rows = [(at[0], "queued", "origin=api"), (at[1], "sending", "attempt 1"),
                (at[2], "submitting", None), (at[3], "sent", "curl")]
        conn = await asyncpg.connect(pg_dsn)
        try:
            assert await migrate(conn, "test", upto9) == 9
            mid = await conn.fetchval(
                "INSERT INTO messages (recipient, text, encoding, parts, state, gateway, "
                "attempts, created_at, updated_at, next_attempt_at, origin) VALUES "
                "('+447700900123', 't', 'gsm7', 1, 'sent', 'curl', 1, $1, $1, $1, 'api') "
                "RETURNING id", datetime.fromisoformat(at[0]))
            await conn.executemany(
                "INSERT INTO message_history (message_id, at, state, detail) "
                "VALUES ($1, $2, $3, $4)",
                [(mid, datetime.fromisoformat(a), s, d) for a, s, d in rows])
            assert await migrate(conn, "test") == 10
            assert await conn.fetchval(
                "SELECT hist_queued IS NULL AND hist_sending_at IS NULL AND hist_sent_at IS NULL "
                "FROM messages WHERE id = $1", mid) is True
        finally:
            await conn.close()
        store = await open_database(tmp_path / "unused.sqlite3", pg_dsn)
        try:
            view = await get_message(store, mid)
        finally:
            await store.close()
        assert view is not None
        assert [(h["at"], h["state"], h["detail"]) for h in view.history] == rows
