"""Faults on a modem's line mid-run: nothing lost, nothing stranded, no tracebacks.

Issue 10's rows, each with real processes: four simulated modems in their
own process (50 ms per answer), the daemon as ``smsd run --config``, a bulk
send to distinct numbers (each message's number is its id), and one fault
armed on modem 0 for the moment that matters (faults.py of the simulator:
before ``> ``, between the PDU and ``+CMGS``, inside a ``+CMGR`` answer).
The control socket answers once the fault fired, naming what was in flight;
then every message must become final (sent/delivered, or failed with a
reason), every sent one must have reached a modem (0 lost), a message may
reach modems twice only if it was in flight at the fault, and the daemon's
log must carry no traceback.  Issue 15 defects 3 and 4 (a vanished modem,
a port lost mid-AT+CMGS under each policy) use the same rig.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_rig import Rig, control, ready_modems, wait_for

MODEMS = 4
MESSAGES = 48
# Not printable, no line end: line noise that spoils the line it lands on.
NOISE = "fffe13f0"
# The answer to AT+CMGS may take this long here (config send_timeout_s), so
# a modem silent after the PDU is given up on within the test's deadlines.
SEND_TIMEOUT_S = 3

pytestmark = [pytest.mark.timeout(180)]


def numbers(n: int = MESSAGES) -> list[str]:
    return [f"+4477009{i:05d}" for i in range(n)]


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[object]:
    rigs: list[Rig] = []

    def make(policy: str = "", modem_extra: str = "", modems: int = MODEMS) -> Rig:
        rig = Rig(tmp_path, modems, sim_args=("--latency-ms", "50"), policy=policy,
                  modem_extra=modem_extra)
        rigs.append(rig)
        rig.start_sim()
        rig.start_daemon()
        return rig

    yield make
    for rig in rigs:
        rig.close()


def check_outcome(rig: Rig, sent: list[str], in_flight: set[str]) -> None:
    """0 lost, duplicates only among ``in_flight``, failures with a reason, no tracebacks."""
    wait_for("every message final", rig.all_final, rig.log)
    states = rig.states()
    received = rig.received()
    lost = [n for n in sent if states[n][0] in ("sent", "delivered") and not received[n]]
    assert not lost, f"marked sent but never reached a modem: {lost}"
    unsent = [n for n in sent if not received[n] and states[n][0] != "failed"]
    assert not unsent, f"neither sent nor failed: {[(n, states[n]) for n in unsent]}"
    duplicated = {n for n, c in received.items() if c > 1}
    assert duplicated <= in_flight, {n: rig.history(n) for n in duplicated - in_flight}
    failed = {n: e for n, (s, e) in states.items() if s == "failed"}
    assert all(failed.values()), f"failed without a reason: {failed}"
    assert not rig.tracebacks(), "\n".join(rig.tracebacks())


def fire(rig: Rig, fault: str, moment: str, modem: int = 0, **extra: object) -> dict[str, Any]:
    """Arm ``fault`` on ``modem`` for ``moment``; returns once it fired, with what was in flight."""
    answer = control(rig.sock, {"cmd": fault, "modem": modem, "at": moment, "wait": True,
                                **extra})
    fired: dict[str, Any] = answer["fired"]
    return fired


class TestGarbage:
    def test_noise_on_one_modem_loses_nothing(self, make_rig) -> None:  # type: ignore[no-untyped-def]
        """Line noise on modem 0 at each moment that matters: nothing lost, nothing sent
        twice, nothing deferred, no traceback, the modem never restarted.

        1. 48 messages go out on four modems (each recipient is its message's id);
        2. noise spoils modem 0's next ``+CMGS: <mr>`` line while ``OK`` arrives: the
           network took that SMS, so it is 'sent' (reference unknown), never resent;
        3. noise eats the PDU line of modem 0's next ``+CMGR`` answer (a delivery
           report being read): the read is repeated at once and the report applied;
        4. noise lands before modem 0's next ``> ``: the prompt never shows, nothing
           was sent, the message goes to another modem at once (no retry_base_s wait);
        5. every message reached a modem exactly once and ends 'delivered', but the one
           whose TP-MR was garbled: 'sent' (its report cannot be matched).
        """
        rig: Rig = make_rig()
        sent = numbers()
        rig.send(sent)
        with ThreadPoolExecutor(2) as pool:
            first = [pool.submit(fire, rig, "garbage", m, hex=NOISE) for m in ("cmgs", "cmgr")]
            victim = first[0].result()["submitted"]["to"]
            first[1].result()
        # Last: the garbled prompt costs modem 0 the prompt deadline (5 s).
        fire(rig, "garbage", "prompt", hex=NOISE)
        check_outcome(rig, sent, in_flight=set())
        assert max(rig.received().values()) == 1
        assert rig.states()[victim][0] == "sent", rig.history(victim)
        assert not rig.deferred(), rig.deferred()
        wait_for("every other report applied", lambda: rig.count(
            "SELECT COUNT(*) FROM messages WHERE state != 'delivered'") == 1, rig.log)
        events = [e.get("event") for e in rig.log_events()]
        assert {"modem.read_garbled", "modem.cmgs_unreadable", "gsm.handed_on"} <= set(events)
        assert "modem.port_gone" not in events and "modem.supervisor_error" not in events


class TestSilentAndVanished:
    @pytest.mark.parametrize("policy", ["resend", "fail"])
    def test_silence_and_lost_ports(self, make_rig, policy: str) -> None:  # type: ignore[no-untyped-def]
        """Modems that fall silent or vanish mid-run, at the moments that matter, on six
        modems (two stay healthy); ``submitting_after_crash`` is ``policy``.

        1. modem 0 falls silent instead of prompting, and modem 3 is unplugged
           instead of prompting: nothing of those messages left, so each goes to
           another modem at once, and neither modem is chosen again (issue 15, 3);
        2. modem 1 takes a PDU and falls silent (send_timeout_s is 3 s), and modem 2
           takes a PDU and is unplugged before ``+CMGS`` (issue 15, 4): the network
           may have those two, so they follow the policy at once: "resend" queues
           them again (they are the only duplicates), "fail" fails them as
           "interrupted during submit" (sent once);
        3. the silent modems are declared dead within their deadlines; every other
           message is final, once; nothing is deferred; no traceback.
        """
        rig: Rig = make_rig(policy=f'submitting_after_crash = "{policy}"\n',
                            modem_extra=f"send_timeout_s = {SEND_TIMEOUT_S}\n", modems=6)
        sent = numbers()
        rig.send(sent)
        faults = [("silent", "prompt", 0), ("silent", "cmgs", 1), ("unplug", "cmgs", 2),
                  ("unplug", "prompt", 3)]
        with ThreadPoolExecutor(len(faults)) as pool:
            fired = list(pool.map(lambda f: fire(rig, f[0], f[1], f[2]), faults))
        ambiguous = {str(f["submitted"]["to"]) for f in fired if f["moment"] == "cmgs"}
        assert len(ambiguous) == 2
        check_outcome(rig, sent, in_flight=ambiguous)
        received = rig.received()
        assert all(received[n] == 1 for n in sent if n not in ambiguous)
        for victim in ambiguous:
            state, error = rig.states()[victim]
            if policy == "resend":
                assert state in ("sent", "delivered") and received[victim] == 2
            else:
                assert state == "failed" and error and "interrupted during submit" in error
                assert received[victim] == 1
            assert any("interrupted during submit" in h for h in rig.history(victim))
        assert not rig.deferred(), rig.deferred()
        assert ready_modems(rig.base) == {"gsm4", "gsm5"}
