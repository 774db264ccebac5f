"""A raw AT client on a pty and fixtures for the simulator and `smsd modem` tests.

The client is deliberately dumb (bytes in, bytes out, final result codes per
V.250 5.7 / 27.007 9.2 / 27.005 3.2.5) so that the simulator is checked
against the protocol documents, not against our driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import termios
import tty
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from smsd.simulator.modem import SimulatedModem
from tests.cli.sim_process import Simulator

# Final result codes of V.250 5.7.1 and 27.007/27.005, plus the SMS prompt.
FINAL = re.compile(rb"\r\n(OK|ERROR|\+CME ERROR: [^\r]*|\+CMS ERROR: [^\r]*)\r\n|\r\n> ")
# A local pty answers in microseconds; 5 s only bounds a broken simulator.
REPLY_TIMEOUT_S = 5.0


class RawAt:
    """The test side of the pty: write bytes, collect what the modem says."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd, termios.TCSANOW)   # keep what the modem already said
        self.buf = bytearray()
        self.gone = False
        self._data = asyncio.Event()
        asyncio.get_running_loop().add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.gone = True
            asyncio.get_running_loop().remove_reader(self.fd)
        self.buf += data
        self._data.set()

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    async def wait_for(self, pred: Callable[[bytes], bool],
                       deadline_s: float = REPLY_TIMEOUT_S) -> bytes:
        async def loop() -> None:
            while not pred(bytes(self.buf)):
                if self.gone:
                    raise ConnectionError("the modem side closed")
                self._data.clear()
                await self._data.wait()
        await asyncio.wait_for(loop(), deadline_s)
        return bytes(self.buf)

    async def until(self, needle: bytes, deadline_s: float = REPLY_TIMEOUT_S) -> bytes:
        """Everything up to and including ``needle``; consumed from the buffer."""
        await self.wait_for(lambda b: needle in b, deadline_s)
        end = self.buf.index(needle) + len(needle)
        out = bytes(self.buf[:end])
        del self.buf[:end]
        return out

    async def cmd(self, line: str, deadline_s: float = REPLY_TIMEOUT_S) -> bytes:
        """Send one command line, return everything up to its final result code."""
        self.write(line.encode() + b"\r")
        await self.wait_for(lambda b: FINAL.search(b) is not None, deadline_s)
        m = FINAL.search(bytes(self.buf))
        assert m is not None
        out = bytes(self.buf[:m.end()])
        del self.buf[:m.end()]
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.fd)
        with contextlib.suppress(OSError):
            os.close(self.fd)


@pytest.fixture
async def make_sim(tmp_path: Path) -> AsyncIterator[Callable[..., asyncio.Future[SimulatedModem]]]:
    started: list[SimulatedModem] = []
    counter = iter(range(100))

    async def make(**kw: object) -> SimulatedModem:
        modem = SimulatedModem(**kw)  # type: ignore[arg-type]
        await modem.start(str(tmp_path / f"sim{next(counter)}"))
        started.append(modem)
        return modem

    yield make  # type: ignore[misc]
    for modem in started:
        await modem.stop()


@pytest.fixture
async def open_at() -> AsyncIterator[Callable[[str], RawAt]]:
    clients: list[RawAt] = []

    def opener(path: str) -> RawAt:
        client = RawAt(path)
        clients.append(client)
        return client

    yield opener
    for c in clients:
        c.close()


async def quiet(at: RawAt) -> None:
    """Echo off, numeric CME errors: the state most tests start from."""
    assert (await at.cmd("ATE0")).endswith(b"\r\nOK\r\n")
    assert (await at.cmd("AT+CMEE=1")).endswith(b"\r\nOK\r\n")


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Callable[..., Simulator]]:
    running: list[Simulator] = []

    def start(*extra: str) -> Simulator:
        sim = Simulator(tmp_path, *extra)
        running.append(sim)
        return sim

    yield start
    for sim in running:
        sim.stop()
