"""One modem: initialise it, send SMS-SUBMIT PDUs, dispatch its URCs.

SIM storage (sweep, read, hand over, delete) lives in receive.py, the SIM's
lock (state, PIN, waiting until ready) in sim.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import NoReturn

import structlog

from smsd.codec import pdu
from smsd.errors import (
    AtError,
    AtTimeout,
    GatewayUnavailable,
    ModemError,
    PduError,
    PortGone,
    SimError,
)
from smsd.modem import at
from smsd.modem import spec as st
from smsd.modem.channel import AtChannel, ByteStream, Urc
from smsd.modem.quirks import PROFILES, Profile, choose_profile, cnmi_ds, point_urcs_here
from smsd.modem.receive import LEFT_BEHIND_SWEEP_S, Receiver
from smsd.modem.sim import SIM_TIMEOUT, SimUnlock
from smsd.modem.spec import DEFAULT_SEND_TIMEOUT_S, DeviceInfo, ModemEvents, ModemSpec, PinGuard
from smsd.modem.transport import open_transport
from smsd.modem.usbinfo import usb_interface
from smsd.turns import Mailbox

log = structlog.get_logger(__name__)

# AT+CMGS: the final result waits for the network's RP-ACK; vendor manuals
# (Quectel EC25 AT manual 9.x, SIMCom SIM7600 4.x) give up to 120 s; 60 s is
# the common congested-network figure.  The default is the vendors' 120 s
# maximum; ModemSpec.send_timeout_s (config) sets it per modem.
CMGS_TIMEOUT = DEFAULT_SEND_TIMEOUT_S
# The "> " prompt is immediate (TS 27.005 3.5.1); 5 s covers a busy module.
PROMPT_TIMEOUT = 5.0
# Network registration after power-up: typically 5-30 s (GSM attach), 60 s
# bounds a weak-signal attach before we report no_network and keep watching.
REGISTRATION_TIMEOUT = 60.0
REGISTRATION_POLL = 2.0
# USSD replies come from the home network's USSD gateway: 3GPP TS 24.090
# timer T(USSD) is 30 s; the modem reports +CUSD: 5 after its own timer.
USSD_TIMEOUT = 35.0
USSD_FURTHER_ACTION = 1    # +CUSD <m>=1: the network waits for the user's reply
# Periodic +CMGL sweep catches anything a lost +CMTI left behind.
SWEEP_INTERVAL = 300.0
# Signal and registration refresh for snapshots.
STATUS_INTERVAL = 60.0


class ModemRebooted(PortGone):
    """The modem announced a restart (Quectel RDY, SIMCom START): re-initialise."""


Opener = Callable[[str, int], Awaitable[ByteStream]]


class Modem:
    def __init__(self, spec: ModemSpec, events: ModemEvents, *, pins: PinGuard | None = None,
                 opener: Opener = open_transport, registration_s: float = REGISTRATION_TIMEOUT,
                 sweep_s: float = SWEEP_INTERVAL, claim_urc_port: bool = True,
                 on_ready: Callable[[], None] | None = None) -> None:
        self.spec = spec
        self.events = events
        self.info = DeviceInfo(own_number=spec.own_number)
        self.profile: Profile = choose_profile(spec.profile, None, None)
        # Ready and the port still alive: kept current by every change of
        # ``state``, ``channel`` or the channel's death (see _update_ready),
        # read for every choice of a modem (issue 17), so an attribute.
        self.ready = False
        # Called whenever ``ready`` changes (the pool keeps its ready list
        # from it); called synchronously, before anyone else hears of it.
        self._on_ready = on_ready
        self._state = st.STATE_OPENING
        self.detail: str | None = None
        self.last_error: str | None = None
        self.in_flight = 0
        self.channel: AtChannel | None = None   # set by open() only (see _update_ready)
        self._opener = opener
        self._registration_s = registration_s
        self._sweep_s = sweep_s
        # False for a one-off CLI command: the daemon may hold another port of
        # the same modem, and moving its URCs away would silence it.
        self._claim_urc_port = claim_urc_port
        # Routed here by the channel for _urc_worker; a Mailbox, not an
        # asyncio.Queue: a status report comes as one per message (issue 17).
        self._urcs: Mailbox[Urc] = Mailbox()
        self._ussd: asyncio.Future[at.Ussd] | None = None
        # One USSD dialogue at a time: the network runs one per subscriber,
        # and a +CUSD answer names no request, so it goes to the one waiting.
        self._ussd_lock = asyncio.Lock()
        self._cnma = False
        self.log = log.bind(modem=spec.id, path=spec.path)
        self.receiver = Receiver(spec.id, events, self.info, cmd=self.cmd, attempt=self._try,
                                 log=self.log)
        self.sim = SimUnlock(spec, self.info, pins, cmd=self.cmd, attempt=self._try,
                             fail=self._sim_fail, log=self.log)

    # -------------------------------------------------------------- state

    def _set_state(self, state: str, detail: str | None = None) -> None:
        if (state, detail) != (self.state, self.detail):
            self.state, self.detail = state, detail
            self.log.info("modem.state", state=state, detail=detail)
            self.events.modem_state(self.spec.id, state, detail)

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, state: str) -> None:
        self._state = state
        self._update_ready()

    def _update_ready(self) -> None:
        """``ready`` from the state and the port, told to ``on_ready`` when it changed.

        Called by every change of what it reads: the state (its setter), the
        channel (open()) and the channel's death (its ``on_dead``, before the
        supervisor reports "gone"), so a gone modem is out of the pool's
        count at once.
        """
        ready = (self._state == st.STATE_READY and self.channel is not None
                 and self.channel.dead is None)
        if ready != self.ready:
            self.ready = ready
            if self._on_ready is not None:
                self._on_ready()

    def _chan(self) -> AtChannel:
        if self.channel is None:
            raise PortGone(f"{self.spec.path}: not open")
        return self.channel

    async def cmd(self, command: str, wait_s: float = SIM_TIMEOUT) -> list[str]:
        return await self._chan().command(command, wait_s)

    async def _try(self, command: str, wait_s: float = SIM_TIMEOUT) -> list[str] | None:
        """A command whose failure is tolerated (optional features)."""
        try:
            return await self.cmd(command, wait_s)
        except (AtError, AtTimeout) as exc:
            self.log.debug("modem.optional_failed", command=command, error=str(exc))
            return None

    # -------------------------------------------------------------- open / init

    async def open(self, path: str | None = None) -> None:
        self._set_state(st.STATE_OPENING)
        stream = await self._opener(path or self.spec.path, self.spec.baudrate)
        self.channel = AtChannel(stream, self._urcs.put,
                                 extra_urcs=[u for p in PROFILES.values() for u in p.extra_urcs],
                                 on_dead=self._update_ready)
        self._update_ready()
        self.channel.start()
        await self.channel.abort_stale_prompt()

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()

    async def initialise(self) -> None:
        """The init sequence; raises SimError for SIM states a human must fix."""
        self._set_state(st.STATE_INITIALISING)
        for _ in range(3):             # a modem still booting may miss the first ATE0
            if await self._try("ATE0", 2.0) is not None:
                break
        else:
            await self.cmd("ATE0")
        await self._try("AT+CMEE=1")
        await self.identify()
        self.profile = choose_profile(self.spec.profile, self.info.manufacturer, self.info.model)
        await self.unlock_sim()
        await self.cmd("AT+CMGF=0")    # PDU mode (TS 27.005 3.2.3)
        for extra in self.profile.init_extra:
            await self._try(extra)
        # sysfs only (in-memory, never the device node): no need for a thread.
        self.info.urc_port = await point_urcs_here(
            self.profile, self._try, configured=self.spec.urc_port,
            interface=usb_interface(self._chan().stream.path),
            claim=self._claim_urc_port, log=self.log)
        await self._choose_cnmi()
        await self.receiver.choose_storage(self.profile.storage)
        await self._check_smsc()
        await self._try("AT+CREG=1")
        if self.profile.lte:
            await self._try("AT+CEREG=1")
        if not self.spec.own_number:     # before "ready": choose(did) needs it
            lines = await self._try("AT+CNUM")
            numbers = at.parse_cnum(lines or [])
            self.info.own_number = numbers[0] if numbers else None
        await self.refresh_status()
        await self.wait_registered(self._registration_s)
        self._drop_boot_urcs()

    def _drop_boot_urcs(self) -> None:
        """Boot announcements queued during init describe the state init has handled."""
        self._urcs.keep(lambda u: u.name not in ("RDY", "START", "+CPIN"))

    async def identify(self) -> None:
        async def info(command: str, prefix: str) -> str | None:
            return at.parse_info(await self._try(command) or [], prefix)
        self.info.manufacturer = await info("AT+CGMI", "+CGMI")
        self.info.model = await info("AT+CGMM", "+CGMM")
        self.info.revision = await info("AT+CGMR", "+CGMR")
        self.info.imei = await info("AT+CGSN", "+CGSN")

    async def sim_state(self) -> str:
        return await self.sim.sim_state()

    async def unlock_sim(self) -> None:
        await self.sim.unlock_sim()

    def _sim_fail(self, state: str, detail: str) -> NoReturn:
        self.last_error = detail
        self._set_state(st.STATE_SIM_ERROR, f"{state}: {detail}")
        raise SimError(state, detail)

    async def _choose_cnmi(self) -> None:
        """+CNMI from the profile's list; status reports routed directly when that is safe.

        With phase 2+ message service (AT+CSMS=1, TS 27.005 3.2.1) a ``+CDS``
        routed to us must be acknowledged (+CNMA, sent once the report is
        committed), or the modem refuses it and the network delivers it again
        later: nothing is lost when the daemon was not there to take it.  Then
        ``<ds>=1`` (``+CDS``: the report itself, one +CNMA) is preferred over
        ``<ds>=2`` (``+CDSI``: stored on the SIM, then +CMGR and +CMGD): two
        AT commands and a SIM write less per sent message (issue 17).  Without
        phase 2+, or for a one-off CLI command (nobody stays to acknowledge),
        reports are stored first, as the list says.
        """
        order = self.profile.cnmi
        if self._claim_urc_port and await self._try("AT+CSMS=1") is not None:
            order = tuple(sorted(order, key=lambda c: cnmi_ds(c) != 1))   # stable
        for command in order:
            if await self._try(command) is not None:
                self.info.cnmi = command
                break
        else:
            self.log.warning("modem.no_cnmi", note="new SMS found by the periodic sweep only")
        lines = await self._try("AT+CSMS?")
        for line in lines or []:
            if line.startswith("+CSMS"):
                # <service>=1 (phase 2+): +CMT/+CDS must be acknowledged (TS 27.005 3.2.1)
                self._cnma = at.split_params(line.split(":", 1)[1])[0] == "1"

    async def _check_smsc(self) -> None:
        if self.spec.smsc:
            await self.cmd(at.build_csca(self.spec.smsc))
        lines = await self._try("AT+CSCA?")
        for line in lines or []:
            if line.startswith("+CSCA"):
                self.info.smsc = at.parse_csca(line)
        if not self.info.smsc:
            self.log.warning("modem.no_smsc", note="sends will fail until +CSCA is set")

    async def wait_registered(self, budget_s: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget_s
        while True:
            reg = await self.registration()
            if reg is not None and reg.registered:
                self._set_state(st.STATE_READY)
                return True
            why = "registration denied" if reg and reg.denied else "not registered"
            if loop.time() >= deadline:
                self._set_state(st.STATE_NO_NETWORK, why)
                return False
            await asyncio.sleep(min(REGISTRATION_POLL, max(0.0, deadline - loop.time())))

    async def registration(self) -> at.Registration | None:
        best: at.Registration | None = None
        queries = ["AT+CREG?", *(["AT+CEREG?"] if self.profile.lte else [])]
        for command in queries:
            for line in await self._try(command) or []:
                if line.startswith(("+CREG", "+CEREG")):
                    reg = at.parse_creg(line, solicited=True)
                    if best is None or (reg.registered and not best.registered):
                        best = reg
        self.info.registration = best.stat if best else None
        return best

    async def refresh_status(self) -> None:
        for line in await self._try("AT+CSQ") or []:
            if line.startswith("+CSQ"):
                sig = at.parse_csq(line)
                self.info.signal_dbm, self.info.signal_bars = sig.dbm, sig.bars
        for line in await self._try("AT+COPS?") or []:
            if line.startswith("+COPS"):
                self.info.operator = at.parse_cops(line).name
        await self.registration()
        for line in await self._try("AT+CPMS?") or []:
            if line.startswith("+CPMS"):
                with contextlib.suppress(ValueError):  # an odd reply leaves the last figures
                    mems = at.parse_cpms(line)
                    if mems:
                        self.info.storage_used, self.info.storage_total = (
                            mems[0].used, mems[0].total)

    # -------------------------------------------------------------- send

    async def send_pdu(self, submit: pdu.SubmitPdu) -> int | None:
        """Send one part; returns its TP-MR, or None when the answer was unreadable.

        Raises GatewayUnavailable (not ready), PartNotSent (nothing left: the
        port was dead or the prompt never came), SubmitUnconfirmed (the PDU was
        written and then the port died or the modem fell silent), CmsError or
        AtError (the modem refused it).  An ``OK`` whose ``+CMGS: <mr>`` line
        noise garbled means the network took the part: it is sent, only its
        status report cannot be matched, so it is never sent again.
        """
        if not self.ready:
            raise GatewayUnavailable(f"modem {self.spec.id} is {self.state}", gateway="gsm")
        self.in_flight += 1
        try:
            lines = await self._chan().command_with_pdu(
                at.build_cmgs(submit.tpdu_length), submit.hex,
                prompt_s=PROMPT_TIMEOUT, wait_s=self.spec.send_timeout_s,
                answer_prefix="+CMGS:")
        except ModemError as exc:
            self.last_error = str(exc)
            raise
        finally:
            self.in_flight -= 1
        try:
            return at.parse_cmgs(lines)
        except ValueError:
            self.log.warning("modem.cmgs_unreadable", lines=lines,
                             note="sent; its delivery report cannot be matched")
            return None

    async def ussd(self, code: str, wait_s: float = USSD_TIMEOUT) -> at.Ussd:
        """Balance checks and the like; the answer arrives as a +CUSD URC.

        A menu (status 1) waits for a reply smsd never gives, so the session
        is ended (TS 27.007 7.15 ``<n>``=2) rather than left holding the
        network's USSD dialogue until its own timer runs out.
        """
        async with self._ussd_lock:
            command = at.build_cusd(code, packed=self.profile.ussd_packed)
            self._ussd = asyncio.get_running_loop().create_future()
            answer: at.Ussd | None = None
            try:
                await self.cmd(command, wait_s)
                async with asyncio.timeout(wait_s):
                    answer = await self._ussd
                return answer
            except TimeoutError:       # named as written, not as packed for a Huawei
                raise AtTimeout(at.build_cusd(code), wait_s) from None
            finally:
                self._ussd = None
                if answer is not None and answer.status == USSD_FURTHER_ACTION:
                    await self._try("AT+CUSD=2")

    async def ping(self, wait_s: float) -> None:
        await self.cmd("AT", wait_s)

    # -------------------------------------------------------------- receive

    async def run(self) -> None:
        """Process URCs and sweep until the port dies (raises PortGone/ModemRebooted)."""
        chan = self._chan()
        closed = asyncio.create_task(chan.wait_closed())
        tasks = [asyncio.create_task(self._urc_worker()), asyncio.create_task(self._periodic()),
                 closed]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if closed in done:
                raise closed.result()
            for task in done:
                task.result()        # a worker's PortGone (or bug) ends the run
            raise PortGone(f"{self.spec.path}: worker stopped")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _periodic(self) -> None:
        await self.sweep()
        loop = asyncio.get_running_loop()
        left = self.receiver.left_behind
        step = min(STATUS_INTERVAL, self._sweep_s)
        next_status = loop.time() + step
        next_sweep = loop.time() + self._sweep_s
        while True:
            wake = next_status
            if left.is_set():   # a message the daemon could not take yet: soon again
                wake = min(wake, self.receiver.left_at + LEFT_BEHIND_SWEEP_S)
            await self._nap(wake)
            now = loop.time()
            if now >= next_status:
                next_status = now + step
                if self.state == st.STATE_NO_NETWORK:
                    await self.wait_registered(0)
                with contextlib.suppress(AtTimeout, AtError):
                    await self.refresh_status()
            if now >= next_sweep or (
                    left.is_set() and now >= self.receiver.left_at + LEFT_BEHIND_SWEEP_S):
                next_sweep = now + self._sweep_s
                await self.sweep()

    async def _nap(self, until: float) -> None:
        """Sleep until ``until`` (loop time), or until a message is left on the SIM."""
        left = self.receiver.left_behind
        if left.is_set():
            await asyncio.sleep(max(0.0, until - asyncio.get_running_loop().time()))
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(until):
                await left.wait()

    async def sweep(self) -> int:
        """``AT+CMGL=4``: hand over everything stored; returns how many were handled."""
        return await self.receiver.sweep()

    async def _urc_worker(self) -> None:
        while True:
            urc = await self._urcs.get()
            try:
                await self._handle_urc(urc)
            except (AtError, AtTimeout, PduError, ValueError) as exc:
                # A garbled indication or answer (line noise): the message
                # stays stored and the next sweep takes it.  Only a dead port
                # (PortGone) ends the worker.
                self.log.warning("modem.urc_failed", urc=urc.name, line=urc.line,
                                 error=str(exc))

    async def _handle_urc(self, urc: Urc) -> None:
        name = urc.name
        if name in ("+CMTI", "+CDSI"):
            mem, index = at.parse_index_urc(urc.line)
            await self.read_stored(mem, index)
        elif name in ("+CMT", "+CDS") and urc.pdu is not None:
            ok = bool(await self.receiver.consume(urc.pdu, None))
            if self._cnma:       # TS 27.005 3.4.4: 0 = RP-ACK, 2 = RP-ERROR (network retries)
                await self._try("AT+CNMA" if ok else "AT+CNMA=2")
        elif name in ("+CREG", "+CEREG"):
            reg = at.parse_creg(urc.line, solicited=False)
            self.info.registration = reg.stat
            if reg.registered and self.state == st.STATE_NO_NETWORK:
                self._set_state(st.STATE_READY)
            elif not reg.registered and self.state == st.STATE_READY and name == "+CREG":
                await self.wait_registered(0)
        elif name == "+CUSD":
            if self._ussd is not None and not self._ussd.done():
                self._ussd.set_result(at.parse_cusd(urc.line, packed=self.profile.ussd_packed))
        elif name == "^RSSI":          # Huawei: ^RSSI:<rssi> with the +CSQ scale
            sig = at.parse_csq("+CSQ: " + urc.line.split(":", 1)[1] + ",99")
            self.info.signal_dbm, self.info.signal_bars = sig.dbm, sig.bars
        elif name == "+CPIN" and at.parse_cpin(urc.line) != "READY":
            # SIMCom/Quectel report SIM removal unsolicited; confirm, then
            # re-initialise, which reports the SIM state to the daemon.
            state = await self.sim_state()
            if state != "READY":
                self._chan().abort(ModemRebooted(f"{self.spec.path}: SIM now {state}"))
        elif name in ("RDY", "START"):
            # The modem rebooted: every setting is lost, so start over.
            self._chan().abort(ModemRebooted(f"{self.spec.path}: modem restarted ({name})"))
        else:
            self.log.debug("modem.urc", urc=urc.line)

    async def read_stored(self, mem: str, index: int) -> bool:
        return await self.receiver.read_stored(mem, index)
