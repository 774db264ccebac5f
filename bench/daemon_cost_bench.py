"""Issue 17: what the daemon itself costs, measured from outside as a tester would.

Every phase runs a real ``smsd run --config`` process against simulated
modems (0 ms per command unless the phase says otherwise) in a third process,
and talks to it only over HTTP; the daemon's CPU is read from
/proc/<pid>/stat, its peak RSS from /proc/<pid>/status (VmHWM), and send
times from its database (read-only).  Printed, never asserted: speed is not
a test.

    python bench/daemon_cost_bench.py [--only PHASE ...] [--modems 8] [--sim python|c]
        [--repeat N]

``--repeat N`` runs steady, cpu50 and cpu1 N times each (a fresh daemon and
database every time) and prints their median after the N lines: one run of
these rows moves by a third with the VM's speed.

The simulated modems (``--sim``):

  python   smsd's own simulator (``smsd modem simulate``, SimulatorFarm), the
           default and the harness of every earlier figure.  All its modems
           share one Python event loop, so under load its timed replies come
           late (about a millisecond, twice per send, with 16 busy modems):
           the scale rows then charge the daemon with the simulator's delay.
  c        bench/c_modem.c, an independent generic GSM modem written from
           V.250 and TS 27.005/27.007 (no code shared with smsd), built here
           with the machine's C compiler (``cc -O2``; the bench stops with a
           message when there is none).  One epoll loop, a CLOCK_MONOTONIC
           timerfd per modem: a reply due after L ms is written at L ms.  It
           answers the daemon's whole start-up, AT+CMGS, and status reports
           (``--sim-profile generic``: stored in "SR" and indicated by
           +CDSI, then AT+CMGR/AT+CMGD; any other profile: AT+CSMS=1 and +CDS,
           acknowledged by AT+CNMA).  Nothing else of a vendor profile.

The scale rows print, after their figures, how late the modems' timed
replies came and the daemon's turn-around (a send's final result to the next
AT+CMGS), as the modems measured them, from either harness.  The machine's
speed drifts by a third within minutes, so only runs close in time compare:
to compare the harnesses, alternate them, e.g.

    for i in 1 2; do
      python bench/daemon_cost_bench.py --sim c --only scale16 scale64 cpu50
      python bench/daemon_cost_bench.py --sim python --only scale16 scale64 cpu50
    done

Phases (each with a fresh daemon and database):

  steady   one modem, 0 ms: steady msg/s (10 %..90 % of the sends, from the
           parts' sent_at) and daemon CPU per message, 3,000 messages posted
           in batches of 50 to /api/v1/sms.
  cpu50    ``--modems`` modems: daemon CPU per message, batches of 50.
  cpu1     the same with one POST per message (20 clients at once).
  paced    originate p50/p99/max at a paced 200 req/s for 20 s, while one
           modem sends what is posted; p99 per 5 s window shows whether it grows.
  month    originate latency, throughput and daemon CPU per request for a
           user with an empty month, then again after 100,000 messages of
           that user were committed this month (postponed a year, so the
           modem stays out of it and the request alone is measured).
  bulk     one POST of 100,000 numbers to /api/v1/sms while a modem sends a
           backlog: the POST's time, the longest /healthz answer (probed every
           50 ms; a blocked event loop shows as a long answer), the modem's
           longest idle gap (sent_at of consecutive parts) and peak RSS.
  scale16  1 modem, then ``--scale-modems`` (16), at ``--latency-ms`` per send:
           steady msg/s against the physical rate, each modem's gaps, and
           how late the simulated modems' timed replies came and the
           daemon's turn-around from a send's final result to its next
           AT+CMGS, as the modems hear it (smsd/simulator/timing.py with
           --sim python, the C modem's own clock with --sim c).
  scale64  64 modems at 3 s per send, the same figures.

A pair comparing two revisions must run each revision's own copy of this
file, from its own checkout: the daemon and the simulator are started with
that directory as their working directory, which comes before PYTHONPATH on
their sys.path, so ``PYTHONPATH=<other checkout>`` alone changes nothing.

The machine's load average and how busy its cores were during each phase are
printed with it: other processes on the machine change every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pty_floor import compile_c  # noqa: E402  (bench/ is the script's directory)

from smsd.passwords import hash_password  # noqa: E402  (after the sys.path line)

USER, PASSWORD = "bench", "bench"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
# Starting the simulators and the daemon (modem init sequence) on a busy box.
START_DEADLINE_S = 90.0
# A phase's messages must all be sent within this; it only bounds a broken build.
SEND_DEADLINE_S = 600.0
PHASES = ("steady", "cpu50", "cpu1", "paced", "month", "bulk", "scale16", "scale64")
SEND_PHASES = ("steady", "cpu50", "cpu1")     # --repeat applies to these

# The modems: smsd's SimulatorFarm in a child process (its CPU is not the
# daemon's), answering after ``latency`` per reply, so a send (prompt, then
# the result) takes two latencies, plus ``send_ms`` for the network's part of
# a send alone (the watchdog's plain AT is answered at once); status reports
# on or off.
SIMULATOR = """
import asyncio, logging, sys
import structlog
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
from smsd.simulator.farm import SimulatorFarm
async def main():
    farm = SimulatorFarm(int(sys.argv[1]), link=sys.argv[2], latency_ms=float(sys.argv[3]),
                         auto_report=sys.argv[4] == "1", profile=sys.argv[5],
                         send_ms=float(sys.argv[6]))
    if len(sys.argv) > 7:   # the scale phases: how late the replies came (see timing.py)
        from smsd.simulator.timing import ReplyTiming
        for m in farm.modems:
            m.timing = ReplyTiming()
    await farm.start()
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await farm.stop()
    if len(sys.argv) > 7:
        import json, pathlib
        pathlib.Path(sys.argv[7]).write_text(json.dumps({
            "late": [x for m in farm.modems for x in m.timing.late_s],
            "turnaround": [x for m in farm.modems for x in m.timing.turnaround_s]}))
asyncio.run(main())
"""
# The other harness (--sim c): bench/c_modem.c, built at run time.
C_MODEM_SOURCE = Path(__file__).resolve().parent / "c_modem.c"


def build_c_modem(workdir: Path) -> Path:
    """Compile bench/c_modem.c with the machine's C compiler; exits when there is none."""
    return compile_c(C_MODEM_SOURCE, workdir / "c_modem")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def numbers(n: int, base: int = 0) -> list[str]:
    """Distinct valid UK mobile numbers (Ofcom's drama range), 100,000 of them at most."""
    return [f"+4477009{(base + i) % 100_000:05d}" for i in range(n)]


def proc_cpu(pid: int) -> float:
    return sum(proc_cpu_split(pid))


def proc_cpu_split(pid: int) -> tuple[float, float]:
    """The process's user and system CPU seconds (all threads)."""
    return _stat_cpu(Path(f"/proc/{pid}/stat"))


def _stat_cpu(stat: Path) -> tuple[float, float]:
    """utime and stime, in seconds, of a /proc stat file (a process's or a thread's)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def loop_thread_cpu(pid: int) -> float:
    """CPU seconds of the daemon's event-loop thread alone (its main thread);
    the rest of the process's CPU is its database threads' (aiosqlite's)."""
    return sum(_stat_cpu(Path(f"/proc/{pid}/task/{pid}/stat")))


def runqueue_wait(pid: int) -> float:
    """Seconds the daemon's event-loop thread has spent runnable but waiting for a CPU.

    /proc/<pid>/task/<pid>/schedstat, second field (ns).  On this shared
    2-core machine other programs' load makes a request wait for a CPU; an
    answer time less this wait is what the daemon itself took.
    """
    return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[1]) / 1e9


def proc_mem_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def machine_cpu() -> tuple[float, float]:
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    total = sum(v)
    return float(total - v[3] - v[4]), float(total)


def reference_ms() -> float:
    """Milliseconds a fixed piece of pure Python takes here now (the best of five).

    This VM's speed drifts by a factor of two within an hour and two runs of
    the same code differ by a third, so every phase prints this beside its
    figures: a phase whose reference was slow ran on a slow machine.
    """
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        table: dict[str, int] = {}
        for i in range(20_000):
            table[str(i)] = i * 2
        sum(table.values())
        best = min(best, time.perf_counter() - t0)
    return best * 1000


class Load:
    """Machine load over a phase: load average at the end, share of the cores busy,
    and the reference loop's time before and after (see reference_ms)."""

    def __enter__(self) -> Load:
        self.ref0 = reference_ms()
        self.busy0, self.all0 = machine_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        busy, total = machine_cpu()
        self.share = (busy - self.busy0) / max(total - self.all0, 1e-9)
        self.loadavg = Path("/proc/loadavg").read_text().split()[0]
        self.ref1 = reference_ms()

    def __str__(self) -> str:
        return (f"[{datetime.now():%H:%M:%S}; machine: cores {self.share:.0%} busy, "
                f"load average {self.loadavg}, "
                f"reference loop {self.ref0:.2f}/{self.ref1:.2f} ms before/after]")


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


class Rig:
    """Simulated modems in one process, the daemon in another, one fresh state dir."""

    def __init__(self, tmp: Path, modems: int, log_level: str, profile: str | None = None,
                 sim_profile: str = "generic", c_modem: Path | None = None) -> None:
        self.profile = profile
        self.sim_profile = sim_profile
        self.c_modem = c_modem       # None: smsd's Python simulator
        self.tmp = tmp
        self.modems = modems
        self.log_level = log_level
        self.state = tmp / "state"
        self.db = self.state / "smsd.sqlite3"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.sim: subprocess.Popen[bytes] | None = None
        self.daemon: subprocess.Popen[bytes] | None = None

    def start_sim(self, latency_ms: float = 0.0, reports: bool = True,
                  send_ms: float = 0.0, timing: Path | None = None) -> None:
        link = self.tmp / "modem"
        if self.c_modem is not None:
            # The generic profile stores status reports (+CDSI); the others take
            # AT+CSMS=1 and <ds>=1 (+CDS), which is all they change here.
            command = [str(self.c_modem), "-n", str(self.modems), "-l", str(link),
                       "-L", str(latency_ms), "-s", str(send_ms),
                       *(["-r"] if reports else []),
                       *(["-c"] if self.sim_profile != "generic" else []),
                       *(["-t", str(timing)] if timing is not None else [])]
        else:
            command = [sys.executable, "-c", SIMULATOR, str(self.modems), str(link),
                       str(latency_ms), "1" if reports else "0", self.sim_profile, str(send_ms),
                       *([str(timing)] if timing is not None else [])]
        self.sim = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=(self.tmp / "sim.log").open("wb"), cwd=ROOT,
        )
        assert self.sim.stdout is not None
        for line in self.sim.stdout:
            if line.strip() == b"READY":
                break
        else:
            raise SystemExit((self.tmp / "sim.log").read_text())
        # Keep reading the simulator's stdout so a full pipe never stalls it.
        subprocess.Popen(["cat"], stdin=self.sim.stdout, stdout=subprocess.DEVNULL)
        paths = [f"{link}{i}" for i in range(self.modems)] if self.modems > 1 else [str(link)]
        modems = "".join(
            f'[[gateways.gsm.modems]]\nid = "gsm{i}"\npath = "{p}"\n' for i, p in enumerate(paths)
        )
        (self.tmp / "smsd.toml").write_text(
            f'state_dir = "{self.state}"\nrouting = ["gsm"]\n'
            f"[http]\nport = {self.port}\n[agi]\nport = {free_port()}\n"
            '[policy]\ncountry = "GB"\ntimezone = "Europe/London"\nexpire_after_hours = 0\n'
            # No office number (DID): a DID would tie every message to the modem
            # owning it; without one the pool spreads them over every modem.
            f'[[users]]\nextension = "100"\nname = "Bench User"\nusername = "{USER}"\n'
            'licence = "uc-business"\n'
            f'password_hash = "{hash_password(PASSWORD, n=2**4)}"\n' + modems
        )

    async def start_daemon(self) -> int:
        # --profile: under py-spy (CPU figures are then py-spy's, not the daemon's).
        spy = ["py-spy", "record", "--gil", "-r", "250", "-f", "raw", "-o", self.profile,
               "--"] if self.profile else []
        self.daemon = subprocess.Popen(  # noqa: ASYNC220 (a bench: started once, waited on below)
            [*spy, sys.executable, "-m", "smsd", "run", "--config", str(self.tmp / "smsd.toml"),
             "--log-level", self.log_level],
            stdout=subprocess.DEVNULL, stderr=(self.tmp / "daemon.log").open("ab"), cwd=ROOT,
        )
        deadline = time.monotonic() + START_DEADLINE_S
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                try:
                    async with s.get(self.base + "/healthz") as r:
                        body = await r.json()
                    if sum(m["state"] == "ready" for m in body["modems"]) == self.modems:
                        return self.daemon.pid
                except (aiohttp.ClientError, ValueError, KeyError):
                    pass
                await asyncio.sleep(0.2)
        raise SystemExit("daemon not ready: " + (self.tmp / "daemon.log").read_text()[-3000:])

    def stop_daemon(self) -> None:
        if self.daemon is not None:
            if self.profile:  # py-spy writes its file once the daemon is gone
                for child in Path(f"/proc/{self.daemon.pid}/task/{self.daemon.pid}/children"
                                  ).read_text().split():
                    os.kill(int(child), 15)
            else:
                self.daemon.terminate()
            self.daemon.wait(60)
            self.daemon = None

    def stop(self) -> None:
        self.stop_daemon()
        self.stop_sim()

    def stop_sim(self) -> None:
        if self.sim is not None:
            assert self.sim.stdin is not None
            self.sim.stdin.close()  # the simulators stop at end of input
            try:
                self.sim.wait(30)
            except subprocess.TimeoutExpired:
                self.sim.kill()
                self.sim.wait(30)
            self.sim = None

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            return list(conn.execute(sql, params))
        finally:
            conn.close()

    def modem_gaps(self, first_id: int, since: datetime | None = None) -> list[float]:
        """Seconds between consecutive sends of each modem (ids >= first_id), from sent_at.

        A modem's gap is its own send time plus whatever the daemon took
        between its result and the next AT+CMGS: the share of the physical
        rate that depends on the daemon, free of how the modems' rounds line
        up (which the 10-90 % window of steady_rate is not, with few sends).
        ``since``: only gaps that start at or after it.
        """
        by_modem: dict[str, list[datetime]] = {}
        for modem, at in self.query(
                "SELECT modem, sent_at FROM message_parts WHERE message_id >= ? "
                "AND sent_at IS NOT NULL ORDER BY sent_at", (first_id,)):
            when = datetime.fromisoformat(str(at))
            if since is None or when >= since:
                by_modem.setdefault(str(modem), []).append(when)
        return [(b - a).total_seconds() for times in by_modem.values()
                for a, b in itertools.pairwise(times)]

    def sent(self) -> int:
        return int(self.query(  # type: ignore[arg-type]
            "SELECT count(*) FROM messages WHERE state IN ('sent', 'delivered')")[0][0])

    async def until_sent(self, n: int) -> None:
        deadline = time.monotonic() + SEND_DEADLINE_S
        while self.sent() < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {self.sent()} of {n} sent")
            await asyncio.sleep(0.1)

    def steady_rate(self, first_id: int) -> float:
        """msg/s between 10 % and 90 % of the sends (ids >= first_id), from sent_at."""
        rows = [str(r[0]) for r in self.query(
            "SELECT MAX(sent_at) FROM message_parts WHERE message_id >= ? AND sent_at IS NOT NULL "
            "GROUP BY message_id ORDER BY 1", (first_id,))]
        if len(rows) < 10:
            return 0.0
        lo, hi = len(rows) // 10, len(rows) * 9 // 10
        t_lo, t_hi = datetime.fromisoformat(rows[lo]), datetime.fromisoformat(rows[hi])
        return (hi - lo) / max((t_hi - t_lo).total_seconds(), 1e-9)


async def post_sms(s: aiohttp.ClientSession, base: str, to: list[str], text: str) -> list[int]:
    async with s.post(base + "/api/v1/sms", json={"to": to, "text": text}, headers=AUTH) as r:
        body = await r.json()
        if r.status != 201:
            raise SystemExit(f"POST /api/v1/sms answered {r.status}: {str(body)[:300]}")
    return list(body["ids"])


async def originate(s: aiohttp.ClientSession, base: str, number: str,
                    postpone: str | None = None) -> float:
    data = {"number": number, "message": "bench"}
    if postpone:
        data["postpone"] = postpone
    t0 = time.perf_counter()
    async with s.post(base + "/api/v1/originate/sms", data=data, headers=AUTH) as r:
        body = await r.read()
    if r.status != 200 or b"Success" not in body:
        raise SystemExit(f"originate answered {r.status}: {body[:200]!r}")
    return time.perf_counter() - t0


async def gather_limited(
    n: int, clients: int, job: Callable[[int], Awaitable[float]]
) -> list[float]:
    out: list[float] = []
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            out.append(await job(i))

    await asyncio.gather(*(worker() for _ in range(clients)))
    return out


# ------------------------------------------------------------------ phases


class SendFigures(NamedTuple):
    """One run of a sending phase: steady msg/s and ms of CPU per message."""

    steady: float
    cpu_ms: float
    loop_ms: float


def print_median(phase: str, runs: Sequence[SendFigures]) -> None:
    """The median of ``--repeat`` runs of a sending phase, each figure on its own."""
    cpu = statistics.median(r.cpu_ms for r in runs)
    loop = statistics.median(r.loop_ms for r in runs)
    db = statistics.median(r.cpu_ms - r.loop_ms for r in runs)
    steady = statistics.median(r.steady for r in runs)
    print(f"{phase}: median of {len(runs)} runs (each with a fresh daemon): steady "
          f"{steady:.0f} msg/s; daemon CPU {cpu:.2f} ms per message (event-loop thread "
          f"{loop:.2f}, database threads {db:.2f}); the runs: "
          + ", ".join(f"{r.cpu_ms:.2f}" for r in runs) + " ms")


async def send_phase(rig: Rig, messages: int, batch: int, label: str) -> SendFigures:
    """Post ``messages`` in POSTs of ``batch`` numbers and wait until all are sent."""
    pid = await rig.start_daemon()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        await post_sms(s, rig.base, numbers(1, 99_999), "warm-up")
        await rig.until_sent(1)
        first = int(rig.query("SELECT COALESCE(MAX(id), 0) + 1 FROM messages")[0][0])  # type: ignore[arg-type]
        with Load() as load:
            (user0, sys0), t0 = proc_cpu_split(pid), time.perf_counter()
            main0 = loop_thread_cpu(pid)
            nums = numbers(messages)
            if batch == 1:
                async def one(i: int) -> float:
                    await post_sms(s, rig.base, [nums[i]], "Benchmark message")
                    return 0.0
                await gather_limited(messages, 20, one)
            else:
                for i in range(0, messages, batch):
                    await post_sms(s, rig.base, nums[i:i + batch], "Benchmark message")
            await rig.until_sent(messages + 1)
            (user1, sys1), wall = proc_cpu_split(pid), time.perf_counter() - t0
            main = loop_thread_cpu(pid) - main0
    user, system = user1 - user0, sys1 - sys0
    cpu = user + system
    steady = rig.steady_rate(first)
    print(f"{label}: {messages} one-part messages over {rig.modems} modem(s) at 0 ms, "
          f"{'one POST each' if batch == 1 else f'POSTs of {batch}'}: all sent in {wall:.2f} s "
          f"= {messages / wall:.0f} msg/s (steady {steady:.0f} msg/s); "
          f"daemon CPU {cpu * 1000 / messages:.2f} ms per message "
          f"(user {user * 1000 / messages:.2f}, system {system * 1000 / messages:.2f}; "
          f"event-loop thread {main * 1000 / messages:.2f}, database threads "
          f"{(cpu - main) * 1000 / messages:.2f})  {load}")
    return SendFigures(steady, cpu * 1000 / messages, main * 1000 / messages)


async def paced_phase(rig: Rig, rate: float, seconds: float) -> None:
    pid = await rig.start_daemon()
    total = int(rate * seconds)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        await originate(s, rig.base, numbers(1, 99_999)[0])
        with Load() as load:
            cpu0 = proc_cpu(pid)
            started = time.perf_counter()
            tasks = []
            nums = numbers(total)

            async def timed(number: str) -> tuple[float, float]:
                w0 = runqueue_wait(pid)
                took = await originate(s, rig.base, number)
                return took, took - (runqueue_wait(pid) - w0)

            for i in range(total):
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(timed(nums[i])))
            both = list(await asyncio.gather(*tasks))
            lat = [t for t, _ in both]
            own = [o for _, o in both]
            cpu = proc_cpu(pid) - cpu0
    window = int(rate * 5)
    windows = ", ".join(f"{pct(lat[i:i + window], 0.99):.1f}" for i in range(0, total, window))
    print(f"paced: {rate:.0f} originate req/s for {seconds:g} s ({total} calls, 1 modem sending "
          f"them): p50 {pct(lat, 0.5):.1f} ms, p99 {pct(lat, 0.99):.1f} ms, max "
          f"{max(lat) * 1000:.1f} ms; p99 per 5 s: {windows} ms; p99 less the loop thread's "
          f"wait for a CPU {pct(own, 0.99):.1f} ms; daemon CPU "
          f"{cpu * 1000 / total:.2f} ms per request (submit + send)  {load}")


async def originate_costs(rig: Rig, pid: int, label: str, base: int) -> None:
    # A year ahead: scheduled, so only the request (validation, quota, commit) is measured.
    postpone = (datetime.now() + timedelta(days=365)).strftime("%d/%m/%Y %H:%M")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        await originate(s, rig.base, numbers(1, 99_999)[0], postpone)
        nums = numbers(1200, base)
        seq = [await originate(s, rig.base, nums[i], postpone) for i in range(200)]
        with Load() as load:
            cpu0, t0 = proc_cpu(pid), time.perf_counter()
            conc = await gather_limited(
                1000, 10, lambda i: originate(s, rig.base, nums[200 + i], postpone))
            cpu, wall = proc_cpu(pid) - cpu0, time.perf_counter() - t0
    print(f"month ({label}): originate one at a time p50 {pct(seq, 0.5):.1f} ms, p99 "
          f"{pct(seq, 0.99):.1f} ms; 10 clients: {1000 / wall:.0f} req/s, p99 "
          f"{pct(conc, 0.99):.1f} ms, daemon CPU {cpu * 1000 / 1000:.2f} ms per request  {load}")


async def month_phase(rig: Rig, fill: int) -> None:
    pid = await rig.start_daemon()
    await originate_costs(rig, pid, "empty month", 0)
    # Fill through the daemon's own API (as a user would), postponed so nothing is sent.
    postpone = (datetime.now() + timedelta(days=365)).isoformat(timespec="minutes")
    t0 = time.perf_counter()
    async with aiohttp.ClientSession() as s:
        for i in range(0, fill, 10_000):
            async with s.post(rig.base + "/api/v1/sms", headers=AUTH, json={
                "to": numbers(min(10_000, fill - i), i), "text": "filling the month",
                "send_at": postpone,
            }) as r:
                if r.status != 201:
                    raise SystemExit(f"fill answered {r.status}: {(await r.text())[:300]}")
    month = rig.query("SELECT count(*) FROM messages WHERE user = ?", (USER,))[0][0]
    print(f"month: {fill} messages committed for {USER!r} in {time.perf_counter() - t0:.1f} s "
          f"({month} this month in all)")
    await originate_costs(rig, pid, f"{month} messages this month", 1200)


async def bulk_phase(rig: Rig, count: int, backlog: int) -> None:
    pid = await rig.start_daemon()
    probes: list[tuple[float, float, float]] = []  # (when answered, seconds taken, CPU wait)
    stop = asyncio.Event()

    async def prober(s: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            t0, w0 = time.perf_counter(), runqueue_wait(pid)
            async with s.get(rig.base + "/healthz") as r:
                await r.read()
            t1 = time.perf_counter()
            probes.append((t1, t1 - t0, runqueue_wait(pid) - w0))
            await asyncio.sleep(max(0.0, 0.05 - (t1 - t0)))

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        for i in range(0, backlog, 50):
            await post_sms(s, rig.base, numbers(50, 100_000 - backlog + i), "backlog")
        await rig.until_sent(50)
        rss0 = proc_mem_mb(pid, "VmRSS")
        probe = asyncio.create_task(prober(s))
        await asyncio.sleep(1.0)
        with Load() as load:
            cpu0 = proc_cpu(pid)
            wall0 = datetime.now().astimezone()
            t0 = time.perf_counter()
            ids = await post_sms(s, rig.base, numbers(count), "one bulk post")
            t1 = time.perf_counter()
            wall1 = datetime.now().astimezone()
            await asyncio.sleep(1.0)
            stop.set()
            await probe
            cpu = proc_cpu(pid) - cpu0
    during = [d for (at, d, _) in probes if t0 <= at <= t1 + d]
    own = [d - w for (at, d, w) in probes if t0 <= at <= t1 + d]
    gaps = [str(r[0]) for r in rig.query(
        "SELECT sent_at FROM message_parts WHERE sent_at >= ? AND sent_at <= ? ORDER BY sent_at",
        (wall0.astimezone().isoformat(), (wall1 + timedelta(seconds=1)).isoformat()))]
    times = [datetime.fromisoformat(g) for g in gaps]
    idle = max(((b - a).total_seconds() for a, b in itertools.pairwise(times)),
               default=float("nan"))
    peak = proc_mem_mb(pid, "VmHWM")
    print(f"bulk: one POST of {count} numbers ({len(ids)} ids) answered in {t1 - t0:.2f} s "
          f"(daemon CPU {cpu:.2f} s); longest /healthz answer during it "
          f"{max(during, default=0.0) * 1000:.0f} ms ({len(during)} probes, every 50 ms; less "
          f"the loop thread's wait for a CPU: longest {max(own, default=0.0) * 1000:.0f} ms); the "
          f"modem's longest idle gap {idle * 1000:.0f} ms ({len(times)} parts sent meanwhile); "
          f"RSS {rss0:.0f} MiB before, peak {peak:.0f} MiB  {load}")


async def scale_phase(rig: Rig, per_modem: int, latency_ms: float, send_ms: float, label: str,
                      one_rate: float | None) -> float:
    """Steady msg/s of ``rig.modems`` modems at ``latency_ms`` per reply and ``send_ms``
    more per send, no status reports."""
    pid = await rig.start_daemon()
    messages = per_modem * rig.modems
    async with aiohttp.ClientSession() as s:
        await post_sms(s, rig.base, numbers(1, 99_999), "warm-up")
        await rig.until_sent(1)
        first = int(rig.query("SELECT COALESCE(MAX(id), 0) + 1 FROM messages")[0][0])  # type: ignore[arg-type]
        assert rig.sim is not None
        with Load() as load:
            cpu0, sim0 = proc_cpu(pid), proc_cpu(rig.sim.pid)
            nums = numbers(messages)
            for i in range(0, messages, 500):
                await post_sms(s, rig.base, nums[i:i + 500], "Benchmark message")
            # The modems already send while the POSTs above are written: each
            # holds the writer for a 500-row transaction, which the modems'
            # next commits wait behind (round 8).  The figures "after the
            # ingest" count only the gaps that start once the last POST returned.
            ingested = datetime.now(UTC)
            await rig.until_sent(messages + 1)
            cpu, sim_cpu = proc_cpu(pid) - cpu0, proc_cpu(rig.sim.pid) - sim0
    rate = rig.steady_rate(first)
    send_ms = 2 * latency_ms + send_ms
    physical = rig.modems * 1000 / send_ms
    ratio = f"; {rate / one_rate:.1f} x one modem" if one_rate else ""
    gaps = rig.modem_gaps(first)
    send_s = send_ms / 1000
    busy = send_s * len(gaps) / max(sum(gaps), 1e-9)
    over = [(g - send_s) * 1000 for g in gaps]
    print(f"{label}: {rig.modems} modem(s) at {latency_ms:g} ms per reply ({send_ms:g} ms "
          f"per send, physical rate {physical:.1f} msg/s): steady {rate:.1f} msg/s = "
          f"{rate / physical:.1%} of it{ratio}; each modem busy {busy:.1%} of the time between "
          f"its first and last send ({len(gaps)} gaps; beyond the send time p50 "
          f"{pct(over, 0.5) / 1000:.1f} ms, p99 {pct(over, 0.99) / 1000:.1f} ms); CPU per message "
          f"{cpu * 1000 / messages:.2f} ms in the daemon, {sim_cpu * 1000 / messages:.2f} ms in "
          f"the simulated modems (no status reports)  {load}")
    after = rig.modem_gaps(first, since=ingested)
    if after:
        over_after = [(g - send_s) * 1000 for g in after]
        print(f"  after the ingest (the gaps that start once the last POST returned): each "
              f"modem busy {send_s * len(after) / max(sum(after), 1e-9):.1%} ({len(after)} gaps; "
              f"beyond the send time p50 {pct(over_after, 0.5) / 1000:.1f} ms, p99 "
              f"{pct(over_after, 0.99) / 1000:.1f} ms)")
    rig.stop_daemon()
    rig.stop_sim()      # it writes how late its replies came as it stops
    timing = json.loads((rig.tmp / "timing.json").read_text())
    late, turn = timing["late"], timing["turnaround"]
    # Only replies held back are timed: with 0 ms per reply, a send's result alone.
    per_send = "two per send" if latency_ms else "one per send, its result"
    who = "C modems' (bench/c_modem.c)" if rig.c_modem else "Python simulator's"
    lost = (f"; it dropped {timing['dropped_output_bytes']} output bytes and "
            f"{timing['dropped_reports']} reports" if timing.get("dropped_output_bytes")
            or timing.get("dropped_reports") else "")
    print(f"  the {who} timed replies came late by p50 {pct(late, 0.5):.2f} ms, "
          f"p99 {pct(late, 0.99):.2f} ms, mean {statistics.fmean(late) * 1000:.2f} ms "
          f"({len(late)} replies, {per_send}); the daemon's turn-around from a send's final "
          f"result to its next AT+CMGS p50 {pct(turn, 0.5):.2f} ms, p99 "
          f"{pct(turn, 0.99):.2f} ms, mean {statistics.fmean(turn) * 1000:.2f} ms "
          f"(as the modems hear it){lost}")
    return rate


# -------------------------------------------------------------------- main


async def run_scale(phase: str, args: argparse.Namespace) -> None:
    if phase == "scale16":
        latency, send, count, per_modem = args.latency_ms / 2, 0.0, args.scale_modems, 200
    else:
        # The "3 s per send": the network's part of AT+CMGS, with
        # plain commands answered at once as real modems do (the watchdog's AT
        # every 30 s took 1.5 s of each modem's time, 5 %, when every reply
        # was 1.5 s late).  10 sends each (30 s): the per-modem gaps resolve
        # the last percent.
        latency, send, count, per_modem = 0.0, 3000.0, 64, 10
    one: float | None = None
    for modems in ((1, count) if phase == "scale16" else (count,)):
        with tempfile.TemporaryDirectory(prefix="smsd-bench-") as d:
            profile = f"{args.profile}-{phase}-{modems}.txt" if args.profile else None
            rig = Rig(Path(d), modems, args.log_level, profile, args.sim_profile, args.c_modem)
            rig.start_sim(latency, reports=False, send_ms=send, timing=Path(d) / "timing.json")
            try:
                rate = await scale_phase(rig, per_modem, latency, send, phase, one)
                one = one or rate
            finally:
                rig.stop()


async def run_phase(phase: str, args: argparse.Namespace) -> SendFigures | None:
    if phase.startswith("scale"):
        await run_scale(phase, args)
        return None
    modems = args.modems if phase in ("cpu50", "cpu1") else 1
    with tempfile.TemporaryDirectory(prefix="smsd-bench-") as d:
        profile = f"{args.profile}-{phase}.txt" if args.profile else None
        rig = Rig(Path(d), modems, args.log_level, profile, args.sim_profile, args.c_modem)
        rig.start_sim(reports=args.reports)
        try:
            if phase == "steady":
                return await send_phase(rig, args.messages, 50, "steady")
            if phase == "cpu50":
                return await send_phase(rig, args.messages, 50, "cpu50")
            if phase == "cpu1":
                return await send_phase(rig, args.messages, 1, "cpu1")
            if phase == "paced":
                await paced_phase(rig, args.rate, args.seconds)
            elif phase == "month":
                await month_phase(rig, args.fill)
            elif phase == "bulk":
                await bulk_phase(rig, args.bulk, args.backlog)
        finally:
            rig.stop()
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--only", nargs="+", choices=PHASES, default=list(PHASES))
    ap.add_argument("--modems", type=int, default=8, help="modems for cpu50 and cpu1")
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=1,
                    help="run steady, cpu50 and cpu1 this many times (a fresh daemon each) "
                         "and print the median: one run moves by a third with the VM")
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--fill", type=int, default=100_000)
    ap.add_argument("--bulk", type=int, default=100_000)
    ap.add_argument("--backlog", type=int, default=3000)
    ap.add_argument("--scale-modems", type=int, default=16)
    ap.add_argument("--latency-ms", type=float, default=20.0,
                    help="scale16: milliseconds per send (two simulator replies)")
    ap.add_argument("--no-reports", dest="reports", action="store_false",
                    help="cost phases: the simulated network sends no status reports")
    ap.add_argument("--log-level", default="info", help="the daemon's (info is production's)")
    ap.add_argument("--sim-profile", default="generic",
                    help="the simulated modems' vendor profile (smsd/simulator/profiles.py): "
                         "generic stores status reports (+CDSI, no <ds>=1); simcom, quectel "
                         "and sierra take AT+CSMS=1 and route them directly (+CDS)")
    ap.add_argument("--sim", choices=("python", "c"), default="python",
                    help="the simulated modems: smsd's Python simulator (smsd modem simulate; "
                         "the figures of earlier rounds) or bench/c_modem.c, an independent "
                         "C modem built here at run time, whose replies keep their latency "
                         "to the microsecond")
    ap.add_argument("--profile", metavar="PREFIX",
                    help="run the daemon under py-spy --gil; raw stacks to PREFIX-PHASE.txt")
    args = ap.parse_args()
    print(f"smsd daemon cost; simulated modems: {args.sim_profile} "
          f"({'bench/c_modem.c' if args.sim == 'c' else 'Python simulator'}); "
          f"{os.cpu_count()} CPUs; load average "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}; "
          f"{datetime.now().astimezone():%Y-%m-%d %H:%M:%S %Z}")
    with tempfile.TemporaryDirectory(prefix="smsd-bench-cc-") as build:
        args.c_modem = build_c_modem(Path(build)) if args.sim == "c" else None
        for phase in args.only:
            # What earlier phases wrote (their databases, deleted with their
            # temporary directories) reaches the disk now, not during this
            # phase's commits: round 8 saw paced windows of 138-268 ms of disk
            # latency right after the phases that write thousands of rows.
            t0 = time.perf_counter()
            os.sync()
            synced = time.perf_counter() - t0
            if synced > 0.5:
                print(f"  (sync before {phase}: {synced:.1f} s)")
            runs = [asyncio.run(run_phase(phase, args))
                    for _ in range(args.repeat if phase in SEND_PHASES else 1)]
            figures = [r for r in runs if r is not None]
            if len(figures) > 1:
                print_median(phase, figures)


if __name__ == "__main__":
    main()
