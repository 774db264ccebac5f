"""Issue 18: the PostgreSQL store beside SQLite, and several nodes on one database.

Every daemon is a real ``smsd run --config`` process, its modems smsd's
simulator in a process of its own (bench/daemon_cost_bench.py's SIMULATOR),
the PostgreSQL server a throw-away cluster (tests/fakes/postgres.py: Debian's
server, fsync and synchronous_commit on).  Printed, never asserted.

    python bench/cluster_bench.py [--only PHASE ...] [--messages 2000]

Phases:

  bulk     one POST /api/v1/sms of 10,000 numbers, committed (201), on SQLite
           and on PostgreSQL: the POST's time.  No modem is ready, so nothing
           is sent meanwhile.
  claims   the dispatcher's claim (smsd.core.dispatcher, in this process) on
           those 10,000 queued messages: messages/s in batches of 200 (the
           daemon's batch), claims/s one message per claim; on PostgreSQL also
           two dispatchers claiming at once (two nodes, SKIP LOCKED), with a
           check that no message was claimed twice.
  e2e      end-to-end messages/s at 20 ms per AT command (a send is a prompt
           and a result: 40 ms): 1 node x 8 modems on SQLite, 1 node x 8
           modems on PostgreSQL, 2 nodes x 8 modems on one PostgreSQL
           database (half of the messages posted to each node's API); the
           rate between 10 % and 90 % of the sends (the parts' sent_at).
  wake     cross-node wake-up: a message posted on node A whose DID is node
           B's modem; the time from the POST to the SMS-SUBMIT recorded by B's
           simulated modem (at 0 ms per command), one message at a time;
           beside it the same for a message of A's own modem.

The machine's load is printed with each phase: other processes on a shared
machine change every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import asyncpg  # noqa: E402
import daemon_cost_bench as dc  # noqa: E402  (bench/daemon_cost_bench.py, next to this file)

from smsd.config import Policy  # noqa: E402
from smsd.core.dispatcher import Dispatcher  # noqa: E402
from smsd.core.events import EventBus  # noqa: E402
from smsd.core.router import Router  # noqa: E402
from smsd.passwords import hash_password  # noqa: E402
from smsd.store import Store, utcnow  # noqa: E402
from smsd.store.backends import open_database  # noqa: E402
from tests.fakes.postgres import PgCluster, remove_cluster, start_cluster  # noqa: E402

PHASES = ("bulk", "claims", "e2e", "wake")
USER, PASSWORD = dc.USER, dc.PASSWORD
AUTH = dc.AUTH
# Bounds on a broken run; nothing is timed against them.
START_DEADLINE_S = 120.0
SEND_DEADLINE_S = 600.0
REQUEST_TIMEOUT_S = 300.0
BULK = 10_000
LATENCY_MS = 20.0
WAKE_SAMPLES = 40


def post(base: str, body: dict[str, Any], user: str = USER) -> tuple[list[int], float]:
    """POST /api/v1/sms; the ids and the seconds it took."""
    token = base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
    req = urllib.request.Request(base + "/api/v1/sms", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json",
                                          "Authorization": "Basic " + token})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as r:
        answer = json.loads(r.read())
        if r.status != 201:
            raise SystemExit(f"POST answered {r.status}: {answer}")
    return list(answer["ids"]), time.perf_counter() - t0


def health(base: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=10) as r:
            return dict(json.loads(r.read()))
    except urllib.error.HTTPError as e:
        return dict(json.loads(e.read() or b"{}"))
    except (OSError, ValueError):
        return None


class Node:
    """One daemon (SQLite file or PostgreSQL URL), its simulated modems in their own process."""

    def __init__(self, tmp: Path, name: str, *, modems: int, dsn: str | None,
                 latency_ms: float = 0.0, own_number: str = "+447700910001",
                 users: str = "", no_modem: bool = False) -> None:
        self.tmp = tmp / name
        self.tmp.mkdir(parents=True)
        self.name = name
        self.modems = modems
        self.dsn = dsn
        self.latency_ms = latency_ms
        self.own_number = own_number
        self.users = users
        self.no_modem = no_modem
        self.port = dc.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.db = self.tmp / "state" / "smsd.sqlite3"
        self.sim: subprocess.Popen[bytes] | None = None
        self.daemon: subprocess.Popen[bytes] | None = None
        self.sock = self.tmp / "sim.sock"

    def start(self) -> None:
        link = self.tmp / "modem"
        if not self.no_modem:
            self.sim = subprocess.Popen(
                [sys.executable, "-m", "smsd", "modem", "simulate", "--count", str(self.modems),
                 "--link", str(link), "--control", str(self.sock), "--own-number",
                 self.own_number, "--latency-ms", str(self.latency_ms)],
                stdout=subprocess.PIPE, stderr=(self.tmp / "sim.log").open("wb"), cwd=ROOT,
            )
            assert self.sim.stdout is not None
            for line in self.sim.stdout:
                if line.strip() == b"ready":
                    break
            else:
                raise SystemExit((self.tmp / "sim.log").read_text())
        paths = [f"{link}{i}" for i in range(self.modems)] if self.modems > 1 else [str(link)]
        modems = "".join(f'[[gateways.gsm.modems]]\nid = "{self.name}{i}"\npath = "{p}"\n'
                         for i, p in enumerate(paths))
        database = f'database = "{self.dsn}"\nnode = "{self.name}"\n' if self.dsn else ""
        (self.tmp / "smsd.toml").write_text(
            f'state_dir = "{self.tmp / "state"}"\n{database}routing = ["gsm"]\n'
            f"[http]\nport = {self.port}\n[agi]\nport = {dc.free_port()}\n"
            '[policy]\ncountry = "GB"\ntimezone = "Europe/London"\nexpire_after_hours = 0\n'
            f'[[users]]\nextension = "100"\nname = "Bench User"\nusername = "{USER}"\n'
            'licence = "uc-business"\n'
            f'password_hash = "{hash_password(PASSWORD, n=2**4)}"\n' + self.users + modems
        )
        self.daemon = subprocess.Popen(
            [sys.executable, "-m", "smsd", "run", "--config", str(self.tmp / "smsd.toml"),
             "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=(self.tmp / "daemon.log").open("ab"), cwd=ROOT,
        )
        deadline = time.monotonic() + START_DEADLINE_S
        want = 0 if self.no_modem else self.modems
        while time.monotonic() < deadline:
            h = health(self.base)
            if h is not None and sum(m.get("state") == "ready"
                                     for m in h.get("modems", [])) == want:
                return
            time.sleep(0.2)
        raise SystemExit("daemon not ready: " + (self.tmp / "daemon.log").read_text()[-3000:])

    def submitted_at(self, modem: int = 0) -> list[tuple[str, float]]:
        """(recipient, time) of each SMS-SUBMIT the modem accepted."""
        from tests.daemon_rig import control
        return [(s["to"], datetime.fromisoformat(s["at"]).timestamp())
                for s in control(self.sock, {"cmd": "submitted", "modem": modem})["submitted"]]

    def stop(self) -> None:
        for proc in (self.daemon, self.sim):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def rows(dsn: str | None, db: Path, sql: str, *args: object) -> list[Sequence[Any]]:
    """A query on either backend (``?`` parameters on SQLite, ``$n`` on PostgreSQL)."""
    if dsn is None:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            return list(conn.execute(sql.replace("$1", "?"), args))
        finally:
            conn.close()

    async def run() -> list[Sequence[Any]]:
        c = await asyncpg.connect(dsn)
        try:
            return list(await c.fetch(sql, *args))
        finally:
            await c.close()
    return asyncio.run(run())


def steady_rate(dsn: str | None, db: Path) -> tuple[float, float]:
    """(msg/s between 10 % and 90 % of the sends, seconds first to last send)."""
    stamps = [str(r[0]) for r in rows(
        dsn, db, "SELECT MAX(sent_at) FROM message_parts WHERE sent_at IS NOT NULL "
        "GROUP BY message_id ORDER BY 1")]
    lo, hi = len(stamps) // 10, len(stamps) * 9 // 10
    t = [datetime.fromisoformat(s) for s in (stamps[lo], stamps[hi], stamps[0], stamps[-1])]
    return (hi - lo) / max((t[1] - t[0]).total_seconds(), 1e-9), (t[3] - t[2]).total_seconds()


# ------------------------------------------------------------------ phases


def bulk_phase(tmp: Path, cluster: PgCluster | None) -> dict[str, tuple[str | None, Path]]:
    """10,000 numbers in one POST, on each backend; returns where they were committed."""
    out: dict[str, tuple[str | None, Path]] = {}
    backends: list[tuple[str, str | None]] = [("sqlite", None)]
    if cluster is not None:
        backends.append(("postgresql", cluster.new_database(cluster.migrated_template())))
    for label, dsn in backends:
        node = Node(tmp, f"bulk-{label}", modems=1, dsn=dsn, no_modem=True)
        node.start()
        try:
            with dc.Load() as load:
                ids, took = post(node.base, {"to": dc.numbers(BULK), "text": "bulk"})
            count = rows(dsn, node.db, "SELECT COUNT(*) FROM messages")[0][0]
        finally:
            node.stop()
        assert len(ids) == BULK and count == BULK, (len(ids), count)
        print(f"bulk {label:10s}: one POST of {BULK:,} numbers committed in {took:.2f} s "
              f"= {BULK / took:,.0f} numbers/s  {load}", flush=True)
        out[label] = (dsn, node.db)
    return out


async def _open(dsn: str | None, db: Path) -> Store:
    return await open_database(db, dsn)


async def _claim_all(dsn: str | None, db: Path, batch: int, claimers: int,
                     limit: int | None) -> tuple[int, int, float]:
    """(messages claimed, claims made, seconds): ``claimers`` dispatchers claiming at once."""
    stores = [await _open(dsn, db) for _ in range(claimers)]
    dispatchers = [
        Dispatcher(s, Router(), EventBus(), Policy(expire_after_hours=0), batch=batch,
                   node=f"bench{i}" if dsn else None)
        for i, s in enumerate(stores)
    ]
    seen: list[int] = []
    claims = 0

    async def run(d: Dispatcher) -> None:
        nonlocal claims
        while limit is None or len(seen) < limit:
            got = await d._claim(utcnow(), batch)  # the bench measures the claim itself
            if not got:
                return
            claims += 1
            seen.extend(int(r["id"]) for r in got)

    t0 = time.perf_counter()
    await asyncio.gather(*(run(d) for d in dispatchers))
    took = time.perf_counter() - t0
    for s in stores:
        await s.close()
    if len(seen) != len(set(seen)):
        raise SystemExit(f"{len(seen) - len(set(seen))} messages claimed twice")
    return len(seen), claims, took


async def _requeue(dsn: str | None, db: Path) -> None:
    store = await _open(dsn, db)
    await store.write(lambda c: c.execute(
        "UPDATE messages SET state = 'queued', node = NULL WHERE state = 'sending'"))
    await store.close()


def claims_phase(committed: dict[str, tuple[str | None, Path]]) -> None:
    for label, (dsn, db) in committed.items():
        runs: list[tuple[str, int, int]] = [("batches of 200", 200, 1), ("one per claim", 1, 1)]
        if dsn is not None:
            runs += [("batches of 200, 2 nodes", 200, 2), ("one per claim, 2 nodes", 1, 2)]
        for what, batch, claimers in runs:
            with dc.Load() as load:
                n, claims, took = asyncio.run(
                    _claim_all(dsn, db, batch, claimers, None if batch > 1 else 1000))
            asyncio.run(_requeue(dsn, db))
            print(f"claims {label:10s} {what:24s}: {n:,} messages in {claims:,} claims, "
                  f"{took:.2f} s = {n / took:,.0f} messages/s, {claims / took:,.0f} claims/s  "
                  f"{load}", flush=True)


def e2e_phase(tmp: Path, cluster: PgCluster | None, messages: int) -> None:
    setups: list[tuple[str, int, bool]] = [("sqlite 1 node x 8", 1, False)]
    if cluster is not None:
        setups += [("postgresql 1 node x 8", 1, True), ("postgresql 2 nodes x 8", 2, True)]
    for label, count, pg in setups:
        dsn = cluster.new_database(cluster.migrated_template()) if pg and cluster else None
        nodes = [Node(tmp, f"e2e-{label.replace(' ', '-')}-{i}", modems=8, dsn=dsn,
                      latency_ms=LATENCY_MS, own_number=f"+4477009{i + 1}0001")
                 for i in range(count)]
        try:
            for node in nodes:
                node.start()
            nums = dc.numbers(messages)
            share = messages // count
            with dc.Load() as load:
                t0 = time.perf_counter()
                for i, node in enumerate(nodes):
                    post(node.base, {"to": nums[i * share:(i + 1) * share], "text": "e2e"})
                deadline = time.monotonic() + SEND_DEADLINE_S
                sent_sql = "SELECT COUNT(*) FROM messages WHERE state IN ('sent', 'delivered')"
                while rows(dsn, nodes[0].db, sent_sql)[0][0] < share * count:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{label}: not all sent")
                    time.sleep(0.2)
                wall = time.perf_counter() - t0
            rate, span = steady_rate(dsn, nodes[0].db)
        finally:
            for node in nodes:
                node.stop()
        print(f"e2e {label:24s}: {share * count:,} messages at {LATENCY_MS:g} ms per command, "
              f"all sent {wall:.1f} s after the first POST; steady {rate:.0f} msg/s "
              f"(first to last send {span:.1f} s)  {load}", flush=True)


def wake_phase(tmp: Path, cluster: PgCluster) -> None:
    dsn = cluster.new_database(cluster.migrated_template())
    a_num, b_num = "+447700910001", "+447700920001"
    users = "".join(
        f'[[users]]\nextension = "{ext}"\nname = "Wake {ext}"\nusername = "{name}"\n'
        f'licence = "uc-business"\noffice_number = "{num}"\n'
        f'password_hash = "{hash_password(PASSWORD, n=2**4)}"\n'
        for ext, name, num in (("201", "to_a", a_num), ("202", "to_b", b_num)))
    a = Node(tmp, "a", modems=1, dsn=dsn, own_number=a_num, users=users)
    b = Node(tmp, "b", modems=1, dsn=dsn, own_number=b_num, users=users)
    try:
        a.start()
        b.start()
        # Until each node's heartbeat shows its modem to the other (claims go by it).
        time.sleep(6.0)
        for label, user, node in (("same node (A's modem)", "to_a", a),
                                  ("cross-node (B's modem)", "to_b", b)):
            lat: list[float] = []
            with dc.Load() as load:
                for i in range(WAKE_SAMPLES):
                    number = f"+44770095{len(lat) + (0 if node is a else 500):04d}"
                    t0 = time.time()
                    post(a.base, {"to": [number], "text": "wake"}, user=user)
                    deadline = time.monotonic() + 30.0
                    while True:
                        got = [t for n, t in node.submitted_at() if n == number]
                        if got:
                            lat.append(got[0] - t0)
                            break
                        if time.monotonic() > deadline:
                            raise SystemExit(f"{label}: message {i} never reached the modem")
                        time.sleep(0.005)
                    time.sleep(0.05)
            lat.sort()
            print(f"wake {label:24s}: POST on A to SMS-SUBMIT at the modem, {len(lat)} "
                  f"one at a time: p50 {lat[len(lat) // 2] * 1000:.0f} ms, "
                  f"p90 {lat[len(lat) * 9 // 10] * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms  "
                  f"{load}", flush=True)
    finally:
        b.stop()
        a.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", choices=PHASES, default=list(PHASES))
    ap.add_argument("--messages", type=int, default=2000, help="e2e: messages per setup")
    args = ap.parse_args()
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
          f"load average {Path('/proc/loadavg').read_text().split()[0]}", flush=True)
    cluster = start_cluster()
    print(f"# PostgreSQL cluster on 127.0.0.1:{cluster.port} "
          f"(started in {cluster.started_s:.1f} s)", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="smsd-cluster-bench-") as d:
            tmp = Path(d)
            committed: dict[str, tuple[str | None, Path]] = {}
            if "bulk" in args.only or "claims" in args.only:
                committed = bulk_phase(tmp, cluster)
            if "claims" in args.only:
                claims_phase(committed)
            if "e2e" in args.only:
                e2e_phase(tmp, cluster, args.messages)
            if "wake" in args.only:
                wake_phase(tmp, cluster)
    finally:
        remove_cluster(cluster)


if __name__ == "__main__":
    main()
