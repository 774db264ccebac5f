"""A farm of simulated modems and the control socket that scripts them."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from smsd.simulator.control import serve_control
from smsd.simulator.modem import SimulatedModem


def _nth_number(base: str, i: int) -> str:
    """+447700900001, +447700900002, ...: one own number per modem of a farm."""
    if i == 0:
        return base
    digits = base.lstrip("+")
    width = len(digits)
    bumped = str(int(digits) + i).zfill(width)
    return ("+" if base.startswith("+") else "") + bumped


class SimulatorFarm:
    """N simulated modems plus the JSON-lines control socket that scripts them."""

    def __init__(self, count: int, *, link: str, profile: str = "generic",
                 control: str | None = None, **modem_kw: Any) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        own = str(modem_kw.pop("own_number", "+447700900001"))
        seed = modem_kw.pop("seed", None)
        self.links = [link] if count == 1 else [f"{link}{i}" for i in range(count)]
        self.modems = [
            SimulatedModem(profile=profile, own_number=_nth_number(own, i), index=i,
                           seed=None if seed is None else int(seed) + i, **modem_kw)
            for i in range(count)
        ]
        self.control = control
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        for modem, link in zip(self.modems, self.links, strict=True):
            await modem.start(link)
        if self.control:
            self._server = await serve_control(self.modems, self.control)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            if self.control:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.control)
        for modem in self.modems:
            await modem.stop()
