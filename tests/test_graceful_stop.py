"""A graceful stop hands nothing new to a modem (DESIGN.md invariant 7; issue 15, defect 2).

Someone who stops the daemon to halt a mistaken bulk send expects it to
stop: on SIGTERM only the SMS already talking to a modem may still go out;
every message not yet talking to one goes back to 'queued' at once, no part
is left 'submitting', and a restart sends each remaining message once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.daemon_rig import Rig, wait_for

MODEMS = 4
MESSAGES = 60
STOP_AFTER_SENT = 8


@pytest.fixture
def slow_rig(tmp_path: Path) -> Iterator[Rig]:
    # 150 ms per answer: an SMS (AT+CMGS=, then the PDU) takes 300 ms.
    rig = Rig(tmp_path, MODEMS, sim_args=("--latency-ms", "150"))
    try:
        yield rig
    finally:
        rig.close()


@pytest.mark.timeout(180)
def test_sigterm_starts_no_new_send(slow_rig: Rig) -> None:
    """SIGTERM mid-bulk: no new SUBMIT after the signal beyond those in flight; a restart
    sends the rest once each.

    1. four simulated modems at 300 ms per SMS; 60 messages are queued;
    2. once 8 are sent, SIGTERM; the daemon exits 0;
    3. the modems accepted at most one SMS each after the signal (one in flight per modem);
    4. nothing is left sending/submitting: what was not sent is 'queued';
    5. a new daemon sends the rest: every message reached a modem exactly once.
    """
    rig = slow_rig
    rig.start_sim()
    rig.start_daemon()
    sent = [f"+4477009{i:05d}" for i in range(MESSAGES)]
    rig.send(sent)
    done = "SELECT COUNT(*) FROM messages WHERE state IN ('sent', 'delivered')"
    wait_for(f"{STOP_AFTER_SENT} sent", lambda: rig.count(done) >= STOP_AFTER_SENT, rig.log)
    signalled = datetime.now(UTC)
    assert rig.stop_daemon() == 0
    after = [s for s in rig.submitted() if datetime.fromisoformat(s["at"]) > signalled]
    assert len(after) <= MODEMS, f"{len(after)} SMS submitted after SIGTERM"
    assert rig.count("SELECT COUNT(*) FROM messages "
                     "WHERE state IN ('sending', 'submitting')") == 0
    assert rig.count("SELECT COUNT(*) FROM message_parts WHERE state = 'submitting'") == 0
    unsent = rig.count("SELECT COUNT(*) FROM messages WHERE state = 'queued'")
    assert unsent == MESSAGES - rig.count(done) and unsent > 0

    rig.start_daemon()
    wait_for("all sent after the restart", lambda: rig.count(done) == MESSAGES, rig.log)
    received = rig.received()
    assert set(received) == set(sent)
    assert max(received.values()) == 1, {n: c for n, c in received.items() if c > 1}
    assert not rig.tracebacks(), "\n".join(rig.tracebacks())
