"""Modem ids are unique across the nodes of one PostgreSQL database.

Delivery reports, claims and `smsd ussd` name a modem by its id; two nodes
both declaring "a0" would make them ambiguous.  Real processes: two nodes,
each with its own simulated modem, the second configured with the first's
modem id.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.rig import Node, pg_rows, user_block, wait_until

# A refused daemon exits at once; this only bounds a broken build.
EXIT_DEADLINE_S = 90


@pytest.fixture
def nodes(tmp_path: Path, pg_smsd_dsn: str) -> Iterator[tuple[Node, Node]]:
    users = user_block("bulk", "100")
    a = Node(tmp_path, "a", pg_smsd_dsn, modems=1, first_number="+447700910001", users=users)
    b = Node(tmp_path, "b", pg_smsd_dsn, modems=1, first_number="+447700920001", users=users)
    try:
        yield a, b
    finally:
        for node in (b, a):
            node.close()


def status(node: Node) -> str:
    """What `smsd status` prints against ``node``'s daemon."""
    out = subprocess.run(
        [sys.executable, "-m", "smsd", "status", "--url", node.base],
        capture_output=True, text=True, timeout=60, check=False,
    )
    return out.stdout + out.stderr


@pytest.mark.timeout(240)
def test_a_modem_id_of_another_live_node_is_refused(nodes: tuple[Node, Node]) -> None:
    """A node whose modem id another live node declares exits 2 naming that node, and
    serves nothing; once the other node stopped, the same config starts.

    1. node a runs with modem "a0";
    2. node b, configured with a modem also called "a0", exits 2; its stderr
       names the modem id and node a;
    3. b left no trace: no `nodes` row, no modem opened, no crash recovery
       run, and `smsd status` on a lists node a alone
       with its one modem;
    4. a stops (SIGTERM: its last heartbeat declares no modems); b, started
       again with the same config, serves "a0".
    """
    a, b = nodes
    a.start()
    b.start_sim()
    cfg = b.cfg.read_text()
    assert 'id = "b0"' in cfg
    b.cfg.write_text(cfg.replace('id = "b0"', 'id = "a0"'))
    b.spawn_daemon()
    assert b.daemon is not None
    assert b.daemon.wait(EXIT_DEADLINE_S) == 2
    err = b.log.read_text()
    assert 'smsd: cannot start: modem id "a0" (node "a") already declared' in err, err

    assert [r["name"] for r in pg_rows(a.dsn, "SELECT name FROM nodes ORDER BY name")] == ["a"]
    assert "modem.added" not in err and "dispatcher.recovered" not in err, err
    shown = status(a)
    assert "node a: alive (this node)" in shown, shown
    assert "node b" not in shown, shown
    assert shown.count("modem a0:") == 1, shown

    assert a.stop_daemon() == 0
    b.start_daemon()
    wait_until("b serving a0 in its heartbeat", lambda: any(
        m["id"] == "a0" and m["state"] == "ready"
        for r in pg_rows(b.dsn, "SELECT modems::text AS m FROM nodes WHERE name = 'b'")
        for m in json.loads(r["m"])), [b.log])
