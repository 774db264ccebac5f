"""probe(): identify a modem on a real pty and report what it says."""

from __future__ import annotations

import pytest

from smsd.modem.probe import probe
from tests.fakes.scripted_modem import ScriptedModem

pytestmark = pytest.mark.timeout(20)


async def test_probe_ready_modem(fake: ScriptedModem) -> None:
    """A ready Quectel-like modem: identity, profile, SIM, signal, network, SMSC, storage."""
    fake.install_standard(manufacturer="Quectel", model="EC25")
    fake.reply_to(r"AT\+CMGF=\?", ["+CMGF: (0,1)", "OK"])
    fake.reply_to(r"AT\+CNMI=\?", ["+CNMI: (0-2),(0-3),(0,2),(0-2),(0,1)", "OK"])
    report = await probe(fake.path)
    assert report.responding and report.manufacturer == "Quectel"
    assert report.profile == "quectel" and "urcport" in (report.urc_port_note or "")
    assert report.sim == "READY" and report.imsi == "234150999999999"
    assert report.signal_dbm == -73 and report.registered and not report.roaming
    assert report.smsc == "+447785016005" and report.own_number == "+447700900001"
    assert report.pdu_mode is True
    assert report.storage[0] == {"memory": "SM", "used": 0, "total": 30}
    assert report.to_dict()["operator"] == "ACME UK"
    # read-only: SMS settings were not changed
    assert not any(c.startswith(("AT+CNMI=2", "AT+CMGF=0", "AT+CPMS=")) for c in fake.received)


async def test_probe_sim_missing(fake: ScriptedModem) -> None:
    """SIM not inserted is reported as data, and the probe still reports identity."""
    fake.install_standard()
    fake.reply_to(r"AT\+CPIN\?", ["+CME ERROR: 10"])
    report = await probe(fake.path)
    assert report.sim == "NOT INSERTED" and report.imei == "356938035643809"


async def test_probe_silent_port(fake: ScriptedModem) -> None:
    """A port where nothing answers AT is reported as not responding, without hanging."""
    fake.silent = True
    report = await probe(fake.path, answer_s=0.2)
    assert not report.responding and "no answer" in report.errors[0]
