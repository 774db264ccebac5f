"""Issue 17: what one durable ``Store.write`` costs the process, in CPU and rate.

The daemon's sending path is a chain of group commits (a part's
``submitting``, the message's ``sent``, its status report).  This times
``Store.write`` alone on a fresh SQLite file (WAL, ``synchronous=FULL``):
``--writers`` tasks each write ``--writes`` rows one after another, so with
several writers the group commit shares commits among them.  Printed: CPU
per write (user and system: the fsync's kernel time is system), writes per
second and the number of commits.  Run it from two checkouts back to back
to compare them; other processes on the machine change every figure.

    python bench/store_write_bench.py [--writers 1 8] [--writes 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smsd.logging import setup_logging  # noqa: E402  (after the sys.path line)
from smsd.store import Store  # noqa: E402


def insert(number: str) -> Callable[[Any], None]:
    def fn(db: Any) -> None:
        db.execute("INSERT INTO blocklist (number, reason, created_at) "
                   "VALUES (?, 'bench', '2026-12-07 12:00Z')", (number,))
    return fn


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def one_run(writers: int, writes: int) -> str:
    with tempfile.TemporaryDirectory(prefix="smsd-store-bench-") as d:
        store = await Store.open(Path(d) / "smsd.sqlite3")
        try:
            async def writer(w: int) -> None:
                for i in range(writes):
                    await store.write(insert(f"+{w}-{i}"))

            commits0 = store.commits
            t0, c0 = time.perf_counter(), os.times()
            await asyncio.gather(*(writer(w) for w in range(writers)))
            t1, c1 = time.perf_counter(), os.times()
        finally:
            await store.close()
    n = writers * writes
    user = (c1.user - c0.user) * 1e6 / n
    system = (c1.system - c0.system) * 1e6 / n
    return (f"{writers} writer(s) x {writes}: {user + system:.0f} us CPU per write "
            f"(user {user:.0f}, system {system:.0f}), {n / (t1 - t0):.0f} writes/s, "
            f"{store.commits - commits0} commits  [load average {loadavg()}]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--writers", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--writes", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    setup_logging("warning")
    try:
        import uvloop
        run: Callable[[Any], Any] = uvloop.run
    except ImportError:
        run = asyncio.run
    for _ in range(args.rounds):
        for writers in args.writers:
            print(run(one_run(writers, args.writes // writers if writers > 1 else args.writes)),
                  flush=True)


if __name__ == "__main__":
    main()
