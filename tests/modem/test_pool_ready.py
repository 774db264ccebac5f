"""The pool's ready list (issue 17): kept current by the modems, never a stale snapshot.

ready_count(), healthy() and choose() read a list of ready modems that every
modem rebuilds as its ``ready`` changes, instead of walking every modem per
message.  These tests hold it against the modems' own state at the very
moments it changes: a state reported to the daemon, a port that dies.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from smsd.errors import PortGone
from smsd.modem.pool import ModemPool
from smsd.modem.spec import ModemSpec
from tests.fakes.scripted_modem import ScriptedModem
from tests.modem.conftest import eventually
from tests.modem.test_device import Events
from tests.modem.test_supervisor_pool import FAST, background

pytestmark = pytest.mark.timeout(30)


def live_ready(pool: ModemPool) -> list[str]:
    """The ready modems read from each modem itself, as the pool did before its list."""
    out = []
    for info in pool.snapshot():
        slot = pool._slots[info.id]
        m = slot.supervisor.modem
        if (m is not None and m.state == "ready" and m.channel is not None
                and m.channel.dead is None):
            out.append(info.id)
    return out


class PoolWatch(Events):
    """Events that look at the pool the moment each modem state is reported."""

    def __init__(self) -> None:
        super().__init__()
        self.pool: ModemPool | None = None
        # (modem, state, the pool's count, the live count, choose(), healthy())
        self.seen: list[tuple[str, str, int, int, str | None, bool]] = []

    def modem_state(self, modem: str, state: str, detail: str | None) -> None:
        super().modem_state(modem, state, detail)
        pool = self.pool
        assert pool is not None
        live = live_ready(pool)
        self.seen.append((modem, state, pool.ready_count(), len(live), pool.choose(),
                          pool.healthy()))


@pytest.fixture
async def pair(tmp_path: Path) -> list[ScriptedModem]:
    modems = []
    for i in range(2):
        m = ScriptedModem(link=str(tmp_path / f"ttyR{i}"))
        m.install_standard(own_number=f"+44770090010{i}")
        await m.start()
        modems.append(m)
    yield modems   # type: ignore[misc]
    for m in modems:
        await m.stop()


async def test_count_follows_every_reported_state(pair: list[ScriptedModem]) -> None:
    """At each state the daemon hears of (ready, no_network, ready again, gone), the
    pool's ready count, choice and health already agree with the modems' own state."""
    ev = PoolWatch()
    pool = ModemPool([ModemSpec("a", pair[0].path), ModemSpec("b", pair[1].path)], ev, **FAST)
    ev.pool = pool
    async with background(pool.run()):
        await eventually(lambda: pool.ready_count() == 2)
        # a: the network drops it (+CREG URC, then AT+CREG?/CEREG? say searching)
        pair[0].reply_to(r"AT\+CREG\?", ["+CREG: 0,2", "OK"])
        pair[0].reply_to(r"AT\+CEREG\?", ["+CEREG: 0,2", "OK"])
        pair[0].inject("+CREG: 2")
        await eventually(lambda: ("a", "no_network") in [(m, s) for m, s, *_ in ev.seen])
        assert pool.ready_count() == 1 and pool.choose() == "b" and not pool.is_ready("a")
        pair[0].reply_to(r"AT\+CREG\?", ["+CREG: 0,1", "OK"])
        pair[0].reply_to(r"AT\+CEREG\?", ["+CEREG: 0,1", "OK"])
        pair[0].inject("+CREG: 1")
        await eventually(lambda: pool.ready_count() == 2)
        # b: unplugged (its port dies, then the supervisor reports it gone)
        await pair[1].unplug()
        await eventually(lambda: ("b", "gone") in [(m, s) for m, s, *_ in ev.seen])
        assert pool.ready_count() == 1 and pool.choose() == "a"
    states = [(m, s) for m, s, *_ in ev.seen]
    assert ("a", "no_network") in states and ("b", "gone") in states
    for modem, state, count, live, chosen, healthy in ev.seen:
        assert count == live, (modem, state, count, live)
        assert healthy == (live > 0)
        assert (chosen is None) == (live == 0)


async def test_dead_port_leaves_the_count_at_once(pair: list[ScriptedModem]) -> None:
    """A port declared dead (the watchdog's abort, an unplug's read error) is out of
    ready_count, healthy and choose before anything else runs, while its state still
    says ready (the supervisor reports "gone" only later)."""
    pool = ModemPool([ModemSpec("a", pair[0].path), ModemSpec("b", pair[1].path)],
                     Events(), **FAST)
    async with background(pool.run()):
        await eventually(lambda: pool.ready_count() == 2)
        a = pool._slots["a"].supervisor.modem
        b = pool._slots["b"].supervisor.modem
        assert a is not None and a.channel is not None
        assert b is not None and b.channel is not None
        a.channel.abort(PortGone("test: a's port died"))
        # no await since: nothing else has run
        assert a.state == "ready"
        assert pool.ready_count() == 1 and pool.choose() == "b" and not pool.is_ready("a")
        assert pool.choose(exclude=["b"]) is None and pool.healthy()
        b.channel.abort(PortGone("test: b's port died"))
        assert pool.ready_count() == 0 and not pool.healthy() and pool.choose() is None
        assert pool.unavailable_reason() == "no ready modem"
        # both come back by themselves (new ports): counted again once ready
        await eventually(lambda: pool.ready_count() == 2)
        assert sorted(live_ready(pool)) == ["a", "b"]
