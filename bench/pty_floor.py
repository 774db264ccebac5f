"""What 16 modems versus one can give on this machine, with the least work per send.

Compiles ``bench/pty_floor.c`` (a C driver and a C modem doing the bare
AT+CMGS exchange of ``modem_bench.py`` over real ptys, no parsing, about a
fifteenth of the Python driver's and simulator's CPU per send) and runs it
with one and with sixteen modems.  At 0 ms latency the ratio compares one
modem's round-trip time with the machine's CPU per send spread over its
cores; it says how the machine behaves, not how a driver scales.  If even
this exchange stays far below 12 x, no driver can reach 12 x here.

It also times the commit every send waits for (invariant 2: a part is
``submitting`` on disk before AT+CMGS): one-row SQLite transactions in WAL
mode with ``synchronous=FULL``, as the daemon's store makes them, in the
temporary directory the benches use.  One modem cannot send faster than one
such commit plus one exchange per message.
Printed, never asserted.

``--python`` then runs ``bench/python_floor.py`` (same ``--runs``): the least
CPU per message the daemon's Python building blocks cost on this machine (the
AT exchange through its serial transport against this C modem, the durable
group commit from the event loop, an aiohttp request), summed into the floor
of daemon_cost_bench's cpu50 and cpu1 rows.

    python bench/pty_floor.py [--runs 5] [--modems 16] [--commits 300] [--python]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "pty_floor.c"
# Sends per modem: enough for a steady rate, a second or so per run.
SENDS_ONE = 20000
SENDS_EACH = 5000


def compile_c(source: Path, binary: Path) -> Path:
    """``cc -O2`` of one of bench/'s C programs (also daemon_cost_bench's C modem);
    exits with a message when there is no compiler or the build fails."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise SystemExit(f"{source.name} needs a C compiler (cc, gcc or clang)")
    done = subprocess.run([cc, "-O2", "-o", str(binary), str(source), "-lutil"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"building {source} failed:\n{done.stderr}")
    return binary


def build(workdir: str) -> str:
    return str(compile_c(SOURCE, Path(workdir) / "pty_floor"))


def run(binary: str, modems: int, sends: int) -> tuple[float, float, float, float, float]:
    """(sends/s, driver µs/send, modem µs/send, machine µs/send, cores busy 0..1)."""
    out = subprocess.run([binary, str(modems), str(sends)], check=True,
                         capture_output=True, text=True, timeout=120).stdout.split()
    return float(out[1]), float(out[2]), float(out[3]), float(out[4]), float(out[5])


def commit_floor(commits: int) -> tuple[float, float]:
    """(p50, p90) milliseconds of a one-row synchronous=FULL commit in WAL mode."""
    with tempfile.TemporaryDirectory(prefix="smsd-bench-") as d:
        db = sqlite3.connect(os.path.join(d, "floor.sqlite3"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, state TEXT)")
        took = []
        for _ in range(commits):
            t0 = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t (state) VALUES ('submitting')")
            db.execute("COMMIT")
            took.append(time.perf_counter() - t0)
        db.close()
    took.sort()
    return took[len(took) // 2] * 1000, took[len(took) * 9 // 10] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--modems", type=int, default=16)
    ap.add_argument("--commits", type=int, default=300)
    ap.add_argument("--python", action="store_true",
                    help="then the Python floors (bench/python_floor.py) in the same run")
    args = ap.parse_args()
    p50, p90 = commit_floor(args.commits)
    print(f"durable commit (WAL, synchronous=FULL) in {tempfile.gettempdir()}: p50 {p50:.2f} ms, "
          f"p90 {p90:.2f} ms: one modem at most {1000 / p50:,.0f} msg/s from the commit "
          "before each AT+CMGS alone; load average "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(f"pty floor (C driver + C modem, bare AT+CMGS exchange); {os.cpu_count()} CPUs")
    ratios = []
    with tempfile.TemporaryDirectory() as workdir:
        binary = build(workdir)
        for _ in range(args.runs):
            one = run(binary, 1, SENDS_ONE)
            many = run(binary, args.modems, SENDS_EACH)
            ratios.append(many[0] / one[0])
            print(f"  1 modem {one[0]:>8,.0f} sends/s ({one[1]:.1f}+{one[2]:.1f} µs CPU/send); "
                  f"{args.modems} modems {many[0]:>8,.0f} sends/s "
                  f"({many[1]:.1f}+{many[2]:.1f} µs in the two programs, {many[3]:.1f} µs "
                  f"machine-wide, cores {many[4]:.0%} busy); ratio {ratios[-1]:.1f}")
    print(f"median ratio {statistics.median(ratios):.1f} x, best {max(ratios):.1f} x "
          "(compare modem_bench.py's ratio at 0 ms)")
    python_floor = Path(__file__).with_name("python_floor.py")
    if args.python:
        sys.stdout.flush()
        subprocess.run([sys.executable, str(python_floor), "--runs", str(args.runs)], check=True)
    else:
        print("the Python floors (AT exchange, durable write, HTTP; the floor of cpu50 and cpu1): "
              "python bench/python_floor.py, or --python here")


if __name__ == "__main__":
    main()
