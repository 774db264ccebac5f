"""Faults armed for a moment of the SMS exchange (smsd/simulator/faults.py), on the wire."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from smsd.codec import pdu
from smsd.simulator.farm import SimulatorFarm
from smsd.simulator.faults import glue
from smsd.simulator.modem import SimulatedModem
from tests.fakes.raw_at import quiet
from tests.modem.conftest import eventually

pytestmark = pytest.mark.timeout(30)

SUB = pdu.encode_submit("+447700900123", "armed")[0]
NOISE = b"\xff\xfe"


def _gone(path: str) -> bool:
    return not os.path.lexists(path)


@pytest.fixture
async def farm_control(tmp_path):
    """One simulated modem with its control socket: returns (modem, socket path)."""
    farms: list[SimulatorFarm] = []

    async def start() -> tuple[SimulatedModem, str]:
        farm = SimulatorFarm(1, link=str(tmp_path / "tty"), control=str(tmp_path / "ctl"))
        await farm.start()
        farms.append(farm)
        return farm.modems[0], str(tmp_path / "ctl")

    yield start
    for farm in farms:
        await farm.stop()


async def _ask(path: str, req: dict[str, object]) -> dict[str, object]:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(json.dumps(req).encode() + b"\n")
        await writer.drain()
        answer: dict[str, object] = json.loads(await asyncio.wait_for(reader.readline(), 10))
        return answer
    finally:
        writer.close()


class TestGlue:
    def test_lands_at_the_start_of_the_named_line(self) -> None:
        """Noise goes before the n-th non-empty line: the prompt, the +CMGS line, a PDU line."""
        assert glue(b"\r\n> ", b"~", 1) == b"\r\n~> "
        assert glue(b"\r\n+CMGS: 5\r\n\r\nOK\r\n", b"~", 1) == b"\r\n~+CMGS: 5\r\n\r\nOK\r\n"
        assert glue(b"\r\n+CMGR: 0,,9\r\nAB\r\n\r\nOK\r\n", b"~", 2) == \
            b"\r\n+CMGR: 0,,9\r\n~AB\r\n\r\nOK\r\n"


class TestArmed:
    async def test_garbage_at_cmgs_spoils_the_answer_line(self, open_at, farm_control) -> None:
        """``garbage`` armed for ``cmgs`` with ``wait``: the SMS is accepted, the answer's
        +CMGS line carries the noise, and the control answer names the accepted SMS."""
        sim, control = await farm_control()
        at = open_at(sim.path)
        await quiet(at)
        waiting = asyncio.create_task(_ask(control, {"cmd": "garbage", "modem": 0, "at": "cmgs",
                                                     "hex": NOISE.hex(), "wait": True}))
        await eventually(lambda: sim.faults.pending() == 1)
        await at.cmd(f"AT+CMGS={SUB.tpdu_length}")
        at.write(SUB.hex.encode() + b"\x1a")
        reply = await at.until(b"OK\r\n")
        assert NOISE + b"+CMGS: " in reply
        answer = await waiting
        fired = answer["fired"]
        assert answer["ok"] and isinstance(fired, dict)
        assert fired["moment"] == "cmgs" and fired["submitted"]["to"] == "+447700900123"
        assert [s.pdu.text for s in sim.submissions] == ["armed"]

    async def test_silent_at_prompt_never_prompts(self, open_at, farm_control) -> None:
        """``silent`` armed for ``prompt``: AT+CMGS gets no ``> ``, and nothing more after."""
        sim, control = await farm_control()
        at = open_at(sim.path)
        await quiet(at)
        assert (await _ask(control, {"cmd": "silent", "modem": 0, "at": "prompt"}))["armed"] \
            == "prompt"
        with pytest.raises(TimeoutError):
            await at.cmd(f"AT+CMGS={SUB.tpdu_length}", deadline_s=0.5)
        assert b">" not in at.buf and sim.port.silent

    async def test_unplug_at_cmgs_takes_the_sms_then_vanishes(self, open_at, farm_control) -> None:
        """``unplug`` armed for ``cmgs``: the network has the SMS, no answer comes, the
        port hangs up and the link is gone (no stale pty number to reopen)."""
        sim, control = await farm_control()
        at = open_at(sim.path)
        await quiet(at)
        await _ask(control, {"cmd": "unplug", "modem": 0, "at": "cmgs"})
        await at.cmd(f"AT+CMGS={SUB.tpdu_length}")
        at.write(SUB.hex.encode() + b"\x1a")
        await eventually(lambda: not sim.plugged)
        assert len(sim.submissions) == 1 and b"+CMGS" not in at.buf
        assert _gone(sim.path)

    async def test_bad_moment_is_refused(self, farm_control) -> None:
        """An unknown moment is a clear error and arms nothing."""
        sim, control = await farm_control()
        answer = await _ask(control, {"cmd": "silent", "modem": 0, "at": "later"})
        assert answer["ok"] is False and "prompt, cmgs, cmgr" in str(answer["error"])
        assert sim.faults.pending() == 0
