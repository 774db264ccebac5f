"""The operations benchmark: the real daemon end to end, against the modems' limit and gammu-smsd.

    python bench/run.py [--write bench/RESULTS.md] [--quick] [--no-gammu]

Prints one table (and writes it, with the machine, the date, the load and the
command, when --write is given):

* smsd end to end -- `smsd run` as a subprocess, messages submitted in one
  POST /api/v1/sms, sent through 1, 4, 16 and 64 simulated modems (one
  `smsd modem simulate` process) until every one is sent: messages/s and the
  daemon's CPU per message (its /proc utime + stime, all threads), at 0 ms
  and at a realistic 3,000 ms per send (`--send-ms`: AT answers at once, the
  submit takes 3 s).  At 3,000 ms the modems are the ceiling, M / 3 s, and
  the table gives smsd's share of it.  At 0 ms the machine is the ceiling;
  the scaling over one modem is shown beside that of bench/pty_floor.py's
  C driver and C modem on the same machine, in the same run.
* Debian's gammu-smsd 1.42 (installed with apt-get when missing) on the same
  simulator with the same messages: one process per modem, the files backend.

Progress goes to stderr; numbers are printed, never asserted.  The
simulator runs in its own process, so its CPU is not the daemon's.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import pty_floor  # noqa: E402  (bench/pty_floor.py, next to this file)

from smsd.passwords import hash_password  # noqa: E402

# Bounds on a broken run; nothing is timed against them.
START_DEADLINE_S = 120.0
RUN_DEADLINE_S = 600.0
POLL_S = 0.1
CLK_TCK = os.sysconf("SC_CLK_TCK")
PASSWORD = "bench-password"
TEXT = "Benchmark message"   # one part (GSM-7), as pty_floor.c's PDU
SEND_MS = 3000.0             # "a realistic 3,000 ms per send" (issue 12)
MODEMS = (1, 4, 16, 64)


@dataclass
class Row:
    engine: str
    modems: int
    send_ms: float
    messages: int
    wall_s: float
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.messages / self.wall_s

    @property
    def cpu_ms(self) -> float:
        return self.cpu_s * 1000 / self.messages

    @property
    def limit(self) -> float | None:
        """The modems' physical rate (messages/s), when sends take time."""
        return self.modems / (self.send_ms / 1000) if self.send_ms else None


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def numbers(n: int) -> list[str]:
    return [f"+4477009{i:05d}" for i in range(n)]


@contextlib.contextmanager
def simulators(tmp: Path, modems: int, send_ms: float) -> Iterator[list[str]]:
    link = tmp / "modem"
    proc = subprocess.Popen(
        [sys.executable, "-m", "smsd", "modem", "simulate", "--count", str(modems),
         "--link", str(link), "--send-ms", str(send_ms)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line or line.strip() == b"ready":
                break
        else:
            raise SystemExit("the simulator did not start")
        yield [str(link)] if modems == 1 else [f"{link}{i}" for i in range(modems)]
    finally:
        proc.terminate()
        proc.wait(30)


def smsd_config(tmp: Path, links: list[str], http: int) -> Path:
    modems = "".join(f'[[gateways.gsm.modems]]\nid = "gsm{i}"\npath = "{p}"\n'
                     f'own_number = "+4477009{90000 + i}"\n' for i, p in enumerate(links))
    cfg = tmp / "smsd.toml"
    cfg.write_text(f"""
state_dir = "state"
routing = ["gsm"]
[http]
port = {http}
[agi]
port = {free_port()}
[policy]
country = "GB"
timezone = "Europe/London"
monthly_package = 1000000
[[users]]
extension = "100"
name = "Bench"
username = "bench"
licence = "uc-business"
password_hash = "{hash_password(PASSWORD, n=2**10)}"
{modems}""")
    return cfg


def http_json(method: str, url: str, body: object | None = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    token = base64.b64encode(f"bench:{PASSWORD}".encode()).decode()
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Basic {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


def wait_ready(base: str, modems: int) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            health = http_json("GET", base + "/healthz")
            assert isinstance(health, dict)
            if sum(m["state"] == "ready" for m in health["modems"]) == modems:
                return
        time.sleep(POLL_S)
    raise SystemExit(f"{modems} modems were not all ready in time")


def run_smsd(modems: int, send_ms: float, messages: int) -> Row:
    """One end-to-end run of the real daemon; returns its row."""
    with tempfile.TemporaryDirectory(prefix="smsd-bench-") as d:
        tmp = Path(d)
        with simulators(tmp, modems, send_ms) as links:
            http = free_port()
            cfg = smsd_config(tmp, links, http)
            log = (tmp / "daemon.log").open("wb")
            daemon = subprocess.Popen(
                [sys.executable, "-m", "smsd", "run", "--config", str(cfg)],
                stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT,
                env={**os.environ, "SMSD_LOG_LEVEL": "info"})
            try:
                base = f"http://127.0.0.1:{http}"
                wait_ready(base, modems)
                db = sqlite3.connect(f"file:{tmp / 'state' / 'smsd.sqlite3'}?mode=ro",
                                     uri=True)
                cpu0, t0 = proc_cpu(daemon.pid), time.perf_counter()
                answer = http_json("POST", base + "/api/v1/sms",
                                   {"to": numbers(messages), "text": TEXT})
                assert isinstance(answer, dict) and len(answer.get("ids", [])) == messages, \
                    answer
                deadline = time.monotonic() + RUN_DEADLINE_S
                while time.monotonic() < deadline:
                    done = db.execute("SELECT count(*) FROM messages WHERE state IN "
                                      "('sent', 'delivered', 'failed')").fetchone()[0]
                    if done >= messages:
                        break
                    time.sleep(POLL_S)
                wall, cpu = time.perf_counter() - t0, proc_cpu(daemon.pid) - cpu0
                failed = db.execute(
                    "SELECT count(*) FROM messages WHERE state = 'failed'").fetchone()[0]
                db.close()
                if failed:
                    say(f"  warning: {failed} messages failed")
            finally:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(60)
                log.close()
    return Row("smsd", modems, send_ms, messages, wall, cpu)


GAMMU_RC = """[gammu]
device = {device}
connection = at
[smsd]
service = files
inboxpath = {tmp}/in/
outboxpath = {tmp}/out/
sentsmspath = {tmp}/sent/
errorsmspath = {tmp}/err/
logfile = {tmp}/gammu.log
debuglevel = 0
checksecurity = 0
checkbattery = 0
checksignal = 0
hangupcalls = 0
loopsleep = 0
statusfrequency = 0
"""


def ensure_gammu() -> str | None:
    found = shutil.which("gammu-smsd")
    if found is None and os.geteuid() == 0:
        say("installing gammu-smsd (apt-get) ...")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", "gammu-smsd"], env=env,
                       stdout=subprocess.DEVNULL, check=False)
        found = shutil.which("gammu-smsd")
    return found


def run_gammu(binary: str, send_ms: float, messages: int) -> Row:
    """gammu-smsd on one simulated modem: messages queued as outbox files, until all are sent."""
    with tempfile.TemporaryDirectory(prefix="gammu-bench-") as d:
        tmp = Path(d)
        for sub in ("in", "out", "sent", "err"):
            (tmp / sub).mkdir()
        with simulators(tmp, 1, send_ms) as links:
            rc = tmp / "smsdrc"
            rc.write_text(GAMMU_RC.format(device=links[0], tmp=tmp))
            for i, number in enumerate(numbers(messages)):
                (tmp / "out" / f"OUTC20260101_120000_{i:05d}_{number}_sms.txt").write_text(TEXT)
            proc = subprocess.Popen([binary, "-c", str(rc)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            try:
                # Timed from its first message sent to its last, so gammu-smsd's
                # start-up and modem set-up are not held against it.
                deadline = time.monotonic() + RUN_DEADLINE_S
                t0 = cpu0 = None
                cpu = wall = 0.0
                first = 0
                while time.monotonic() < deadline:
                    done = len(os.listdir(tmp / "sent")) + len(os.listdir(tmp / "err"))
                    if done and t0 is None:
                        t0, cpu0, first = time.perf_counter(), proc_cpu(proc.pid), done
                    if done >= messages and t0 is not None and cpu0 is not None:
                        wall, cpu = time.perf_counter() - t0, proc_cpu(proc.pid) - cpu0
                        break
                    time.sleep(POLL_S / 10)
                errors = len(os.listdir(tmp / "err"))
                if errors:
                    say(f"  warning: gammu-smsd failed {errors} messages")
            finally:
                proc.terminate()
                proc.wait(60)
    return Row("gammu-smsd", 1, send_ms, messages - first, wall, cpu)


def c_floor() -> dict[int, float]:
    """bench/pty_floor.py's sends/s for each modem count at 0 ms (C driver + C modem)."""
    with tempfile.TemporaryDirectory() as d:
        binary = pty_floor.build(d)
        return {m: pty_floor.run(binary, m, 20000 if m == 1 else max(1000, 16000 // m))[0]
                for m in MODEMS}


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, IndexError, ValueError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.1f} GiB RAM"
    return (f"{model}, {os.cpu_count()} CPUs{mem}; Linux {platform.release()}; "
            f"Python {platform.python_version()}")


def table(rows: list[Row], floor: dict[int, float]) -> list[str]:
    one = {r.send_ms: r.rate for r in rows if r.engine == "smsd" and r.modems == 1}
    out = ["| engine | modems | per send | messages | wall s | messages/s | per modem/s "
           "| of physical limit | CPU ms/message | scaling vs 1 modem | C floor scaling |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        limit = f"{r.rate / r.limit:.1%}" if r.limit else "-"
        scale = cfloor = "-"
        if r.engine == "smsd" and r.send_ms in one:
            scale = f"{r.rate / one[r.send_ms]:.1f} x"
            if not r.send_ms and r.modems in floor:
                cfloor = f"{floor[r.modems] / floor[1]:.1f} x"
        out.append(f"| {r.engine} | {r.modems} | {r.send_ms:,.0f} ms | {r.messages:,} "
                   f"| {r.wall_s:.1f} | {r.rate:,.1f} | {r.rate / r.modems:,.2f} | {limit} "
                   f"| {r.cpu_ms:.2f} | {scale} | {cfloor} |")
    return out


def verdicts(rows: list[Row]) -> list[str]:
    def pick(engine: str, modems: int, send_ms: float) -> Row | None:
        return next((r for r in rows if (r.engine, r.modems, r.send_ms) ==
                     (engine, modems, send_ms)), None)

    out = []
    s0, g0 = pick("smsd", 1, 0), pick("gammu-smsd", 1, 0)
    if s0 and g0:
        out.append(f"- per modem at 0 ms: smsd {s0.rate:,.0f} messages/s, gammu-smsd "
                   f"{g0.rate:.2f}: {s0.rate / g0.rate:,.0f} x (target at least 200 x)")
        out.append(f"- CPU per message at 0 ms, one modem: smsd {s0.cpu_ms:.2f} ms, gammu-smsd "
                   f"{g0.cpu_ms:.2f} ms: {s0.cpu_ms / g0.cpu_ms:.2f} of it (target at most 0.33)")
    for m in MODEMS:
        r = pick("smsd", m, SEND_MS)
        if r and r.limit:
            out.append(f"- {m} modems at {SEND_MS:,.0f} ms per send: {r.rate / r.limit:.1%} of "
                       f"the physical {r.limit:.2f} messages/s (target at least 98%)")
    g3 = pick("gammu-smsd", 1, SEND_MS)
    if g3 and g3.limit:
        out.append(f"- gammu-smsd, one modem at {SEND_MS:,.0f} ms per send: "
                   f"{g3.rate / g3.limit:.1%} of the physical limit")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", metavar="FILE", help="also write the results as Markdown")
    ap.add_argument("--quick", action="store_true", help="fewer messages (a smoke run)")
    ap.add_argument("--no-gammu", action="store_true")
    args = ap.parse_args()
    started = dt.datetime.now(dt.UTC)
    load_before = load()
    rows: list[Row] = []
    for m in MODEMS:
        n = 200 if args.quick else {1: 1000, 4: 2000, 16: 3000, 64: 3000}[m]
        say(f"smsd, {m} modems at 0 ms, {n} messages ...")
        rows.append(run_smsd(m, 0.0, n))
    for m in MODEMS:
        n = (2 if args.quick else 10) * m   # every modem sends ten in a row: 30 s
        say(f"smsd, {m} modems at {SEND_MS:,.0f} ms, {n} messages ...")
        rows.append(run_smsd(m, SEND_MS, n))
    gammu = None if args.no_gammu else ensure_gammu()
    if gammu is not None:
        say("gammu-smsd, 1 modem at 0 ms ...")
        rows.append(run_gammu(gammu, 0.0, 5 if args.quick else 30))
        say(f"gammu-smsd, 1 modem at {SEND_MS:,.0f} ms ...")
        rows.append(run_gammu(gammu, SEND_MS, 2 if args.quick else 8))
    elif not args.no_gammu:
        say("gammu-smsd is not installed and cannot be (not root): its rows are left out")
    say("C floor (bench/pty_floor.py) ...")
    floor = c_floor()
    lines = table(rows, floor)
    finished = dt.datetime.now(dt.UTC)
    print("\n".join(lines))
    print("\n".join(verdicts(rows)))
    if args.write:
        command = "python bench/run.py " + " ".join(sys.argv[1:])
        Path(args.write).write_text("\n".join([
            "# Benchmark results (bench/run.py)",
            "",
            f"- command: `{command.strip()}`",
            f"- date: {started:%Y-%m-%d %H:%M} to {finished:%H:%M} UTC",
            f"- machine: {machine()}",
            f"- load average before: {load_before}; after: {load()} "
            "(the machine is shared: other work ran beside this)",
            "",
            *lines,
            "",
            *verdicts(rows),
            "",
        ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
