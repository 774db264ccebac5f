"""One modem's inbound side: SIM storage, reading, handing over, deleting.

Split from device.py (which keeps the modem's life and its sends) because
storage has its own state: which memory ``+CPMS`` last selected, whether a
status-report memory exists, which PDUs could not be decoded.  A received
message leaves the SIM only after ModemEvents.sms_received returned (the
part is committed); if the consumer raises, the message stays and the next
sweep retries it - soon (LEFT_BEHIND_SWEEP_S), not at the next periodic
sweep minutes later: a consumer refuses when its store does (a PostgreSQL
server restarting), and the message should be taken as soon as it is back.

Line noise can garble a ``+CMGR`` answer (a dropped or mangled line while
the final ``OK`` still arrives); the read is then simply repeated, since the
message is still stored, rather than left for the next sweep minutes later.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from smsd.codec import pdu
from smsd.errors import AtError, AtTimeout, CmsError, PduError
from smsd.modem import at
from smsd.modem.spec import DeviceInfo, ModemEvents

# A full +CMGL of 255 entries on a SIM takes longer than one SIM access
# (5 s in Quectel's manual): 30 s.
LIST_TIMEOUT = 30.0
# Reads of one stored message before it is left for the sweep: a garbled
# answer is line noise, and noise twice in a row on one short answer means
# something worse that a later sweep will meet anyway.
READ_TRIES = 2

# A message the consumer refused (its store unreachable) is looked for again
# this soon, and again each time until it is taken: one +CMGL, cheap for the
# modem, and the store is usually back within seconds (a server restart).
LEFT_BEHIND_SWEEP_S = 5.0

STAT_RECEIVED = frozenset({0, 1})     # TS 27.005 3.1 <stat>: REC UNREAD, REC READ

Command = Callable[..., Awaitable[list[str]]]
Attempt = Callable[[str], Awaitable[list[str] | None]]


class Receiver:
    """SIM storage of one modem: choose memories, sweep, read, consume, delete."""

    def __init__(self, modem: str, events: ModemEvents, info: DeviceInfo, *,
                 cmd: Command, attempt: Attempt, log: Any) -> None:
        self.modem = modem
        self.events = events
        self.info = info
        self._cmd = cmd
        self._try = attempt
        self.log = log
        self.sr_memory = False
        self.read_mem = "SM"
        # The <mem1> (read/delete memory, TS 27.005 3.2.2) last selected; None
        # when unknown (a +CPMS that failed or timed out).  A +CDSI report is
        # read from "SR" and the memory is switched back only when something
        # needs the other one, not after every report: two AT commands less
        # per status report.
        self.mem1: str | None = "SM"
        self.bad_pdus: set[str] = set()
        # Set while a message the consumer refused is still stored (since
        # left_at, loop time): the device sweeps LEFT_BEHIND_SWEEP_S later.
        self.left_behind = asyncio.Event()
        self.left_at = 0.0
        # The sweep and +CMTI/+CDSI handling must not both take one stored
        # message (a duplicate delivery): one of them at a time.
        self._lock = asyncio.Lock()

    async def choose_storage(self, storage: tuple[str, ...]) -> None:
        for mem in storage:
            if await self._try(at.build_cpms(mem, mem, mem)) is not None:
                self.info.storage = self.read_mem = mem
                break
        else:
            self.log.warning("modem.no_storage_choice", note="using the modem's default")
            self.mem1 = self.read_mem
            return
        self.mem1 = mem
        # Status-report memory (TS 27.005 3.2.2 "SR"): swept too when it exists
        # (with <ds>=1 too: reports stored there before, under <ds>=2).
        if self.info.cnmi and self.info.cnmi.split(",")[3] in ("1", "2"):
            if await self._try(at.build_cpms("SR")) is not None:
                self.sr_memory = True
                self.mem1 = None
                if await self._try(at.build_cpms(mem)) is not None:
                    self.mem1 = mem

    async def sweep(self) -> int:
        """``AT+CMGL=4``: hand over everything stored; returns how many were handled."""
        handled = 0
        async with self._lock:
            self.left_behind.clear()
            try:
                await self._select_mem1(self.read_mem)
                entries = at.parse_cmgl(await self._cmd(at.build_cmgl(4), LIST_TIMEOUT))
            except (AtError, AtTimeout, ValueError) as exc:
                self.log.warning("modem.sweep_failed", error=str(exc))
                return 0
            for entry in entries:
                if entry.stat in STAT_RECEIVED and entry.index is not None:
                    handled += await self.consume(entry.pdu, entry.index)
            if self.sr_memory:        # reports whose +CDSI was lost
                handled += await self._sweep_sr()
        return handled

    async def _sweep_sr(self) -> int:
        handled = 0
        await self._select_mem1("SR")
        try:
            for entry in at.parse_cmgl(await self._cmd(at.build_cmgl(4), LIST_TIMEOUT)):
                if entry.index is not None:
                    handled += await self.consume(entry.pdu, entry.index)
        except (AtError, AtTimeout, ValueError) as exc:
            self.log.warning("modem.sweep_failed", memory="SR", error=str(exc))
        finally:
            with contextlib.suppress(AtError, AtTimeout):
                await self._select_mem1(self.read_mem)
        return handled

    async def _select_mem1(self, mem: str) -> None:
        """``AT+CPMS=<mem>`` unless ``mem`` is already the read/delete memory."""
        if mem == self.mem1:
            return
        self.mem1 = None          # unknown until the modem said OK
        await self._cmd(at.build_cpms(mem))
        self.mem1 = mem

    async def read_stored(self, mem: str, index: int) -> bool:
        async with self._lock:
            return await self._read_stored(mem, index)

    async def _read_stored(self, mem: str, index: int) -> bool:
        # The memory stays selected afterwards (see mem1): a stream of +CDSI
        # reports costs +CMGR/+CMGD each, not four commands each.
        await self._select_mem1(mem or self.read_mem)
        for attempt in range(1, READ_TRIES + 1):
            try:
                lines = await self._cmd(at.build_cmgr(index))
            except CmsError as exc:
                if exc.code != at.CMS_INVALID_INDEX:
                    raise
                self.log.debug("modem.already_taken", memory=mem, index=index)
                return False     # the sweep got there first
            try:
                entry = at.parse_cmgr(lines)
                if entry is None and lines:
                    raise ValueError(f"no +CMGR line in {lines!r}")
                decoded = pdu.decode(entry.pdu) if entry is not None else None
            except (ValueError, PduError) as exc:
                # The stored message is intact; only this answer was garbled.
                self.log.warning("modem.read_garbled", memory=mem, index=index,
                                 attempt=attempt, error=str(exc))
                continue
            if entry is None or (entry.stat not in STAT_RECEIVED and mem != "SR"):
                return False
            return bool(await self.consume(entry.pdu, index, decoded))
        return False         # left stored: the next sweep reads it again

    async def consume(self, hex_pdu: str, index: int | None,
                      decoded: pdu.DeliverPdu | pdu.StatusReportPdu | pdu.SubmitPdu | None = None
                      ) -> int:
        """Decode, hand over, and delete only once the consumer returned."""
        if decoded is None:
            try:
                decoded = pdu.decode(hex_pdu)
            except PduError as exc:
                if hex_pdu not in self.bad_pdus:
                    self.bad_pdus.add(hex_pdu)
                    self.log.error("modem.bad_pdu", index=index, pdu=hex_pdu, error=str(exc))
                return 0      # left on the SIM: evidence, never silently dropped
        try:
            if isinstance(decoded, pdu.DeliverPdu):
                await self.events.sms_received(self.modem, decoded)
            elif isinstance(decoded, pdu.StatusReportPdu):
                await self.events.status_report(self.modem, decoded)
            else:
                return 0  # an SMS-SUBMIT kept in storage: not ours to touch
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("modem.consumer_failed", index=index)
            if index is not None and not self.left_behind.is_set():
                self.left_at = asyncio.get_running_loop().time()
                self.left_behind.set()
            return 0      # not stored: stays on the SIM for the next sweep
        if index is not None:
            await self._cmd(at.build_cmgd(index))
        return 1
