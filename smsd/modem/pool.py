"""Several modems behind one interface: choose one, send, and report.

Paths may be globs (``/dev/serial/by-id/*-if02-port0``); they are rescanned
so a modem plugged in later is picked up without a restart.  Each SIM has an
optional rate limit and daily cap (operators bar SIMs that send too fast);
a modem at its limit is not chosen, and send_pdu refuses rather than queues.
"""

from __future__ import annotations

import asyncio
import glob
import os
import random
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

import structlog

from smsd.codec.pdu import SubmitPdu
from smsd.errors import GatewayUnavailable, ValidationError
from smsd.modem import at
from smsd.modem.device import USSD_TIMEOUT
from smsd.modem.spec import ModemEvents, ModemSpec
from smsd.modem.supervisor import PinMemory, Supervisor

log = structlog.get_logger(__name__)

# Globbed paths are rescanned this often: udev creates by-id links within a
# second or two of plug-in, so 10 s is "picked up without a restart" cheaply.
RESCAN_INTERVAL = 10.0
RATE_WINDOW = 60.0      # rate_per_minute is counted over a sliding minute


class UnknownModem(ValidationError):
    """The caller named a modem id this pool does not have (the API's 404)."""

    def __init__(self, modem: str, known: Sequence[str]) -> None:
        self.modem = modem
        self.known = list(known)
        super().__init__(f"no modem {modem!r}; modems: {', '.join(self.known) or 'none'}")


class BadUssdCode(ValidationError):
    """A USSD code with characters other than digits, * and #: nothing is sent."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(f"USSD code {code!r} must be 1 to 32 characters of 0-9, * and #, "
                         "e.g. *100#")


def check_ussd_code(code: str) -> str:
    """``code`` unchanged when a modem may be given it; raises BadUssdCode otherwise."""
    if not at.is_ussd_code(code):
        raise BadUssdCode(code)
    return code


@dataclass(frozen=True)
class ModemInfo:
    id: str
    path: str
    state: str
    detail: str | None
    manufacturer: str | None
    model: str | None
    imei: str | None
    operator: str | None
    signal_dbm: int | None
    own_number: str | None
    in_flight: int
    sent_today: int
    last_error: str | None
    registration: int | None = None  # TS 27.007 +CREG <stat>: 1 home, 5 roaming, 3 denied...
    storage_used: int | None = None  # SMS stored in the read memory (AT+CPMS?)
    storage_total: int | None = None
    signal_bars: int | None = None
    storage: str | None = None        # the +CPMS memory in use
    # Why a ready modem is not chosen now ("daily cap reached (3)", a rate
    # limit); None when it may send.  daily_cap 0 = no cap.
    limit: str | None = None
    daily_cap: int = 0


@dataclass(frozen=True)
class SentPart:
    modem: str
    message_reference: int | None     # None: accepted, but line noise ate the TP-MR


@dataclass
class _Slot:
    spec: ModemSpec            # with id and path of this one modem
    supervisor: Supervisor
    today: Callable[[], str] = field(default=lambda: _utc_today())
    task: asyncio.Task[None] | None = None
    recent: deque[float] = field(default_factory=deque)
    day: str = ""
    sent_today: int = 0
    reference: int = field(default_factory=lambda: random.randrange(256))

    def _roll(self) -> None:
        today = self.today()
        if today != self.day:
            self.day, self.sent_today = today, 0
        self._prune()

    def _prune(self, cutoff: float | None = None) -> None:
        """Sends older than the rate window (before ``cutoff``) leave ``recent``
        (choose() compares its length)."""
        recent = self.recent
        if recent:
            if cutoff is None:
                cutoff = time.monotonic() - RATE_WINDOW
            while recent and recent[0] < cutoff:
                recent.popleft()

    def limited(self) -> str | None:
        if not self.spec.daily_cap and not self.spec.rate_per_minute:
            # No limit to check (asked for every modem per choice, issue 17):
            # the day's count is rolled where it is read (snapshot, send_pdu).
            self._prune()
            return None
        self._roll()
        if self.spec.daily_cap and self.sent_today >= self.spec.daily_cap:
            return f"daily cap reached ({self.spec.daily_cap})"
        if self.spec.rate_per_minute and len(self.recent) >= self.spec.rate_per_minute:
            return f"rate limit of {self.spec.rate_per_minute}/min reached"
        return None


_today: tuple[int, str] = (-1, "")


def _utc_today() -> str:
    """Today's UTC date as ISO text, formatted once per day rather than per call.

    Every choose() looks at every modem's daily cap, so this runs many times
    per message; POSIX time has no leap seconds, so the day number is exact.
    """
    global _today
    day = int(time.time() // 86400)
    if day != _today[0]:
        _today = (day, datetime.fromtimestamp(day * 86400, UTC).date().isoformat())
    return _today[1]


class LocalDay:
    """Today's date (ISO text) in a time zone: the calendar day a daily cap counts.

    Caps follow the operator's day, which is the PBX's (``policy.timezone``),
    not UTC.  Asked for every modem on every choice, so the date is computed
    again only once the cached day has ended.
    """

    def __init__(self, timezone: str = "UTC") -> None:
        self._tz = ZoneInfo(timezone)
        self._until = float("-inf")
        self._day = ""

    def __call__(self) -> str:
        now = time.time()
        if now >= self._until:
            local = datetime.fromtimestamp(now, self._tz)
            self._day = local.date().isoformat()
            _start, end = day_bounds(local)
            self._until = end.timestamp()
        return self._day


def day_bounds(moment: datetime) -> tuple[datetime, datetime]:
    """The local calendar day holding ``moment`` (aware) as [start, end) in its zone."""
    tz = moment.tzinfo
    day = moment.date()
    start = datetime.combine(day, dtime(0), tz)
    end = datetime.combine(day + timedelta(days=1), dtime(0), tz)
    return start, end


def _is_glob(path: str) -> bool:
    return any(ch in path for ch in "*?[")


class ModemPool:
    def __init__(self, specs: Sequence[ModemSpec], events: ModemEvents, *,
                 state_dir: Path | None = None, rescan_s: float = RESCAN_INTERVAL,
                 ussd_s: float = USSD_TIMEOUT, today: Callable[[], str] | None = None,
                 **supervisor_kw: float) -> None:
        self._specs = list(specs)
        self._today = today or _utc_today
        # Parts each modem already sent today (from the store at start-up), so
        # a restart does not forget the daily cap: modem id -> (day, count).
        self._seed: dict[str, tuple[str, int]] = {}
        self._events = events
        self._pins = PinMemory(state_dir / "refused-pins.json" if state_dir else None)
        self._rescan_s = rescan_s
        self._ussd_s = ussd_s
        self._kw = supervisor_kw
        self._slots: dict[str, _Slot] = {}
        # The slots whose modem is ready now, in the slots' order: rebuilt by
        # every change of a modem's ``ready`` (Modem calls _ready_changed
        # synchronously, the port's death included) and of the slots, so it
        # is never a stale snapshot, yet costs nothing per message (issue 17:
        # ready_count, healthy and choose walked every modem per message).
        self._ready_slots: list[_Slot] = []
        self._tg: asyncio.TaskGroup | None = None

    def configured_ids(self) -> list[str]:
        """The ids known before any port is opened: every spec with a fixed path (a
        glob's modems are named by the links it finds, later)."""
        return sorted(s.id for s in self._specs if s.id and not _is_glob(s.path))

    # -------------------------------------------------------------- supervision

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            try:
                while True:
                    self._scan()
                    if not any(_is_glob(s.path) for s in self._specs):
                        await asyncio.Future()      # nothing to rescan: wait for cancel
                    await asyncio.sleep(self._rescan_s)
            finally:
                for slot in self._slots.values():
                    if slot.task is not None:
                        slot.task.cancel()
                self._tg = None

    def _scan(self) -> None:
        wanted: dict[str, ModemSpec] = {}
        # A device is opened once, by its first spec: an explicit path also
        # matched by a glob (autodetect of /dev/smsd/*) stays the explicit one.
        taken = {os.path.realpath(s.path) for s in self._specs if not _is_glob(s.path)}
        for spec in self._specs:
            if not _is_glob(spec.path):
                wanted[spec.id] = spec
                continue
            for path in sorted(glob.glob(spec.path)):
                real = os.path.realpath(path)
                if real in taken:
                    continue
                taken.add(real)
                # An id-less spec (autodetect) names each modem by its link alone.
                name = os.path.basename(path)
                mid = f"{spec.id}:{name}" if spec.id else name
                wanted[mid] = ModemSpec(**{**spec.__dict__, "id": mid, "path": path})
        for mid, spec in wanted.items():
            if mid not in self._slots:
                self._start(spec)
        for mid in [m for m in self._slots if m not in wanted]:
            slot = self._slots.pop(mid)           # a globbed device vanished for good
            log.info("modem.removed", modem=mid, path=slot.spec.path)
            if slot.task is not None:
                slot.task.cancel()
            self._ready_changed()

    def _start(self, spec: ModemSpec) -> None:
        sup = Supervisor(spec, self._events, pins=self._pins, on_ready=self._ready_changed,
                         **self._kw)  # type: ignore[arg-type]
        slot = _Slot(spec, sup, today=self._today)
        slot.day, slot.sent_today = self._seed.get(spec.id, ("", 0))
        self._slots[spec.id] = slot
        if self._tg is not None:
            slot.task = self._tg.create_task(sup.run(), name=f"modem {spec.id}")
        log.info("modem.added", modem=spec.id, path=spec.path)

    def seed_sent_today(self, day: str, counts: Mapping[str, int]) -> None:
        """Parts each modem sent on ``day`` before this start (read from the store).

        Called before run(); a modem added later (a glob match) picks its
        count up when it appears.  The day must be the ``today`` clock's.
        """
        self._seed = {mid: (day, int(n)) for mid, n in counts.items()}
        for mid, slot in self._slots.items():
            if mid in self._seed:
                slot.day, slot.sent_today = self._seed[mid]

    # -------------------------------------------------------------- queries

    def snapshot(self) -> list[ModemInfo]:
        out: list[ModemInfo] = []
        for mid, slot in sorted(self._slots.items()):
            slot._roll()
            m = slot.supervisor.modem
            info = m.info if m is not None else None
            out.append(ModemInfo(
                id=mid, path=slot.spec.path,
                state=m.state if m else "opening", detail=m.detail if m else None,
                manufacturer=info.manufacturer if info else None,
                model=info.model if info else None, imei=info.imei if info else None,
                operator=info.operator if info else None,
                signal_dbm=info.signal_dbm if info else None,
                own_number=(info.own_number if info else None) or slot.spec.own_number,
                in_flight=m.in_flight if m else 0, sent_today=slot.sent_today,
                last_error=m.last_error if m else None,
                registration=info.registration if info else None,
                storage_used=info.storage_used if info else None,
                storage_total=info.storage_total if info else None,
                signal_bars=info.signal_bars if info else None,
                storage=info.storage if info else None,
                limit=slot.limited(), daily_cap=slot.spec.daily_cap))
        return out

    def unavailable_reason(self) -> str:
        """Why choose() found nothing: the limits of the ready modems, else "no ready modem"."""
        ready = self._ready()
        limits = sorted({why for s in ready if (why := s.limited()) is not None})
        return "; ".join(limits) if ready and limits else "no ready modem"

    def _ready_changed(self) -> None:
        """A modem's ``ready`` changed, or a slot came or went: rebuild the ready list."""
        self._ready_slots = [s for s in self._slots.values()
                             if s.supervisor.modem is not None and s.supervisor.modem.ready]

    def _ready(self) -> list[_Slot]:
        return list(self._ready_slots)

    def healthy(self) -> bool:
        # Asked for every message (router/gateway availability).
        return bool(self._ready_slots)

    def ready_count(self) -> int:
        """Modems ready now (live, never a cached snapshot: a gone modem counts at once,
        see _ready_changed)."""
        return len(self._ready_slots)

    def is_ready(self, modem: str) -> bool:
        slot = self._slots.get(modem)
        m = slot.supervisor.modem if slot is not None else None
        return m is not None and m.ready

    def choose(self, did: str | None = None, *, exclude: Collection[str] = (),
               busy: Mapping[str, int] | None = None) -> str | None:
        """The modem for the next send, from the live states (a vanished modem never).

        The ready modem owning ``did`` if any, else the least loaded ready one
        under its limits; never one in ``exclude`` (it refused this message).
        ``busy``: how many sends the caller already has on a modem (none when
        absent); the fewest win first, so a modem with the caller's next send
        already waiting is not given another while one has none.
        """
        busy = busy or {}
        # One pass over the slots (asked once per message, issue 17): the first
        # usable owner of ``did`` wins at once, else the least loaded usable one.
        best: _Slot | None = None
        best_load: tuple[int, int, int, str] | None = None
        cutoff = time.monotonic() - RATE_WINDOW
        for slot in self._ready_slots:
            m = slot.supervisor.modem
            spec = slot.spec
            mid = spec.id
            if m is None or not m.ready or mid in exclude:
                continue
            if spec.daily_cap or spec.rate_per_minute:
                if slot.limited() is not None:
                    continue
            else:      # no limit to check: only the window's count, for the load
                recent = slot.recent
                if recent and recent[0] < cutoff:
                    slot._prune(cutoff)
            if did is not None and (m.info.own_number or spec.own_number) == did:
                return mid
            load = (busy.get(mid, 0), m.in_flight, len(slot.recent), mid)
            if best_load is None or load < best_load:
                best, best_load = slot, load
        return best.spec.id if best is not None else None

    def requests_reports(self, modem: str) -> bool:
        """Whether SUBMITs on ``modem`` ask for a status report (its ``request_reports``)."""
        slot = self._slots.get(modem)
        return slot is None or slot.spec.request_reports

    def next_reference(self, modem: str) -> int:
        slot = self._slots.get(modem)
        if slot is None:
            return random.randrange(256)
        slot.reference = (slot.reference + 1) % 256
        return slot.reference

    # -------------------------------------------------------------- sending

    async def send_pdu(self, pdu: SubmitPdu, *, modem: str) -> SentPart:
        slot = self._slots.get(modem)
        m = slot.supervisor.modem if slot else None
        if slot is None or m is None or not m.ready:
            raise GatewayUnavailable(f"modem {modem} is not ready", gateway="gsm")
        spec = slot.spec
        if spec.daily_cap or spec.rate_per_minute:
            why = slot.limited()
            if why is not None:
                raise GatewayUnavailable(f"modem {modem}: {why}", gateway="gsm")
        # Without limits, only the rate window's count (the load choose()
        # compares) to keep short: inline, as this runs for every part (issue 17).
        now = time.monotonic()
        recent = slot.recent
        if recent and recent[0] < now - RATE_WINDOW:
            slot._prune(now - RATE_WINDOW)
        recent.append(now)
        mr = await m.send_pdu(pdu)
        today = slot.today()
        if today != slot.day:        # the day's count starts again (as _roll)
            slot.day, slot.sent_today = today, 0
        slot.sent_today += 1
        # No event of its own: the gateway's gsm.part_sent (debug) names the
        # modem, part and TP-MR with the message's id, and a filtered debug
        # call still costs 2-3 us through structlog's proxy (issue 17).
        return SentPart(modem, mr)

    async def refresh(self, modem: str) -> None:
        """Read signal, operator and registration again now (the console's probe button).

        Raises UnknownModem or GatewayUnavailable like ussd(); each AT command
        has the driver's own deadline.
        """
        slot = self._slots.get(modem)
        if slot is None:
            raise UnknownModem(modem, sorted(self._slots))
        m = slot.supervisor.modem
        if m is None or not m.ready:
            raise GatewayUnavailable(f"modem {modem} is not ready", gateway="gsm")
        await m.refresh_status()
        await m.registration()
        log.info("modem.refreshed", modem=modem)

    async def ussd(self, modem: str, code: str) -> at.Ussd:
        """One USSD request through ``modem`` (balance checks from the API).

        Raises BadUssdCode or UnknownModem (the caller's mistake, nothing
        sent), GatewayUnavailable when the modem is not ready, AtTimeout when
        no answer came, AtError when the modem refused the request.
        """
        check_ussd_code(code)
        slot = self._slots.get(modem)
        if slot is None:
            raise UnknownModem(modem, sorted(self._slots))
        m = slot.supervisor.modem
        if m is None or not m.ready:
            state = m.state if m is not None else "opening"
            why = f" ({m.detail})" if m is not None and m.detail else ""
            raise GatewayUnavailable(f"modem {modem} is not ready: {state}{why}", gateway="gsm")
        answer = await m.ussd(code, self._ussd_s)     # one dialogue at a time (the driver)
        log.info("modem.ussd", modem=modem, code=code, status=answer.status)
        return answer


__all__ = ["BadUssdCode", "LocalDay", "ModemInfo", "ModemPool", "SentPart", "UnknownModem",
           "check_ussd_code", "day_bounds"]
