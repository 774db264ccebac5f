"""The SIM's lock: read its state, enter the PIN once, wait until it is ready.

Split from device.py (module size), in the shape of receive.py: the modem
hands in its AT command functions, its DeviceInfo and its way to fail (which
sets the modem's state, then raises SimError).  A PIN the SIM refused is never
offered again, since three refusals lock the SIM behind its PUK.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from smsd.errors import AtError, CmeError
from smsd.modem import at
from smsd.modem.receive import Attempt, Command
from smsd.modem.spec import DeviceInfo, ModemSpec, PinGuard

# AT+CPIN="..." and AT+CMGL/+CMGR on a SIM: SIM file access, up to 5 s in
# Quectel's manual; a full +CMGL of 255 entries takes longer, so 30 s.
SIM_TIMEOUT = 5.0
# After a correct PIN the SIM initialises its files; Quectel documents "SMS
# DONE" within about 10 s of +CPIN: READY.  We poll +CPIN? for up to 20 s.
SIM_READY_TIMEOUT = 20.0
SIM_POLL_INTERVAL = 1.0


class SimUnlock:
    """One modem's SIM: its state (+CPIN?) and the unlock at initialisation."""

    def __init__(self, spec: ModemSpec, info: DeviceInfo, pins: PinGuard | None, *,
                 cmd: Command, attempt: Attempt, fail: Callable[[str, str], NoReturn],
                 log: Any) -> None:
        self._spec = spec
        self._info = info
        self._pins = pins
        self._cmd = cmd
        self._try = attempt
        self._fail = fail
        self.log = log

    async def sim_state(self) -> str:
        try:
            lines = await self._cmd("AT+CPIN?")
        except CmeError as exc:
            if exc.code == at.CME_SIM_NOT_INSERTED:
                return "NOT INSERTED"
            if exc.code in (at.CME_SIM_FAILURE, at.CME_SIM_BUSY):
                return "BUSY"
            raise
        for line in lines:
            if line.startswith("+CPIN"):
                return at.parse_cpin(line)
        raise AtError("AT+CPIN?", " / ".join(lines), None)

    async def unlock_sim(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SIM_READY_TIMEOUT
        entered = False
        while True:
            state = await self.sim_state()
            self._info.sim = state
            if state == "READY":
                imsi = await self._try("AT+CIMI")
                self._info.imsi = at.parse_info(imsi or [], "+CIMI")
                return
            if state == "NOT INSERTED":
                self._fail("not_inserted", "no SIM card in the modem")
            if state in ("SIM PUK", "SIM PUK2", "PH-SIM PUK"):
                self._fail("puk_required", "the SIM is PUK-locked; unlock it with a phone")
            if state == "SIM PIN" and not entered:
                await self._enter_pin()
                entered = True
                continue
            if state not in ("BUSY", "SIM PIN"):
                self._fail("locked", f"+CPIN: {state}")
            if loop.time() >= deadline:
                self._fail("not_ready", f"SIM still {state} after {SIM_READY_TIMEOUT:g} s")
            await asyncio.sleep(SIM_POLL_INTERVAL)

    async def _enter_pin(self) -> None:
        pin = await self._pin()
        if pin is None:
            self._fail("pin_required", "the SIM needs a PIN and none is configured")
        if self._pins is not None and self._pins.refused(self._spec.id, pin):
            self._fail("pin_refused", "this PIN was refused before; not retried (PUK risk)")
        try:
            await self._cmd(at.build_cpin(pin), SIM_TIMEOUT)
        except CmeError as exc:
            if exc.code in (at.CME_INCORRECT_PASSWORD, None) and self._pins is not None:
                self._pins.remember_refused(self._spec.id, pin)
            if exc.code == at.CME_SIM_PUK:
                self._fail("puk_required", "the SIM locked after the PIN")
            self._fail("pin_refused", f"the SIM refused the PIN ({exc.raw})")
        except AtError as exc:
            if self._pins is not None:
                self._pins.remember_refused(self._spec.id, pin)
            self._fail("pin_refused", f"the SIM refused the PIN ({exc.raw})")
        self.log.info("modem.pin_accepted")

    async def _pin(self) -> str | None:
        if self._spec.pin:
            return self._spec.pin.strip()
        if self._spec.pin_file:
            try:
                text = await asyncio.to_thread(Path(self._spec.pin_file).read_text)
            except OSError as exc:
                self._fail("pin_required", f"cannot read pin_file: {exc.strerror}")
            return text.strip() or None
        return None
