"""Supervisor reconnects (unplug/replug, watchdog, reboot) and ModemPool selection/limits."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from smsd.codec import pdu
from smsd.errors import GatewayUnavailable
from smsd.modem.pool import ModemPool
from smsd.modem.spec import ModemSpec
from smsd.modem.supervisor import Supervisor
from tests.fakes.scripted_modem import ScriptedModem
from tests.modem.conftest import eventually
from tests.modem.test_device import Events

pytestmark = pytest.mark.timeout(30)

FAST = {"backoff_initial": 0.05, "backoff_max": 0.2, "registration_s": 0.2}


async def wait_for(cond: Callable[[], bool]) -> None:
    await eventually(cond)


@contextlib.asynccontextmanager
async def background(coro: object) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(coro)  # type: ignore[arg-type]
    try:
        yield task
    finally:
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        if not done:
            task.print_stack()
            for t in asyncio.all_tasks():
                t.print_stack()
            raise AssertionError("background task ignored cancellation")
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def linked(tmp_path: Path) -> AsyncIterator[ScriptedModem]:
    modem = ScriptedModem(link=str(tmp_path / "ttyGSM"))
    modem.install_standard()
    await modem.start()
    yield modem
    await modem.stop()


class TestSupervisor:
    async def test_unplug_replug_same_path(self, linked: ScriptedModem) -> None:
        """Unplug -> gone; a new pty behind the same link -> ready again, no restart."""
        ev = Events()
        sup = Supervisor(ModemSpec("gsm0", linked.path), ev, **FAST)
        async with background(sup.run()):
            await wait_for(lambda: ev.states[-1:] == [("ready", None)])
            await linked.unplug()
            await wait_for(lambda: bool(ev.states) and ev.states[-1][0] in ("gone", "opening"))
            await linked.replug()
            await wait_for(lambda: ev.states[-1:] == [("ready", None)] and sup.attempts >= 2)
        assert "gone" in [s for s, _ in ev.states]

    async def test_watchdog_silence_is_disconnect(self, linked: ScriptedModem) -> None:
        """A modem that stops answering the watchdog AT is reconnected when it answers again.

        1. the modem is ready and idle: its last two commands were watchdog
           pings, so the start-up sweep is over (a sweep command caught by the
           silence would time out first and the port would die of that
           instead, however loaded the machine is);
        2. it goes silent: the next ping times out and the supervisor reports
           "gone" naming the watchdog;
        3. it answers again: ready after a second attempt.
        """
        ev = Events()
        # 0.5 s: a loaded machine may take longer than 0.1 s to answer a
        # live ping, which would be a false disconnect before the silence.
        sup = Supervisor(ModemSpec("gsm0", linked.path), ev, watchdog_s=0.05,
                         watchdog_timeout_s=0.5, **FAST)
        async with background(sup.run()):
            await wait_for(lambda: ev.states[-1:] == [("ready", None)]
                           and linked.received[-2:] == ["AT", "AT"])
            before = len(ev.states)
            linked.silent = True
            await wait_for(lambda: any(s == "gone" and "watchdog" in (d or "")
                                       for s, d in ev.states[before:]))
            linked.silent = False
            await wait_for(lambda: ev.states[-1:] == [("ready", None)] and sup.attempts >= 2)

    async def test_modem_reboot_reinitialises(self, linked: ScriptedModem) -> None:
        """Quectel's RDY (the modem restarted) leads to a fresh init sequence."""
        ev = Events()
        sup = Supervisor(ModemSpec("gsm0", linked.path), ev, **FAST)
        async with background(sup.run()):
            await wait_for(lambda: ev.states[-1:] == [("ready", None)])
            before = linked.received.count("AT+CMGF=0")
            linked.inject("RDY")
            await wait_for(lambda: linked.received.count("AT+CMGF=0") > before
                           and ev.states[-1:] == [("ready", None)])

    async def test_sim_removed_while_running(self, linked: ScriptedModem) -> None:
        """An unsolicited +CPIN: NOT INSERTED (SIM pulled) -> re-init -> sim_error reported."""
        ev = Events()
        sup = Supervisor(ModemSpec("gsm0", linked.path), ev, sim_retry_s=3600, **FAST)
        async with background(sup.run()):
            await wait_for(lambda: ev.states[-1:] == [("ready", None)])
            linked.reply_to(r"AT\+CPIN\?", ["+CME ERROR: 10"])
            linked.inject("+CPIN: NOT INSERTED")
            await wait_for(lambda: ev.states[-1][0] == "sim_error")
        assert "not_inserted" in (ev.states[-1][1] or "")

    async def test_port_held_elsewhere_reported_busy(self, linked: ScriptedModem) -> None:
        """A port another process holds is reported "busy" naming it, then retried."""
        holder = await asyncio.create_subprocess_exec(
            sys.executable, "-c", f"import time; f=open({linked.path!r},'rb'); "
                                  "print('held', flush=True); time.sleep(30)",
            stdout=asyncio.subprocess.PIPE)
        assert holder.stdout is not None
        await holder.stdout.readline()
        ev = Events()
        sup = Supervisor(ModemSpec("gsm0", linked.path), ev, **FAST)
        try:
            async with background(sup.run()):
                await wait_for(lambda: any(s == "busy" for s, _ in ev.states))
                busy = next(d for s, d in ev.states if s == "busy")
                assert f"(pid {holder.pid})" in (busy or "")
                holder.kill()
                await holder.wait()
                await wait_for(lambda: ev.states[-1:] == [("ready", None)])
        finally:
            if holder.returncode is None:
                holder.kill()
                await holder.wait()

    async def test_sim_error_not_hammered(self, linked: ScriptedModem) -> None:
        """A SIM needing a PIN that is not configured is reported, then retried only slowly."""
        linked.reply_to(r"AT\+CPIN\?", ["+CPIN: SIM PIN", "OK"])
        ev = Events()
        sup = Supervisor(ModemSpec("gsm0", linked.path), ev, sim_retry_s=3600, **FAST)
        async with background(sup.run()):
            await wait_for(lambda: any(s == "sim_error" for s, _ in ev.states))
            await asyncio.sleep(0.3)
        assert sup.attempts == 1


@pytest.fixture
async def farm(tmp_path: Path) -> AsyncIterator[list[ScriptedModem]]:
    modems = []
    for i in range(2):
        m = ScriptedModem(link=str(tmp_path / f"ttyA{i}"))
        m.install_standard(own_number=f"+44770090000{i}")
        await m.start()
        modems.append(m)
    yield modems
    for m in modems:
        await m.stop()


class TestPool:
    async def test_choose_and_send(self, farm: list[ScriptedModem], tmp_path: Path) -> None:
        """Globbed paths become modems; choose() honours the DID owner; send returns TP-MR."""
        pool = ModemPool([ModemSpec("gsm", str(tmp_path / "ttyA*"))], Events(), **FAST)
        async with background(pool.run()):
            await wait_for(lambda: len([i for i in pool.snapshot() if i.state == "ready"]) == 2)
            assert pool.healthy()
            assert pool.choose("+447700900001") == "gsm:ttyA1"
            # the caller's sends per modem: the one with fewest wins, whatever the names
            assert pool.choose(busy={"gsm:ttyA0": 2, "gsm:ttyA1": 1}) == "gsm:ttyA1"
            assert pool.choose(busy={"gsm:ttyA1": 1}) == "gsm:ttyA0"
            assert pool.choose("+447700900001", busy={"gsm:ttyA1": 5}) == "gsm:ttyA1"
            chosen = pool.choose()
            assert chosen in ("gsm:ttyA0", "gsm:ttyA1")
            farm[int(chosen[-1])].next_mr = 9
            sent = await pool.send_pdu(pdu.encode_submit("+447700900123", "hi")[0],
                                       modem=chosen)
            assert (sent.modem, sent.message_reference) == (chosen, 9)
            info = {i.id: i for i in pool.snapshot()}
            assert info[chosen].sent_today == 1 and info[chosen].manufacturer == "ACME"
            refs = [pool.next_reference(chosen) for _ in range(300)]
            assert all(0 <= r <= 255 for r in refs) and refs[1] == (refs[0] + 1) % 256

    async def test_rate_limit_and_cap(self, farm: list[ScriptedModem], tmp_path: Path) -> None:
        """A SIM at its rate limit or daily cap is not chosen and refuses sends."""
        specs = [ModemSpec("a", farm[0].path, rate_per_minute=1),
                 ModemSpec("b", farm[1].path, daily_cap=1)]
        pool = ModemPool(specs, Events(), **FAST)
        part = pdu.encode_submit("+447700900123", "hi")[0]
        async with background(pool.run()):
            await wait_for(lambda: len([i for i in pool.snapshot() if i.state == "ready"]) == 2)
            await pool.send_pdu(part, modem="a")
            assert pool.choose() == "b"
            with pytest.raises(GatewayUnavailable, match="rate limit"):
                await pool.send_pdu(part, modem="a")
            await pool.send_pdu(part, modem="b")
            with pytest.raises(GatewayUnavailable, match="daily cap"):
                await pool.send_pdu(part, modem="b")
            assert pool.choose() is None
            assert pool.choose("+447700900001") is None
        assert len(farm[0].submitted) == 1 and len(farm[1].submitted) == 1

    async def test_unknown_or_down_modem(self, farm: list[ScriptedModem]) -> None:
        """Sending through a modem that is not ready raises GatewayUnavailable."""
        pool = ModemPool([ModemSpec("a", "/dev/nonexistent-smsd")], Events(), **FAST)
        async with background(pool.run()):
            await asyncio.sleep(0.1)
            assert not pool.healthy() and pool.choose() is None
            with pytest.raises(GatewayUnavailable):
                await pool.send_pdu(pdu.encode_submit("+447700900123", "x")[0], modem="a")
            with pytest.raises(GatewayUnavailable):
                await pool.send_pdu(pdu.encode_submit("+447700900123", "x")[0], modem="zz")

    async def test_rescan_picks_up_new_modem(self, farm: list[ScriptedModem],
                                             tmp_path: Path) -> None:
        """A modem appearing under a glob after start-up joins the pool."""
        pool = ModemPool([ModemSpec("gsm", str(tmp_path / "ttyA*"))], Events(),
                         rescan_s=0.05, **FAST)
        async with background(pool.run()):
            await wait_for(lambda: len(pool.snapshot()) == 2)
            extra = ScriptedModem(link=str(tmp_path / "ttyA9"))
            extra.install_standard()
            await extra.start()
            try:
                await wait_for(lambda: any(i.id == "gsm:ttyA9" and i.state == "ready"
                                           for i in pool.snapshot()))
            finally:
                await extra.stop()
            await wait_for(lambda: len(pool.snapshot()) == 2)
