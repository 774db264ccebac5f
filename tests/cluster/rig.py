"""Several smsd nodes on one PostgreSQL database, as real processes.

Each node is ``smsd run --config`` with ``database`` pointing at the shared
PostgreSQL database and a ``node`` name of its own, next to its own
``smsd modem simulate --count N`` process (the modems plugged into that host).
The simulators outlive the daemons, and their control sockets tell what each
modem really received (the ``submitted`` verb), so a node can be SIGKILLed and
the evidence is still there.

The database is read with asyncpg from the test (one short connection per
look).  Every wait polls against a deadline that only bounds how long a
broken build can hang the suite; nothing is measured here.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg

from smsd.passwords import hash_password
from tests.daemon_rig import control, ready_modems, terminate
from tests.fakes.ports import free_port

# Bounds on a broken build, not measurements.
STEP_DEADLINE_S = 90.0
# One look at the database from the test (connect + one query).
DB_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 60.0
FINAL_STATES = ("sent", "delivered", "failed", "expired")
PASSWORD = "pw"


def pg_rows(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """One query on the shared database, from the test's side."""
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn, timeout=DB_TIMEOUT_S)
        try:
            return list(await conn.fetch(sql, *args, timeout=DB_TIMEOUT_S))
        finally:
            await conn.close()
    return asyncio.run(run())


def pg_value(dsn: str, sql: str, *args: object) -> Any:
    return pg_rows(dsn, sql, *args)[0][0]


def wait_until(what: str, check: Callable[[], bool], logs: Sequence[Path],
               deadline_s: float = STEP_DEADLINE_S, every_s: float = 0.1) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every_s)
    tails = "\n".join(f"--- {p.name}:\n{p.read_text(errors='replace')[-3000:]}"
                      for p in logs if p.exists())
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


def user_block(username: str, extension: str, *, office: str | None = None) -> str:
    office_line = f'office_number = "{office}"\n' if office else ""
    return (
        f'[[users]]\nextension = "{extension}"\nname = "Bulk {extension}"\n'
        f'username = "{username}"\nlicence = "uc-business"\n{office_line}'
        f'password_hash = "{hash_password(PASSWORD, n=2**4)}"\n'
    )


class Node:
    """One node: its simulated modems (own process) and its daemon."""

    def __init__(self, tmp: Path, name: str, dsn: str, *, modems: int, first_number: str,
                 users: str, sim_args: Sequence[str] = (), extra: str = "") -> None:
        self.name = name
        self.dir = tmp / name
        self.dir.mkdir(parents=True)
        self.dsn = dsn
        self.modems = modems
        self.first_number = first_number
        self.users = users
        self.sim_args = tuple(sim_args)
        self.extra = extra
        self.link = self.dir / "modem"
        self.sock = self.dir / "sim.sock"
        self.cfg = self.dir / "smsd.toml"
        self.log = self.dir / "daemon.log"
        self.sim_log = self.dir / "sim.log"
        self.port = free_port()
        self.agi_port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.sim: subprocess.Popen[bytes] | None = None
        self.daemon: subprocess.Popen[bytes] | None = None

    def modem_id(self, i: int) -> str:
        return f"{self.name}{i}"

    def modem_path(self, i: int) -> str:
        """The simulator's link: PATH alone for one modem, PATH0, PATH1 ... for more."""
        return f"{self.link}{i}" if self.modems > 1 else str(self.link)

    def start_sim(self) -> None:
        self.sim = subprocess.Popen(
            [sys.executable, "-m", "smsd", "modem", "simulate", "--count", str(self.modems),
             "--link", str(self.link), "--control", str(self.sock),
             "--own-number", self.first_number, *self.sim_args],
            stdout=subprocess.PIPE,
            stderr=self.sim_log.open("wb"),
        )
        assert self.sim.stdout is not None
        for line in self.sim.stdout:
            if line.strip() == b"ready":
                break
        else:
            raise AssertionError(self.sim_log.read_text())
        modems = "".join(
            f'[[gateways.gsm.modems]]\nid = "{self.modem_id(i)}"\npath = "{self.modem_path(i)}"\n'
            for i in range(self.modems)
        )
        self.cfg.write_text(
            f'state_dir = "{self.dir / "state"}"\ndatabase = "{self.dsn}"\n'
            f'node = "{self.name}"\nrouting = ["gsm"]\n{self.extra}'
            f"[http]\nport = {self.port}\n[agi]\nport = {self.agi_port}\n"
            '[policy]\ncountry = "GB"\n' + self.users + modems
        )

    def spawn_daemon(self) -> None:
        self.daemon = subprocess.Popen(
            [sys.executable, "-m", "smsd", "run", "--config", str(self.cfg),
             "--log-level", "info"],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("ab"),
        )

    def wait_ready(self) -> None:
        wait_until(f"{self.modems} ready modems on node {self.name}",
                   lambda: len(ready_modems(self.base)) == self.modems, [self.log])

    def start_daemon(self) -> None:
        self.spawn_daemon()
        self.wait_ready()

    def start(self) -> None:
        self.start_sim()
        self.start_daemon()

    @staticmethod
    def start_all(nodes: Sequence[Node]) -> None:
        """Every node's simulator, then their daemons side by side, until all are ready."""
        for node in nodes:
            node.start_sim()
        for node in nodes:
            node.spawn_daemon()
        for node in nodes:
            node.wait_ready()

    def kill(self) -> None:
        assert self.daemon is not None
        self.daemon.send_signal(signal.SIGKILL)
        self.daemon.wait(30)

    def stop_daemon(self) -> int:
        assert self.daemon is not None
        self.daemon.send_signal(signal.SIGTERM)
        return self.daemon.wait(60)

    def api(self, method: str, path: str, body: object = None, *,
            user: str = "bulk") -> tuple[int, Any]:
        req = urllib.request.Request(
            self.base + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": "Basic " + base64.b64encode(
                    f"{user}:{PASSWORD}".encode()).decode(),
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def send(self, numbers: list[str], text: str = "bulk", *, user: str = "bulk") -> list[int]:
        status, answer = self.api("POST", "/api/v1/sms", {"to": numbers, "text": text},
                                  user=user)
        assert status == 201, answer
        ids: list[int] = answer["ids"]
        return ids

    def sees_modem(self, node: str, number: str) -> bool:
        """This node's /api/v1/nodes shows ``node`` alive with a ready modem of ``number``
        (what the other nodes' claims go by: the last heartbeat of ``node``)."""
        status, body = self.api("GET", "/api/v1/nodes")
        if status != 200:
            return False
        return any(
            n["name"] == node and n["alive"] and any(
                m["state"] == "ready" and m["own_number"] == number for m in n["modems"])
            for n in body["nodes"]
        )

    def submitted(self) -> list[dict[str, Any]]:
        """Every SMS-SUBMIT this node's modems accepted, with the modem's id."""
        out: list[dict[str, Any]] = []
        for i in range(self.modems):
            for sub in control(self.sock, {"cmd": "submitted", "modem": i})["submitted"]:
                out.append({**sub, "modem": self.modem_id(i)})
        return out

    def received(self) -> Counter[str]:
        return Counter(s["to"] for s in self.submitted())

    def close(self) -> None:
        terminate(self.daemon, self.sim)
