"""The mobile network a simulated modem is attached to: traffic towards the modem.

It delivers SMS-DELIVER PDUs into the modem's storage (or straight to the
TE, as +CNMI says), sends status reports for submitted messages, loops an
SMS to the modem's own number back, and holds traffic while the modem is
unplugged, unregistered or its memory is full, as a network does.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

import structlog

from smsd.codec import pdu as codec
from smsd.simulator.sms import tpdu_length
from smsd.simulator.state import STAT_REC_UNREAD, Memory, ModemState

log = structlog.get_logger(__name__)


class _Modem(Protocol):
    name: str
    plugged: bool
    state: ModemState
    report_delay_s: float
    rng: random.Random

    def urc(self, text: str, *, sms: bool = False) -> None: ...


class SimNetwork:
    def __init__(self, modem: _Modem, loop: Callable[[], asyncio.AbstractEventLoop]) -> None:
        self._modem = modem
        self._loop = loop
        self._queue: deque[tuple[str, str]] = deque()
        self._loopback: dict[tuple[int, int], dict[int, str]] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._full_reported = False
        self.reports_dropped: list[str] = []     # reports routed nowhere (+CNMI <ds>=0)

    def stop(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    def after(self, delay_s: float, fn: Callable[[], None]) -> None:
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                self._timers.discard(handle)
            try:
                fn()
            except Exception:
                log.exception("simulator.timer_failed", modem=self._modem.name)

        handle = self._loop().call_later(delay_s, fire)
        self._timers.add(handle)

    def memory_freed(self) -> None:
        self._full_reported = False

    def report_for(self, mr: int, number: str) -> None:
        """The network's delivery report for a submitted SMS, after report_delay_s."""
        def report() -> None:
            now = datetime.now(UTC)
            self.send("report", codec.encode_status_report(
                mr, number, status=0, scts=now, discharge=now,
                smsc=self._modem.state.sim.smsc))

        self.after(self._modem.report_delay_s, report)

    def deliver_now(self, sender: str, text: str, *, order: Sequence[int] | None = None,
                     ref16: bool = False) -> None:
        reference = self._modem.rng.randrange(1 << (16 if ref16 else 8))
        pdus = codec.encode_deliver(sender, text, timestamp=datetime.now(UTC),
                                    smsc=self._modem.state.sim.smsc, reference=reference,
                                    ref16=ref16)
        if order is None:
            order = range(1, len(pdus) + 1)
        wanted = list(order)
        if len(set(wanted)) != len(wanted) or not all(1 <= p <= len(pdus) for p in wanted):
            raise ValueError(f"order {wanted} is not a set of parts within 1..{len(pdus)}")
        for part in wanted:
            self.send("deliver", pdus[part - 1])

    def loop_back(self, sent: codec.SubmitPdu) -> None:
        """An SMS to the modem's own number comes back to it, as a network does."""
        key = (sent.reference or 0, sent.parts)
        held = self._loopback.setdefault(key, {})
        held[sent.part] = sent.text
        if len(held) < sent.parts:
            return
        del self._loopback[key]
        text = "".join(held[i] for i in range(1, sent.parts + 1))
        sender = self._modem.state.sim.own_number or sent.number
        self.after(self._modem.report_delay_s, lambda: self.deliver_now(sender, text))

    def status_report(self, message_reference: int, recipient: str, status: int = 0) -> None:
        now = datetime.now(UTC)
        report = codec.encode_status_report(message_reference, recipient, status=status,
                                            scts=now, discharge=now,
                                            smsc=self._modem.state.sim.smsc)
        self.send("report", report)

    def send(self, kind: str, pdu: str) -> None:
        self._queue.append((kind, pdu))
        self.drain()

    def drain(self) -> None:
        while self._queue and self._modem.plugged and self._modem.state.registered:
            kind, pdu = self._queue[0]
            routed = self._route_deliver(pdu) if kind == "deliver" else self._route_report(pdu)
            if not routed:
                return
            self._queue.popleft()

    def _route_to_te(self, urc: str) -> bool:
        """+CMT or +CDS straight to the TE; with AT+CSMS=1 each awaits +CNMA (27.005 3.4.4)."""
        self._modem.urc(urc, sms=True)
        if self._modem.state.settings.csms == 1:
            self._modem.state.settings.pending_cnma += 1
        return True

    def _route_deliver(self, pdu: str) -> bool:
        """27.005 3.4.1 <mt>: 2 routes +CMT to the TE, 1/3 store and indicate, 0 store."""
        s = self._modem.state.settings
        mt = s.cnmi[1]
        if mt == 2:
            return self._route_to_te(f"+CMT: ,{tpdu_length(pdu)}\r\n{pdu}")
        mem = self._modem.state.memories[s.cpms[2]]
        index = mem.store(STAT_REC_UNREAD, pdu)
        if index is None:
            self._memory_full(mem)
            return False
        if mt in (1, 3):
            self._modem.urc(f'+CMTI: "{mem.name}",{index}', sms=True)
        return True

    def _route_report(self, pdu: str) -> bool:
        """27.005 3.4.1 <ds>: 1 routes +CDS, 2 stores and indicates +CDSI, 0 drops."""
        s = self._modem.state.settings
        ds = s.cnmi[3]
        if ds == 1:
            return self._route_to_te(f"+CDS: {tpdu_length(pdu)}\r\n{pdu}")
        if ds == 2:
            name = "SR" if "SR" in self._modem.state.memories else s.cpms[2]
            mem = self._modem.state.memories[name]
            index = mem.store(STAT_REC_UNREAD, pdu)
            if index is None:
                self._memory_full(mem)
                return False
            self._modem.urc(f'+CDSI: "{name}",{index}', sms=True)
            return True
        self.reports_dropped.append(pdu)
        return True

    def _memory_full(self, mem: Memory) -> None:
        """The network keeps the message and retries once the ME reports free memory."""
        if self._full_reported:
            return
        self._full_reported = True
        log.info("simulator.memory_full", modem=self._modem.name, memory=mem.name)
        template = self._modem.state.profile.memory_full_urc
        if template:
            self._modem.urc(template.format(mem=mem.name))

    # --- EngineHost -----------------------------------------------------------------

