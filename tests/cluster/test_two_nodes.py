"""Two nodes on one PostgreSQL database; one of them is SIGKILLed mid-run.

Issue 18, "Tests and benchmarks": two daemons, each with 4 simulated modems of
its own (their own simulator process: the modems plugged into that host),
2,000 messages submitted through both APIs, node B killed with SIGKILL while
its modems are sending.  Invariants 1 and 2 of DESIGN.md across nodes: no
acknowledged message is lost, and only the parts that were ``submitting`` on
B at the kill may reach the network twice.  B, restarted, recovers its own
messages left in flight (node A never touches a live node's messages, and B's
restart comes long before its heartbeat would be declared dead).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.rig import FINAL_STATES, Node, pg_rows, pg_value, user_block, wait_until

MESSAGES = 2000
MODEMS = 4
# Kill B once this many are sent: early enough that most of the run is left.
KILL_AFTER_SENT = 300
# Each SMS-SUBMIT takes the simulated network this long: at 8 modems the run
# lasts seconds, so the kill lands mid-run however busy the machine is.
SEND_MS = 40

# Carol's office number (DID) is B's first modem: her messages are B's to send.
B_DID = "+447700920001"
B_DID_MESSAGES = 100

SENT_SQL = "SELECT COUNT(*) FROM messages WHERE state IN ('sent', 'delivered')"
FINAL_SQL = ("SELECT COUNT(*) FROM messages WHERE state IN ("
             + ", ".join(f"'{s}'" for s in FINAL_STATES) + ")")
# Messages node B had on a modem at the kill: the only ones allowed twice.
B_SUBMITTING_SQL = (
    "SELECT DISTINCT m.recipient FROM messages m LEFT JOIN message_parts p "
    "ON p.message_id = m.id WHERE m.node = 'b' "
    "AND (m.state = 'submitting' OR p.state = 'submitting')"
)


@pytest.fixture
def nodes(tmp_path: Path, pg_smsd_dsn: str) -> Iterator[tuple[Node, Node]]:
    users = user_block("bulk", "100") + user_block("carol", "202", office=B_DID)
    sim = ("--send-ms", str(SEND_MS))
    a = Node(tmp_path, "a", pg_smsd_dsn, modems=MODEMS, first_number="+447700910001",
             users=users, sim_args=sim)
    b = Node(tmp_path, "b", pg_smsd_dsn, modems=MODEMS, first_number="+447700920001",
             users=users, sim_args=sim)
    try:
        yield a, b
    finally:
        b.close()
        a.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_of_one_node_loses_nothing(nodes: tuple[Node, Node]) -> None:
    """Kill -9 node B mid-way through 2,000 sends shared by two nodes; restart it.

    1. nodes A and B run on one database, each with 4 simulated modems of its
       own (modem ids a0..a3 and b0..b3);
    2. 1,000 messages are submitted through A's API (100 of them from carol,
       whose DID is B's modem b0, so they are B's to send) and 1,000 through
       B's (committed: 201), distinct numbers;
    3. once 300 are sent and B has a part on a modem, B is SIGKILLed; the
       messages then ``submitting`` on B are noted from the database;
    4. A carries on meanwhile; B is restarted on the same database and modems
       and resolves its own messages left in flight;
    5. all 2,000 end final and sent (carol's too, once B is back); every
       number reached a modem of A or B, and any number that reached the
       network twice was ``submitting`` on B;
    6. both nodes did part of the work (the claims were shared).
    """
    a, b = nodes
    t0 = time.monotonic()
    Node.start_all([a, b])
    numbers = [f"+4477009{i:05d}" for i in range(MESSAGES)]
    wait_until("B's modem b0 in A's view of the nodes", lambda: a.sees_modem("b", B_DID),
               [a.log, b.log])
    half = MESSAGES // 2
    assert len(a.send(numbers[:B_DID_MESSAGES], user="carol")) == B_DID_MESSAGES
    assert len(a.send(numbers[B_DID_MESSAGES:half])) == half - B_DID_MESSAGES
    assert len(b.send(numbers[half:])) == half
    t_sub = time.monotonic()
    dsn, logs = a.dsn, [a.log, b.log]

    def kill_point() -> bool:
        sent = int(pg_value(dsn, SENT_SQL))
        return sent >= KILL_AFTER_SENT and bool(pg_rows(dsn, B_SUBMITTING_SQL))

    wait_until(f"{KILL_AFTER_SENT} sent and a part on one of B's modems", kill_point, logs)
    b.kill()
    t_kill = time.monotonic()
    in_flight = {r[0] for r in pg_rows(dsn, B_SUBMITTING_SQL)}
    done_at_kill = int(pg_value(dsn, SENT_SQL))
    assert done_at_kill < MESSAGES, "the kill came too late to prove anything"

    b.start_daemon()
    wait_until("all 2,000 final", lambda: int(pg_value(dsn, FINAL_SQL)) == MESSAGES, logs,
               every_s=0.5)
    t_end = time.monotonic()
    states = Counter(r[0] for r in pg_rows(dsn, "SELECT state FROM messages"))
    assert states["sent"] + states["delivered"] == MESSAGES, states
    assert b.stop_daemon() == 0
    assert a.stop_daemon() == 0

    received = a.received() + b.received()
    missing = set(numbers) - set(received)
    assert not missing, f"{len(missing)} messages never reached a modem"
    duplicated = {n for n, c in received.items() if c > 1}
    assert duplicated <= in_flight, (
        f"duplicates outside B's submitting set: {sorted(duplicated - in_flight)[:10]}"
    )
    by_a, by_b = sum(a.received().values()), sum(b.received().values())
    carol = set(numbers[:B_DID_MESSAGES])
    carol_by_b0 = sum(1 for s in b.submitted() if s["modem"] == "b0" and s["to"] in carol)
    assert by_a > 0 and by_b > 0, (by_a, by_b)
    print(f"killed B with {done_at_kill} sent, {len(in_flight)} submitting on B, "
          f"{len(duplicated)} sent twice; SUBMITs on A {by_a}, on B {by_b} "
          f"(carol's by b0: {carol_by_b0}/{B_DID_MESSAGES}); "
          f"start {t_sub - t0:.1f}s, to kill {t_kill - t_sub:.1f}s, rest {t_end - t_kill:.1f}s")
