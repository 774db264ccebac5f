"""The PostgreSQL `nodes` table: heartbeats and liveness by the server's clock."""

from __future__ import annotations

import asyncio

import asyncpg

from smsd.store.pg import migrate
from smsd.store.pg.nodes import claim_modems, heartbeat, list_nodes


class TestNodes:
    async def test_heartbeat_registers_and_liveness_follows_it(self, pg_dsn: str) -> None:
        """Two nodes heartbeat: both listed with their gateways and modems; a node whose
        heartbeat is older than the limit is listed dead, the other stays alive."""
        conn = await asyncpg.connect(pg_dsn)
        try:
            await migrate(conn, "test")
            await heartbeat(conn, "pbx-a", "0.1.0", ["gsm", "curl"],
                            [{"id": "gsm0", "state": "ready"}], starting=True)
            await heartbeat(conn, "pbx-b", "0.1.0", ["classound"], [], starting=True)
            nodes = await list_nodes(conn)
            assert [(n.name, n.alive, n.gateways) for n in nodes] == [
                ("pbx-a", True, ["gsm", "curl"]), ("pbx-b", True, ["classound"])]
            assert nodes[0].modems == [{"id": "gsm0", "state": "ready"}]
            # pbx-b fell silent a minute ago (by the server's clock)
            await conn.execute(
                "UPDATE nodes SET heartbeat_at = now() - interval '60 seconds' "
                "WHERE name = 'pbx-b'")
            assert [(n.name, n.alive) for n in await list_nodes(conn, dead_after_s=15)] == [
                ("pbx-a", True), ("pbx-b", False)]
            started = nodes[0].started_at
            await heartbeat(conn, "pbx-a", "0.2.0", ["gsm"], [])
            [a, _] = await list_nodes(conn)
            assert (a.version, a.started_at) == ("0.2.0", started)
        finally:
            await conn.close()

    async def test_modem_ids_are_claimed_by_one_live_node(self, pg_dsn: str) -> None:
        """Two nodes claiming modem "gsm0" at the same moment: exactly one gets it, the
        other is told which node has it and writes nothing; the same node may claim
        again (a restart); once the holder is dead, another node may claim it."""
        conns = [await asyncpg.connect(pg_dsn) for _ in range(2)]
        try:
            await migrate(conns[0], "test")
            results = await asyncio.gather(
                claim_modems(conns[0], "pbx-a", "0.1.0", ["gsm0", "gsm1"], 15.0),
                claim_modems(conns[1], "pbx-b", "0.1.0", ["gsm0"], 15.0))
            winner, loser = ("pbx-a", "pbx-b") if results[0] == [] else ("pbx-b", "pbx-a")
            assert sorted(results) == [[], [("gsm0", winner)]]
            nodes = await list_nodes(conns[0])
            assert [n.name for n in nodes] == [winner]
            assert "gsm0" in [m["id"] for m in nodes[0].modems]
            assert await claim_modems(conns[0], winner, "0.1.0", ["gsm0"], 15.0) == []
            await conns[0].execute(
                "UPDATE nodes SET heartbeat_at = now() - interval '60 seconds'")
            assert await claim_modems(conns[1], loser, "0.1.0", ["gsm0"], 15.0) == []
        finally:
            for conn in conns:
                await conn.close()
