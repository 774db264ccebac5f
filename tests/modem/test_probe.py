"""probe(): identify a modem on a real pty and say in plain words what is wrong with it.

The scripted modem answers as TS 27.007/27.005 prescribe; vendor ICCID
answers follow the vendors' AT manuals (Quectel +QCCID, Huawei ^ICCID with
EF_ICCID's nibble-swapped byte order from TS 102 221 13.2).
"""

from __future__ import annotations

import asyncio

import pytest

from smsd.modem.probe import (
    ProbeReport,
    find_problems,
    parse_iccid,
    parse_mode_list,
    probe,
)
from tests.fakes.scripted_modem import ScriptedModem

pytestmark = pytest.mark.timeout(20)

# ITU-T E.118 ICCID (19 digits, Luhn digit last) and the same number as a
# Huawei ^ICCID answer: EF_ICCID padded with F to 20 nibbles, each byte swapped.
ICCID = "8944100000000000018"
ICCID_SWAPPED = "984401000000000010F8"


def _pin_locked(fake: ScriptedModem, right_pin: str) -> None:
    """A SIM that wants ``right_pin`` (TS 27.007 8.3): +CME ERROR 16 for any other."""
    state = {"cpin": "SIM PIN"}

    def cpin(line: str) -> list[str]:
        if line == f'AT+CPIN="{right_pin}"' or line == f"AT+CPIN={right_pin}":
            state["cpin"] = "READY"
            return ["OK"]
        return ["+CME ERROR: 16"]

    fake.reply_to(r"AT\+CPIN\?", lambda _: [f"+CPIN: {state['cpin']}", "OK"])
    fake.reply_to(r"AT\+CPIN=.+", cpin)


async def test_probe_ready_modem(fake: ScriptedModem) -> None:
    """A ready Quectel modem: identity, ICCID, profile, SIM, network, SMSC, storage; OK."""
    fake.install_standard(manufacturer="Quectel", model="EC25")
    fake.reply_to(r"AT\+QCCID", [f"+QCCID: {ICCID}", "OK"])
    fake.reply_to(r"AT\+CMGF=\?", ["+CMGF: (0,1)", "OK"])
    fake.reply_to(r"AT\+CNMI=\?", ["+CNMI: (0-2),(0-3),(0,2),(0-2),(0,1)", "OK"])
    report = await probe(fake.path)
    assert report.responding and report.manufacturer == "Quectel" and report.model == "EC25"
    assert report.firmware == "1.0" and report.imei == "356938035643809"
    assert report.iccid == ICCID
    assert report.profile == "quectel" and "urcport" in (report.urc_port_note or "")
    assert report.sim == "READY" and report.imsi == "234150999999999"
    assert report.signal_dbm == -73 and report.registered and not report.roaming
    assert report.registration == 1 and report.operator == "ACME UK"
    assert report.smsc == "+447785016005" and report.own_number == "+447700900001"
    assert report.pdu_mode is True
    assert report.cnmi_supported == "(0-2),(0-3),(0,2),(0-2),(0,1)"
    assert report.storage[0] == {"slot": "read_delete", "memory": "SM", "used": 0, "total": 30}
    assert [s["slot"] for s in report.storage] == ["read_delete", "write_send", "receive"]
    assert report.problems == [] and report.ok
    as_json = report.to_json()
    assert as_json["ok"] is True and as_json["iccid"] == ICCID and as_json["device"] == fake.path
    # read-only: SMS settings were not changed
    assert not any(c.startswith(("AT+CNMI=2", "AT+CMGF=0", "AT+CPMS=", "AT+CSCA="))
                   for c in fake.received)


async def test_probe_unswaps_huawei_iccid(fake: ScriptedModem) -> None:
    """Huawei's ^ICCID gives EF_ICCID in card byte order; the report has the real ICCID."""
    fake.install_standard(manufacturer="Huawei", model="E3372")
    fake.reply_to(r"AT\^ICCID\?", [f"^ICCID: {ICCID_SWAPPED}", "OK"])
    report = await probe(fake.path)
    assert report.iccid == ICCID and report.profile == "huawei"


async def test_probe_sim_missing(fake: ScriptedModem) -> None:
    """SIM not inserted: a plain-words problem, and the identity is still reported."""
    fake.install_standard()
    fake.reply_to(r"AT\+CPIN\?", ["+CME ERROR: 10"])
    report = await probe(fake.path)
    assert report.responding and not report.ok
    assert report.sim == "NOT INSERTED" and report.imei == "356938035643809"
    assert report.problems == ["no SIM card: insert one (power the modem off first)"]


async def test_probe_pin_needed_sends_no_pin(fake: ScriptedModem) -> None:
    """A PIN-locked SIM without a PIN given: 'PIN needed', and no AT+CPIN= is ever sent."""
    fake.install_standard()
    _pin_locked(fake, "1234")
    report = await probe(fake.path)
    assert report.sim == "SIM PIN" and not report.ok
    assert report.problems[0].startswith("PIN needed")
    assert not any(c.startswith("AT+CPIN=") for c in fake.received)


async def test_probe_right_pin_unlocks(fake: ScriptedModem) -> None:
    """The right PIN is entered once and the probe then reads the SIM: OK."""
    fake.install_standard()
    _pin_locked(fake, "1234")
    report = await probe(fake.path, pin="1234")
    assert report.sim == "READY" and report.ok, report.problems
    assert report.imsi == "234150999999999"
    assert sum(c.startswith("AT+CPIN=") for c in fake.received) == 1


async def test_probe_wrong_pin_tried_once_and_explained(fake: ScriptedModem) -> None:
    """A refused PIN is tried once only, quoted with the modem's error and the PUK warning."""
    fake.install_standard()
    _pin_locked(fake, "1234")
    report = await probe(fake.path, pin="9999")
    assert sum(c.startswith("AT+CPIN=") for c in fake.received) == 1
    assert report.sim == "SIM PIN" and not report.ok
    (problem,) = report.problems
    assert "refused the PIN (+CME ERROR: 16)" in problem and "PUK" in problem
    assert "9999" not in str(report.to_json())


async def test_probe_malformed_pin_is_not_sent(fake: ScriptedModem) -> None:
    """A PIN that is not 4-8 digits never reaches the SIM (no wasted try) and is explained."""
    fake.install_standard()
    _pin_locked(fake, "1234")
    report = await probe(fake.path, pin="12a4")
    assert not any(c.startswith("AT+CPIN=") for c in fake.received)
    assert report.sim == "SIM PIN"
    assert report.problems == ["the PIN given is not 4 to 8 digits: it was not sent to the SIM"]


async def test_probe_no_network(fake: ScriptedModem) -> None:
    """A ready SIM that is not registered: 'no network' with the 27.007 state in words."""
    fake.install_standard(creg=2)
    report = await probe(fake.path)
    assert not report.registered and report.registration == 2
    assert report.problems == ["no network: not registered, searching; check the antenna, "
                               "coverage and that the SIM is active"]


async def test_probe_roaming_is_fine(fake: ScriptedModem) -> None:
    """Registered while roaming (<stat> 5) is registered: OK, with roaming set."""
    fake.install_standard(creg=5)
    report = await probe(fake.path)
    assert report.registered and report.roaming and report.ok


async def test_probe_text_only_modem(fake: ScriptedModem) -> None:
    """A modem whose AT+CMGF=? lists only text mode is reported: smsd needs PDU mode."""
    fake.install_standard()
    fake.reply_to(r"AT\+CMGF=\?", ["+CMGF: (1)", "OK"])
    report = await probe(fake.path)
    assert report.pdu_mode is False and not report.ok
    assert any("no PDU mode" in p for p in report.problems)


async def test_probe_silent_port(fake: ScriptedModem) -> None:
    """A port where nothing answers AT is 'not a modem' and nothing more is asked of it."""
    fake.silent = True
    report = await probe(fake.path, answer_s=0.2, tries=2)
    assert not report.responding and not report.ok
    assert report.problems[0].startswith(f"not a modem: {fake.path} gave no answer to AT")
    assert report.manufacturer is None
    assert not any(c.startswith(("AT+CGMI", "AT+CPIN")) for c in fake.received)


async def test_probe_port_pulled_midway(fake: ScriptedModem) -> None:
    """The modem vanishing mid-probe ends the probe with a problem, not an exception."""
    fake.install_standard()

    def pull(_: str) -> list[str]:
        asyncio.get_running_loop().create_task(fake.unplug())
        return []

    fake.reply_to(r"AT\+CPIN\?", pull)
    report = await probe(fake.path)
    assert report.responding and not report.ok
    assert any(p.startswith("the port went away during the probe") for p in report.problems)


def test_parse_iccid_vendor_forms() -> None:
    """Every vendor's ICCID answer gives the E.118 digits; lines without one give None."""
    assert parse_iccid([f"+CCID: {ICCID}"]) == ICCID
    assert parse_iccid([f'+ICCID: "{ICCID}F"']) == ICCID
    assert parse_iccid([f"^ICCID: {ICCID_SWAPPED}"]) == ICCID
    assert parse_iccid(["+CCID: 12345"]) is None and parse_iccid([]) is None


def test_parse_mode_list() -> None:
    """The first parameter of a test-command answer, lists and ranges; junk gives None."""
    assert parse_mode_list(["+CMGF: (0,1)"], "+CMGF") == {0, 1}
    assert parse_mode_list(["+CMGF: (0-1)"], "+CMGF") == {0, 1}
    assert parse_mode_list(["+CMGF: (1)"], "+CMGF") == {1}
    assert parse_mode_list(["+CMGF: (x)"], "+CMGF") is None
    assert parse_mode_list([], "+CMGF") is None


def test_problems_are_ordered_sim_first() -> None:
    """A PUK-locked SIM is reported as such, and no network is not blamed on top of it."""
    r = ProbeReport(device="/dev/x", responding=True, sim="SIM PUK", registration=0)
    assert find_problems(r, pin_given=False) == [
        "the SIM is PUK-locked after wrong PINs: unlock it in a phone"]
    r = ProbeReport(device="/dev/x", responding=True, sim="READY", registered=True)
    assert find_problems(r, pin_given=False) == [
        "no SMS centre on the SIM: set smsc in the modem's config"]
