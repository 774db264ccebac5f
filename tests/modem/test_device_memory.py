"""Modem's read/delete memory (+CPMS <mem1>) is switched only when needed.

A +CDSI status report is read from "SR" and the modem stays on "SR" until
something needs the SIM memory again (a +CMTI, a sweep), so a stream of reports
costs +CMGR/+CMGD each instead of four commands each.  What must hold: every
read and delete still acts on the memory the URC named (the scripted modem
enforces <mem1> as TS 27.005 3.2.2 describes), and a +CPMS that failed is never
assumed to have taken effect.
"""

from __future__ import annotations

import pytest

from smsd.codec import pdu
from smsd.modem.device import Modem
from tests.fakes.scripted_modem import ScriptedModem
from tests.modem.conftest import eventually
from tests.modem.test_device import KNOWN_DELIVER, TS, Events, running, spec_for, until

pytestmark = pytest.mark.timeout(20)

CPMS_SR = 'AT+CPMS="SR"'
CPMS_SM = 'AT+CPMS="SM"'


def report(mr: int) -> str:
    return pdu.encode_status_report(mr, "+447700900123", scts=TS, discharge=TS)


async def ready_modem(fake: ScriptedModem, ev: Events) -> tuple[Modem, int]:
    """An initialised modem and the index in fake.received where its init ended."""
    modem = Modem(spec_for(fake), ev)
    await modem.open()
    await modem.initialise()
    fake.store.clear()
    return modem, len(fake.received)


async def first_sweep_done(fake: ScriptedModem, start: int) -> int:
    """Wait for run()'s opening sweep (SIM, then SR, back to SIM); index after it."""
    await eventually(lambda: CPMS_SM in fake.received[start:])
    return len(fake.received)


@pytest.fixture
async def standard(fake: ScriptedModem) -> ScriptedModem:
    fake.install_standard()
    return fake


class TestReadMemory:
    async def test_reports_in_a_row_switch_once(self, standard: ScriptedModem) -> None:
        """Three +CDSI in a row: all routed and deleted from SR, one +CPMS="SR" in all."""
        ev = Events()
        modem, start = await ready_modem(standard, ev)
        async with running(modem):
            start = await first_sweep_done(standard, start)
            for mr in (10, 11, 12):
                index = standard.put_sms(report(mr), mem="SR")
                standard.inject(f'+CDSI: "SR",{index}')
                await until(lambda n=mr: any(r.message_reference == n for r in ev.reports), ev)
            await eventually(lambda: not standard.store)
        assert [r.message_reference for r in ev.reports] == [10, 11, 12]
        after = standard.received[start:]
        assert after.count(CPMS_SR) == 1
        assert sum(c.startswith("AT+CMGD=") for c in after) == 3

    async def test_sms_after_report_is_read_from_sim(self, standard: ScriptedModem) -> None:
        """A +CMTI "SM" after a report switches back to SM before +CMGR, and deletes there."""
        ev = Events()
        modem, start = await ready_modem(standard, ev)
        async with running(modem):
            start = await first_sweep_done(standard, start)
            index = standard.put_sms(report(20), mem="SR")
            standard.inject(f'+CDSI: "SR",{index}')
            await until(lambda: ev.reports, ev)
            sms_index = standard.put_sms(KNOWN_DELIVER, mem="SM")
            standard.inject(f'+CMTI: "SM",{sms_index}')
            await until(lambda: ev.sms, ev)
            await eventually(lambda: not standard.store)
        assert ev.sms[0].text == "How are you?"
        after = standard.received[start:]
        switched_back = after.index(CPMS_SM)
        assert after.index(CPMS_SR) < switched_back
        assert after[switched_back + 1:] == [f"AT+CMGR={sms_index}", f"AT+CMGD={sms_index}"]

    async def test_sweep_after_report_lists_sim(self, standard: ScriptedModem) -> None:
        """A sweep while SR is selected still lists the SIM memory (and ends on it)."""
        ev = Events()
        modem, start = await ready_modem(standard, ev)
        async with running(modem):
            await first_sweep_done(standard, start)
            index = standard.put_sms(report(30), mem="SR")
            standard.inject(f'+CDSI: "SR",{index}')
            await until(lambda: ev.reports, ev)
            assert standard.mem1 == "SR"
            standard.put_sms(KNOWN_DELIVER, mem="SM")
            handled = await modem.sweep()
        assert handled == 1 and ev.sms[0].text == "How are you?"
        assert standard.mem1 == "SM"

    async def test_failed_switch_is_not_assumed(self, standard: ScriptedModem) -> None:
        """+CPMS="SR" refused: the next +CDSI asks again, and then the report is read."""
        ev = Events()
        modem, start = await ready_modem(standard, ev)
        async with running(modem):
            start = await first_sweep_done(standard, start)
            standard.reply_once(r'AT\+CPMS="SR"', ["+CMS ERROR: 302"])
            index = standard.put_sms(report(40), mem="SR")
            standard.inject(f'+CDSI: "SR",{index}')
            await eventually(lambda: standard.received[start:].count(CPMS_SR) == 1)
            assert ev.reports == []
            standard.inject(f'+CDSI: "SR",{index}')
            await until(lambda: ev.reports, ev)
        assert ev.reports[0].message_reference == 40
        assert standard.received[start:].count(CPMS_SR) == 2
