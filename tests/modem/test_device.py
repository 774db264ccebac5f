"""Modem (device.py) against the scripted TS 27.005 modem on a real pty."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from smsd.codec import pdu
from smsd.errors import CmsError, GatewayUnavailable, SimError
from smsd.modem.device import Modem
from smsd.modem.spec import ModemSpec
from smsd.modem.supervisor import PinMemory
from tests.fakes.scripted_modem import ScriptedModem, Stored
from tests.modem.conftest import eventually

pytestmark = pytest.mark.timeout(20)

TS = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# A widely published SMS-DELIVER example: "How are you?" from +31641600986
KNOWN_DELIVER = "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07"


class Events:
    """Records ModemEvents calls; can be told to fail (storage down)."""

    def __init__(self, fake: ScriptedModem | None = None) -> None:
        self.sms: list[pdu.DeliverPdu] = []
        self.reports: list[pdu.StatusReportPdu] = []
        self.states: list[tuple[str, str | None]] = []
        self.fail = False
        self.fake = fake
        self.deleted_before_return: list[bool] = []
        self.arrived = asyncio.Event()

    async def sms_received(self, modem: str, sms: pdu.DeliverPdu) -> None:
        if self.fake is not None:
            self.deleted_before_return.append(
                any(c.startswith("AT+CMGD") for c in self.fake.received))
        if self.fail:
            self.arrived.set()
            raise RuntimeError("database is locked")
        self.sms.append(sms)
        self.arrived.set()

    async def status_report(self, modem: str, report: pdu.StatusReportPdu) -> None:
        self.reports.append(report)
        self.arrived.set()

    def modem_state(self, modem: str, state: str, detail: str | None) -> None:
        self.states.append((state, detail))


def spec_for(fake: ScriptedModem, **kw: object) -> ModemSpec:
    return ModemSpec(id="gsm0", path=fake.path, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def standard(fake: ScriptedModem) -> ScriptedModem:
    fake.install_standard()
    return fake


@contextlib.asynccontextmanager
async def running(modem: Modem) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(modem.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await modem.close()


async def until(predicate: object, events: Events) -> None:
    """Wait, event by event, until ``predicate`` holds (pytest-timeout bounds the test)."""
    while not predicate():  # type: ignore[operator]
        events.arrived.clear()
        await events.arrived.wait()


async def swept(fake: ScriptedModem) -> None:
    """Wait until run()'s start-up sweep has listed the storage, so what a test stores
    and announces next is read through its indication, not found by that sweep."""
    await eventually(lambda: any(c.startswith("AT+CMGL") for c in fake.received))


class TestInit:
    async def test_ready_modem(self, standard: ScriptedModem) -> None:
        """A standard modem ends ready with identity, number, SMSC and signal filled in."""
        ev = Events()
        modem = Modem(spec_for(standard), ev)
        await modem.open()
        await modem.initialise()
        await modem.close()
        assert modem.state == "ready" and ev.states[-1] == ("ready", None)
        assert modem.info.manufacturer == "ACME" and modem.info.imei == "356938035643809"
        assert modem.info.own_number == "+447700900001"
        assert modem.info.smsc == "+447785016005"
        assert modem.info.signal_dbm == -73 and modem.info.operator == "ACME UK"
        sent = standard.received
        assert sent.index("ATE0") < sent.index("AT+CMEE=1") < sent.index("AT+CMGF=0")
        assert modem.info.cnmi == "AT+CNMI=2,1,0,2,0"

    async def test_cnmi_fallback(self, standard: ScriptedModem) -> None:
        """When the preferred +CNMI is refused, the next in the profile's list is used."""
        standard.reply_to(r"AT\+CNMI=2,.*", ["+CMS ERROR: 303"])
        modem = Modem(spec_for(standard), Events())
        await modem.open()
        await modem.initialise()
        await modem.close()
        assert modem.info.cnmi == "AT+CNMI=1,1,0,2,0"

    async def test_pin_entered(self, standard: ScriptedModem) -> None:
        """SIM PIN + configured PIN: AT+CPIN is sent once and the modem becomes ready."""
        sim = {"state": "SIM PIN"}
        standard.reply_to(r"AT\+CPIN\?", lambda _: [f"+CPIN: {sim['state']}", "OK"])

        def enter(line: str) -> list[str]:
            sim["state"] = "READY"
            return ["OK"]
        standard.reply_to(r'AT\+CPIN="1234"', enter)
        modem = Modem(spec_for(standard, pin="1234"), Events())
        await modem.open()
        await modem.initialise()
        await modem.close()
        assert modem.state == "ready"
        assert standard.received.count('AT+CPIN="1234"') == 1

    async def test_pin_from_file(self, standard: ScriptedModem, tmp_path: Path) -> None:
        """pin_file is read and stripped of its newline."""
        sim = {"state": "SIM PIN"}
        standard.reply_to(r"AT\+CPIN\?", lambda _: [f"+CPIN: {sim['state']}", "OK"])
        standard.reply_to(r'AT\+CPIN="4321"', lambda _: (sim.update(state="READY"), ["OK"])[1])
        (tmp_path / "pin").write_text("4321\n")
        modem = Modem(spec_for(standard, pin_file=str(tmp_path / "pin")), Events())
        await modem.open()
        await modem.initialise()
        await modem.close()
        assert modem.state == "ready"

    async def test_pin_refused_never_retried(self, standard: ScriptedModem,
                                             tmp_path: Path) -> None:
        """A refused PIN gives sim_error; a later attempt (even after restart) never resends it."""
        standard.reply_to(r"AT\+CPIN\?", ["+CPIN: SIM PIN", "OK"])
        standard.reply_to(r'AT\+CPIN="0000"', ["+CME ERROR: 16"])
        pins = PinMemory(tmp_path / "pins.json")
        ev = Events()
        for attempt in range(2):
            modem = Modem(spec_for(standard, pin="0000"), ev,
                          pins=pins if attempt == 0 else PinMemory(tmp_path / "pins.json"))
            await modem.open()
            with pytest.raises(SimError) as err:
                await modem.initialise()
            await modem.close()
            assert err.value.state == "pin_refused"
            assert modem.state == "sim_error"
        assert standard.received.count('AT+CPIN="0000"') == 1
        assert "0000" not in (tmp_path / "pins.json").read_text()

    async def test_pin_required_none_configured(self, standard: ScriptedModem) -> None:
        """SIM PIN without a configured PIN is a clear sim_error, no AT+CPIN= sent."""
        standard.reply_to(r"AT\+CPIN\?", ["+CPIN: SIM PIN", "OK"])
        modem = Modem(spec_for(standard), Events())
        await modem.open()
        with pytest.raises(SimError) as err:
            await modem.initialise()
        await modem.close()
        assert err.value.state == "pin_required"
        assert not any(c.startswith("AT+CPIN=") for c in standard.received)

    async def test_puk_required(self, standard: ScriptedModem) -> None:
        """SIM PUK is reported and no PIN is offered."""
        standard.reply_to(r"AT\+CPIN\?", ["+CPIN: SIM PUK", "OK"])
        modem = Modem(spec_for(standard, pin="1234"), Events())
        await modem.open()
        with pytest.raises(SimError) as err:
            await modem.initialise()
        await modem.close()
        assert err.value.state == "puk_required"
        assert not any(c.startswith("AT+CPIN=") for c in standard.received)

    async def test_sim_not_inserted(self, standard: ScriptedModem) -> None:
        """+CME ERROR: 10 on AT+CPIN? becomes sim_error 'not_inserted'."""
        standard.reply_to(r"AT\+CPIN\?", ["+CME ERROR: 10"])
        ev = Events()
        modem = Modem(spec_for(standard), ev)
        await modem.open()
        with pytest.raises(SimError) as err:
            await modem.initialise()
        await modem.close()
        assert err.value.state == "not_inserted"
        assert ev.states[-1][0] == "sim_error" and "not_inserted" in (ev.states[-1][1] or "")

    async def test_no_network_then_registered(self, standard: ScriptedModem) -> None:
        """No registration within the budget -> no_network; a +CREG URC later -> ready."""
        standard.install_standard(creg=2)
        ev = Events()
        modem = Modem(spec_for(standard), ev, registration_s=0.2)
        await modem.open()
        await modem.initialise()
        assert modem.state == "no_network"
        with pytest.raises(GatewayUnavailable):
            await modem.send_pdu(pdu.encode_submit("+447700900123", "hi")[0])
        async with running(modem):
            standard.inject("+CREG: 1")
            await eventually(lambda: modem.state == "ready")
        assert ("ready", None) in ev.states


class TestSend:
    async def test_send_with_prompt(self, standard: ScriptedModem) -> None:
        """send_pdu uses AT+CMGS=<tpdu_length>, sends the PDU after the prompt, returns TP-MR."""
        standard.next_mr = 77
        modem = Modem(spec_for(standard), Events())
        await modem.open()
        await modem.initialise()
        part = pdu.encode_submit("+447700900123", "hello")[0]
        mr = await modem.send_pdu(part)
        await modem.close()
        assert mr == 77
        assert f"AT+CMGS={part.tpdu_length}" in standard.received
        assert standard.submitted == [part.hex.upper()]

    async def test_send_cms_error(self, standard: ScriptedModem) -> None:
        """A network refusal surfaces as CmsError with the TS 24.011 classification."""
        standard.on_pdu = lambda cmd, p: ["+CMS ERROR: 21"]   # SM transfer rejected
        modem = Modem(spec_for(standard), Events())
        await modem.open()
        await modem.initialise()
        with pytest.raises(CmsError) as err:
            await modem.send_pdu(pdu.encode_submit("+447700900123", "x")[0])
        await modem.close()
        assert err.value.code == 21 and not err.value.temporary
        assert modem.in_flight == 0


class TestUssd:
    async def test_balance_enquiry(self, standard: ScriptedModem) -> None:
        """AT+CUSD answers OK; the balance text arrives later as a +CUSD URC."""
        def cusd(line: str) -> list[str]:
            standard.inject('+CUSD: 0,"Balance: 4.20 GBP",15')
            return ["OK"]
        standard.reply_to(r'AT\+CUSD=1,"\*100#",15', cusd)
        modem = Modem(spec_for(standard), Events())
        await modem.open()
        await modem.initialise()
        async with running(modem):
            answer = await modem.ussd("*100#")
        assert answer.text == "Balance: 4.20 GBP" and answer.status == 0


class TestReceive:
    async def test_cmti_read_then_deleted(self, standard: ScriptedModem) -> None:
        """+CMTI -> +CMGR -> sms_received -> +CMGD, deletion only after the consumer returned."""
        ev = Events(standard)
        modem = Modem(spec_for(standard), ev)
        await modem.open()
        await modem.initialise()
        async with running(modem):
            await swept(standard)
            index = standard.put_sms(pdu.encode_deliver("+447700900555", "hello there",
                                                        timestamp=TS)[0])
            standard.inject(f'+CMTI: "SM",{index}')
            await until(lambda: ev.sms, ev)
            await eventually(lambda: not standard.store)
        assert ev.sms[0].text == "hello there" and ev.sms[0].sender == "+447700900555"
        assert ev.deleted_before_return == [False]
        assert f"AT+CMGD={index}" in standard.received

    async def test_consumer_failure_keeps_message(self, standard: ScriptedModem) -> None:
        """If sms_received raises, the SMS stays on the SIM and the next sweep delivers it."""
        ev = Events(standard)
        ev.fail = True
        modem = Modem(spec_for(standard), ev)
        await modem.open()
        await modem.initialise()
        index = standard.put_sms(KNOWN_DELIVER)
        assert await modem.sweep() == 0
        assert index in standard.store
        assert not any(c.startswith("AT+CMGD") for c in standard.received)
        ev.fail = False
        assert await modem.sweep() == 1
        await modem.close()
        assert standard.store == {} and ev.sms[0].text == "How are you?"

    async def test_startup_sweep(self, standard: ScriptedModem) -> None:
        """Messages already on the SIM when the daemon starts are delivered and deleted."""
        standard.put_sms(KNOWN_DELIVER, stat=1)
        standard.put_sms(pdu.encode_submit("+447700900123", "outgoing")[0].hex, stat=3)
        ev = Events(standard)
        modem = Modem(spec_for(standard), ev)
        await modem.open()
        await modem.initialise()
        async with running(modem):
            await until(lambda: ev.sms, ev)
            await eventually(lambda: 1 not in standard.store)
        assert [s.sender for s in ev.sms] == ["+31641600986"]
        assert list(standard.store) == [2]      # the stored SUBMIT is left alone

    async def test_indication_during_sweep_delivers_once(self, standard: ScriptedModem) -> None:
        """A +CMTI for a message the start-up sweep also lists is delivered exactly once."""
        index = standard.put_sms(KNOWN_DELIVER)
        ev = Events(standard)
        modem = Modem(spec_for(standard), ev)
        await modem.open()
        await modem.initialise()
        standard.inject(f'+CMTI: "SM",{index}')     # queued before the sweep starts
        async with running(modem):
            await until(lambda: ev.sms, ev)
            await eventually(lambda: not standard.store)
            await eventually(lambda: f"AT+CMGR={index}" in standard.received
                             and "AT+CMGL=4" in standard.received)
            await modem.cmd("AT")     # both readers have had their answers
        assert len(ev.sms) == 1

    async def test_sweep_reads_status_report_memory(self, standard: ScriptedModem) -> None:
        """A report stored in "SR" whose +CDSI was lost is found by the sweep and deleted."""
        sr = pdu.encode_status_report(33, "+447700900123", scts=TS, discharge=TS)
        index = standard.put_sms(sr, mem="SR")
        ev = Events()
        modem = Modem(spec_for(standard), ev)
        await modem.open()
        await modem.initialise()
        assert await modem.sweep() == 1
        await modem.close()
        assert [r.message_reference for r in ev.reports] == [33]
        assert index not in standard.store and standard.mem1 == "SM"

    async def test_huawei_rssi_updates_signal(self, standard: ScriptedModem) -> None:
        """Huawei's ^RSSI URC updates the signal shown in snapshots."""
        modem = Modem(spec_for(standard), Events())
        await modem.open()
        await modem.initialise()
        async with running(modem):
            standard.inject("^RSSI:5")
            await eventually(lambda: modem.info.signal_dbm == -103)
        assert modem.info.signal_bars == 1

    async def test_boot_urcs_during_init_ignored(self, standard: ScriptedModem) -> None:
        """RDY / +CPIN: SIM PIN announced while init runs do not trigger a re-init loop."""
        standard.reply_to(r"AT\+CMGF=0", lambda _: (standard.inject("RDY", "+CPIN: SIM PIN"),
                                                      ["OK"])[1])
        modem = Modem(spec_for(standard), Events())
        await modem.open()
        await modem.initialise()
        async with running(modem):
            await modem.cmd("AT")
            await modem.sweep()
            assert modem.channel is not None and modem.channel.dead is None

    async def test_bad_pdu_left_on_sim(self, standard: ScriptedModem) -> None:
        """An undecodable PDU is logged and left on the SIM, not deleted, never a crash."""
        standard.put_sms("0011223344")
        modem = Modem(spec_for(standard), Events())
        await modem.open()
        await modem.initialise()
        assert await modem.sweep() == 0
        await modem.close()
        assert 1 in standard.store

    async def test_status_report_direct_cds(self, standard: ScriptedModem) -> None:
        """A two-line +CDS is decoded and routed to status_report (acked when +CSMS=1)."""
        standard.reply_to(r"AT\+CSMS\?", ["+CSMS: 1,1,1,1", "OK"])
        ev = Events()
        modem = Modem(spec_for(standard), ev)
        await modem.open()
        await modem.initialise()
        sr = pdu.encode_status_report(12, "+447700900123", scts=TS, discharge=TS)
        async with running(modem):
            standard.inject(f"+CDS: {len(sr) // 2 - 8}", sr)
            await until(lambda: ev.reports, ev)
            await eventually(lambda: "AT+CNMA" in standard.received)
        assert ev.reports[0].message_reference == 12 and ev.reports[0].delivered

    async def test_phase2plus_modem_routes_reports_directly(
        self, standard: ScriptedModem
    ) -> None:
        """A modem taking AT+CSMS=1 gets <ds>=1: each report arrives as +CDS and is
        acknowledged with +CNMA once consumed, never read off or deleted from the SIM."""
        standard.reply_to(r"AT\+CSMS=1", ["+CSMS: 1,1,1", "OK"])
        standard.reply_to(r"AT\+CSMS\?", ["+CSMS: 1,1,1,1", "OK"])
        ev = Events()
        modem = Modem(spec_for(standard), ev)
        await modem.open()
        await modem.initialise()
        assert modem.info.cnmi == "AT+CNMI=2,1,0,1,0"
        sr = pdu.encode_status_report(13, "+447700900123", scts=TS, discharge=TS)
        async with running(modem):
            standard.inject(f"+CDS: {len(sr) // 2 - 8}", sr)
            await until(lambda: ev.reports, ev)
            await eventually(lambda: "AT+CNMA" in standard.received)
        assert ev.reports[0].message_reference == 13
        assert not any(c.startswith(("AT+CMGR", "AT+CMGD")) for c in standard.received)

    async def test_without_phase2plus_reports_are_stored(self, standard: ScriptedModem) -> None:
        """A modem refusing AT+CSMS=1 (no acknowledgement, so a +CDS nobody reads
        would be lost) keeps <ds>=2: reports stored on the SIM and indicated."""
        standard.reply_to(r"AT\+CSMS=1", ["+CMS ERROR: 303"])
        modem = Modem(spec_for(standard), Events())
        await modem.open()
        await modem.initialise()
        await modem.close()
        assert modem.info.cnmi == "AT+CNMI=2,1,0,2,0"

    async def test_status_report_cdsi_from_sr(self, standard: ScriptedModem) -> None:
        """+CDSI: "SR",n reads from SR memory, routes the report and deletes it."""
        sr = pdu.encode_status_report(200, "+447700900123", status=0x45, scts=TS, discharge=TS)
        index = standard.put_sms(sr, mem="SR")
        ev = Events()
        modem = Modem(spec_for(standard), ev)
        await modem.open()
        await modem.initialise()
        standard.store.clear()
        async with running(modem):
            await swept(standard)
            standard.store[index] = Stored(0, sr, "SR")
            standard.inject(f'+CDSI: "SR",{index}')
            await until(lambda: ev.reports, ev)
        assert ev.reports[0].message_reference == 200 and not ev.reports[0].delivered
        assert 'AT+CPMS="SR"' in standard.received

    async def test_cmt_direct_nacked_when_consumer_fails(self, standard: ScriptedModem) -> None:
        """Direct +CMT with +CSMS service 1: consumer failure -> AT+CNMA=2 (network retries)."""
        standard.reply_to(r"AT\+CSMS\?", ["+CSMS: 1,1,1,1", "OK"])
        standard.reply_to(r"AT\+CNMA=2", ["OK"])
        ev = Events()
        ev.fail = True
        modem = Modem(spec_for(standard), ev)
        await modem.open()
        await modem.initialise()
        async with running(modem):
            await swept(standard)
            standard.inject("+CMT: ,38", KNOWN_DELIVER)
            await eventually(lambda: "AT+CNMA=2" in standard.received)
        assert ev.sms == []
