"""The simulated modem speaks AT as V.250, TS 27.007 and TS 27.005 say, over a real pty."""

from __future__ import annotations

import asyncio
import re

import pytest

from smsd.codec import pdu
from smsd.simulator.profiles import PROFILES
from tests.core.polling import eventually
from tests.fakes.raw_at import quiet

pytestmark = pytest.mark.timeout(30)


def _submit(text: str = "hello", number: str = "+447700900123") -> pdu.SubmitPdu:
    return pdu.encode_submit(number, text)[0]


class TestFraming:
    async def test_echo_until_ate0(self, make_sim, open_at):
        """With E1 the command line is echoed before the reply; after ATE0 it is not."""
        sim = await make_sim()
        at = open_at(sim.path)
        assert await at.cmd("AT") == b"AT\r\r\nOK\r\n"
        assert await at.cmd("ATE0") == b"ATE0\r\r\nOK\r\n"
        assert await at.cmd("AT") == b"\r\nOK\r\n"

    async def test_information_and_final_framing(self, make_sim, open_at):
        """Information text and final result are each framed <CR><LF>...<CR><LF> (V1)."""
        sim = await make_sim()
        at = open_at(sim.path)
        await quiet(at)
        assert await at.cmd("AT+CGMI") == b"\r\nGeneric\r\n\r\nOK\r\n"
        assert await at.cmd("AT+CSQ") == b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"

    async def test_numeric_results_with_v0(self, make_sim, open_at):
        """ATV0 switches to numeric result codes: 0<CR> for OK, 4<CR> for ERROR."""
        sim = await make_sim()
        at = open_at(sim.path)
        await quiet(at)
        at.write(b"ATV0\r")
        assert await at.until(b"0\r") == b"0\r"
        at.write(b"AT+NOPE\r")
        assert await at.until(b"4\r") == b"4\r"

    async def test_concatenated_commands(self, make_sim, open_at):
        """Extended commands separated by ';' run in order and end with one OK."""
        sim = await make_sim()
        at = open_at(sim.path)
        await quiet(at)
        reply = await at.cmd("AT+CGMM;+CPIN?")
        assert reply == b"\r\nGSM Modem\r\n+CPIN: READY\r\n\r\nOK\r\n"

    async def test_unknown_command_is_error(self, make_sim, open_at):
        """A command the model does not know answers ERROR, and the next works."""
        sim = await make_sim()
        at = open_at(sim.path)
        await quiet(at)
        assert await at.cmd("AT+XYZZY") == b"\r\nERROR\r\n"
        assert await at.cmd("AT^CURC=0") == b"\r\nERROR\r\n"   # Huawei-only
        assert await at.cmd("AT") == b"\r\nOK\r\n"

    async def test_lines_without_at_are_ignored(self, make_sim, open_at):
        """V.250 5.2.1: characters before the AT prefix are ignored, no reply."""
        sim = await make_sim()
        at = open_at(sim.path)
        await quiet(at)
        at.write(b"garbage\r")
        assert await at.cmd("AT") == b"\r\nOK\r\n"


class TestIdentity:
    @pytest.mark.parametrize("name", sorted(PROFILES))
    async def test_identity_and_vendor_iccid(self, name, make_sim, open_at):
        """Each profile names its vendor/model and reads the ICCID with its own command only."""
        prof = PROFILES[name]
        sim = await make_sim(profile=name)
        at = open_at(sim.path)
        await quiet(at)
        assert prof.manufacturer.encode() in await at.cmd("AT+CGMI")
        assert prof.model.encode() in await at.cmd("AT+CGMM")
        imei = (await at.cmd("AT+CGSN")).split(b"\r\n")[1]
        assert re.fullmatch(rb"\d{15}", imei)
        iccid_cmd = prof.iccid_command + ("?" if prof.iccid_command == "^ICCID" else "")
        reply = await at.cmd("AT" + iccid_cmd)
        assert reply.startswith(b"\r\n" + prof.iccid_prefix.encode()) and reply.endswith(b"OK\r\n")
        others = {"+CCID", "^ICCID", "+QCCID", "+CICCID"} - {prof.iccid_command}
        for other in others:
            assert await at.cmd("AT" + other) == b"\r\nERROR\r\n"

    async def test_generic_has_no_cereg_but_lte_models_do(self, make_sim, open_at):
        """+CEREG exists on the LTE models only; +CREG everywhere."""
        gen = open_at((await make_sim()).path)
        lte = open_at((await make_sim(profile="quectel")).path)
        for at in (gen, lte):
            await quiet(at)
            assert b"+CREG: 0,1" in await at.cmd("AT+CREG?")
        assert await gen.cmd("AT+CEREG?") == b"\r\nERROR\r\n"
        assert b"+CEREG: 0,1" in await lte.cmd("AT+CEREG?")


class TestSim:
    async def test_pin_then_puk(self, make_sim, open_at):
        """Three wrong PINs (+CME ERROR: 16) lock the SIM behind its PUK; PUK + new PIN unlock."""
        sim = await make_sim(pin="1234")
        at = open_at(sim.path)
        await quiet(at)
        assert b"+CPIN: SIM PIN" in await at.cmd("AT+CPIN?")
        assert await at.cmd("AT+CIMI") == b"\r\n+CME ERROR: 11\r\n"
        for _ in range(3):
            assert await at.cmd('AT+CPIN="0000"') == b"\r\n+CME ERROR: 16\r\n"
        assert b"+CPIN: SIM PUK" in await at.cmd("AT+CPIN?")
        assert await at.cmd('AT+CPIN="1234"') == b"\r\n+CME ERROR: 12\r\n"
        assert await at.cmd('AT+CPIN="12345678","4321"') == b"\r\nOK\r\n"
        assert b"+CPIN: READY" in await at.cmd("AT+CPIN?")

    async def test_right_pin_registers(self, make_sim, open_at):
        """Before the PIN the modem is not registered; after it, +CREG reports home (1)."""
        sim = await make_sim(pin="1234")
        at = open_at(sim.path)
        await quiet(at)
        assert b"+CREG: 0,0" in await at.cmd("AT+CREG?")
        assert await at.cmd("AT+CMGS=20") == b"\r\n+CMS ERROR: 311\r\n"
        assert await at.cmd('AT+CPIN="1234"') == b"\r\nOK\r\n"
        assert b"+CREG: 0,1" in await at.cmd("AT+CREG?")

    async def test_no_sim(self, make_sim, open_at):
        """Without a SIM, +CPIN? answers +CME ERROR: 10 (SIM not inserted)."""
        sim = await make_sim(sim_present=False)
        at = open_at(sim.path)
        await quiet(at)
        assert await at.cmd("AT+CPIN?") == b"\r\n+CME ERROR: 10\r\n"

    async def test_no_network(self, make_sim, open_at):
        """No coverage: searching (2), no operator, CSQ 99, and sends refused with 331."""
        sim = await make_sim(network=False)
        at = open_at(sim.path)
        await quiet(at)
        assert b"+CREG: 0,2" in await at.cmd("AT+CREG?")
        assert b"+COPS: 0\r\n" in await at.cmd("AT+COPS?")
        assert b"+CSQ: 99,99" in await at.cmd("AT+CSQ")
        sub = _submit()
        assert await at.cmd(f"AT+CMGS={sub.tpdu_length}") == b"\r\n> "
        at.write(sub.hex.encode() + b"\x1a")
        assert await at.until(b"\r\n+CMS ERROR: 331\r\n")
        assert sim.submitted == []


class TestSend:
    async def test_cmgs_prompt_and_rolling_mr(self, make_sim, open_at):
        """+CMGS=<len> prompts "> ", takes PDU + Ctrl-Z, answers +CMGS: <mr> counting up."""
        sim = await make_sim()
        at = open_at(sim.path)
        await quiet(at)
        sub = _submit()
        for expected in (0, 1):
            assert await at.cmd(f"AT+CMGS={sub.tpdu_length}") == b"\r\n> "
            at.write(sub.hex.encode() + b"\x1a")
            assert await at.until(b"OK\r\n") == f"\r\n+CMGS: {expected}\r\n\r\nOK\r\n".encode()
        assert [s.text for s in sim.submitted] == ["hello", "hello"]
        assert [s.mr for s in sim.submissions] == [0, 1]

    async def test_send_ms_delays_only_the_submit(self, make_sim, open_at):
        """send_ms is the network's time per SMS: AT answers at once, +CMGS no sooner."""
        sim = await make_sim(send_ms=300)
        at = open_at(sim.path)
        await quiet(at)
        loop = asyncio.get_running_loop()
        sub = _submit()
        assert await at.cmd(f"AT+CMGS={sub.tpdu_length}") == b"\r\n> "
        started = loop.time()
        at.write(sub.hex.encode() + b"\x1a")
        assert b"+CMGS: 0" in await at.until(b"OK\r\n")
        assert loop.time() - started >= 0.3
        with pytest.raises(ValueError):
            await make_sim(send_ms=-1)

    async def test_length_mismatch_is_304(self, make_sim, open_at):
        """A <length> that is not the TPDU's octet count is refused: +CMS ERROR: 304."""
        sim = await make_sim()
        at = open_at(sim.path)
        await quiet(at)
        sub = _submit()
        assert await at.cmd(f"AT+CMGS={sub.tpdu_length + 1}") == b"\r\n> "
        at.write(sub.hex.encode() + b"\x1a")
        assert await at.until(b"\r\n+CMS ERROR: 304\r\n")
        assert sim.submitted == []

    async def test_escape_cancels(self, make_sim, open_at):
        """ESC at the prompt cancels: nothing is sent."""
        sim = await make_sim()
        at = open_at(sim.path)
        await quiet(at)
        assert await at.cmd("AT+CMGS=18") == b"\r\n> "
        at.write(b"0011\x1b")
        assert await at.until(b"OK\r\n") == b"\r\nOK\r\n"
        assert sim.submitted == []

    async def test_prompt_outlives_the_driver_until_esc(self, make_sim, open_at):
        """A driver that dies at "> " leaves the modem in text entry: AT lines become PDU text,
        and only ESC (27.005 3.5.1) gets the next driver back to command mode."""
        sim = await make_sim()
        first = open_at(sim.path)
        await quiet(first)
        assert await first.cmd("AT+CMGS=20") == b"\r\n> "
        first.close()
        second = open_at(sim.path)
        second.write(b"ATE0\r")               # swallowed as PDU characters, no answer
        second.write(b"\x1bAT\r")
        assert await second.until(b"OK\r\n") == b"\r\nOK\r\n"          # the cancelled send
        assert await second.until(b"OK\r\n") == b"\r\nOK\r\n"          # the AT (echo was off)
        assert sim.submitted == []

    async def test_text_mode_refuses_sms_commands(self, make_sim, open_at):
        """In text mode (+CMGF=1) the SMS commands answer +CMS ERROR."""
        sim = await make_sim()
        at = open_at(sim.path)
        await quiet(at)
        assert await at.cmd("AT+CMGF=1") == b"\r\nOK\r\n"
        assert (await at.cmd('AT+CMGS="+447700900123"')).startswith(b"\r\n+CMS ERROR:")
        assert (await at.cmd("AT+CMGL=4")).startswith(b"\r\n+CMS ERROR:")

    async def test_fail_rate_one_refuses_every_send(self, make_sim, open_at):
        """With fail_rate=1 every send gets a +CMS ERROR from the documented mix."""
        sim = await make_sim(fail_rate=1.0, seed=3)
        at = open_at(sim.path)
        await quiet(at)
        sub = _submit()
        codes = set()
        for _ in range(8):
            await at.cmd(f"AT+CMGS={sub.tpdu_length}")
            at.write(sub.hex.encode() + b"\x1a")
            reply = await at.until(b"\r\n", deadline_s=5) + await at.until(b"\r\n")
            codes.add(int(reply.split(b":")[1]))
        assert codes <= {42, 331, 332, 1, 21} and codes
        assert sim.submitted == []


class TestReceive:
    async def test_cmti_then_cmgr_cmgl_cmgd(self, make_sim, open_at):
        """An inbound SMS is stored in SM and announced with +CMTI; read, list, delete work."""
        sim = await make_sim()
        at = open_at(sim.path)
        await quiet(at)
        assert await at.cmd("AT+CNMI=2,1,0,2,0") == b"\r\nOK\r\n"
        await sim.deliver("+447700900555", "hi there")
        assert await at.until(b'+CMTI: "SM",1\r\n')
        reply = await at.cmd("AT+CMGR=1")
        lines = reply.split(b"\r\n")
        assert lines[1] == b"+CMGR: 0,,%d" % (len(bytes.fromhex(lines[2].decode())) - 8)
        decoded = pdu.decode(lines[2].decode())
        assert isinstance(decoded, pdu.DeliverPdu) and decoded.text == "hi there"
        assert b"+CMGL: 1,1,," in await at.cmd("AT+CMGL=4")   # now REC READ
        assert await at.cmd("AT+CMGL=0") == b"\r\nOK\r\n"
        assert await at.cmd("AT+CMGD=1") == b"\r\nOK\r\n"
        assert sim.stored("SM") == {}

    async def test_cmgd_delflag_deletes_by_status(self, make_sim, open_at):
        """AT+CMGD=<i>,1 deletes the read messages only; ,4 deletes everything."""
        sim = await make_sim(profile="quectel")
        at = open_at(sim.path)
        await quiet(at)
        await sim.deliver("+447700900555", "first")
        await sim.deliver("+447700900555", "second")
        assert sorted(sim.stored("SM")) == [0, 1]
        await at.cmd("AT+CMGR=0")                       # index 0 becomes REC READ
        assert await at.cmd("AT+CMGD=0,1") == b"\r\nOK\r\n"
        assert sorted(sim.stored("SM")) == [1]
        assert await at.cmd("AT+CMGD=0,4") == b"\r\nOK\r\n"
        assert sim.stored("SM") == {}
        assert await at.cmd("AT+CMGR=99") == b"\r\n+CMS ERROR: 321\r\n"

    async def test_cnma_acknowledges_routed_sms(self, make_sim, open_at):
        """With +CSMS=1 a routed +CMT expects one +CNMA; a second answers +CMS ERROR: 340."""
        sim = await make_sim(profile="huawei")
        at = open_at(sim.path)
        await quiet(at)
        assert b"+CSMS: 1,1,1" in await at.cmd("AT+CSMS=1")
        assert (await at.cmd("AT+CNMI=2,2,0,0,0")).endswith(b"\r\nOK\r\n")
        await sim.deliver("+447700900555", "ack me")
        await at.until(b"+CMT: ,")
        assert (await at.cmd("AT+CNMA")).endswith(b"\r\nOK\r\n")
        assert (await at.cmd("AT+CNMA")).endswith(b"\r\n+CMS ERROR: 340\r\n")

    async def test_cnmi_mode0_buffers_until_mode2(self, make_sim, open_at):
        """<mode>=0 keeps indications in the modem; switching to 2 with <bfr>=0 flushes them."""
        sim = await make_sim()
        at = open_at(sim.path)
        await quiet(at)
        assert await at.cmd("AT+CNMI=0,1,0,0,0") == b"\r\nOK\r\n"
        await sim.deliver("+447700900555", "held")
        assert await at.cmd("AT") == b"\r\nOK\r\n"     # nothing before the OK
        assert await at.cmd("AT+CNMI=2,1,0,0,0") == b"\r\nOK\r\n"
        assert await at.until(b'+CMTI: "SM",1\r\n')

    async def test_quectel_urcport_elsewhere_silences_urcs(self, make_sim, open_at):
        """AT+QURCCFG="urcport","usbmodem" sends URCs to another port: none arrive on ours."""
        sim = await make_sim(profile="quectel")
        at = open_at(sim.path)
        await quiet(at)
        assert b'"urcport","usbat"' in await at.cmd('AT+QURCCFG="urcport"')
        assert (await at.cmd('AT+QURCCFG="urcport","usbmodem"')).endswith(b"\r\nOK\r\n")
        await sim.deliver("+447700900555", "quiet")
        assert await at.cmd("AT") == b"\r\nOK\r\n"
        assert b"+CMGL: 0,0,," in await at.cmd("AT+CMGL=4")

    async def test_cmt_routing(self, make_sim, open_at):
        """With <mt>=2 the PDU comes inline as +CMT: ,<len> and is not stored."""
        sim = await make_sim(profile="quectel")
        at = open_at(sim.path)
        await quiet(at)
        assert await at.cmd("AT+CNMI=2,2,0,1,0") == b"\r\nOK\r\n"
        await sim.deliver("+447700900555", "inline")
        head = await at.until(b"\r\n", deadline_s=5)
        while b"+CMT:" not in head:
            head = await at.until(b"\r\n")
        body = (await at.until(b"\r\n")).strip()
        decoded = pdu.decode(body.decode())
        assert isinstance(decoded, pdu.DeliverPdu) and decoded.text == "inline"
        assert sim.stored("SM") == {}

    async def test_generic_cnmi_fallback(self, make_sim, open_at):
        """The generic modem refuses <bm>=2 and <ds>=1 (+CMS ERROR: 303) but takes 2,1,0,2,0."""
        sim = await make_sim()
        at = open_at(sim.path)
        await quiet(at)
        assert await at.cmd("AT+CNMI=2,1,2,1,0") == b"\r\n+CMS ERROR: 303\r\n"
        assert await at.cmd("AT+CNMI=2,1,0,1,0") == b"\r\n+CMS ERROR: 303\r\n"
        assert await at.cmd("AT+CNMI=2,1,0,2,0") == b"\r\nOK\r\n"

    async def test_sim_full_holds_messages_until_space(self, make_sim, open_at):
        """A full SIM stores nothing more; the network holds the SMS and delivers after CMGD."""
        sim = await make_sim(sim_capacity=2)
        at = open_at(sim.path)
        await quiet(at)
        await at.cmd("AT+CNMI=2,1,0,2,0")
        for i in range(3):
            await sim.deliver("+447700900555", f"msg {i}")
        await at.until(b'+CMTI: "SM",2\r\n')
        assert b'"SM",2,2' in await at.cmd("AT+CPMS?")
        assert await at.cmd("AT+CMGD=1") == b"\r\nOK\r\n"
        assert await at.until(b'+CMTI: "SM",1\r\n')
        texts = sorted(pdu.decode(p).text for _, p in sim.stored("SM").values())  # type: ignore[union-attr]
        assert texts == ["msg 1", "msg 2"]

    async def test_status_report_stored_with_cdsi(self, make_sim, open_at):
        """A send asking for a report gets one: <ds>=2 stores it in SR and says +CDSI."""
        sim = await make_sim()
        at = open_at(sim.path)
        await quiet(at)
        await at.cmd("AT+CNMI=2,1,0,2,0")
        sub = _submit()
        await at.cmd(f"AT+CMGS={sub.tpdu_length}")
        at.write(sub.hex.encode() + b"\x1a")
        await at.until(b'+CDSI: "SR",1\r\n')
        ((_, hex_pdu),) = sim.stored("SR").values()
        report = pdu.decode(hex_pdu)
        assert isinstance(report, pdu.StatusReportPdu)
        assert report.message_reference == 0 and report.recipient == "+447700900123"

    async def test_status_report_routed_with_cds(self, make_sim, open_at):
        """With <ds>=1 the report comes inline as +CDS: <len> and its PDU."""
        sim = await make_sim(profile="simcom", auto_report=False)
        at = open_at(sim.path)
        await quiet(at)
        await at.cmd("AT+CNMI=2,1,0,1,0")
        await sim.status_report(77, "+447700900123", status=0x41)
        await at.until(b"+CDS: ")
        body = (await at.until(b"\r\n")) + (await at.until(b"\r\n"))
        report = pdu.decode(body.split(b"\r\n")[1].decode())
        assert isinstance(report, pdu.StatusReportPdu)
        assert (report.message_reference, report.status) == (77, 0x41)

    async def test_urc_arrives_during_a_slow_command(self, make_sim, open_at):
        """With latency, a +CMTI raised mid-command lands between echo and reply, whole."""
        sim = await make_sim(latency_ms=300)
        at = open_at(sim.path)
        await quiet(at)
        await at.cmd("AT+CNMI=2,1,0,2,0")
        at.write(b"AT+CSQ\r")
        # The command was taken and its answer waits out the latency: deliver now.
        # (A fixed 50 ms pause could outlast the 300 ms on a loaded machine.)
        await eventually(lambda: sim.engine.last_line == "AT+CSQ")
        await sim.deliver("+447700900555", "during")
        reply = await at.until(b"OK\r\n")
        assert reply == b'\r\n+CMTI: "SM",1\r\n\r\n+CSQ: 20,99\r\n\r\nOK\r\n'


class TestVendors:
    async def test_quectel_boot_urcs(self, make_sim, open_at):
        """An EC25 announces RDY, then SIM and SMS readiness, on power-up."""
        sim = await make_sim(profile="quectel")
        at = open_at(sim.path)
        boot = await at.until(b"+QIND: SMS DONE\r\n")
        assert boot.index(b"RDY") < boot.index(b"+CPIN: READY") < boot.index(b"SMS DONE")

    async def test_huawei_rssi_flood_until_curc0(self, make_sim, open_at):
        """Huawei reports ^RSSI unprompted until AT^CURC=0."""
        sim = await make_sim(profile="huawei")
        sim.flood_interval_s = 0.05
        await sim.unplug()
        await sim.replug()           # power up again with the short interval
        at = open_at(sim.path)
        await at.until(b"^RSSI:")
        await at.until(b"^RSSI:")
        assert (await at.cmd("AT^CURC=0")).endswith(b"\r\nOK\r\n")
        await asyncio.sleep(0.2)
        at.buf.clear()
        await asyncio.sleep(0.3)
        assert b"^RSSI" not in bytes(at.buf)
        assert (await at.cmd("AT^CURC?")).endswith(b"^CURC: 0\r\n\r\nOK\r\n")

    async def test_ussd_answer_is_unsolicited(self, make_sim, open_at):
        """+CUSD=1,"*100#" answers OK at once and the balance later as +CUSD: 0,"...",15."""
        sim = await make_sim()
        at = open_at(sim.path)
        await quiet(at)
        assert await at.cmd('AT+CUSD=1,"*100#",15') == b"\r\nOK\r\n"
        assert b'+CUSD: 0,"Your balance' in await at.until(b",15\r\n")
