"""A message submitted on node A whose DID is a modem on node B.

Issue 18: "a message submitted on node A to a modem on node B starts its
AT+CMGS within 50 ms on loopback" -- new work wakes the other nodes'
dispatchers through LISTEN/NOTIFY, not their idle poll.  The message must
also go out from the DID's own SIM (replies come back to that number), so
node A, whose modems are not that DID, leaves it to B.

Nothing here is timed: the test waits for the SUBMIT on B's modem with a
deadline of half the dispatcher's idle poll, which it could only meet through
the NOTIFY (the bench measures the latency itself).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from smsd.core.dispatcher import IDLE_POLL_S
from tests.cluster.rig import Node, pg_rows, pg_value, user_block, wait_until
from tests.daemon_rig import control

B_NUMBER = "+447700920001"
# Enough that, were node A to claim messages of B's DID, it would get some:
# A's own dispatcher is woken by the submit at the same moment as B's.
MESSAGES = 10


@pytest.fixture
def nodes(tmp_path: Path, pg_smsd_dsn: str) -> Iterator[tuple[Node, Node]]:
    users = user_block("bulk", "100") + user_block("alice", "201", office=B_NUMBER)
    a = Node(tmp_path, "a", pg_smsd_dsn, modems=2, first_number="+447700910001", users=users)
    b = Node(tmp_path, "b", pg_smsd_dsn, modems=1, first_number=B_NUMBER, users=users)
    try:
        yield a, b
    finally:
        b.close()
        a.close()


@pytest.mark.timeout(180)
def test_message_for_a_modem_on_the_other_node_wakes_that_node(
        nodes: tuple[Node, Node]) -> None:
    """Submitted on A from B's DID: sent by B's modem, woken by NOTIFY, not by a poll.

    1. node A (modems a0, a1) and node B (modem b0, number +447700920001)
       run on one database; both are idle (their dispatchers sleep until the
       idle poll, a minute away);
    2. A's /api/v1/nodes shows b0 ready on the live node B;
    3. alice, whose office number (DID) is b0's number, submits 10 SMS
       through A's API;
    4. b0 receives the first SMS-SUBMIT within half the idle poll, so B's
       dispatcher was woken by A's commit (LISTEN/NOTIFY);
    5. all 10 went out through b0 and none through A's modems (A, woken by
       its own submit, left them to B), each recorded as sent by node B.
    """
    a, b = nodes
    b.start()
    a.start()
    logs = [a.log, b.log]
    wait_until("node B's modem in A's view of the nodes", lambda: a.sees_modem("b", B_NUMBER), logs)

    numbers = [f"+4477009005{i:02d}" for i in range(MESSAGES)]
    ids = a.send(numbers, "from the DID on node B", user="alice")
    wait_until("the first SUBMIT on B's modem", lambda: bool(b.submitted()), logs,
               deadline_s=IDLE_POLL_S / 2, every_s=0.02)

    finals = "SELECT COUNT(*) FROM messages WHERE state IN ('sent', 'delivered')"
    wait_until("every message sent", lambda: pg_value(a.dsn, finals) == MESSAGES, logs)
    assert sorted(s["to"] for s in b.submitted()) == numbers
    assert a.submitted() == []
    rows = pg_rows(a.dsn, "SELECT node, gateway, did FROM messages WHERE id = ANY($1)", ids)
    assert {(r["node"], r["gateway"], r["did"]) for r in rows} == {("b", "gsm", B_NUMBER)}
    details = {h["detail"] for i in ids for h in a.api("GET", f"/api/v1/sms/{i}")[1]["history"]
               if h["state"] == "sent"}
    assert details == {"gsm via b0"}, details


@pytest.mark.timeout(180)
def test_message_of_a_downed_modem_on_the_other_node_is_sent_here(
        nodes: tuple[Node, Node]) -> None:
    """B's DID modem goes down: A sends the messages left to it, without waiting a poll.

    1. nodes A (a0, a1) and B (b0, alice's DID) run on one database, A sees b0
       ready in B's heartbeat;
    2. right after one of B's heartbeats, b0 is unplugged and alice submits
       an SMS on A: A's claim still reads b0 as ready and leaves it to B,
       which has no modem to send it with;
    3. B's next heartbeat shows b0 gone; A, looking again at what it left
       to others every few seconds, claims it and sends it through a0 or
       a1 well before its idle poll (half of IDLE_POLL_S);
    4. the message is sent once, by node A, from a modem of A.
    """
    a, b = nodes
    b.start()
    a.start()
    logs = [a.log, b.log]
    wait_until("node B's modem in A's view of the nodes", lambda: a.sees_modem("b", B_NUMBER),
               logs)
    beat_sql = "SELECT heartbeat_at FROM nodes WHERE name = 'b'"
    last = pg_value(a.dsn, beat_sql)
    wait_until("a heartbeat of B", lambda: pg_value(a.dsn, beat_sql) != last, logs,
               every_s=0.02)
    control(b.sock, {"cmd": "unplug", "modem": 0})
    (mid,) = a.send(["+447700900600"], "b0 is gone", user="alice")

    wait_until("the SUBMIT on one of A's modems", lambda: bool(a.submitted()), logs,
               deadline_s=IDLE_POLL_S / 2, every_s=0.05)
    assert [s["to"] for s in a.submitted()] == ["+447700900600"]
    assert b.submitted() == []
    wait_until("the message sent", lambda: pg_value(
        a.dsn, "SELECT state FROM messages WHERE id = $1", mid) in ("sent", "delivered"), logs)
    assert pg_value(a.dsn, "SELECT node FROM messages WHERE id = $1", mid) == "a"
