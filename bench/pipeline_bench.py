"""Benchmark of the core message pipeline.  Prints numbers, asserts nothing.

    python bench/pipeline_bench.py [--messages 3000] [--modems 16] [--queued 100000]

1. submit:     time for one Outbox.submit of 10,000 numbers to commit (target < 2 s).
2. end-to-end: outbox -> dispatcher -> router -> gsm gateway -> ModemPool ->
               16 simulated modems (0 ms latency, in a separate process, so the
               CPU measured is the daemon side only) until every message is
               delivered (status reports included): messages/s and daemon CPU ms
               per message (target < 1 ms).
3. rss:        in a fresh process, queue 100,000 messages and let the dispatcher
               claim work against a gateway that never finishes: peak RSS
               (target < 100 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog

from smsd.config import Licence, Policy, User
from smsd.core.dispatcher import Dispatcher
from smsd.core.events import EventBus
from smsd.core.outbox import Outbox, SubmitRequest
from smsd.core.router import Router
from smsd.gateways.base import OutboundJob, PartHooks
from smsd.store import Store

# The simulator farm prints "ready" once every pty is up; a loaded CI box may
# take a while to spawn 16 modems.
FARM_START_DEADLINE_S = 60.0
# Every modem must reach 'ready' (AT init sequence) within this.
POOL_READY_DEADLINE_S = 60.0
POLICY = Policy(country="GB")
USER = User("100", "Bench User", "bench", "+447700900001", Licence.UC_PREMIUM, "pjsip:100")


def quiet_logs() -> None:
    import logging

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size in MB."""
    current = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return current, peak


async def until(cond: Callable[[], bool]) -> None:
    while True:
        if cond():
            return
        await asyncio.sleep(0.02)


def numbers(n: int, base: int = 0) -> list[str]:
    return [f"+4477009{(base + i) % 100_000:05d}" for i in range(n)]


# --------------------------------------------------------------- 1. submit


async def bench_submit(tmp: Path) -> None:
    store = await Store.open(tmp / "submit.sqlite3")
    try:
        outbox = Outbox(store, POLICY)
        req = SubmitRequest(numbers(10_000), "Benchmark message", user=USER)
        t0 = time.perf_counter()
        res = await outbox.submit(req)
        dt = time.perf_counter() - t0
    finally:
        await store.close()
    print(f"submit: 10,000 numbers committed in {dt * 1000:.0f} ms "
          f"({len(res.ids)} ids, target < 2000 ms)")


# ----------------------------------------------------------- 2. end-to-end


async def bench_end_to_end(tmp: Path, messages: int, modems: int) -> None:
    from smsd.core.inbox import Inbox
    from smsd.gateways.gsm import GsmGateway
    from smsd.modem.pool import ModemPool
    from smsd.modem.spec import ModemSpec

    link = str(tmp / "ttyBENCH")
    farm = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smsd", "modem", "simulate", "--count", str(modems),
        "--link", link, "--latency-ms", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert farm.stdout is not None
        async with asyncio.timeout(FARM_START_DEADLINE_S):
            while (line := await farm.stdout.readline()) and line.strip() != b"ready":
                pass
        drain = asyncio.create_task(farm.stdout.read())
        links = [link] if modems == 1 else [f"{link}{i}" for i in range(modems)]
        store = await Store.open(tmp / "e2e.sqlite3")
        bus = EventBus()
        inbox = Inbox(store, bus)
        specs = [ModemSpec(id=f"gsm{i}", path=p) for i, p in enumerate(links)]
        pool = ModemPool(specs, inbox, state_dir=tmp)
        router = Router([GsmGateway(pool)])
        disp = Dispatcher(store, router, bus, POLICY)
        outbox = Outbox(store, POLICY, wake=disp.wake)
        tasks = [asyncio.create_task(pool.run()), asyncio.create_task(bus.run())]
        try:
            async with asyncio.timeout(POOL_READY_DEADLINE_S):
                await until(lambda: sum(m.state == "ready" for m in pool.snapshot()) >= modems)
            # No user: the system sender, so the pool spreads over every modem.
            res = await outbox.submit(SubmitRequest(numbers(messages), "Benchmark " * 5))
            cpu0, t0 = time.process_time(), time.perf_counter()
            tasks.append(asyncio.create_task(disp.run()))
            while True:
                depth = await store.queue_depth()
                if depth["delivered"] + depth["failed"] >= len(res.ids):
                    break
                await asyncio.sleep(0.05)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await store.close()
        print(f"end-to-end: {messages} messages over {modems} simulated modems (0 ms) "
              f"delivered in {wall:.2f} s = {messages / wall:.0f} messages/s; failed "
              f"{depth['failed']}")
        print(f"end-to-end: daemon CPU {cpu * 1000 / messages:.3f} ms per message "
              f"(target < 1 ms; simulator runs in its own process)")
        drain.cancel()
    finally:
        with contextlib.suppress(ProcessLookupError):
            farm.terminate()
        await farm.wait()


# ------------------------------------------------------------------ 3. rss


class _Stuck:
    """A gateway that takes every message and never finishes (in-flight forever)."""

    name = "gsm"

    def available(self) -> bool:
        return True

    async def send(self, job: OutboundJob, hooks: PartHooks) -> None:
        await asyncio.Event().wait()


async def bench_rss(tmp: Path, queued: int) -> None:
    store = await Store.open(tmp / "rss.sqlite3")
    outbox = Outbox(store, POLICY)
    base_cur, _ = rss_mb()
    t0 = time.perf_counter()
    for start in range(0, queued, 10_000):
        await outbox.submit(SubmitRequest(numbers(min(10_000, queued - start), start),
                                          "RSS benchmark", user=USER))
    fill = time.perf_counter() - t0
    disp = Dispatcher(store, Router([_Stuck()]), EventBus(), POLICY)
    task = asyncio.create_task(disp.run())
    await until(lambda: disp.in_flight > 0)
    await asyncio.sleep(1.0)
    cur, peak = rss_mb()
    depth = await store.queue_depth()
    in_flight = disp.in_flight
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await store.close()
    print(f"rss: {queued} queued ({fill:.1f} s to submit), dispatcher holding "
          f"{in_flight} in flight, {depth['queued']} still queued: RSS {cur:.0f} MB "
          f"(peak {peak:.0f} MB, {base_cur:.0f} MB before queuing; target < 100 MB)")


# ------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--modems", type=int, default=16)
    ap.add_argument("--queued", type=int, default=100_000)
    ap.add_argument("--only", choices=("submit", "e2e", "rss"))
    args = ap.parse_args()
    quiet_logs()
    with tempfile.TemporaryDirectory(prefix="smsd-bench-") as d:
        tmp = Path(d)
        if args.only in (None, "submit"):
            asyncio.run(bench_submit(tmp))
        if args.only in (None, "e2e"):
            asyncio.run(bench_end_to_end(tmp, args.messages, args.modems))
        if args.only == "rss":
            asyncio.run(bench_rss(tmp, args.queued))
        elif args.only is None:
            # A fresh process, so the other phases' memory does not count.
            subprocess.run(
                [sys.executable, __file__, "--only", "rss", "--queued", str(args.queued)],
                check=False, env={**os.environ},
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
