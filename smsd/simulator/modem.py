"""Simulated GSM modems on pseudo-terminals: the test peer for the modem driver.

Each :class:`SimulatedModem` owns a pty pair: the slave path (and a stable
symlink to it) is what the driver opens like ``/dev/ttyUSB2``; the master side
is read with ``loop.add_reader`` and answered by the AT interpreter (at.py,
with the commands in general.py, sms.py and vendor.py), which follows the
vendors' manuals and TS 27.005/27.007 rather than our driver.  The simulator
also plays the mobile network: it delivers SMS-DELIVER PDUs into SIM storage,
sends status reports for submitted messages, holds traffic while the modem is
unplugged or not registered, and can misbehave on demand (latency, failures,
silence, garbage, unplug).  Everything runs on the event loop: no threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from smsd.codec import pdu as codec
from smsd.simulator.at import AtEngine
from smsd.simulator.faults import GLUE_LINE, FaultPlan, glue
from smsd.simulator.general import GENERAL_HANDLERS, reg_line
from smsd.simulator.network import SimNetwork
from smsd.simulator.profiles import get_profile, identity_for
from smsd.simulator.pty import PtyPort
from smsd.simulator.sms import SMS_HANDLERS, finish_submit
from smsd.simulator.state import (
    Memory,
    ModemState,
    SimCard,
)
from smsd.simulator.timing import ReplyTiming
from smsd.simulator.vendor import URC_PORTS, VENDOR_HANDLERS

log = structlog.get_logger(__name__)

# Input bytes buffered before a command line ends; V.250 5.2.4 asks for at
# least 40 characters per line, real modems take about 512-2048.
MAX_COMMAND_LINE = 2048
# The PDU after "> ": 2 hex digits per octet, 12 SMSC + 164 TPDU octets
# (27.005 3.5.1), with room for stray whitespace.
MAX_PDU_INPUT = 1024
_PDU_END = re.compile(rb"[\x1a\x1b]")      # Ctrl-Z sends, ESC cancels
# Huawei sticks report ^RSSI about every 2-3 s while ^CURC=1.
HUAWEI_FLOOD_INTERVAL_S = 2.0
# SMS indications held by +CNMI mode 0 (or during the "> " prompt) before
# the oldest is dropped; the message itself stays in storage.
MAX_HELD_INDICATIONS = 64
# A reboot (AT+CFUN=1,1) answers OK first and comes back after this.
REBOOT_DELAY_S = 0.05

# fail_rate mixes 27.005 3.2.5 / 24.011 E.2 causes: temporary ones (42
# congestion, 331 no network service, 332 network timeout) more often than
# permanent ones (1 unassigned number, 21 short message transfer rejected).
TEMPORARY_FAILURES = (42, 331, 332)
PERMANENT_FAILURES = (1, 21)
TEMPORARY_SHARE = 0.75

CTRL_Z = 0x1A
ESC = 0x1B


@dataclass(frozen=True)
class Submission:
    """One SMS-SUBMIT the simulator accepted, with the TP-MR it answered."""

    pdu: codec.SubmitPdu
    mr: int
    at: datetime

    def to_json(self) -> dict[str, object]:
        return {"to": self.pdu.number, "text": self.pdu.text, "part": self.pdu.part,
                "parts": self.pdu.parts, "mr": self.mr, "reference": self.pdu.reference,
                "encoding": self.pdu.encoding, "request_report": self.pdu.request_report,
                "pdu": self.pdu.hex, "at": self.at.isoformat()}


class SimulatedModem:
    """One modem on a pseudo-terminal, driven by the event loop."""

    def __init__(self, *, profile: str = "generic", own_number: str = "+447700900001",
                 latency_ms: float = 0, fail_rate: float = 0.0, pin: str | None = None,
                 sim_present: bool = True, network: bool = True,
                 auto_report: bool = True, report_delay_s: float = 0.0,
                 seed: int | None = None, index: int = 0,
                 sim_capacity: int | None = None, port_identity: str = "usbat",
                 send_ms: float = 0.0) -> None:
        if not 0.0 <= fail_rate <= 1.0:
            raise ValueError(f"fail_rate must be within 0..1, not {fail_rate}")
        if latency_ms < 0 or report_delay_s < 0 or send_ms < 0:
            raise ValueError("latency_ms, send_ms and report_delay_s must not be negative")
        if port_identity not in URC_PORTS:
            raise ValueError(f"port_identity must be one of {', '.join(URC_PORTS)}, "
                             f"not {port_identity!r}")
        prof = get_profile(profile)
        capacities = dict(prof.memories)
        if sim_capacity is not None:
            if sim_capacity < 1:
                raise ValueError("sim_capacity must be at least 1")
            capacities["SM"] = sim_capacity
        memories = {name: Memory(name, cap, prof.first_index) for name, cap in capacities.items()}
        self.state = ModemState(profile=prof, identity=identity_for(index),
                                sim=SimCard(present=sim_present, pin=pin, own_number=own_number),
                                memories=memories, network_up=network)
        self.engine = AtEngine(self.state, self,
                               {**GENERAL_HANDLERS, **SMS_HANDLERS, **VENDOR_HANDLERS})
        self.name = f"sim{index}"
        # Benchmarks only: how late timed replies come, how fast the peer turns round.
        self.timing: ReplyTiming | None = None
        # Which interface of a multi-port modem this pty plays (Quectel
        # AT+QURCCFG="urcport" names): URCs reach it only when the modem's
        # urcport setting names it.
        self.port_identity = port_identity
        self.latency_s = latency_ms / 1000.0
        # The network's part of a send: between the PDU and +CMGS, on top of
        # latency_ms.  A real modem answers plain AT commands in milliseconds
        # but takes seconds to submit an SMS (bench/run.py uses 3,000 ms).
        self.send_s = send_ms / 1000.0
        self.fail_rate = fail_rate
        self.auto_report = auto_report
        self.report_delay_s = report_delay_s
        self.flood_interval_s = HUAWEI_FLOOD_INTERVAL_S
        self.rng = random.Random(seed)
        self.path = ""
        self.slave_path = ""
        self.link: str | None = None
        self.plugged = False
        self.submitted: list[codec.SubmitPdu] = []
        self.submissions: list[Submission] = []
        self._held: deque[str] = deque(maxlen=MAX_HELD_INDICATIONS)
        self.port = PtyPort(self.name)
        self._worker: asyncio.Task[None] | None = None
        self._session_timers: set[asyncio.TimerHandle] = set()
        self._in_prompt = False
        self._after_reply: list[Callable[[], None]] = []
        self._flood_ticks = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.faults = FaultPlan()
        self.network = SimNetwork(self, self._running_loop)

    # --- lifecycle ------------------------------------------------------------

    async def start(self, link: str | None = None) -> str:
        """Power the modem up on a fresh pty; returns the slave path."""
        self._loop = asyncio.get_running_loop()
        self.link = link
        self._open_pty()
        self._power_up()
        return self.slave_path

    async def stop(self) -> None:
        await self._close_pty()
        self.network.stop()
        self.port.remove_link()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    # --- the network side (network.py) ----------------------------------------------

    @property
    def reports_dropped(self) -> list[str]:
        return self.network.reports_dropped

    async def deliver(self, sender: str, text: str, *, order: Sequence[int] | None = None,
                      ref16: bool = False) -> None:
        """An SMS from ``sender`` arrives; ``order`` lists 1-based parts in arrival order."""
        self.network.deliver_now(sender, text, order=order, ref16=ref16)

    async def status_report(self, message_reference: int, recipient: str, status: int = 0) -> None:
        self.network.status_report(message_reference, recipient, status)

    async def unplug(self) -> None:
        """Pull the USB plug: the driver's fd gets EIO/hang-up and the link goes away.

        The link is removed, as udev removes /dev/serial/by-id/... on unplug:
        a link left dangling at /dev/pts/N would lead whoever opens it next to
        any other process's pty that reuses the number.
        """
        log.info("simulator.unplug", modem=self.name, path=self.path)
        await self._close_pty()
        self.port.remove_link()

    async def replug(self) -> None:
        """Plug back in: a new pty (new slave name), the link re-pointed, a fresh boot."""
        if self.plugged:
            return
        self._open_pty()
        self._power_up()
        log.info("simulator.replug", modem=self.name, path=self.path, slave=self.slave_path)

    def _open_pty(self) -> None:
        self.port.open(self.link)
        self.slave_path = self.port.slave_path
        self.path = self.port.path

    def _session_timers_cancel(self) -> None:
        for handle in self._session_timers:
            handle.cancel()
        self._session_timers.clear()

    async def _close_pty(self) -> None:
        self.plugged = False
        self._session_timers_cancel()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        self.port.close()
        self._held.clear()
        self._in_prompt = False

    def _power_up(self) -> None:
        assert self._loop is not None
        self.engine.power_on()
        self.plugged = True
        self._worker = self._loop.create_task(self._serve(), name=f"simulator-{self.name}")
        prof = self.state.profile
        boot = f"{self.state.identity.imei[-8:]}"
        for text in prof.boot_urcs:
            self.urc(text.format(boot=boot, imei=self.state.identity.imei))
        sim = self.state.sim
        if sim.ready:
            self.sim_became_ready()
        elif any(u.startswith("+CPIN:") for u in prof.ready_urcs):
            self.urc(f"+CPIN: {sim.state}")
        if prof.periodic_urcs:
            self.after(self.flood_interval_s, self._flood)

    # --- failure injection -------------------------------------------------------

    def set_silent(self, silent: bool) -> None:
        self.port.silent = silent

    async def spew_garbage(self, data: bytes) -> None:
        self.port.write(data, force=True)

    def set_network(self, up: bool) -> None:
        self.state.network_up = up
        self.registration_changed()

    def urc(self, text: str, *, sms: bool = False) -> None:
        if not self.plugged or not self.urcs_routed_here():
            return
        if sms:
            mode = self.state.settings.cnmi[0]
            if mode == 0 or (self._in_prompt and mode != 3):
                self._held.append(text)
                return
        self.port.write(self.engine.render_urc(text))

    def urcs_routed_here(self) -> bool:
        """Quectel sends every URC only to the port AT+QURCCFG="urcport" names.

        The others get none: a new SMS is stored and indicated on that port
        alone, so a host on another port finds it only by listing storage.
        """
        if "+QURCCFG" not in self.state.profile.vendor_commands:
            return True
        return self.state.qurc_port == self.port_identity

    def after(self, delay_s: float, fn: Callable[[], None]) -> None:
        assert self._loop is not None
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                self._session_timers.discard(handle)
            try:
                fn()
            except Exception:
                log.exception("simulator.timer_failed", modem=self.name)

        handle = self._loop.call_later(delay_s, fire)
        self._session_timers.add(handle)

    def sim_became_ready(self) -> None:
        for text in self.state.profile.ready_urcs:
            self.urc(text)
        self.registration_changed()

    def registration_changed(self) -> None:
        s = self.state.settings
        for name, n, lte in (("+CREG", s.creg, False), ("+CGREG", s.cgreg, False),
                             ("+CEREG", s.cereg, True)):
            if n and (self.state.profile.lte or not lte):
                self.urc(reg_line(self.engine, name, n, include_n=False))
        self.network.drain()

    def sms_submitted(self, hex_pdu: str, mr: int) -> None:
        decoded = codec.decode(hex_pdu)
        assert isinstance(decoded, codec.SubmitPdu)
        self.submitted.append(decoded)
        self.submissions.append(Submission(decoded, mr, datetime.now(UTC)))
        log.info("simulator.submitted", modem=self.name, mr=mr, part=decoded.part,
                 parts=decoded.parts)
        own = self.state.sim.own_number
        if own and decoded.number.lstrip("+") == own.lstrip("+"):
            self.network.loop_back(decoded)
        if self.auto_report and decoded.request_report:
            self.network.report_for(mr, decoded.number)

    def injected_failure(self) -> int | None:
        if self.fail_rate <= 0 or self.rng.random() >= self.fail_rate:
            return None
        if self.rng.random() < TEMPORARY_SHARE:
            return self.rng.choice(TEMPORARY_FAILURES)
        return self.rng.choice(PERMANENT_FAILURES)

    def storage_freed(self) -> None:
        # The ME tells the network it has memory again (SMMA, TS 24.011); held
        # messages follow the command's final result, never interleave it.
        self.network.memory_freed()
        self._after_reply.append(self.network.drain)

    def indications_changed(self) -> None:
        self._after_reply.append(self._apply_indications)

    def _apply_indications(self) -> None:
        s = self.state.settings
        if s.cnmi[0] != 0:
            held = list(self._held)
            self._held.clear()
            if s.cnmi[4] == 0 and self.urcs_routed_here():
                for text in held:
                    self.port.write(self.engine.render_urc(text))
        self.network.drain()

    def power_cycle(self) -> None:
        def reboot() -> None:
            self.plugged = False
            for handle in self._session_timers:
                handle.cancel()
            self._session_timers.clear()
            if self._worker is not None:
                self._worker.cancel()
            self.port.discard_input()
            self._power_up()
        assert self._loop is not None
        self._loop.call_later(REBOOT_DELAY_S, reboot)

    def _flood(self) -> None:
        """Huawei's unsolicited status reports, on until AT^CURC=0."""
        if self.state.settings.curc:
            rssi = self.state.rssi if self.state.registered else 99
            self.urc(f"^RSSI:{rssi}")
            self._flood_ticks += 1
            if self._flood_ticks % 3 == 0:      # older sticks repeat ^BOOT every few seconds
                self.urc(f"^BOOT:{self.state.identity.imei[-8:]},0,0,0,75")
        self.after(self.flood_interval_s, self._flood)

    # --- the pty ---------------------------------------------------------------------

    def _echo(self, data: bytes | bytearray) -> None:
        if self.state.settings.echo and data:
            self.port.write(data)

    async def _read_line(self) -> str:
        """Collect one command line up to CR (S3), editing with BS (S5) as V.250 5.2.2 says."""
        buf = bytearray()
        while True:
            chunk = await self.port.read_chunk()
            echo = bytearray()
            for i, byte in enumerate(chunk):
                if byte == 0x0D:
                    echo.append(byte)
                    self._echo(echo)
                    self.port.unread(chunk[i + 1:])
                    return buf.decode("latin-1")
                if byte == 0x0A and not buf:
                    continue
                echo.append(byte)
                if byte in (0x08, 0x7F):
                    if buf:
                        buf.pop()
                    continue
                buf.append(byte)
                if len(buf) > MAX_COMMAND_LINE:
                    buf.clear()
            self._echo(echo)

    async def _read_pdu(self) -> str | None:
        """The text after ``> ``: hex until Ctrl-Z (send) or ESC (cancel), 27.005 3.5.1."""
        buf = bytearray()
        while True:
            chunk = await self.port.read_chunk()
            found = _PDU_END.search(chunk)
            end = found.start() if found is not None else len(chunk)
            text = chunk[:end]
            self._echo(text)
            text = text.replace(b"\r", b"").replace(b"\n", b"")
            buf += text[:max(0, MAX_PDU_INPUT - len(buf))]
            if end < len(chunk):
                self.port.unread(chunk[end + 1:])
                return None if chunk[end] == ESC else buf.decode("latin-1")

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            line = await self._read_line()
            # The latency counts from the command's end, as on a modem: our own
            # work on it is part of it, not added to it (issue 17's scale rows
            # compare the daemon with latency_ms exactly).
            heard = loop.time()
            timing = self.timing
            if timing is not None:
                timing.command_heard(line, heard)
            reply = self.engine.execute(line)
            if reply is None:
                continue
            if self.latency_s:
                await _sleep_until(loop, heard + self.latency_s)
                if timing is not None:
                    timing.replied(heard + self.latency_s, loop.time())
            moment = "prompt" if reply.prompt is not None else (
                "cmgr" if line.upper().startswith("AT+CMGR=") else None)
            if not self._answer(self.engine.render(reply), moment, {"command": line}):
                return
            self._run_after_reply()
            if reply.prompt is None:
                continue
            self._in_prompt = True
            try:
                body = await self._read_pdu()
            finally:
                self._in_prompt = False
            if body is not None and (self.latency_s or self.send_s):
                due = loop.time() + self.latency_s + self.send_s
                await asyncio.sleep(self.latency_s + self.send_s)
                if timing is not None:
                    timing.replied(due, loop.time())
            accepted = len(self.submissions)
            final = finish_submit(self.engine, reply.prompt.length, body)
            what = ({"submitted": self.submissions[-1].to_json()}
                    if len(self.submissions) > accepted else {})
            if not self._answer(self.engine.render(final), "cmgs" if what else None, what):
                return
            if timing is not None:
                timing.send_answered(loop.time())
            self._apply_indications()
            self._run_after_reply()

    def _answer(self, out: bytes, moment: str | None, what: Mapping[str, object]) -> bool:
        """Write an answer, or what the fault armed for this moment makes of it.

        False when the fault pulled the plug: the worker must end.
        """
        fault = self.faults.take(moment) if moment is not None else None
        if fault is None:
            self.port.write(out)
            return True
        log.info("simulator.fault", modem=self.name, moment=moment, fault=fault.kind)
        fault.fired.set_result({"moment": moment, "fault": fault.kind, **what})
        if fault.kind == "garbage":
            self.port.write(glue(out, fault.data, GLUE_LINE[moment or ""]), force=True)
            return True
        if fault.kind == "silent":
            self.set_silent(True)
            return True
        self._unplug_now()
        return False

    def _unplug_now(self) -> None:
        """unplug() from inside the worker, which cannot await its own cancellation.

        The link goes too, as /dev/ttyUSB2 does when a stick is pulled: a
        dangling link would point at a pty number the kernel soon gives to
        another process, and a driver reopening it would talk to a stranger.
        """
        self._worker = None
        self._session_timers_cancel()
        self.plugged = False
        self.port.close()
        self.port.remove_link()
        self._held.clear()
        self._in_prompt = False
        log.info("simulator.unplug", modem=self.name, path=self.path)

    def _run_after_reply(self) -> None:
        while self._after_reply:
            self._after_reply.pop(0)()

    # --- evidence for tests -----------------------------------------------------------

    def stored(self, memory: str = "SM") -> dict[int, tuple[int, str]]:
        """What a memory holds now: index -> (stat, pdu hex)."""
        return {i: (s.stat, s.pdu) for i, s in self.state.memories[memory].slots.items()}


async def _sleep_until(loop: asyncio.AbstractEventLoop, when: float) -> None:
    """Until the loop time ``when``; at once when it has passed already."""
    delay = when - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)
