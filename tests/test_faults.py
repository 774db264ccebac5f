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
from pathlib import Path

import pytest

from tests.daemon_rig import Rig, control, ready_modems, wait_for

MODEMS = 4
MESSAGES = 60
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

    def make(policy: str = "", modem_extra: str = "") -> Rig:
        rig = Rig(tmp_path, MODEMS, sim_args=("--latency-ms", "50"), policy=policy,
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


def fire(rig: Rig, fault: str, moment: str, **extra: object) -> dict[str, object]:
    answer = control(rig.sock, {"cmd": fault, "modem": 0, "at": moment, "wait": True, **extra})
    fired: dict[str, object] = answer["fired"]
    return fired


class TestGarbage:
    def test_noise_on_the_cmgs_answer_sends_once(self, make_rig) -> None:  # type: ignore[no-untyped-def]
        """Noise spoils the ``+CMGS: <mr>`` line while ``OK`` still arrives: the network
        took the SMS, so it is sent (reference unknown), never sent again.

        1. 60 messages go out on four modems; modem 0's next +CMGS answer is garbled;
        2. every message becomes final, every one reached a modem exactly once;
        3. the garbled one is 'sent' with no retry; no traceback in the log.
        """
        rig: Rig = make_rig()
        sent = numbers()
        rig.send(sent)
        fired = fire(rig, "garbage", "cmgs", hex=NOISE)
        victim = fired["submitted"]["to"]  # type: ignore[index]
        check_outcome(rig, sent, in_flight=set())
        assert rig.received()[victim] == 1
        assert rig.states()[victim][0] in ("sent", "delivered"), rig.history(victim)
        assert not rig.deferred()

    def test_noise_before_the_prompt_hands_the_message_on(self, make_rig) -> None:  # type: ignore[no-untyped-def]
        """Noise glued before ``> ``: the prompt never shows, nothing was sent, so the
        message goes to another modem at once (never back to the queue for retry_base_s).

        1. modem 0's next prompt is garbled; the daemon sends ESC and resyncs;
        2. every message is final and reached a modem exactly once;
        3. no message was deferred; no traceback.
        """
        rig: Rig = make_rig()
        sent = numbers()
        rig.send(sent)
        fire(rig, "garbage", "prompt", hex=NOISE)
        check_outcome(rig, sent, in_flight=set())
        assert max(rig.received().values()) == 1
        assert not rig.deferred(), rig.deferred()

    def test_noise_in_a_cmgr_answer_is_read_again(self, make_rig) -> None:  # type: ignore[no-untyped-def]
        """Noise eats the PDU line of a ``+CMGR`` answer (a delivery report being read):
        the read is repeated at once, the report applied; no traceback, no modem restart.

        1. modem 0's next AT+CMGR answer loses its PDU line to noise;
        2. every message ends 'delivered' (each report was read, the garbled one again);
        3. the modem never left 'ready' (no supervisor error, no port_gone).
        """
        rig: Rig = make_rig()
        sent = numbers()
        rig.send(sent)
        fire(rig, "garbage", "cmgr", hex=NOISE)
        check_outcome(rig, sent, in_flight=set())
        wait_for("every report applied", lambda: rig.count(
            "SELECT COUNT(*) FROM messages WHERE state != 'delivered'") == 0, rig.log)
        events = {e.get("event") for e in rig.log_events()}
        assert "modem.read_garbled" in events
        assert "modem.port_gone" not in events and "modem.supervisor_error" not in events


class TestSilent:
    def test_silent_instead_of_prompt(self, make_rig) -> None:  # type: ignore[no-untyped-def]
        """Modem 0 falls silent when it should prompt: nothing was sent, so the message
        goes to another modem at once; modem 0 is declared dead by the resync.

        1. modem 0 stops answering at its next AT+CMGS;
        2. after the prompt deadline and a failed resync modem 0 is not ready;
        3. every message is final, exactly once; none deferred; no traceback.
        """
        rig: Rig = make_rig()
        sent = numbers()
        rig.send(sent)
        fire(rig, "silent", "prompt")
        check_outcome(rig, sent, in_flight=set())
        assert max(rig.received().values()) == 1
        assert not rig.deferred(), rig.deferred()
        assert "gsm0" not in ready_modems(rig.base)

    @pytest.mark.parametrize("policy", ["resend", "fail"])
    def test_silent_after_the_pdu(self, make_rig, policy: str) -> None:  # type: ignore[no-untyped-def]
        """Modem 0 takes a PDU (the network has it) and falls silent: after its send
        deadline the part is resolved by submitting_after_crash at once.

        1. modem 0 accepts one SMS and never answers; send_timeout_s is 3 s;
        2. "resend": the message goes out again on another modem (the only duplicate);
           "fail": it fails as "interrupted during submit" and reached a modem once;
        3. every other message is final exactly once; none deferred; no traceback.
        """
        rig: Rig = make_rig(policy=f'submitting_after_crash = "{policy}"\n',
                            modem_extra=f"send_timeout_s = {SEND_TIMEOUT_S}\n")
        sent = numbers()
        rig.send(sent)
        fired = fire(rig, "silent", "cmgs")
        victim = str(fired["submitted"]["to"])  # type: ignore[index]
        check_outcome(rig, sent, in_flight={victim})
        state, error = rig.states()[victim]
        if policy == "resend":
            assert state in ("sent", "delivered") and rig.received()[victim] == 2
        else:
            assert state == "failed" and error and "interrupted during submit" in error
            assert rig.received()[victim] == 1
        assert not rig.deferred(), rig.deferred()
        assert "gsm0" not in ready_modems(rig.base)


class TestVanishedModem:
    def test_unplug_mid_run_never_defers(self, make_rig) -> None:  # type: ignore[no-untyped-def]
        """A modem unplugged mid-run is never chosen again until back; what it held
        goes to the other modems at once, not after retry_base_s (issue 15, defect 3).

        1. 60 messages on four modems; modem 0 is unplugged at its next prompt;
        2. every message is final and reached a modem exactly once; none deferred;
        3. modem 0, plugged back, is ready again.
        """
        rig: Rig = make_rig()
        sent = numbers()
        rig.send(sent)
        fire(rig, "unplug", "prompt")
        check_outcome(rig, sent, in_flight=set())
        assert max(rig.received().values()) == 1
        assert not rig.deferred(), rig.deferred()
        control(rig.sock, {"cmd": "replug", "modem": 0})
        wait_for("modem 0 back", lambda: "gsm0" in ready_modems(rig.base), rig.log)

    @pytest.mark.parametrize("policy", ["resend", "fail"])
    def test_port_lost_during_cmgs_follows_policy(self, make_rig, policy: str) -> None:  # type: ignore[no-untyped-def]
        """The port vanishes after the PDU, before ``+CMGS``: the crash-mid-submit
        ambiguity, resolved by submitting_after_crash at once (issue 15, defect 4).

        1. modem 0 accepts one SMS and is unplugged before answering;
        2. "resend": it is queued again at once and goes out on another modem;
           "fail": it fails as "interrupted during submit", sent exactly once;
        3. nothing deferred 30 s; no traceback.
        """
        rig: Rig = make_rig(policy=f'submitting_after_crash = "{policy}"\n')
        sent = numbers()
        rig.send(sent)
        fired = fire(rig, "unplug", "cmgs")
        victim = str(fired["submitted"]["to"])  # type: ignore[index]
        check_outcome(rig, sent, in_flight={victim})
        state, error = rig.states()[victim]
        if policy == "resend":
            assert state in ("sent", "delivered") and rig.received()[victim] == 2
        else:
            assert state == "failed" and error and "interrupted during submit" in error
            assert rig.received()[victim] == 1
        assert not rig.deferred(), rig.deferred()
