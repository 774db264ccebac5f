"""Benchmark of the CLASSOUND sip transport against SIPp as the carrier.

Sends N MESSAGEs through ``SipTrunk.send`` (the gateway the router calls),
``--concurrency`` at a time, to a SIPp UAS on loopback that answers 202
(``--auth``: one that challenges every MESSAGE with 401 first, so each costs
two round trips).  Prints, does not assert.  Target (issue 8): at least 500
MESSAGEs per second sustained with zero loss.

    python bench/trunk_bench.py [--messages 5000] [--concurrency 100] [--transport udp|tcp]
                                [--auth] [--t1-ms 500] [--pipeline]

``--pipeline`` goes through the daemon's own path instead: the messages are
committed by the outbox, and the dispatcher, router and trunk send them (the
store's commits included in the CPU figure).

Printed: messages/s over the whole run, failures (each one a message the
carrier did not accept), retransmissions (UDP datagrams sent again: each is
a loss or a late answer on the path), how many the carrier counted as
successful, and CPU per message of this process and of SIPp.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog

from smsd.config import ClassoundGateway
from smsd.errors import GatewayError
from smsd.gateways.base import OutboundJob
from smsd.gateways.classound.sip import SipTrunk
from tests.fakes.sipp import start_sipp

USER = "bench"
PASSWORD = "bench-pw"


class Hooks:
    async def submitting(self, part: int) -> None:
        return None

    async def sent(self, part: int, *, modem: str | None, reference: int | None) -> None:
        return None


def _successful_calls(output: str) -> int | None:
    for line in output.splitlines():
        if line.strip().startswith("Successful call"):
            return int(line.split("|")[2].strip())
    return None


async def run(args: argparse.Namespace) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory() as tmp:
        scenario = "uas_auth_202.xml" if args.auth else "uas_202.xml"
        sipp = await start_sipp(
            scenario, Path(tmp), transport=args.transport, calls=args.messages,
            keys={"user": USER, "password": PASSWORD}, trace=False,
        )
        cfg = ClassoundGateway(
            mode="sip", sip_host="127.0.0.1", sip_port=sipp.port, sip_transport=args.transport,
            username=USER if args.auth else None, secret=PASSWORD if args.auth else None,
            from_domain="bench.test", sip_t1_ms=args.t1_ms, timeout_s=32.0,
        )
        trunk = SipTrunk(cfg, None)
        await trunk.start()
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(args.messages):
            queue.put_nowait(i)
        failures: list[str] = []
        hooks = Hooks()

        async def worker() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                job = OutboundJob(i, f"+1555{i % 10_000_000:07d}", f"bench message {i}",
                                  "+15557654321", None, 1, "gsm7")
                try:
                    await trunk.send(job, hooks)
                except GatewayError as exc:
                    failures.append(str(exc))

        cpu0 = time.process_time()
        self0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        kernel = self1.ru_stime - self0.ru_stime
        await trunk.close()
        rc = await sipp.wait()
        child = resource.getrusage(resource.RUSAGE_CHILDREN)
        carrier_ok = _successful_calls(sipp.output())
        await sipp.stop()

    n = args.messages
    auth = " + digest 401 per message" if args.auth else ""
    print(f"transport            {args.transport}{auth}")
    print(f"messages             {n} ({args.concurrency} in flight)")
    print(f"elapsed              {elapsed:.2f} s")
    print(f"rate                 {n / elapsed:.0f} MESSAGEs/s (target >= 500)")
    print(f"failed               {len(failures)}" + (f"  first: {failures[0]}" if failures else ""))
    print(f"retransmissions      {trunk._tx.retransmissions}")
    print(f"carrier accepted     {carrier_ok} (sipp exit {rc})")
    lost = n - carrier_ok if carrier_ok is not None else "?"
    print(f"loss                 {lost} (sent minus what the carrier counted as successful)")
    print(f"smsd CPU / message   {cpu / n * 1e6:.0f} us ({cpu:.2f} s total, of which "
          f"{kernel / n * 1e6:.0f} us in the kernel: socket sends)")
    sipp_cpu = child.ru_utime + child.ru_stime
    print(f"sipp CPU / message   {sipp_cpu / n * 1e6:.0f} us")
    print(f"cores                {os.cpu_count()} (load {os.getloadavg()[0]:.2f})")


async def run_pipeline(args: argparse.Namespace) -> None:
    from smsd.config import Config, Policy
    from smsd.core.outbox import SubmitRequest
    from smsd.daemon import open_services

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory() as tmp:
        sipp = await start_sipp("uas_202.xml", Path(tmp), transport=args.transport,
                                calls=args.messages, trace=False)
        trunk_cfg = ClassoundGateway(
            mode="sip", sip_host="127.0.0.1", sip_port=sipp.port, sip_transport=args.transport,
            from_domain="bench.test", sip_t1_ms=args.t1_ms, timeout_s=32.0,
        )
        cfg = Config(state_dir=Path(tmp), database=Path(tmp) / "bench.sqlite3",
                     classound=trunk_cfg, policy=Policy(country="US"))
        async with open_services(cfg) as services:
            assert services.trunk is not None
            await services.trunk.start()
            numbers = [f"+1555{i % 10_000_000:07d}" for i in range(args.messages)]
            res = await services.outbox.submit(SubmitRequest(numbers, "bench message"))
            tasks = [asyncio.create_task(services.bus.run())]
            cpu0, t0 = time.process_time(), time.perf_counter()
            tasks.append(asyncio.create_task(services.dispatcher.run()))
            while True:
                depth = await services.store.queue_depth()
                if depth.get("sent", 0) + depth.get("failed", 0) >= len(res.ids):
                    break
                await asyncio.sleep(0.05)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await services.trunk.close()
        rc = await sipp.wait()
        carrier_ok = _successful_calls(sipp.output())
        await sipp.stop()
    n = len(res.ids)
    print(f"pipeline             outbox -> dispatcher -> router -> sip trunk ({args.transport})")
    print(f"messages             {n}, sent {depth.get('sent', 0)}, failed {depth.get('failed', 0)}")
    print(f"rate                 {n / wall:.0f} MESSAGEs/s (target >= 500)")
    print(f"carrier accepted     {carrier_ok} (sipp exit {rc})")
    print(f"smsd CPU / message   {cpu / n * 1e6:.0f} us (store, dispatcher and trunk)")
    print(f"cores                {os.cpu_count()} (load {os.getloadavg()[0]:.2f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    p.add_argument("--auth", action="store_true")
    p.add_argument("--t1-ms", type=int, default=500)
    p.add_argument("--pipeline", action="store_true")
    args = p.parse_args()
    asyncio.run(run_pipeline(args) if args.pipeline else run(args))


if __name__ == "__main__":
    main()
