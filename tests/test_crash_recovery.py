"""SIGKILL during a bulk send: after a restart every message reaches a modem.

The modems are a separate `smsd modem simulate --count 4` process, so they
outlive the daemon and their control socket tells what they really received.
Invariants 1 and 2 of DESIGN.md: nothing acknowledged is lost, and only the
messages that were `submitting` at the kill may be sent twice.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from smsd.core.dispatcher import MAX_IN_FLIGHT
from tests.daemon_rig import Rig, control, db_rows, wait_for

MESSAGES = 2000
MODEMS = 4
KILL_AFTER_SENT = 300


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path, MODEMS)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def rig1(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path, 1)
    try:
        yield r
    finally:
        r.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_mid_bulk_loses_nothing(rig: Rig) -> None:
    """Kill -9 the daemon mid-way through 2,000 sends; restart; check the modems.

    1. four simulated modems run in their own process;
    2. one API call queues 2,000 messages to distinct numbers (committed: 201);
    3. once 300 are sent, the daemon is SIGKILLed; the messages then in
       `submitting` are noted from the database;
    4. a new daemon on the same database finishes the work;
    5. every one of the 2,000 numbers reached a modem at least once, and any
       number received twice belongs to a message that was `submitting`.
    """
    rig.start_sim()
    daemon = rig.start_daemon()
    numbers = [f"+4477009{i:05d}" for i in range(MESSAGES)]
    assert len(rig.send(numbers)) == MESSAGES
    db, log, sock = rig.db, rig.log, rig.sock
    sent_sql = "SELECT COUNT(*) FROM messages WHERE state IN ('sent', 'delivered')"
    wait_for(f"{KILL_AFTER_SENT} sent", lambda: db_rows(db, sent_sql)[0][0] >= KILL_AFTER_SENT, log)
    daemon.send_signal(signal.SIGKILL)
    daemon.wait(30)
    in_flight = {
        r[0]
        for r in db_rows(
            db,
            "SELECT DISTINCT m.recipient FROM messages m LEFT JOIN message_parts p "
            "ON p.message_id = m.id WHERE m.state = 'submitting' OR p.state = 'submitting'",
        )
    }
    done_at_kill = db_rows(db, sent_sql)[0][0]
    assert done_at_kill < MESSAGES, "the kill came too late to prove anything"

    daemon = rig.start_daemon()
    wait_for(
        "all messages sent after the restart",
        lambda: db_rows(db, sent_sql)[0][0] == MESSAGES,
        log,
    )
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(30) == 0

    received: Counter[str] = Counter()
    for i in range(MODEMS):
        for sub in control(sock, {"cmd": "submitted", "modem": i})["submitted"]:  # type: ignore[union-attr]
            received[sub["to"]] += 1
    missing = set(numbers) - set(received)
    assert not missing, f"{len(missing)} messages never reached a modem"
    duplicated = {n for n, c in received.items() if c > 1}
    assert duplicated <= in_flight, (
        f"duplicates outside the submitting set: {sorted(duplicated - in_flight)[:10]}"
    )
    assert len(in_flight) <= MAX_IN_FLIGHT
    print(
        f"killed with {done_at_kill} sent, {len(in_flight)} submitting, "
        f"{len(duplicated)} sent twice"
    )


@pytest.mark.timeout(120)
def test_second_signal_forces_exit(rig1: Rig) -> None:
    """A second SIGTERM ends a drain that waits on a stuck modem.

    1. the modem goes silent, so the next AT+CMGS never gets an answer;
    2. a message is submitted and reaches `submitting` (in flight);
    3. the first SIGTERM starts the drain, which would wait for that send;
    4. a second SIGTERM forces the exit: status 1, logged as forced;
    5. the message is still `submitting` in the database, for recover() at the next start.
    """
    rig1.start_sim()
    daemon = rig1.start_daemon()
    control(rig1.sock, {"cmd": "silent", "modem": 0})
    (mid,) = rig1.send(["+447700900123"])
    state_sql = f"SELECT state FROM messages WHERE id = {int(mid)}"
    wait_for(
        "the send in flight", lambda: db_rows(rig1.db, state_sql)[0][0] == "submitting", rig1.log
    )
    daemon.send_signal(signal.SIGTERM)
    wait_for("the drain to start", lambda: "daemon.stopping" in rig1.log.read_text(), rig1.log)
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(60) == 1
    assert "daemon.forced_exit" in rig1.log.read_text()
    assert db_rows(rig1.db, state_sql)[0][0] == "submitting"
