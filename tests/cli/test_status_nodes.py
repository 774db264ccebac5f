"""`smsd status` on the shared PostgreSQL store: every node and whether it is alive."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path

import asyncpg

from smsd.store.pg.nodes import heartbeat
from smsd.store.pg.store import PgStore
from tests.api.conftest import FakeGateway, api_services, make_config, serving

# Start-up of the CLI on a busy machine; bounds a hang only.
CHILD_DEADLINE_S = 60.0


async def smsd_status(base: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smsd", "status", "--url", base,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(CHILD_DEADLINE_S):
        out, err = await proc.communicate()
    assert proc.returncode is not None, err
    return proc.returncode, out.decode()


class TestStatusNodes:
    async def test_status_lists_every_node_alive_or_dead(
            self, tmp_path: Path, pg_smsd_dsn: str) -> None:
        """Four nodes share the database: this one (pbx-a), pbx-b heartbeating, pbx-c
        silent for two minutes, pbx-d for one (alive under node_dead_after_s = 90).
        `smsd status` prints one line per node, only pbx-c DEAD, and still exits 0:
        another node's death is not this daemon's ill health."""
        cfg = dataclasses.replace(make_config(tmp_path), database_url=pg_smsd_dsn,
                                  node="pbx-a", node_dead_after_s=90.0)
        store = await PgStore.open_url(pg_smsd_dsn)
        conn = await asyncpg.connect(pg_smsd_dsn)
        try:
            await heartbeat(conn, "pbx-b", "9.9.9", ["classound"], [], starting=True)
            await heartbeat(conn, "pbx-c", "9.9.8", ["gsm"], [], starting=True)
            await heartbeat(conn, "pbx-d", "9.9.7", ["gsm"], [], starting=True)
            await conn.execute("UPDATE nodes SET heartbeat_at = now() - interval '120 seconds' "
                               "WHERE name = 'pbx-c'")
            await conn.execute("UPDATE nodes SET heartbeat_at = now() - interval '60 seconds' "
                               "WHERE name = 'pbx-d'")
            async with serving(api_services(cfg, store, FakeGateway("gsm"))) as base:
                code, out = await smsd_status(base)
        finally:
            await conn.close()
            await store.close()
        assert code == 0, out
        nodes = {line.split(":")[0]: line for line in out.splitlines()
                 if line.startswith("node ")}
        assert sorted(nodes) == ["node pbx-a", "node pbx-b", "node pbx-c", "node pbx-d"], out
        assert ": alive (this node) version " in nodes["node pbx-a"]
        assert ": alive version 9.9.9 last heartbeat " in nodes["node pbx-b"]
        assert ": DEAD version 9.9.8 last heartbeat " in nodes["node pbx-c"]
        assert ": alive version 9.9.7 last heartbeat " in nodes["node pbx-d"]

    async def test_status_on_sqlite_lists_no_nodes(self, tmp_path: Path) -> None:
        """One host, one SQLite file: no node lines (nothing to tell apart)."""
        from smsd.store import Store

        cfg = make_config(tmp_path)
        store = await Store.open(cfg.database)
        try:
            async with serving(api_services(cfg, store, FakeGateway("gsm"))) as base:
                code, out = await smsd_status(base)
        finally:
            await store.close()
        assert code == 0, out
        assert "node " not in out
