"""The driver on a Sierra Wireless MC7304 (simulated on a real pty).

What makes the Sierra different, per its AT command reference: +CGMI says
"Sierra Wireless, Incorporated", vendor commands start with "!" (AT!GSTATUS?
answers a multi-line table, AT!ICCID? the ICCID), storage indexes start at 0,
and older firmware answers ERROR to every +CEREG form although the module
camps on LTE.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from smsd.cli.modem import add_verbs
from smsd.codec import pdu
from smsd.errors import AtError
from smsd.modem.device import Modem
from smsd.modem.probe import probe
from smsd.modem.spec import STATE_READY, ModemSpec
from smsd.simulator.modem import SimulatedModem
from tests.modem.conftest import eventually
from tests.modem.sim_spy import EVENT_TIMEOUT_S, Recorder, Spy

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def sierra(tmp_path: Path) -> AsyncIterator[SimulatedModem]:
    sim = SimulatedModem(profile="sierra")
    await sim.start(str(tmp_path / "mc7304"))
    yield sim
    await sim.stop()


@pytest.fixture
async def driver(sierra: SimulatedModem) -> AsyncIterator[tuple[Modem, Recorder, Spy]]:
    """The driver initialised (profile auto) and running on the Sierra."""
    spy = Spy(sierra)
    events = Recorder()
    modem = Modem(ModemSpec(id="mc", path=sierra.path), events, registration_s=5.0)
    await modem.open()
    await modem.initialise()
    task = asyncio.get_running_loop().create_task(modem.run())
    yield modem, events, spy
    task.cancel()
    await asyncio.wait({task}, timeout=5)
    await asyncio.wait_for(modem.close(), 5)


async def test_initialises_although_cereg_is_refused(driver: Any) -> None:
    """+CGMI picks the sierra profile; the module refused AT+CEREG=1 and AT+CEREG?,
    and init still ends ready, registered through +CREG."""
    modem, _, spy = driver
    assert modem.info.manufacturer == "Sierra Wireless, Incorporated"
    assert modem.info.model == "MC7304" and modem.profile.name == "sierra"
    assert [r.final for r in spy.answers("AT+CEREG=1")] == ["ERROR"]
    assert spy.answers("AT+CEREG?") and all(r.final == "ERROR" for r in spy.answers("AT+CEREG?"))
    assert modem.state == STATE_READY and modem.info.registration == 1
    assert modem.info.cnmi is not None and modem.info.urc_port is None


async def test_sends_and_receives(driver: Any, sierra: SimulatedModem) -> None:
    """An SMS goes out (the module got the PDU, the driver the TP-MR) and one comes in
    through +CMTI at storage index 0, then leaves the SIM."""
    modem, events, _ = driver
    submit = pdu.encode_submit("+447700900123", "hello from a Sierra")[0]
    mr = await modem.send_pdu(submit)
    assert [s.mr for s in sierra.submissions] == [mr]
    assert sierra.submitted[0].text == "hello from a Sierra"
    assert sierra.submitted[0].number == "+447700900123"
    await sierra.deliver("+447700900777", "hello to a Sierra")
    got = await asyncio.wait_for(events.sms.get(), EVENT_TIMEOUT_S)
    assert got.text == "hello to a Sierra" and got.sender == "+447700900777"
    # deleted once handed over (AT+CMGD follows the hand-over)
    await eventually(lambda: sierra.stored("SM") == {})


async def test_gstatus_answer_reaches_the_command(driver: Any) -> None:
    """AT!GSTATUS? answers a multi-line table; every line, the "!GSTATUS:" header
    included, belongs to the command (it is not taken for a URC)."""
    modem, _, _ = driver
    lines = await modem.cmd("AT!GSTATUS?")
    assert lines[0].startswith("!GSTATUS:")
    assert any(line.startswith("System mode:") and "LTE" in line for line in lines)
    assert any(line.startswith("EMM state:") and "Registered" in line for line in lines)


async def test_unknown_bang_command_is_refused(driver: Any) -> None:
    """A "!" command the module does not have ends in ERROR, as on the real one."""
    modem, _, _ = driver
    with pytest.raises(AtError):
        await modem.cmd("AT!NOSUCH?")


async def test_probe_reads_the_iccid(sierra: SimulatedModem) -> None:
    """The probe names the profile and reads the ICCID with Sierra's AT!ICCID?."""
    report = await probe(sierra.path)
    assert report.profile == "sierra" and report.model == "MC7304"
    assert report.iccid == sierra.state.identity.iccid
    assert report.ok, report.problems
    assert report.urc_port is None and report.usb_interface is None


def test_simulate_offers_sierra_and_port_identity() -> None:
    """`smsd modem simulate` accepts --profile sierra and --port-identity usbmodem,
    and refuses a port name the module does not have."""
    parser = argparse.ArgumentParser()
    add_verbs(parser.add_subparsers(dest="modem_command"))
    args = parser.parse_args(["simulate", "--link", "/tmp/x", "--profile", "sierra",
                              "--port-identity", "usbmodem"])
    assert args.profile == "sierra" and args.port_identity == "usbmodem"
    with pytest.raises(SystemExit):
        parser.parse_args(["simulate", "--link", "/tmp/x", "--port-identity", "usb9"])
