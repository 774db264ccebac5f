"""Keep one modem alive: open -> identify -> initialise -> run, and again.

Lower layers only report that the port is gone; this is the one place that
decides to reconnect, with exponential backoff so a modem that keeps failing
does not spin.  A watchdog ``AT`` that gets no answer counts as a disconnect.
A modem unplugged and plugged back at the same path is picked up by the next
attempt.  Refused PINs are remembered here (and on disk) so a reconnect
never offers the SIM the same wrong PIN again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import structlog

from smsd.errors import AtError, AtTimeout, PortBusy, PortGone, SimError
from smsd.modem import spec as st
from smsd.modem.channel import reap
from smsd.modem.device import REGISTRATION_TIMEOUT, SWEEP_INTERVAL, Modem, Opener
from smsd.modem.spec import ModemEvents, ModemSpec
from smsd.modem.transport import open_transport

log = structlog.get_logger(__name__)

# First retry after 1 s (a USB re-enumeration takes about that long), doubling
# to at most 60 s so an absent modem costs one open attempt a minute.
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 60.0
# Watchdog: one AT every 30 s; a live modem answers in well under a second
# (vendor manuals: 300 ms), so 5 s of silence means the port is wedged.
WATCHDOG_INTERVAL = 30.0
WATCHDOG_TIMEOUT = 5.0
# SIM problems need a human (insert the SIM, fix the PIN); re-check every 5 min.
SIM_ERROR_RETRY = 300.0


class PinMemory:
    """Refused PINs as salted hashes (never the PIN itself), optionally on disk."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._refused: set[str] = set()
        if path is not None:
            with contextlib.suppress(OSError, ValueError):
                self._refused = set(json.loads(path.read_text()))

    @staticmethod
    def _key(modem: str, pin: str) -> str:
        return hashlib.sha256(f"smsd-pin\0{modem}\0{pin}".encode()).hexdigest()

    def refused(self, modem: str, pin: str) -> bool:
        return self._key(modem, pin) in self._refused

    def remember_refused(self, modem: str, pin: str) -> None:
        self._refused.add(self._key(modem, pin))
        if self._path is None:
            return
        tmp = self._path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(sorted(self._refused)))
            os.replace(tmp, self._path)
        except OSError as exc:
            log.error("modem.pin_memory_write_failed", path=str(self._path), error=str(exc))


class Supervisor:
    def __init__(self, spec: ModemSpec, events: ModemEvents, *, pins: PinMemory | None = None,
                 path: str | None = None, opener: Opener = open_transport,
                 backoff_initial: float = BACKOFF_INITIAL, backoff_max: float = BACKOFF_MAX,
                 watchdog_s: float = WATCHDOG_INTERVAL,
                 watchdog_timeout_s: float = WATCHDOG_TIMEOUT, sim_retry_s: float = SIM_ERROR_RETRY,
                 registration_s: float = REGISTRATION_TIMEOUT,
                 sweep_s: float = SWEEP_INTERVAL,
                 on_ready: Callable[[], None] | None = None) -> None:
        self.spec = spec
        self.events = events
        self.pins = pins or PinMemory()
        self.path = path or spec.path          # a glob in spec.path resolves to this
        self.modem: Modem | None = None
        self.attempts = 0
        self._opener = opener
        self._backoff = (backoff_initial, backoff_max)
        self._watchdog_s = watchdog_s
        self._watchdog_timeout_s = watchdog_timeout_s
        self._sim_retry_s = sim_retry_s
        self._registration_s = registration_s
        self._sweep_s = sweep_s
        # Told whenever ``modem`` (or its ``ready``) changes: the pool's ready list.
        self._on_ready = on_ready
        self.log = log.bind(modem=spec.id, path=self.path)

    async def run(self) -> None:
        """Supervise until cancelled."""
        delay = self._backoff[0]
        while True:
            self.attempts += 1
            modem = Modem(self.spec, self.events, pins=self.pins, opener=self._opener,
                          registration_s=self._registration_s, sweep_s=self._sweep_s,
                          on_ready=self._on_ready)
            self.modem = modem
            if self._on_ready is not None:
                self._on_ready()
            wait = delay
            try:
                await modem.open(self.path)
                await modem.initialise()
                delay = self._backoff[0]        # a good init resets the backoff
                await self._run(modem)
            except PortBusy as exc:
                self._report(modem, st.STATE_BUSY, str(exc))
            except SimError as exc:
                modem.last_error = str(exc)
                wait = max(delay, self._sim_retry_s)
            except (PortGone, AtError, AtTimeout) as exc:
                modem.last_error = str(exc)
                self._report(modem, st.STATE_GONE, str(exc))
            except asyncio.CancelledError:
                await modem.close()
                raise
            except Exception as exc:     # a bug: log with context, reconnect
                self.log.exception("modem.supervisor_error")
                modem.last_error = repr(exc)
                self._report(modem, st.STATE_GONE, repr(exc))
            await modem.close()
            self.log.info("modem.reconnect_wait", seconds=wait, attempt=self.attempts)
            await asyncio.sleep(wait)
            delay = min(delay * 2, self._backoff[1])

    def _report(self, modem: Modem, state: str, detail: str) -> None:
        modem.state, modem.detail = state, detail
        self.log.info("modem.state", state=state, detail=detail)
        self.events.modem_state(self.spec.id, state, detail)

    async def _run(self, modem: Modem) -> None:
        watchdog = asyncio.create_task(self._watchdog(modem))
        try:
            await modem.run()
        finally:
            await reap(watchdog)

    async def _watchdog(self, modem: Modem) -> None:
        while True:
            await asyncio.sleep(self._watchdog_s)
            try:
                await modem.ping(self._watchdog_timeout_s)
            except (AtTimeout, AtError) as exc:
                self.log.warning("modem.watchdog_failed", error=str(exc))
                if modem.channel is not None:
                    modem.channel.abort(PortGone(f"{self.path}: watchdog: {exc}"))
                return
            except PortGone:
                return
