"""Fixtures: a scripted modem on a real pty and a channel opened on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from smsd.modem.channel import RESYNC_TIMEOUT, AtChannel, Urc
from smsd.modem.transport import open_transport
from tests.core import polling
from tests.fakes.scripted_modem import ScriptedModem


@pytest.fixture
async def fake() -> AsyncIterator[ScriptedModem]:
    modem = ScriptedModem()
    await modem.start()
    yield modem
    await modem.stop()


class Opened:
    def __init__(self, channel: AtChannel, urcs: list[Urc]) -> None:
        self.channel = channel
        self.urcs = urcs


@pytest.fixture
async def opened(fake: ScriptedModem) -> AsyncIterator[Opened]:
    urcs: list[Urc] = []
    stream = await open_transport(fake.path)
    # The product's resync deadline: a live fake answers at once, but on a
    # machine with both cores busy "at once" can exceed a shortened one.
    channel = AtChannel(stream, urcs.append, resync_s=RESYNC_TIMEOUT)
    channel.start()
    yield Opened(channel, urcs)
    await channel.close()


async def eventually(cond: Callable[[], object]) -> None:
    """Wait for a condition the code under test brings about.

    No wall-clock bound of its own (it was 10 s): on a loaded machine that is a
    false failure.  pytest-timeout bounds the test, and its report shows where
    it waited.
    """
    await polling.eventually(cond)
