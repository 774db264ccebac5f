"""The least CPU per message the daemon's Python building blocks cost here (issue 17).

``bench/pty_floor.py`` gives the machine's floor with C on both sides; this
gives the floor of the same work done the way the daemon does it: in one
Python process, on the daemon's event loop (``smsd.daemon.event_loop_factory``:
uvloop when installed, else asyncio; printed), with the daemon's GIL switch
interval, the daemon's serial transport (``smsd.modem.transport``: the
port's descriptor read from a loop reader callback) and the daemon's aiohttp and JSON helpers.  Each
figure is the bench process's own CPU time (user + system, every thread,
``resource.getrusage``) over the measured work, divided by the messages,
commits or requests.  Printed, never asserted.

    python bench/python_floor.py [--runs 3] [--modems 8]

The floors:

  AT exchange   a driver with no parsing, no deadlines, no log, no state: per
                message exactly the bytes of one one-part send (AT+CMGS=28\\r,
                wait for "> ", the PDU and Ctrl-Z, wait for "+CMGS: 7" and
                OK) and, "+ report", the "+CDS" status report the C modem of
                pty_floor.c (``serve`` mode) writes after it in a second
                write, answered with AT+CNMA and its OK, against 1 and
                ``--modems`` modems at once.  It is the serial transport and
                the event loop's wake-ups alone: not the daemon's AtChannel
                (line framing, URC table, deadlines), codec or gateway, and
                not the modem's own CPU (printed beside it).  Reads per
                message are printed: the report often comes in the same read
                as the OK (the daemon's simulator sends it a loop turn
                later).  Beside it, not a floor: the same sends through
                smsd's AtChannel, what the daemon's AT layer adds.
  durable       the store's group commit stripped to its bones: writers queue
                a row on the loop, one sqlite3 thread runs BEGIN IMMEDIATE,
                one INSERT per writer, COMMIT (WAL, synchronous=FULL, in the
                temporary directory the benches use) and answers through
                call_soon_threadsafe; the next group starts one loop turn
                later, so writers just answered join it.  Per commit with one
                writer, per write with ``--modems`` writers sharing commits (the
                'submitting' commit of that many modems).  Not aiosqlite, not
                the store's SQL or its indexes, not the other commits of a
                message (the POST's, 'sent', the report's).
  HTTP          an aiohttp server with one POST handler that reads the JSON
                body (the daemon's ``read_json``) and answers a small JSON
                body (its ``json_response``), no access log, no middleware,
                no authentication; clients (aiohttp, keep-alive) in another
                process as in daemon_cost_bench: 20 at once posting one number
                each (cpu1), and one posting 50 numbers at a time (cpu50:
                the figure is per number).

The sum of one AT exchange with its report on ``--modems`` modems, one share
of a ``--modems``-writer commit and one request's share is printed as the
floor for cpu50 and for cpu1 (daemon_cost_bench.py's rows): no Python daemon
built from these blocks on this machine can spend less per message.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import queue
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pty_floor import build  # noqa: E402  (bench/ is the script's directory)

from smsd.api.common import json_response, read_json  # noqa: E402  (after the sys.path line)
from smsd.daemon import GIL_SWITCH_INTERVAL_S, event_loop_factory  # noqa: E402
from smsd.modem.channel import AtChannel, Urc  # noqa: E402
from smsd.modem.transport import FdTransport, Transport, open_transport  # noqa: E402

# What open_transport gives: FdTransport for a pty (socket:// modems: Transport).
Port = Transport | FdTransport

# The bytes of pty_floor.c's exchange: "Benchmark message" to +447700900123.
CMD = b"AT+CMGS=28\r"
PDU = b"0001000C91447700091032000011C2B27B8C6E87E56B50BB3C9F87CF65\x1a"
CNMA = b"AT+CNMA\r"
# Exchanges per modem before the CPU is read (the first opens caches, buffers).
WARM_UP = 50
HTTP_CLIENTS = 20

CLIENT = """
import asyncio, sys, aiohttp
async def main(port, requests, clients, items):
    body = {"to": [f"+4477009{i:05d}" for i in range(items)], "text": "Benchmark message"}
    url = f"http://127.0.0.1:{port}/api/v1/sms"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        async def run(n):
            left = iter(range(n))
            async def worker():
                for _ in left:
                    async with s.post(url, json=body) as r:
                        await r.read()
                        if r.status != 201:
                            raise SystemExit(f"answered {r.status}")
            await asyncio.gather(*(worker() for _ in range(clients)))
        await run(max(50, requests // 10))
        print("GO", flush=True)
        sys.stdin.readline()
        await run(requests)
        print("DONE", flush=True)
asyncio.run(main(*map(int, sys.argv[1:])))
"""


def cpu() -> float:
    """This process's CPU seconds, every thread, user and system."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------------ AT exchange


class Start:
    """The drivers warm up, then all begin their measured sends at once."""

    def __init__(self, drivers: int) -> None:
        self.waiting = drivers
        self.warm = asyncio.Event()
        self.go = asyncio.Event()

    async def ready(self) -> None:
        self.waiting -= 1
        if not self.waiting:
            self.warm.set()
        await self.go.wait()


class Received:
    """Bytes as the transport's reader callback hands them over (the daemon's read path)."""

    def __init__(self, port: Port) -> None:
        self.buf = bytearray()
        self.reads = 0
        self._want: Callable[[bytearray], bool] = bool
        self._fut: asyncio.Future[None] | None = None
        port.start_reading(self._data, self._lost)

    def _data(self, data: bytes) -> None:
        self.buf += data
        self.reads += 1
        if self._fut is not None and not self._fut.done() and self._want(self.buf):
            self._fut.set_result(None)

    def _lost(self, exc: Exception) -> None:
        if self._fut is not None and not self._fut.done():
            self._fut.set_exception(exc)

    async def until(self, want: Callable[[bytearray], bool]) -> bytes:
        """Everything received once ``want`` holds for it; the buffer starts again empty."""
        if not want(self.buf):
            self._want = want
            self._fut = asyncio.get_running_loop().create_future()
            await self._fut
        out = bytes(self.buf)
        self.buf.clear()
        return out


def _has_report(buf: bytearray) -> bool:
    """"+CMGS: 7", OK, then "+CDS: 25" and its PDU line (one read or more)."""
    at = buf.find(b"+CDS:")
    return at >= 0 and buf.count(b"\r\n", at) >= 2


async def exchange(port: Port, sends: int, reports: bool, start: Start) -> int:
    """``sends`` one-part sends (and reports) on one port; returns the reads made."""
    got = Received(port)
    for i in range(WARM_UP + sends):
        if i == WARM_UP:
            await start.ready()
        await port.write(CMD)
        await got.until(lambda b: b.endswith(b"> "))
        await port.write(PDU)
        buf = await got.until(_has_report if reports else lambda b: b.endswith(b"OK\r\n"))
        if b"+CMGS: 7\r\n\r\nOK\r\n" not in buf:
            raise SystemExit(f"unexpected answer {buf!r}")
        if reports:
            await port.write(CNMA)
            await got.until(lambda b: b.endswith(b"OK\r\n"))
    return got.reads


async def channel_exchange(port: Port, sends: int, reports: bool, start: Start) -> int:
    """The same sends through smsd's AtChannel (framing, URC table, deadlines): not a floor."""
    report = asyncio.Event()

    def on_urc(urc: Urc) -> None:
        if urc.name == "+CDS":
            report.set()

    channel = AtChannel(port, on_urc)
    channel.start()
    pdu = PDU[:-1].decode()
    for i in range(WARM_UP + sends):
        if i == WARM_UP:
            await start.ready()
        report.clear()
        # Deadlines of the daemon's order (smsd/modem/device.py); none comes near.
        await channel.command_with_pdu(CMD[:-1].decode(), pdu, prompt_s=10.0, wait_s=60.0,
                                       answer_prefix="+CMGS:")
        if reports:
            await report.wait()
            await channel.command("AT+CNMA")
    await channel.close()
    return 0


Driver = Callable[[Port, int, bool, Start], Coroutine[Any, Any, int]]


async def at_floor(binary: str, modems: int, sends: int, reports: bool,
                   drive: Driver = exchange) -> tuple[float, ...]:
    """(µs CPU per message, msg/s, reads per message, the C modem's µs per message)."""
    modem = await asyncio.create_subprocess_exec(
        binary, "serve", str(modems), "1" if reports else "0",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert modem.stdin is not None and modem.stdout is not None
    try:
        paths = [(await modem.stdout.readline()).decode().strip() for _ in range(modems)]
        ports = [await open_transport(p) for p in paths]
        start = Start(modems)
        drivers = [asyncio.create_task(drive(p, sends, reports, start)) for p in ports]
        await start.warm.wait()
        c0, t0 = cpu(), time.perf_counter()
        start.go.set()
        reads = await asyncio.gather(*drivers)
        used, wall = cpu() - c0, time.perf_counter() - t0
        for p in ports:
            await p.close()
    finally:
        modem.stdin.close()
        modem_cpu = float(await modem.stdout.readline() or "nan")
        await modem.wait()
    total = modems * sends
    return (used * 1e6 / total, total / wall, sum(reads) / total,
            modem_cpu * 1e6 / (total + modems * WARM_UP))


# ------------------------------------------------------------------ durable write


async def durable_floor(directory: str, writers: int, writes: int) -> tuple[float, float]:
    """(µs CPU per write, writes per commit) with ``writers`` writing at once."""
    loop = asyncio.get_running_loop()
    jobs: queue.SimpleQueue[list[asyncio.Future[None]] | None] = queue.SimpleQueue()
    waiting: list[asyncio.Future[None]] = []
    busy = False
    commits = 0

    def answer(group: list[asyncio.Future[None]]) -> None:
        for fut in group:
            fut.set_result(None)
        loop.call_soon(start)  # after the answered writers have queued their next rows

    def start() -> None:
        nonlocal busy, commits
        busy = bool(waiting)
        if busy:
            commits += 1
            jobs.put(waiting[:])
            waiting.clear()

    def thread() -> None:
        db = sqlite3.connect(os.path.join(directory, "floor.sqlite3"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS parts (id INTEGER PRIMARY KEY, state TEXT)")
        while (group := jobs.get()) is not None:
            db.execute("BEGIN IMMEDIATE")
            for _ in group:
                db.execute("INSERT INTO parts (state) VALUES ('submitting')")
            db.execute("COMMIT")
            loop.call_soon_threadsafe(answer, group)
        db.close()

    async def write() -> None:
        fut = loop.create_future()
        waiting.append(fut)
        if not busy:
            start()
        await fut

    async def writer(n: int) -> None:
        for _ in range(n):
            await write()

    worker = threading.Thread(target=thread, name="floor-sqlite")
    worker.start()
    try:
        await asyncio.gather(*(writer(WARM_UP) for _ in range(writers)))
        commits = 0
        c0 = cpu()
        await asyncio.gather(*(writer(writes // writers) for _ in range(writers)))
        used = cpu() - c0
    finally:
        jobs.put(None)
        await asyncio.to_thread(worker.join)
    done = writes // writers * writers
    return used * 1e6 / done, done / max(commits, 1)


# ------------------------------------------------------------------------- HTTP


async def post_sms(request: web.Request) -> web.Response:
    body = await read_json(request)
    return json_response({"ids": list(range(1, len(body["to"]) + 1))}, 201)


async def http_floor(requests: int, clients: int, items: int) -> float:
    """µs of this process's CPU per request, the clients in another process."""
    app = web.Application()
    app.router.add_post("/api/v1/sms", post_sms)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, str(port), str(requests), str(clients), str(items),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert client.stdin is not None and client.stdout is not None
    try:
        if await client.stdout.readline() != b"GO\n":
            raise SystemExit("the HTTP client failed during its warm-up")
        c0 = cpu()
        client.stdin.write(b"\n")
        if await client.stdout.readline() != b"DONE\n":
            raise SystemExit("the HTTP client failed")
        used = cpu() - c0
    finally:
        await client.wait()
        await runner.cleanup()
    return used * 1e6 / requests


# ------------------------------------------------------------------------- main


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def one_run(binary: str, args: argparse.Namespace) -> dict[str, tuple[float, ...]]:
    n = args.modems
    out: dict[str, tuple[float, ...]] = {
        "at1": await at_floor(binary, 1, args.sends, True),
        "atn": await at_floor(binary, n, args.sends // n, True),
        "atn_bare": await at_floor(binary, n, args.sends // n, False),
        "chan": await at_floor(binary, n, args.sends // n, True, channel_exchange),
    }
    with tempfile.TemporaryDirectory(prefix="smsd-bench-") as d:
        out["dur1"] = await durable_floor(d, 1, args.commits)
        out["durn"] = await durable_floor(d, n, args.commits * n)
    out["http1"] = (await http_floor(args.requests, HTTP_CLIENTS, 1),)
    out["http50"] = (await http_floor(args.requests // 10, 1, 50) / 50,)
    return out


def report(runs: list[dict[str, tuple[float, ...]]], n: int, label: str) -> None:
    def m(key: str, i: int = 0) -> float:
        return statistics.median(r[key][i] for r in runs)

    at = f"AT exchange (+ report) {label}: 1 modem {m('at1'):.0f} µs"
    print(f"{at} ({m('at1', 1):,.0f} msg/s, {m('at1', 2):.1f} reads/msg, C modem "
          f"{m('at1', 3):.0f} µs); {n} modems {m('atn'):.0f} µs ({m('atn', 1):,.0f} msg/s, "
          f"{m('atn', 2):.1f} reads/msg, C modem {m('atn', 3):.0f} µs); {n} modems without the "
          f"report {m('atn_bare'):.0f} µs")
    print(f"  (not a floor: the same {n} modems through smsd's AtChannel, the daemon's AT layer, "
          f"{m('chan'):.0f} µs per message with the report)")
    print(f"durable write {label}: one writer {m('dur1'):.0f} µs per commit; {n} writers "
          f"{m('durn'):.0f} µs per write ({m('durn', 1):.1f} writes per commit)")
    print(f"HTTP {label}: {m('http1'):.0f} µs per POST of one number ({HTTP_CLIENTS} clients); "
          f"{m('http50'):.1f} µs per number in POSTs of 50 (one client)")
    shared = m("atn") + m("durn")
    for row, http, target in (("cpu50", m("http50"), 500), ("cpu1", m("http1"), 1000)):
        total = shared + http
        print(f"floor for {row} {label}: {total:.0f} µs per message = AT exchange + report "
              f"{m('atn'):.0f} + 'submitting' commit share {m('durn'):.0f} + HTTP share "
              f"{http:.0f} (target {target} µs: {total / target:.0%} of it)")
    print(f"  (the daemon also writes 'sent' and the report; they ride on that commit, but if "
          f"each were a share of its own they would add {2 * m('durn'):.0f} µs)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--modems", type=int, default=8, help="as daemon_cost_bench's cpu50/cpu1")
    ap.add_argument("--sends", type=int, default=4000, help="messages per AT run")
    ap.add_argument("--commits", type=int, default=300, help="commits of one writer")
    ap.add_argument("--requests", type=int, default=3000, help="POSTs of one number")
    args = ap.parse_args()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    # Nothing measured here logs; the ports' open and close events are left out.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    factory: Callable[[], asyncio.AbstractEventLoop] | None = event_loop_factory()
    runs: list[dict[str, tuple[float, ...]]] = []
    with tempfile.TemporaryDirectory() as workdir:
        binary = build(workdir)
        with asyncio.Runner(loop_factory=factory) as runner:
            loop = type(runner.get_loop())
            print(f"Python floors: {loop.__module__}.{loop.__name__}, switch interval "
                  f"{sys.getswitchinterval() * 1000:g} ms, {os.cpu_count()} CPUs, load average "
                  f"{loadavg()}; µs of this process's CPU (all threads)")
            for i in range(args.runs):
                runs.append(runner.run(one_run(binary, args)))
                report(runs[-1:], args.modems, f"run {i + 1}")
    print(f"load average {loadavg()}")
    if len(runs) > 1:
        report(runs, args.modems, f"median of {len(runs)}")


if __name__ == "__main__":
    main()
