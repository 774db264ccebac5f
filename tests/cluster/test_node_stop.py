"""A node's graceful stop leaves the other nodes' sends alone.

A clean stop resolves what this node still has in flight (DESIGN.md: nothing
left ``submitting`` after a clean stop).  On the shared PostgreSQL store the
messages in flight on another, live node are that node's: resolving them too
would put back in the queue a message whose PDU is on its way through the
other node's modem, and send it twice (a rolling restart would do it every
time).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.rig import Node, pg_rows, user_block, wait_until

A_NUMBER = "+447700910001"
# A's modem takes this long per SMS: the send is still on the modem while B
# stops (B's stop takes a second or two, and nothing here waits for the send).
A_SEND_MS = 120_000


@pytest.fixture
def nodes(tmp_path: Path, pg_smsd_dsn: str) -> Iterator[tuple[Node, Node]]:
    users = user_block("bulk", "100") + user_block("alice", "201", office=A_NUMBER)
    a = Node(tmp_path, "a", pg_smsd_dsn, modems=1, first_number=A_NUMBER, users=users,
             sim_args=("--send-ms", str(A_SEND_MS)))
    b = Node(tmp_path, "b", pg_smsd_dsn, modems=1, first_number="+447700920001", users=users)
    try:
        yield a, b
    finally:
        for node in (b, a):
            if node.daemon is not None and node.daemon.poll() is None:
                node.kill()
            node.close()


@pytest.mark.timeout(180)
def test_graceful_stop_of_one_node_leaves_the_others_sends(nodes: tuple[Node, Node]) -> None:
    """SIGTERM on node B while node A's modem is sending: A's message stays A's.

    1. nodes A (modem a0, slow network) and B (modem b0) share one database;
    2. once B sees a0 ready in A's heartbeat, alice, whose DID is a0's
       number, submits one SMS: A claims it and its part is ``submitting``
       on a0;
    3. B is stopped with SIGTERM and exits 0 after its drain;
    4. the message is still ``submitting`` on node A, and its history has no
       entry written by B's stop.
    """
    a, b = nodes
    a.start()
    b.start()
    wait_until("A's modem in B's view of the nodes", lambda: b.sees_modem("a", A_NUMBER),
               [a.log, b.log])
    (mid,) = a.send(["+447700900777"], "slow", user="alice")
    row_sql = "SELECT state, node FROM messages WHERE id = $1"
    wait_until("the part on A's modem",
               lambda: tuple(pg_rows(a.dsn, row_sql, mid)[0]) == ("submitting", "a"),
               [a.log, b.log])

    assert b.stop_daemon() == 0

    assert tuple(pg_rows(a.dsn, row_sql, mid)[0]) == ("submitting", "a")
    history = [(r[0], r[1]) for r in pg_rows(
        a.dsn, "SELECT state, detail FROM message_history WHERE message_id = $1 ORDER BY id",
        mid)]
    assert not any("stopped while sending" in (d or "") for _, d in history), history
