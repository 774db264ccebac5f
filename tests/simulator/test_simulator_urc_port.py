"""The simulated EC25's AT+QURCCFG="urcport", checked against the Quectel EC25 AT manual.

The manual: the read form answers ``+QURCCFG: "urcport","<port>"``; <port> is
"usbat" (default), "usbmodem" or "uart1"; URCs are output only on that port;
the setting takes effect at once and is saved automatically.  The pty plays
one port of the module (``port_identity``); a new SMS is stored whichever
port gets the indication.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from smsd.simulator.farm import SimulatorFarm
from smsd.simulator.modem import SimulatedModem
from tests.fakes.raw_at import quiet

pytestmark = pytest.mark.timeout(30)


async def test_read_and_test_forms(make_sim, open_at):
    """The default is usbat; the test form lists the three ports."""
    sim = await make_sim(profile="quectel")
    at = open_at(sim.path)
    await quiet(at)
    assert await at.cmd('AT+QURCCFG="urcport"') == \
        b'\r\n+QURCCFG: "urcport","usbat"\r\n\r\nOK\r\n'
    assert await at.cmd("AT+QURCCFG=?") == \
        b'\r\n+QURCCFG: "urcport",("usbat","usbmodem","uart1")\r\n\r\nOK\r\n'


async def test_modem_port_hears_nothing_until_named(make_sim, open_at):
    """On the usbmodem pty with urcport usbat, an SMS is stored but no +CMTI comes;
    once urcport names usbmodem, the next SMS is indicated here."""
    sim = await make_sim(profile="quectel", port_identity="usbmodem")
    at = open_at(sim.path)
    await quiet(at)
    assert (await at.cmd("AT+CNMI=2,1,0,2,0")).endswith(b"\r\nOK\r\n")
    await sim.deliver("+447700900555", "first")
    assert await at.cmd("AT") == b"\r\nOK\r\n"           # no +CMTI before the OK
    assert b"+CMGL: 0,0,," in await at.cmd("AT+CMGL=4")   # but it is stored
    assert (await at.cmd('AT+QURCCFG="urcport","usbmodem"')).endswith(b"\r\nOK\r\n")
    await sim.deliver("+447700900555", "second")
    assert await at.until(b'+CMTI: "SM",1\r\n')


async def test_at_port_silenced_by_moving_urcs(make_sim, open_at):
    """The default pty (usbat) gets +CMTI until urcport is moved elsewhere."""
    sim = await make_sim(profile="quectel")
    at = open_at(sim.path)
    await quiet(at)
    assert (await at.cmd("AT+CNMI=2,1,0,2,0")).endswith(b"\r\nOK\r\n")
    await sim.deliver("+447700900555", "heard")
    assert await at.until(b'+CMTI: "SM",0\r\n')
    assert (await at.cmd('AT+QURCCFG="urcport","uart1"')).endswith(b"\r\nOK\r\n")
    await sim.deliver("+447700900555", "not heard")
    assert await at.cmd("AT") == b"\r\nOK\r\n"
    assert set(sim.stored("SM")) == {0, 1}


async def test_setting_survives_a_reboot(make_sim, open_at):
    """Saved in NV: after AT+CFUN=1,1 the read form still names usbmodem, while
    session settings (echo) are back to their defaults."""
    sim = await make_sim(profile="quectel", port_identity="usbmodem")
    at = open_at(sim.path)
    await quiet(at)
    assert (await at.cmd('AT+QURCCFG="urcport","usbmodem"')).endswith(b"\r\nOK\r\n")
    assert (await at.cmd("AT+CFUN=1,1")).endswith(b"\r\nOK\r\n")
    await at.until(b"+QIND: PB DONE\r\n")     # boot URCs reach the named port
    reply = await at.cmd('AT+QURCCFG="urcport"')
    # echoed again (E1 after the reboot), and the value kept
    assert reply == b'AT+QURCCFG="urcport"\r\r\n+QURCCFG: "urcport","usbmodem"\r\n\r\nOK\r\n'


@pytest.mark.parametrize("command", ['AT+QURCCFG="urcport","usb9"',
                                     'AT+QURCCFG="urcport","usbat",1',
                                     'AT+QURCCFG="other","usbat"',
                                     "AT+QURCCFG?"])
async def test_bad_forms_are_refused_and_change_nothing(make_sim, open_at, command):
    """Unknown ports, extra parameters, other keys and the ? form answer ERROR."""
    sim = await make_sim(profile="quectel")
    at = open_at(sim.path)
    await quiet(at)
    assert (await at.cmd(command)).endswith(b"\r\nERROR\r\n")
    assert sim.state.qurc_port == "usbat"


async def test_other_vendors_do_not_have_it(make_sim, open_at):
    """AT+QURCCFG is Quectel's: a SIMCom module answers ERROR."""
    sim = await make_sim(profile="simcom")
    at = open_at(sim.path)
    await quiet(at)
    assert (await at.cmd('AT+QURCCFG="urcport"')).endswith(b"\r\nERROR\r\n")


def test_unknown_port_identity_is_refused():
    """A pty cannot play a port the module does not have."""
    with pytest.raises(ValueError, match="port_identity"):
        SimulatedModem(profile="quectel", port_identity="usb9")


async def test_control_socket_describes_the_port(tmp_path):
    """The control socket's "modems" answer says which port each pty plays and
    whether URCs reach it, so a scripted test can tell why no +CMTI came."""
    farm = SimulatorFarm(1, link=str(tmp_path / "q"), profile="quectel",
                         control=str(tmp_path / "c.sock"), port_identity="usbmodem")
    await farm.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "c.sock"))
        writer.write(b'{"cmd": "modems"}\n')
        await writer.drain()
        answer = json.loads(await asyncio.wait_for(reader.readline(), 5))
        writer.close()
        await writer.wait_closed()
    finally:
        await farm.stop()
    assert answer["ok"] is True
    assert answer["modems"][0]["port_identity"] == "usbmodem"
    assert answer["modems"][0]["urcs_here"] is False
