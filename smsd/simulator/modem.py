"""Simulated GSM modems on pseudo-terminals: the test peer for the modem driver.

Each :class:`SimulatedModem` owns a pty pair: the slave path (and a stable
symlink to it) is what the driver opens like ``/dev/ttyUSB2``; the master side
is read with ``loop.add_reader`` and answered by the AT interpreter
(simulator_at.py / simulator_sms.py), which follows the vendors' manuals and
TS 27.005/27.007 rather than our driver.  The simulator also plays the mobile
network: it delivers SMS-DELIVER PDUs into SIM storage, sends status reports
for submitted messages, holds traffic while the modem is unplugged or not
registered, and can misbehave on demand (latency, failures, silence, garbage,
unplug).  Everything runs on the event loop: no threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from smsd.codec import pdu as codec
from smsd.simulator.at import AtEngine, reg_line
from smsd.simulator.profiles import get_profile, identity_for
from smsd.simulator.pty import PtyPort
from smsd.simulator.sms import SMS_HANDLERS, finish_submit, tpdu_length
from smsd.simulator.state import (
    STAT_REC_UNREAD,
    Memory,
    ModemState,
    SimCard,
)
from smsd.simulator.vendor import URC_PORTS, VENDOR_HANDLERS

log = structlog.get_logger(__name__)

# Input bytes buffered before a command line ends; V.250 5.2.4 asks for at
# least 40 characters per line, real modems take about 512-2048.
MAX_COMMAND_LINE = 2048
# The PDU after "> ": 2 hex digits per octet, 12 SMSC + 164 TPDU octets
# (27.005 3.5.1), with room for stray whitespace.
MAX_PDU_INPUT = 1024
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
                "pdu": self.pdu.hex}


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
        self.engine = AtEngine(self.state, self, {**SMS_HANDLERS, **VENDOR_HANDLERS})
        self.name = f"sim{index}"
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
        self._rng = random.Random(seed)
        self.path = ""
        self.slave_path = ""
        self.link: str | None = None
        self.plugged = False
        self.submitted: list[codec.SubmitPdu] = []
        self.submissions: list[Submission] = []
        self.reports_dropped: list[str] = []     # reports routed nowhere (+CNMI <ds>=0)
        self._network_queue: deque[tuple[str, str]] = deque()
        self._held: deque[str] = deque(maxlen=MAX_HELD_INDICATIONS)
        self.port = PtyPort(self.name)
        self._worker: asyncio.Task[None] | None = None
        self._session_timers: set[asyncio.TimerHandle] = set()
        self._network_timers: set[asyncio.TimerHandle] = set()
        self._in_prompt = False
        self._full_reported = False
        self._after_reply: list[Callable[[], None]] = []
        self._loopback: dict[tuple[int, int], dict[int, str]] = {}
        self._flood_ticks = 0
        self._loop: asyncio.AbstractEventLoop | None = None

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
        for handle in self._network_timers:
            handle.cancel()
        self._network_timers.clear()
        self.port.remove_link()

    async def unplug(self) -> None:
        """Pull the USB plug: the driver's fd gets EIO/hang-up, the link dangles."""
        log.info("simulator.unplug", modem=self.name, path=self.path)
        await self._close_pty()

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

    async def _close_pty(self) -> None:
        self.plugged = False
        for handle in self._session_timers:
            handle.cancel()
        self._session_timers.clear()
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

    # --- the network side ------------------------------------------------------------

    async def deliver(self, sender: str, text: str, *, order: Sequence[int] | None = None,
                      ref16: bool = False) -> None:
        """An SMS from ``sender`` arrives; ``order`` lists 1-based parts in arrival order."""
        self._deliver_now(sender, text, order=order, ref16=ref16)

    def _deliver_now(self, sender: str, text: str, *, order: Sequence[int] | None = None,
                     ref16: bool = False) -> None:
        reference = self._rng.randrange(1 << (16 if ref16 else 8))
        pdus = codec.encode_deliver(sender, text, timestamp=datetime.now(UTC),
                                    smsc=self.state.sim.smsc, reference=reference, ref16=ref16)
        if order is None:
            order = range(1, len(pdus) + 1)
        wanted = list(order)
        if len(set(wanted)) != len(wanted) or not all(1 <= p <= len(pdus) for p in wanted):
            raise ValueError(f"order {wanted} is not a set of parts within 1..{len(pdus)}")
        for part in wanted:
            self._network_send("deliver", pdus[part - 1])

    def _loop_back(self, sent: codec.SubmitPdu) -> None:
        """An SMS to the modem's own number comes back to it, as a network does."""
        key = (sent.reference or 0, sent.parts)
        held = self._loopback.setdefault(key, {})
        held[sent.part] = sent.text
        if len(held) < sent.parts:
            return
        del self._loopback[key]
        text = "".join(held[i] for i in range(1, sent.parts + 1))
        sender = self.state.sim.own_number or sent.number
        self._network_after(self.report_delay_s, lambda: self._deliver_now(sender, text))

    async def status_report(self, message_reference: int, recipient: str, status: int = 0) -> None:
        now = datetime.now(UTC)
        report = codec.encode_status_report(message_reference, recipient, status=status,
                                            scts=now, discharge=now, smsc=self.state.sim.smsc)
        self._network_send("report", report)

    def _network_send(self, kind: str, pdu: str) -> None:
        self._network_queue.append((kind, pdu))
        self._drain_network()

    def _drain_network(self) -> None:
        while self._network_queue and self.plugged and self.state.registered:
            kind, pdu = self._network_queue[0]
            routed = self._route_deliver(pdu) if kind == "deliver" else self._route_report(pdu)
            if not routed:
                return
            self._network_queue.popleft()

    def _route_to_te(self, urc: str) -> bool:
        """+CMT or +CDS straight to the TE; with AT+CSMS=1 each awaits +CNMA (27.005 3.4.4)."""
        self.urc(urc, sms=True)
        if self.state.settings.csms == 1:
            self.state.settings.pending_cnma += 1
        return True

    def _route_deliver(self, pdu: str) -> bool:
        """27.005 3.4.1 <mt>: 2 routes +CMT to the TE, 1/3 store and indicate, 0 store."""
        s = self.state.settings
        mt = s.cnmi[1]
        if mt == 2:
            return self._route_to_te(f"+CMT: ,{tpdu_length(pdu)}\r\n{pdu}")
        mem = self.state.memories[s.cpms[2]]
        index = mem.store(STAT_REC_UNREAD, pdu)
        if index is None:
            self._memory_full(mem)
            return False
        if mt in (1, 3):
            self.urc(f'+CMTI: "{mem.name}",{index}', sms=True)
        return True

    def _route_report(self, pdu: str) -> bool:
        """27.005 3.4.1 <ds>: 1 routes +CDS, 2 stores and indicates +CDSI, 0 drops."""
        s = self.state.settings
        ds = s.cnmi[3]
        if ds == 1:
            return self._route_to_te(f"+CDS: {tpdu_length(pdu)}\r\n{pdu}")
        if ds == 2:
            name = "SR" if "SR" in self.state.memories else s.cpms[2]
            mem = self.state.memories[name]
            index = mem.store(STAT_REC_UNREAD, pdu)
            if index is None:
                self._memory_full(mem)
                return False
            self.urc(f'+CDSI: "{name}",{index}', sms=True)
            return True
        self.reports_dropped.append(pdu)
        return True

    def _memory_full(self, mem: Memory) -> None:
        """The network keeps the message and retries once the ME reports free memory."""
        if self._full_reported:
            return
        self._full_reported = True
        log.info("simulator.memory_full", modem=self.name, memory=mem.name)
        template = self.state.profile.memory_full_urc
        if template:
            self.urc(template.format(mem=mem.name))

    # --- EngineHost -----------------------------------------------------------------

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
        self._timer(self._session_timers, delay_s, fn)

    def _network_after(self, delay_s: float, fn: Callable[[], None]) -> None:
        self._timer(self._network_timers, delay_s, fn)

    def _timer(self, timers: set[asyncio.TimerHandle], delay_s: float,
               fn: Callable[[], None]) -> None:
        assert self._loop is not None
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                timers.discard(handle)
            try:
                fn()
            except Exception:
                log.exception("simulator.timer_failed", modem=self.name)

        handle = self._loop.call_later(delay_s, fire)
        timers.add(handle)

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
        self._drain_network()

    def sms_submitted(self, hex_pdu: str, mr: int) -> None:
        decoded = codec.decode(hex_pdu)
        assert isinstance(decoded, codec.SubmitPdu)
        self.submitted.append(decoded)
        self.submissions.append(Submission(decoded, mr, datetime.now(UTC)))
        log.info("simulator.submitted", modem=self.name, mr=mr, part=decoded.part,
                 parts=decoded.parts)
        own = self.state.sim.own_number
        if own and decoded.number.lstrip("+") == own.lstrip("+"):
            self._loop_back(decoded)
        if self.auto_report and decoded.request_report:
            number = decoded.number

            def report() -> None:
                now = datetime.now(UTC)
                self._network_send("report", codec.encode_status_report(
                    mr, number, status=0, scts=now, discharge=now, smsc=self.state.sim.smsc))

            self._network_after(self.report_delay_s, report)

    def injected_failure(self) -> int | None:
        if self.fail_rate <= 0 or self._rng.random() >= self.fail_rate:
            return None
        if self._rng.random() < TEMPORARY_SHARE:
            return self._rng.choice(TEMPORARY_FAILURES)
        return self._rng.choice(PERMANENT_FAILURES)

    def storage_freed(self) -> None:
        # The ME tells the network it has memory again (SMMA, TS 24.011); held
        # messages follow the command's final result, never interleave it.
        self._full_reported = False
        self._after_reply.append(self._drain_network)

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
        self._drain_network()

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

    def _echo(self, byte: int) -> None:
        if self.state.settings.echo:
            self.port.write(bytes([byte]))

    async def _read_line(self) -> str:
        """Collect one command line up to CR (S3), editing with BS (S5) as V.250 5.2.2 says."""
        buf = bytearray()
        while True:
            byte = await self.port.next_byte()
            if byte == 0x0D:
                self._echo(byte)
                return buf.decode("latin-1")
            if byte == 0x0A and not buf:
                continue
            self._echo(byte)
            if byte in (0x08, 0x7F):
                if buf:
                    buf.pop()
                continue
            buf.append(byte)
            if len(buf) > MAX_COMMAND_LINE:
                buf.clear()

    async def _read_pdu(self) -> str | None:
        """The text after ``> ``: hex until Ctrl-Z (send) or ESC (cancel), 27.005 3.5.1."""
        buf = bytearray()
        while True:
            byte = await self.port.next_byte()
            if byte == ESC:
                return None
            if byte == CTRL_Z:
                return buf.decode("latin-1")
            self._echo(byte)
            if byte in (0x0D, 0x0A):
                continue
            if len(buf) < MAX_PDU_INPUT:
                buf.append(byte)

    async def _serve(self) -> None:
        while True:
            line = await self._read_line()
            reply = self.engine.execute(line)
            if reply is None:
                continue
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            self.port.write(self.engine.render(reply))
            self._run_after_reply()
            if reply.prompt is None:
                continue
            self._in_prompt = True
            try:
                body = await self._read_pdu()
            finally:
                self._in_prompt = False
            if body is not None and (self.latency_s or self.send_s):
                await asyncio.sleep(self.latency_s + self.send_s)
            final = finish_submit(self.engine, reply.prompt.length, body)
            self.port.write(self.engine.render(final))
            self._apply_indications()
            self._run_after_reply()

    def _run_after_reply(self) -> None:
        while self._after_reply:
            self._after_reply.pop(0)()

    # --- evidence for tests -----------------------------------------------------------

    def stored(self, memory: str = "SM") -> dict[int, tuple[int, str]]:
        """What a memory holds now: index -> (stat, pdu hex)."""
        return {i: (s.stat, s.pdu) for i, s in self.state.memories[memory].slots.items()}
