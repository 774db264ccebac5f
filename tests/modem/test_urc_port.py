"""Quectel's URC port: the driver points AT+QURCCFG="urcport" at the port it holds.

The peer is the simulated EC25 on a real pty, playing one interface of the
module (``port_identity``).  As the EC25 AT manual describes AT+QURCCFG, the
module sends every URC only to the port the setting names (default "usbat")
and keeps the setting in NV memory; a new SMS is stored either way, so a host
on the wrong port finds it only by listing storage (the periodic sweep).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from smsd.cli.modem_device import format_probe
from smsd.modem.device import Modem
from smsd.modem.probe import probe
from smsd.modem.quirks import PROFILES, parse_urc_port, point_urcs_here
from smsd.modem.spec import ModemSpec
from smsd.simulator.modem import SimulatedModem
from tests.modem.conftest import eventually
from tests.modem.sim_spy import EVENT_TIMEOUT_S, Recorder, Spy

pytestmark = pytest.mark.timeout(30)

# Long enough that the periodic sweep never runs during a test after its
# first pass at start-up: anything received later came through +CMTI.
NO_SWEEP_S = 3600.0
# Short enough that a test waiting for the sweep is quick.
FAST_SWEEP_S = 0.2


@pytest.fixture
async def quectel(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``await quectel(port_identity=...)``: a simulated EC25 playing that port."""
    sims: list[SimulatedModem] = []

    async def make(**kw: Any) -> SimulatedModem:
        sim = SimulatedModem(profile="quectel", **kw)
        await sim.start(str(tmp_path / f"ec25-{len(sims)}"))
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        await sim.stop()


@pytest.fixture
async def drivers() -> AsyncIterator[Callable[..., Any]]:
    """``await drivers(spec, events, **kw)``: an opened, initialised Modem (closed at teardown)."""
    made: list[tuple[Modem, asyncio.Task[None] | None]] = []

    async def make(spec: ModemSpec, events: Recorder, *, run: bool = True,
                   **kw: Any) -> Modem:
        modem = Modem(spec, events, registration_s=5.0, **kw)
        await modem.open()
        await modem.initialise()
        task = asyncio.get_running_loop().create_task(modem.run()) if run else None
        made.append((modem, task))
        return modem

    yield make
    for modem, task in made:
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=5)
        await asyncio.wait_for(modem.close(), 5)


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """structlog events at every level (other tests may have configured a filter)."""
    saved = structlog.get_config()
    structlog.reset_defaults()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as captured:
            yield captured
    finally:
        structlog.configure(**saved)


class TestDriverOnTheModemPort:
    async def test_configured_port_gets_cmti(self, quectel, drivers):
        """urc_port="usbmodem" on the usbmodem pty: the driver claims the URCs and an
        SMS arriving after the start-up sweep is read through +CMTI (AT+CMGR), with no
        further AT+CMGL sweep."""
        sim = await quectel(port_identity="usbmodem")
        spy = Spy(sim)
        events = Recorder()
        modem = await drivers(ModemSpec(id="q", path=sim.path, urc_port="usbmodem"),
                              events, sweep_s=NO_SWEEP_S)
        assert spy.count('AT+QURCCFG="urcport","usbmodem"') == 1
        assert sim.state.qurc_port == "usbmodem" and modem.info.urc_port == "usbmodem"
        await spy.wait_for("AT+CMGL")          # the start-up sweep has listed SM storage
        await sim.deliver("+447700900555", "via cmti")
        got = await asyncio.wait_for(events.sms.get(), EVENT_TIMEOUT_S)
        assert got.text == "via cmti" and got.sender == "+447700900555"
        reads = spy.answers("AT+CMGR")
        assert len(reads) == 1 and reads[0].final == "OK"
        assert reads[0].lines[0].startswith("+CMGR:")
        assert not spy.listed_a_message()      # no sweep ever saw it
        # deleted once handed over (AT+CMGD follows the hand-over)
        await eventually(lambda: sim.stored("SM") == {})

    async def test_without_urc_port_warns_and_sweeps(self, quectel, drivers, logs):
        """No urc_port and no USB interface (a pty): the driver leaves the setting alone,
        logs one modem.urc_port_unknown warning naming where URCs go, and still
        receives the SMS, through the sweep and never through +CMTI."""
        sim = await quectel(port_identity="usbmodem")
        spy = Spy(sim)
        events = Recorder()
        modem = await drivers(ModemSpec(id="q", path=sim.path), events, sweep_s=FAST_SWEEP_S)
        warnings = [e for e in logs if e["event"] == "modem.urc_port_unknown"]
        assert len(warnings) == 1
        assert warnings[0]["log_level"] == "warning" and warnings[0]["current"] == "usbat"
        assert "urc_port" in warnings[0]["note"]
        assert modem.info.urc_port == "usbat" and sim.state.qurc_port == "usbat"
        assert not any(line.upper().startswith('AT+QURCCFG="URCPORT",') for line in spy.lines)
        await spy.wait_for("AT+CMGL")          # after the start-up sweep, as above
        await sim.deliver("+447700900556", "via sweep")
        got = await asyncio.wait_for(events.sms.get(), EVENT_TIMEOUT_S)
        assert got.text == "via sweep"
        assert spy.count("AT+CMGR") == 0 and spy.listed_a_message()

    async def test_setting_already_right_is_not_rewritten(self, quectel, drivers):
        """The modem keeps urcport in NV memory: when it already names this port the
        driver only reads it (no flash write on every reconnect)."""
        sim = await quectel(port_identity="usbmodem")
        sim.state.qurc_port = "usbmodem"
        spy = Spy(sim)
        modem = await drivers(ModemSpec(id="q", path=sim.path, urc_port="usbmodem"),
                              Recorder(), run=False)
        assert spy.count('AT+QURCCFG="urcport"') == 1          # the read
        assert spy.count('AT+QURCCFG="urcport",') == 0         # no write
        assert modem.info.urc_port == "usbmodem"

    async def test_cli_driver_does_not_move_the_urcs(self, quectel, drivers):
        """claim_urc_port=False (smsd modem send/read) reads the setting but never moves
        the URCs away from the port the daemon may hold."""
        sim = await quectel(port_identity="usbmodem")
        modem = await drivers(ModemSpec(id="cli", path=sim.path, urc_port="usbmodem"),
                              Recorder(), run=False, claim_urc_port=False)
        assert sim.state.qurc_port == "usbat" and modem.info.urc_port == "usbat"

    async def test_other_vendors_are_left_alone(self, tmp_path, drivers):
        """A SIMCom modem has no URC-port setting: nothing is sent for it."""
        sim = SimulatedModem(profile="simcom")
        await sim.start(str(tmp_path / "simcom"))
        try:
            spy = Spy(sim)
            modem = await drivers(ModemSpec(id="s", path=sim.path), Recorder(), run=False)
            assert modem.profile.name == "simcom" and modem.info.urc_port is None
            assert spy.count("AT+QURCCFG") == 0
        finally:
            await sim.stop()


class TestChoosingThePort:
    """point_urcs_here against a scripted Quectel answering as its AT manual says."""

    @staticmethod
    def scripted(current: str, *, refuse_set: bool = False) -> tuple[Any, list[str]]:
        sent: list[str] = []
        state = {"port": current}

        async def try_cmd(command: str) -> list[str] | None:
            sent.append(command)
            if command == 'AT+QURCCFG="urcport"':
                return [f'+QURCCFG: "urcport","{state["port"]}"']
            prefix = 'AT+QURCCFG="urcport","'
            if command.startswith(prefix) and not refuse_set:
                state["port"] = command[len(prefix):-1]
                return []
            return None          # ERROR, as _try reports it
        return try_cmd, sent

    async def test_interface_3_is_usbmodem(self):
        """USB interface 3 of an EC25 is the modem port: the setting is moved there."""
        try_cmd, sent = self.scripted("usbat")
        got = await point_urcs_here(PROFILES["quectel"], try_cmd, configured=None,
                                    interface=3, claim=True, log=structlog.get_logger())
        assert got == "usbmodem"
        assert sent == ['AT+QURCCFG="urcport"', 'AT+QURCCFG="urcport","usbmodem"']

    async def test_interface_2_is_usbat(self):
        """USB interface 2 is the AT port, the factory default: read, nothing written."""
        try_cmd, sent = self.scripted("usbat")
        got = await point_urcs_here(PROFILES["quectel"], try_cmd, configured=None,
                                    interface=2, claim=True, log=structlog.get_logger())
        assert got == "usbat" and sent == ['AT+QURCCFG="urcport"']

    async def test_config_wins_over_interface(self):
        """urc_port from config overrides the interface map (non-default USB layouts)."""
        try_cmd, sent = self.scripted("usbmodem")
        got = await point_urcs_here(PROFILES["quectel"], try_cmd, configured="uart1",
                                    interface=2, claim=True, log=structlog.get_logger())
        assert got == "uart1" and sent[-1] == 'AT+QURCCFG="urcport","uart1"'

    async def test_refused_set_is_only_logged(self, logs):
        """A modem that refuses the set keeps working: the old value is reported and a
        modem.urc_port_not_set warning says SMS come by the sweep."""
        try_cmd, _ = self.scripted("usbat", refuse_set=True)
        got = await point_urcs_here(PROFILES["quectel"], try_cmd, configured=None,
                                    interface=3, claim=True, log=structlog.get_logger())
        assert got == "usbat"
        assert [e["event"] for e in logs if e["log_level"] == "warning"] == \
            ["modem.urc_port_not_set"]

    @pytest.mark.parametrize(("lines", "want"), [
        (['+QURCCFG: "urcport","usbat"'], "usbat"),
        (['+QURCCFG: "urcport","usbmodem"'], "usbmodem"),
        (['+QURCCFG: "URCPORT","UART1"'], "uart1"),
        (['+QURCCFG: "urcport"'], None),
        (["+CSQ: 20,99"], None),
        ([], None),
    ])
    def test_parse_answer(self, lines, want):
        """The read answer's value is extracted; anything else gives None, never an error."""
        assert parse_urc_port(lines, "+QURCCFG:") == want


class TestProbe:
    async def test_probe_reads_but_never_moves_the_urcs(self, quectel):
        """`smsd modem probe` shows where the Quectel sends URCs, read-only: the
        setting is queried, never written, and the text report has a URC port row."""
        sim = await quectel(port_identity="usbmodem")
        sim.state.qurc_port = "uart1"
        spy = Spy(sim)
        report = await probe(sim.path)
        assert report.profile == "quectel" and report.urc_port == "uart1"
        assert report.usb_interface is None and report.this_port is None
        assert spy.count('AT+QURCCFG="urcport"') == 1 and sim.state.qurc_port == "uart1"
        assert "URC port:     uart1" in format_probe(report).splitlines()
        assert report.to_json()["urc_port"] == "uart1"

    async def test_probe_of_other_vendor_has_no_row(self, tmp_path):
        """A modem without a URC-port setting reports none and prints no such row."""
        sim = SimulatedModem(profile="generic")
        await sim.start(str(tmp_path / "generic"))
        try:
            report = await probe(sim.path)
        finally:
            await sim.stop()
        assert report.urc_port is None
        assert not any(line.startswith("URC port") for line in format_probe(report).splitlines())
