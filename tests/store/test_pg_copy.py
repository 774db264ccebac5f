"""`smsd db copy` and `smsd db migrate`: a single host's SQLite into PostgreSQL, by the real CLI."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from smsd.config import Config, Licence, Policy
from smsd.core.conversations import Conversations
from smsd.core.directory import Directory
from smsd.core.outbox import Outbox, SubmitRequest
from smsd.store import Store, from_ts, open_database, reads, ts
from smsd.store.attempts import mark_submitting, write_queued, write_sent
from smsd.store.claims import claim_due
from smsd.store.pg import pg_migrations
from smsd.store.pg.copy import COPY_TABLES
from smsd.store.views import get_message
from tests.core.conftest import make_user
from tests.core.inbox_harness import OWN, harness

pytestmark = pytest.mark.timeout(120)

ALICE = make_user("alice", office=OWN, licence=Licence.UC_BUSINESS)
CUSTOMER = "+447700900777"


async def _smsd(*argv: str) -> tuple[int, str, str]:
    """Run the real `smsd` command line in a subprocess; (status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smsd.cli.main", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _fill(path: Path) -> None:
    """A single host's database written by the daemon's own code paths."""
    store = await Store.open(path)
    try:
        policy = Policy(country="GB")
        outbox = Outbox(store, policy)
        await outbox.submit(SubmitRequest(["+447700900123", "+447700900124"], "hello", user=ALICE))
        await outbox.submit(SubmitRequest(["+447700900125"], "é" * 150, user=ALICE))  # 3 parts
        await outbox.submit(SubmitRequest(
            ["+447700900126"], "later", send_at=datetime.now(UTC) + timedelta(days=1)))
        # Two messages sent, one of them retried first: histories partly in
        # message_history, partly in the messages' own rows (migration 0010).
        now_s = ts(datetime.now(UTC))
        claimed, _ = await store.write(lambda db: claim_due(
            db, now_s, 2, node=None, dead_after_s=60.0, cutoff_s=None,
            expired_error=lambda e: e or "expired"))
        for m in claimed:
            await store.write(lambda db, m=m: mark_submitting(db, m.id, 1, now_s, first=True))
        await store.write(lambda db: write_queued(db, claimed[0].id, 1, now_s, "timeout", now_s))
        await store.write(lambda db: write_sent(db, claimed[1].id, "gsm", "gsm0", now_s))
        async with harness(store) as h:
            await h.inbox.receive(CUSTOMER, OWN, "hello there", gateway="classound")
            await h.inbox.receive("+447700900888", OWN, "STOP", gateway="classound")
        await store.block("+447700900666", by="admin", reason="spam")
        cfg = Config(state_dir=path.parent, database=path, users=(ALICE,), policy=policy)
        conv = Conversations(store, Directory(cfg), cfg)
        conv_id, _ = await conv.create(ALICE, "+447700900555", None)
        await reads.mark_read(store, conv_id, ALICE.extension, datetime.now(UTC))
    finally:
        await store.close()


def _sqlite_rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    import sqlite3

    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


class TestDbCopy:
    async def test_copy_keeps_every_row_and_value(self, pg_dsn: str, tmp_path: Path) -> None:
        """Migrate, then copy: every table's count is equal and printed, sample values are equal
        (times as the same instants, flags as booleans), ids continue after the copied ones,
        and the source file is not changed."""
        src = tmp_path / "smsd.sqlite3"
        await _fill(src)
        digest = hashlib.sha256(src.read_bytes()).hexdigest()

        rc, out, err = await _smsd("db", "migrate", "--database", pg_dsn)
        assert rc == 0, err
        assert out.strip().endswith(f"schema version {len(pg_migrations())}")
        assert "@" in out and ":***@" in out  # the password is never printed

        rc, out, err = await _smsd("db", "copy", "--from", str(src), "--to", pg_dsn)
        assert rc == 0, err
        assert hashlib.sha256(src.read_bytes()).hexdigest() == digest

        conn = await asyncpg.connect(pg_dsn)
        try:
            for table in COPY_TABLES:
                [(lite,)] = _sqlite_rows(src, f'SELECT count(*) FROM "{table}"')
                assert await conn.fetchval(f'SELECT count(*) FROM "{table}"') == lite, table
                assert f"{table}" in out and f" {lite}  ok" in out.split(table, 1)[1].split("\n")[0]
            for table in ("messages", "message_parts", "inbound", "conversations",
                          "conversation_participants", "opt_outs", "blocklist",
                          "conversation_reads"):
                assert await conn.fetchval(f'SELECT count(*) FROM "{table}"') > 0, table

            lite_msgs = _sqlite_rows(
                src, "SELECT id, user, recipient, text, state, parts, created_at, send_at "
                "FROM messages ORDER BY id")
            pg_msgs = await conn.fetch(
                'SELECT id, "user", recipient, text, state, parts, created_at, send_at '
                "FROM messages ORDER BY id")
            assert [tuple(r[:6]) for r in lite_msgs] == [tuple(r.values())[:6] for r in pg_msgs]
            assert [from_ts(r[6]) for r in lite_msgs] == [r["created_at"] for r in pg_msgs]
            assert [from_ts(r[7]) for r in lite_msgs] == [r["send_at"] for r in pg_msgs]

            lite_parts = _sqlite_rows(
                src, "SELECT message_id, part, state FROM message_parts ORDER BY 1, 2")
            pg_parts = await conn.fetch(
                "SELECT message_id, part, state FROM message_parts ORDER BY 1, 2")
            assert lite_parts == [tuple(r.values()) for r in pg_parts]

            assert await conn.fetch("SELECT number, did, keyword FROM opt_outs") == [
                ("+447700900888", OWN, "STOP")]
            assert await conn.fetchval(
                "SELECT active FROM conversation_participants LIMIT 1") is True
            assert await conn.fetchval(
                "SELECT reason FROM blocklist WHERE number = '+447700900666'") == "spam"

            # Every message's history reads the same through the API's views.
            lite_store, pg_store = await Store.open(src), await open_database(src, pg_dsn)
            try:
                for (mid,) in _sqlite_rows(src, "SELECT id FROM messages"):
                    lite_view = await get_message(lite_store, int(mid))
                    pg_view = await get_message(pg_store, int(mid))
                    assert lite_view is not None and pg_view is not None
                    assert pg_view.history == lite_view.history, mid
                    assert len(lite_view.history) >= 1
            finally:
                await lite_store.close()
                await pg_store.close()

            max_id = await conn.fetchval("SELECT max(id) FROM messages")
            new_id = await conn.fetchval(
                "INSERT INTO messages (recipient, text, encoding, parts, state, created_at, "
                "updated_at, next_attempt_at, origin) VALUES ('+447700900999', 'x', 'gsm7', 1, "
                "'queued', now(), now(), now(), 'api') RETURNING id")
            assert new_id == max_id + 1
        finally:
            await conn.close()

    async def test_copy_refuses_a_non_empty_target(self, pg_dsn: str, tmp_path: Path) -> None:
        """A second copy into the same database is refused, names the table, and adds nothing."""
        src = tmp_path / "smsd.sqlite3"
        await _fill(src)
        assert (await _smsd("db", "migrate", "--database", pg_dsn))[0] == 0
        assert (await _smsd("db", "copy", "--from", str(src), "--to", pg_dsn))[0] == 0
        conn = await asyncpg.connect(pg_dsn)
        try:
            before = await conn.fetchval("SELECT count(*) FROM messages")
            rc, _, err = await _smsd("db", "copy", "--from", str(src), "--to", pg_dsn)
            assert rc == 1
            assert "not empty (table messages has rows)" in err
            assert await conn.fetchval("SELECT count(*) FROM messages") == before
        finally:
            await conn.close()

    async def test_copy_refuses_an_unmigrated_target(self, pg_dsn: str, tmp_path: Path) -> None:
        """Copying into a database that `smsd db migrate` never touched says to migrate first."""
        src = tmp_path / "smsd.sqlite3"
        await _fill(src)
        rc, _, err = await _smsd("db", "copy", "--from", str(src), "--to", pg_dsn)
        assert rc == 1
        assert "older than this smsd's" in err and "smsd db migrate" in err

    async def test_migrate_sqlite_prints_the_version(self, tmp_path: Path) -> None:
        """`smsd db migrate --database FILE` creates and migrates a SQLite file."""
        rc, out, err = await _smsd("db", "migrate", "--database", str(tmp_path / "x.sqlite3"))
        assert rc == 0, err
        assert out.strip() == f"{tmp_path / 'x.sqlite3'}: schema version {len(pg_migrations())}"
