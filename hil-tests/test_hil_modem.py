"""The modem driver against a modem: boot, send, receive, reports, and misbehaviour.

Runs against the simulator unless SMSD_HIL_DEVICE names a real modem (see
conftest.py).  Each test states what must hold on either.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from smsd.codec import pdu
from smsd.codec.reassembly import MemoryPartStore, Reassembler
from smsd.errors import PortGone, SimError

pytestmark = pytest.mark.timeout(300 if os.environ.get("SMSD_HIL_DEVICE") else 30)

LONG_TEXT = ("HIL loop-back test: concatenated message in three parts, checked end to end. "
             * 5)[:400]


async def _next(queue: asyncio.Queue, deadline_s: float):
    return await asyncio.wait_for(queue.get(), deadline_s)


class TestBoot:
    async def test_probe_and_initialise(self, target, events):
        """The driver identifies the modem, unlocks the SIM, and reaches 'ready' registered."""
        t = await target()
        modem = await t.driver(events)
        await modem.initialise()
        assert modem.ready, events.states
        info = modem.info
        assert info.manufacturer and info.model
        assert info.imei and info.imei.isdigit() and len(info.imei) == 15
        assert info.sim == "READY" and info.registration in (1, 5)
        assert info.smsc and info.smsc.startswith("+")
        assert info.signal_dbm is not None and -113 <= info.signal_dbm <= -51

    @pytest.mark.parametrize("profile", ["huawei", "quectel", "simcom"])
    async def test_vendor_boot_chatter(self, target, events, profile):
        """Vendor boot URCs (RDY, ^BOOT, SMS DONE) and Huawei's ^RSSI flood don't derail init."""
        t = await target(profile=profile)
        t.need_sim("choosing the vendor")
        modem = await t.driver(events)
        await modem.initialise()
        assert modem.ready and modem.info.manufacturer


class TestSendReceive:
    async def test_concatenated_send_and_loop_back(self, target, events):
        """A 400-character text goes as parts with distinct TP-MRs and, looped back, reassembles."""
        t = await target()
        if not t.peer:
            pytest.skip("real modem: set SMSD_HIL_PEER to a number that receives the test SMS")
        modem = await t.driver(events)
        await modem.initialise()
        t.run(modem)
        parts = pdu.encode_submit(t.peer, LONG_TEXT, reference=42,
                                  request_report=False)
        refs = [await modem.send_pdu(p) for p in parts]
        assert len(parts) == 3 and len(set(refs)) == 3
        if t.sim is not None:
            assert [s.text for s in t.sim.submitted] == [p.text for p in parts]
        if not t.loops_back:
            pytest.skip("peer is not this modem's number (SMSD_HIL_OWN_NUMBER): no receive check")
        joiner = Reassembler(MemoryPartStore())
        whole = None
        while whole is None:
            whole = await joiner.add("hil", await _next(events.sms, 180 if not t.sim else 10))
        assert whole.text == LONG_TEXT and whole.parts == 3 and whole.complete

    async def test_status_report_matches_tp_mr(self, target, events):
        """A send that asks for a report gets one carrying the TP-MR the modem answered."""
        t = await target()
        if not t.peer:
            pytest.skip("real modem: set SMSD_HIL_PEER to a number that receives the test SMS")
        modem = await t.driver(events)
        await modem.initialise()
        t.run(modem)
        (part,) = pdu.encode_submit(t.peer, "HIL status report test", request_report=True)
        mr = await modem.send_pdu(part)
        report = await _next(events.reports, 180 if t.sim is None else 10)
        assert report.message_reference == mr
        assert report.final

    async def test_urc_during_a_command(self, target, events):
        """A +CMTI raised while a slow command runs reaches the URC path, not the reply."""
        t = await target(latency_ms=200)
        sim = t.need_sim("timing an SMS to arrive mid-command")
        modem = await t.driver(events)
        await modem.initialise()
        t.run(modem)
        command = asyncio.ensure_future(modem.cmd("AT+CSQ"))
        await asyncio.sleep(0.05)
        await sim.deliver("+447700900555", "arrives mid-command")
        lines = await command
        assert [line for line in lines if line.startswith("+CSQ")] == ["+CSQ: 20,99"]
        assert not [line for line in lines if "CMTI" in line]
        sms = await _next(events.sms, 10)
        assert sms.text == "arrives mid-command"


class TestMisbehaviour:
    async def test_unplug_then_replug(self, target, events):
        """Unplug ends the driver's run with PortGone; after replug a new driver works again."""
        t = await target()
        sim = t.need_sim("pulling the USB plug")
        modem = await t.driver(events)
        await modem.initialise()
        runner = t.run(modem)
        await sim.unplug()
        with pytest.raises(PortGone):
            await asyncio.wait_for(runner, 10)
        await sim.deliver("+447700900555", "sent while unplugged")
        await sim.replug()
        again = await t.driver(events)
        await again.initialise()
        assert again.ready
        t.run(again)
        sms = await _next(events.sms, 10)
        assert sms.text == "sent while unplugged"

    async def test_garbage_on_the_line(self, target, events):
        """Noise bytes between commands do not corrupt the next command's answer."""
        t = await target()
        sim = t.need_sim("injecting line noise")
        modem = await t.driver(events)
        await modem.initialise()
        await sim.spew_garbage(b"\x00\xff\x13garbage\r\n\xfe+CSQ: 1,1\r\nOK\r\n")
        await asyncio.sleep(0.05)
        lines = await modem.cmd("AT+CGMM")
        assert "GSM Modem" in lines

    async def test_pin_required(self, target, events):
        """A PIN-locked SIM with no PIN configured is a SimError naming it; the right PIN works."""
        t = await target(pin="2468")
        t.need_sim("locking the SIM")
        modem = await t.driver(events, pin="")
        with pytest.raises(SimError) as err:
            await modem.initialise()
        assert err.value.state == "pin_required"
        await modem.close()
        good = await t.driver(events, pin="2468")
        await good.initialise()
        assert good.ready

    async def test_no_network_then_coverage(self, target, events):
        """Without coverage init ends in no_network; when coverage returns the modem is ready."""
        t = await target(network=False)
        sim = t.need_sim("removing network coverage")
        modem = await t.driver(events, registration_s=0.5)
        await modem.initialise()
        assert modem.state == "no_network"
        t.run(modem)
        sim.set_network(True)
        await events.wait_state("ready", 10)
        assert modem.ready


class TestCrashLeftovers:
    async def test_prompt_left_by_a_killed_process(self, target, events):
        """A process killed between AT+CMGS= and the PDU leaves the modem at the
        '> ' prompt; the next driver's init is not swallowed as message text, and
        the next SMS goes out."""
        t = await target()
        fd = os.open(t.path, os.O_RDWR | os.O_NOCTTY)
        try:
            os.write(fd, b"ATE0\r")
            await asyncio.sleep(0.3)
            os.write(fd, b"AT+CMGS=20\r")
            seen = b""
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while b">" not in seen and loop.time() < deadline:
                await asyncio.sleep(0.05)
                try:
                    seen += os.read(fd, 256)
                except BlockingIOError:
                    pass
            assert b">" in seen, seen
        finally:
            os.close(fd)
        modem = await t.driver(events)
        await modem.initialise()
        assert modem.ready, events.states
        t.run(modem)
        (part,) = pdu.encode_submit(t.peer or "+447700900123", "after the crash",
                                    request_report=False)
        reference = await modem.send_pdu(part)
        assert 0 <= reference <= 255
        if t.sim is not None:
            assert [s.text for s in t.sim.submitted] == ["after the crash"]
