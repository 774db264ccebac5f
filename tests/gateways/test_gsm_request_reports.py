"""Per-modem ``request_reports``: TP-SRR is set or not by the modem that sends.

Real processes: `smsd modem simulate --count 2` and `smsd run --config` with
two modems, the second configured ``request_reports = false``.  The evidence
is the PDUs the simulator received, decoded with the production codec and
checked bit by bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smsd.codec.pdu import SubmitPdu, decode
from tests.daemon_rig import Rig, db_rows, wait_for

# TP-SRR: bit 5 of the SMS-SUBMIT's first octet (3GPP TS 23.040 9.2.2.2).
TP_SRR = 0x20
# Batches sent until both modems have taken at least one message.
MAX_BATCHES = 10


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    # 300 ms per send keeps one modem busy while the next message is routed,
    # so both modems are used.
    r = Rig(tmp_path, 2, sim_args=("--send-ms", "300"))
    try:
        yield r
    finally:
        r.close()


def first_octet(hex_pdu: str) -> int:
    """The TPDU's first octet: after the SMSC part (its length octet, then that many)."""
    raw = bytes.fromhex(hex_pdu)
    return raw[1 + raw[0]]


def handed_over(rig: Rig, count: int) -> Callable[[], bool]:
    """True once the simulated modems together accepted ``count`` SUBMITs."""
    return lambda: len(rig.submitted()) == count


@pytest.mark.timeout(240)
def test_request_reports_is_per_modem(rig: Rig) -> None:
    """A modem with request_reports = false sends SUBMITs without TP-SRR; the other
    modem keeps asking for reports, and only its messages are marked delivered.

    1. the daemon starts with gsm0 (default) and gsm1 (request_reports = false);
    2. messages are sent until both simulated modems received some;
    3. every PDU received by modem 0 has TP-SRR set, every one of modem 1 has it
       clear (decoded by smsd.codec.pdu and read from the first octet);
    4. modem 0's messages become delivered (the simulator reports what was
       asked for); modem 1's stay sent.
    """
    rig.start_sim()
    cfg = rig.cfg.read_text()
    assert 'id = "gsm1"\n' in cfg
    rig.cfg.write_text(cfg.replace('id = "gsm1"\n', 'id = "gsm1"\nrequest_reports = false\n'))
    rig.start_daemon()

    sent: list[str] = []
    for batch in range(MAX_BATCHES):
        numbers = [f"+4477009{batch:02d}{i:03d}" for i in range(4)]
        rig.send(numbers)
        sent += numbers
        wait_for("every message handed to a modem", handed_over(rig, len(sent)), rig.log)
        if {s["modem"] for s in rig.submitted()} == {0, 1}:
            break
    subs = rig.submitted()
    assert {s["modem"] for s in subs} == {0, 1}, subs

    by_modem: dict[int, list[str]] = {0: [], 1: []}
    for sub in subs:
        pdu = decode(sub["pdu"])
        assert isinstance(pdu, SubmitPdu)
        wants_report = sub["modem"] == 0
        assert pdu.request_report is wants_report, sub
        assert bool(first_octet(sub["pdu"]) & TP_SRR) is wants_report, sub
        by_modem[sub["modem"]].append(sub["to"])

    def state(number: str) -> str:
        return str(db_rows(rig.db, "SELECT state FROM messages WHERE recipient = ?",
                           (number,))[0][0])

    wait_for("modem 0's messages delivered",
             lambda: all(state(n) == "delivered" for n in by_modem[0]), rig.log)
    assert {state(n) for n in by_modem[1]} == {"sent"}
