"""bench/c_modem.c (daemon_cost_bench.py --sim c), driven by smsd's own Modem.

The bench compares the daemon's figures under two harnesses; they compare
only if the C modem takes the daemon through the same start-up and sends as
the Python simulator does.  These tests run smsd's real device code
(open, initialise, send, status reports, reconnect) against the compiled
modem on a real pty.  Skipped where there is no C compiler.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from smsd.codec import pdu
from smsd.modem.channel import AtChannel
from smsd.modem.device import Modem
from smsd.modem.spec import ModemSpec
from smsd.modem.transport import open_transport
from tests.core.polling import eventually

SOURCE = Path(__file__).resolve().parents[2] / "bench" / "c_modem.c"
CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")

pytestmark = [pytest.mark.skipif(CC is None, reason="no C compiler"), pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("c_modem") / "c_modem"
    assert CC is not None
    subprocess.run([CC, "-O2", "-o", str(out), str(SOURCE), "-lutil"], check=True)
    return out


class CModem:
    """The running C modem: its port's path and, once stopped, its timing figures."""

    def __init__(self, proc: asyncio.subprocess.Process, path: Path, timing: Path) -> None:
        self.proc = proc
        self.path = path
        self.timing = timing

    async def stop(self) -> dict[str, list[float]]:
        assert self.proc.stdin is not None
        self.proc.stdin.close()           # it stops at the end of its input
        await self.proc.wait()
        return dict(json.loads(self.timing.read_text()))


@contextlib.asynccontextmanager
async def c_modem(binary: Path, tmp: Path, *flags: str) -> AsyncIterator[CModem]:
    link, timing = tmp / "modem", tmp / "timing.json"
    proc = await asyncio.create_subprocess_exec(
        str(binary), "-l", str(link), "-t", str(timing), *flags,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    while (line := await proc.stdout.readline()) != b"READY\n":
        assert line, "c_modem ended before READY"
    modem = CModem(proc, link, timing)
    try:
        yield modem
    finally:
        if proc.returncode is None:
            await modem.stop()


class Events:
    def __init__(self) -> None:
        self.reports: list[pdu.StatusReportPdu] = []
        self.states: list[str] = []

    async def sms_received(self, modem: str, sms: pdu.DeliverPdu) -> None:
        raise AssertionError("the C modem receives nothing")

    async def status_report(self, modem: str, report: pdu.StatusReportPdu) -> None:
        self.reports.append(report)

    def modem_state(self, modem: str, state: str, detail: str | None) -> None:
        self.states.append(state)


async def start(path: Path, events: Events) -> tuple[Modem, asyncio.Task[None]]:
    modem = Modem(ModemSpec(id="gsm0", path=str(path)), events, registration_s=5.0)
    await modem.open()
    await modem.initialise()
    return modem, asyncio.create_task(modem.run())


async def stop(modem: Modem, task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    await modem.close()


@pytest.mark.parametrize(("flags", "cnmi"), [
    ((), "AT+CNMI=2,1,0,2,0"),          # reports stored in "SR", indicated by +CDSI
    (("-c",), "AT+CNMI=2,1,0,1,0"),     # AT+CSMS=1 and +CDS, acknowledged by +CNMA
])
async def test_daemon_initialises_sends_gets_reports_and_reconnects(
        binary: Path, tmp_path: Path, flags: tuple[str, ...], cnmi: str) -> None:
    """smsd's Modem becomes ready on the C modem, with the +CNMI the modem offers; each send
    gets the next message reference (from 0) and a status report naming that reference and
    the SUBMIT's recipient, which smsd's decoder reads; after the port is closed and opened
    again (a reconnect) the modem still answers and its references go on."""
    async with c_modem(binary, tmp_path, "-r", *flags) as cm:
        events = Events()
        modem, task = await start(cm.path, events)
        assert modem.ready and modem.info.cnmi == cnmi
        assert modem.info.imei is not None and len(modem.info.imei) == 15
        assert modem.info.smsc == "+447785016005"
        refs = [await modem.send_pdu(pdu.encode_submit(to, "hello")[0])
                for to in ("+447700900123", "+447700900456")]
        assert refs == [0, 1]
        await eventually(lambda: len(events.reports) == 2)
        assert sorted((r.message_reference, r.recipient, r.status) for r in events.reports) == [
            (0, "+447700900123", 0), (1, "+447700900456", 0)]
        await stop(modem, task)

        again, task = await start(cm.path, events)
        assert await again.send_pdu(pdu.encode_submit("+447700900789", "again")[0]) == 2
        await eventually(lambda: len(events.reports) == 3)
        assert events.reports[2].recipient == "+447700900789"
        await stop(again, task)


async def test_timed_reply_waits_its_latency_and_is_recorded(binary: Path, tmp_path: Path) -> None:
    """With -L 50 an answer is written no sooner than 50 ms after its command, and the
    modem records each timed reply's lateness (never negative) and the time from a send's
    result to the next AT+CMGS on that port."""
    async with c_modem(binary, tmp_path, "-L", "50") as cm:
        channel = AtChannel(await open_transport(str(cm.path)), lambda urc: None)
        channel.start()
        try:
            t0 = time.monotonic()
            await channel.command("ATE0")
            assert time.monotonic() - t0 >= 0.05
            part = pdu.encode_submit("+447700900123", "hello")[0]
            for _ in range(2):
                await channel.command_with_pdu(f"AT+CMGS={part.tpdu_length}", part.hex,
                                               prompt_s=5, wait_s=5, answer_prefix="+CMGS:")
        finally:
            await channel.close()
        timing = await cm.stop()
    assert len(timing["late"]) == 5            # ATE0, then a prompt and a result per send
    assert min(timing["late"]) >= 0
    assert len(timing["turnaround"]) == 1      # result of the first send -> second AT+CMGS


async def test_full_report_memory_holds_reports_back_until_a_slot_is_freed(
        binary: Path, tmp_path: Path) -> None:
    """With "SR" full (50 reports) the next report is held, not dropped, and arrives in the
    slot AT+CMGD frees; a SUBMIT that asked for no report (TP-SRR 0) gets none."""
    urcs: list[str] = []
    async with c_modem(binary, tmp_path, "-r") as cm:
        channel = AtChannel(await open_transport(str(cm.path)), lambda urc: urcs.append(urc.line))
        channel.start()
        try:
            await channel.command("ATE0")
            await channel.command("AT+CNMI=2,1,0,2,0")

            async def send(to: str, report: bool) -> None:
                part = pdu.encode_submit(to, "hello", request_report=report)[0]
                await channel.command_with_pdu(f"AT+CMGS={part.tpdu_length}", part.hex,
                                               prompt_s=5, wait_s=5, answer_prefix="+CMGS:")

            for i in range(50):
                await send(f"+4477009{i:05d}", True)
            await send("+447700900050", False)      # reference 50, no report asked for
            await send("+447700900051", True)       # reference 51: finds SR full
            await channel.command("AT")   # answered after every URC written before it
            assert len(urcs) == 50 and urcs[-1] == '+CDSI: "SR",50'
            await channel.command('AT+CPMS="SR"')
            await channel.command("AT+CMGD=1")
            await eventually(lambda: len(urcs) == 51)
            assert urcs[-1] == '+CDSI: "SR",1'
            lines = await channel.command("AT+CMGR=1")
            report = pdu.decode(lines[1])
            assert isinstance(report, pdu.StatusReportPdu)
            assert (report.message_reference, report.recipient) == (51, "+447700900051")
        finally:
            await channel.close()
