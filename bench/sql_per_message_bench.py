"""Issue 17: the database thread's share of one message, measured by itself.

In ``daemon_cost_bench.py``'s cpu50 row the daemon's database threads use
about as much CPU per message as a third to two fifths of the whole.  This
runs the same SQL through the daemon's own write functions (``smsd.store``:
the submit, the claim, the part's 'submitting' and 'sent', the message's
'sent' and its delivery report), on a fresh SQLite file in WAL mode with
``synchronous=FULL``, ``--group`` messages per transaction and phase (five
phases per group: 0.31 commits per message at 16, about as many as the
daemon's group commit makes under load, 0.26).

Printed per message: the statements the write functions execute (trigger
programs, BEGIN and COMMIT not counted: 12.4 since migration 0010 kept the
five routine history lines in the message's row, 17.4 before), and the CPU
of the thread that runs them, with the commits' part, in three settings:

  alone    the thread has the interpreter to itself;
  beside   another thread runs Python for ``--slice-us`` at a time and then
           releases the GIL (``time.sleep(0)``), as the event loop does
           between its system calls;
  hogged   another thread runs Python and never releases the GIL itself, so
           the database thread gets it back only at the switch interval.

Every statement hands the GIL back (the sqlite3 module releases it around
each step), so its cost depends on what the other thread does.

    python bench/sql_per_message_bench.py [--messages 4000] [--group 16] [--rounds 3]
        [--settings alone beside hogged]

Printed, never asserted: speed is not a test.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# After the sys.path line: the checkout's own smsd.
from smsd.store.attempts import mark_part_sent, mark_submitting, write_sent  # noqa: E402
from smsd.store.claims import claim_due  # noqa: E402
from smsd.store.inbound import PartReport, apply_part_report  # noqa: E402
from smsd.store.sqlite_io import migrations  # noqa: E402
from smsd.store.submits import (  # noqa: E402
    NewMessage,
    insert_messages,
    insert_parts_and_history,
    screen_numbers,
)
from smsd.store.timefmt import ts  # noqa: E402
from smsd.store.usage import month_label, month_usage, record_submit  # noqa: E402
from smsd.store.writes import new_message_ids  # noqa: E402

USER, TZ, MODEM = "bench", "Europe/London", "gsm0"


class Counting:
    """The write functions' connection, counting what they execute (untimed pass)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self.statements = 0

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        self.statements += 1
        return self._db.execute(sql, params)

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        rows = list(rows)
        self.statements += len(rows)
        return self._db.executemany(sql, rows)


def open_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    for _, script in migrations():
        db.executescript(script.read_text())
    db.row_factory = sqlite3.Row
    return db


def number(i: int) -> str:
    return f"+4477009{i % 100_000:05d}"


class _Txn:
    """BEGIN IMMEDIATE ... COMMIT, as the group commit runs it; the commits' CPU summed."""

    def __init__(self, db: Any) -> None:
        self._db = db
        self.commit_s = 0.0

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, *exc: object) -> None:
        t = time.thread_time()
        self._db.execute("COMMIT")
        self.commit_s += time.thread_time() - t


def one_group(db: Any, txn: _Txn, first_i: int, count: int, now: datetime) -> None:
    """``count`` messages through every write of their life, one transaction per phase."""
    now_s = ts(now)
    nums = [number(first_i + k) for k in range(count)]
    with txn:                                        # the POST's submit
        screen_numbers(db, nums)
        month_usage(db, USER, now, TZ)
        ids = new_message_ids(db, count)
        month = month_label(now, TZ)
        insert_messages(db, (
            NewMessage(mid, USER, None, None, n, "Benchmark message", "gsm7", 1, "queued",
                       None, now_s, now_s, now_s, "api", None, 0, month)
            for mid, n in zip(ids, nums, strict=True)))
        record_submit(db, USER, now, TZ, count)
        insert_parts_and_history(db, ids, 1, "queued", now_s)
    with txn:                                        # the dispatcher's claim
        claimed, _ = claim_due(db, now_s, count, node=None, dead_after_s=60.0,
                               cutoff_s=None, expired_error=lambda e: e or "expired")
    with txn:                                        # each part before AT+CMGS
        for row in claimed:
            mark_submitting(db, row.id, 1, now_s, first=True)
    with txn:                                        # the part's and the message's 'sent'
        for row in claimed:
            mark_part_sent(db, row.id, 1, modem=MODEM, reference=row.id % 256, now_s=now_s)
            write_sent(db, row.id, "gsm", MODEM, now_s)
    window_s = ts(now - timedelta(days=7))
    with txn:                                        # the status reports
        for row in claimed:
            digits = row.recipient.lstrip("+")
            apply_part_report(db, PartReport(MODEM, row.recipient, digits, row.id % 256, 0,
                                             now_s, now_s, "delivered"), now_s, window_s)


def statements_per_message(group: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        db = open_db(Path(tmp) / "count.db")
        counting = Counting(db)
        n = group * 8
        for i in range(0, n, group):
            # BEGIN and COMMIT on the plain connection: the group commit's, shared.
            one_group(counting, _Txn(db), i, group, datetime.now(UTC))
        db.close()
        return counting.statements / n


def run(messages: int, group: int, other: Callable[[threading.Event], None] | None
        ) -> tuple[float, float]:
    """CPU per message of the thread running the writes (total, commits), in microseconds."""
    with tempfile.TemporaryDirectory() as tmp:
        db = open_db(Path(tmp) / "bench.db")
        stop = threading.Event()
        side = threading.Thread(target=other, args=(stop,)) if other else None
        out: dict[str, float] = {}

        def writer() -> None:
            commit = 0.0
            t0 = time.thread_time()
            for i in range(0, messages, group):
                txn = _Txn(db)
                one_group(db, txn, i, group, datetime.now(UTC))
                commit += txn.commit_s
            out["cpu"] = time.thread_time() - t0
            out["commit"] = commit

        if side:
            side.start()
        w = threading.Thread(target=writer)
        w.start()
        w.join()
        stop.set()
        if side:
            side.join()
        db.close()
        return out["cpu"] * 1e6 / messages, out["commit"] * 1e6 / messages


def beside(slice_us: float) -> Callable[[threading.Event], None]:
    def spin(stop: threading.Event) -> None:
        slice_s = slice_us / 1e6
        while not stop.is_set():
            end = time.perf_counter() + slice_s
            while time.perf_counter() < end:
                pass
            time.sleep(0)          # releases the GIL, as a system call does
    return spin


def hogged(stop: threading.Event) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(10_000):
            x += 1


SETTINGS = ("alone", "beside", "hogged")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=4000)
    ap.add_argument("--group", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--slice-us", type=float, default=100.0)
    ap.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS),
                    help="run only these settings (hogged takes many minutes)")
    args = ap.parse_args()
    print(f"sql per message: {statements_per_message(args.group):.1f} statements "
          f"(groups of {args.group}, 5 commits per group); switch interval "
          f"{sys.getswitchinterval() * 1000:g} ms")
    every: dict[str, tuple[str, Callable[[threading.Event], None] | None]] = {
        "alone": ("alone", None),
        "beside": (f"beside ({args.slice_us:g} us slices)", beside(args.slice_us)),
        "hogged": ("hogged", hogged)}
    settings = [every[key] for key in SETTINGS if key in args.settings]
    results: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in settings}
    for _ in range(args.rounds):          # alternating: the VM's speed drifts
        for name, other in settings:
            results[name].append(run(args.messages, args.group, other))
    for name, runs in results.items():
        cpu = [r[0] for r in runs]
        commit = [r[1] for r in runs]
        print(f"  {name}: database thread CPU {statistics.median(cpu):.0f} us per message "
              f"(runs {', '.join(f'{c:.0f}' for c in cpu)}), of which commits "
              f"{statistics.median(commit):.0f} us")


if __name__ == "__main__":
    main()
