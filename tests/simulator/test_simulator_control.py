"""Failure injection and the JSON-lines control socket of the simulator farm."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from smsd.codec import pdu
from smsd.simulator.farm import SimulatorFarm
from tests.fakes.raw_at import quiet

pytestmark = pytest.mark.timeout(30)


async def _ask(path: str, *requests: dict | bytes) -> list[dict]:
    reader, writer = await asyncio.open_unix_connection(path)
    answers = []
    try:
        for req in requests:
            raw = req if isinstance(req, bytes) else json.dumps(req).encode()
            writer.write(raw + b"\n")
            await writer.drain()
            answers.append(json.loads(await asyncio.wait_for(reader.readline(), 5)))
    finally:
        writer.close()
    return answers


def _target(path: str) -> str:
    return os.path.realpath(path)


def _is_link(path: object) -> bool:
    return os.path.islink(str(path))


def _exists(path: object) -> bool:
    return os.path.exists(str(path))


@pytest.fixture
async def farm(tmp_path: Path):
    f = SimulatorFarm(2, link=str(tmp_path / "tty"), control=str(tmp_path / "ctl"))
    await f.start()
    yield f
    await f.stop()


class TestFarm:
    async def test_links_and_numbers(self, farm, tmp_path):
        """N modems get links PATH0..PATHn-1 to distinct ptys and consecutive own numbers."""
        assert farm.links == [str(tmp_path / "tty0"), str(tmp_path / "tty1")]
        targets = {_target(link) for link in farm.links}
        assert len(targets) == 2 and all(t.startswith("/dev/pts/") for t in targets)
        assert [m.state.sim.own_number for m in farm.modems] == ["+447700900001",
                                                                 "+447700900002"]

    async def test_stop_removes_links_and_socket(self, tmp_path):
        """Stopping the farm leaves no link or socket behind."""
        f = SimulatorFarm(1, link=str(tmp_path / "one"), control=str(tmp_path / "c"))
        await f.start()
        assert _is_link(tmp_path / "one") and _exists(tmp_path / "c")
        await f.stop()
        assert not _is_link(tmp_path / "one") and not _exists(tmp_path / "c")


class TestControlSocket:
    async def test_bad_requests_get_errors_and_change_nothing(self, farm):
        """Malformed or unknown requests answer ok=false; the connection keeps working."""
        answers = await _ask(farm.control, b"{not json", {"cmd": "fly"},
                             {"cmd": "deliver", "modem": 7, "from": "+447700900555", "text": "x"},
                             {"cmd": "deliver", "from": "+447700900555", "text": "x",
                              "order": [1, 1]},
                             {"cmd": "report", "mr": 999, "to": "+447700900555"},
                             {"cmd": "modems"})
        assert [a["ok"] for a in answers] == [False] * 5 + [True]
        assert "not valid JSON" in answers[0]["error"]
        assert "unknown cmd" in answers[1]["error"]
        assert "no modem 7" in answers[2]["error"]
        assert farm.modems[0].stored("SM") == {}
        assert [m["modem"] for m in answers[5]["modems"]] == [0, 1]

    async def test_unencodable_requests_are_refused_cleanly(self, farm):
        """A text too long for 255 parts, or a bad recipient, is a client error, not a crash."""
        answers = await _ask(farm.control,
                             {"cmd": "deliver", "from": "+447700900555", "text": "x" * 60000},
                             {"cmd": "deliver", "from": "A very long sender name", "text": "x"},
                             {"cmd": "report", "mr": 1, "to": "not a number"},
                             {"cmd": "modems"})
        assert [a["ok"] for a in answers] == [False, False, False, True]
        assert not any("internal error" in a.get("error", "") for a in answers)
        assert farm.modems[0].stored("SM") == {}

    async def test_deliver_in_order_and_submitted(self, farm, open_at):
        """deliver stores the parts in the given arrival order; submitted lists sends."""
        (ans,) = await _ask(farm.control, {"cmd": "deliver", "modem": 1, "from": "+447700900555",
                                           "text": "z" * 400, "order": [3, 1, 2]})
        assert ans == {"ok": True}
        parts = [pdu.decode(p).part for _, (_, p) in sorted(farm.modems[1].stored("SM").items())]
        assert parts == [3, 1, 2]
        at = open_at(farm.modems[0].path)
        await quiet(at)
        sub = pdu.encode_submit("+447700900123", "report me")[0]
        await at.cmd(f"AT+CMGS={sub.tpdu_length}")
        at.write(sub.hex.encode() + b"\x1a")
        await at.until(b"OK\r\n")
        (ans,) = await _ask(farm.control, {"cmd": "submitted", "modem": 0})
        (entry,) = ans["submitted"]
        assert entry["to"] == "+447700900123" and entry["text"] == "report me"
        assert entry["mr"] == 0 and entry["parts"] == 1 and entry["pdu"] == sub.hex


class TestInjection:
    async def test_unplug_hangs_up_and_replug_repoints(self, make_sim, open_at):
        """Unplug: the open fd sees hang-up and the link is gone; replug: a new pty behind it."""
        sim = await make_sim()
        at = open_at(sim.path)
        await quiet(at)
        await sim.unplug()
        with pytest.raises(OSError):       # EIO on write, or hang-up on read
            await at.cmd("AT")
        # Removed, not left dangling: a reused /dev/pts/N must never be reached through it.
        assert not _is_link(sim.path) and not _exists(sim.path)
        assert sim.slave_path and not sim.plugged
        await sim.deliver("+447700900555", "while away")   # the network holds it
        await sim.replug()
        assert _target(sim.path) == sim.slave_path and _exists(sim.path)
        again = open_at(sim.path)
        assert (await again.cmd("AT")).endswith(b"\r\nOK\r\n")
        await quiet(again)
        assert b"+CMGL: 1,0,," in await again.cmd("AT+CMGL=4")

    async def test_silent_then_loud(self, make_sim, open_at):
        """A silent modem swallows commands unanswered; once loud again it answers."""
        sim = await make_sim()
        at = open_at(sim.path)
        await quiet(at)
        sim.set_silent(True)
        with pytest.raises(TimeoutError):
            await at.cmd("AT", deadline_s=0.3)
        sim.set_silent(False)
        at.buf.clear()
        assert await at.cmd("AT") == b"\r\nOK\r\n"

    async def test_garbage_reaches_the_line(self, make_sim, open_at):
        """spew_garbage puts raw bytes on the line, and the modem still answers after."""
        sim = await make_sim()
        at = open_at(sim.path)
        await quiet(at)
        await sim.spew_garbage(b"\x00\xff\xfe\r\nNO CARRIER?\x07\r\n")
        await at.until(b"\x07\r\n")
        assert await at.cmd("AT") == b"\r\nOK\r\n"

    async def test_reboot_with_cfun(self, make_sim, open_at):
        """AT+CFUN=1,1 answers OK, then the modem boots again with echo back on."""
        sim = await make_sim(profile="simcom")
        at = open_at(sim.path)
        await quiet(at)
        assert (await at.cmd("AT+CFUN=1,1")).endswith(b"\r\nOK\r\n")
        await at.until(b"PB DONE\r\n")
        assert await at.cmd("AT") == b"AT\r\r\nOK\r\n"
