"""The daemon and its simulated modems as real processes, for the fault and crash tests.

The modems are a separate ``smsd modem simulate --count N`` process, so they
outlive the daemon and their control socket tells what they really received
(the ``submitted`` verb: every SMS-SUBMIT each modem accepted).  The daemon
is ``smsd run --config`` and knows nothing about being tested; its log
(JSON lines on stderr) is kept for assertions.

Every wait polls against a deadline; the deadlines only bound how long a
broken build can hang the suite, nothing is measured.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from smsd.passwords import hash_password
from smsd.store.history import history_of
from smsd.store.pg.conn import setup
from smsd.store.pg.dialect import translate
from tests.backend import database_url
from tests.test_daemon import free_port

# These bound how long a broken build can hang a test; nothing is measured.
STEP_DEADLINE_S = 90.0
CONTROL_TIMEOUT_S = 90.0
FINAL_STATES = ("sent", "delivered", "failed", "expired")
# History detail of a message put back in the queue: "retry at <due>: <why>".
_RETRY = re.compile(r"^retry at (\S+): ")
# What smsd.store.history.history_of reads of a message.
_HISTORY_COLUMNS = ("created_at, origin, state, attempts, gateway, modem, hist_queued, "
                    "hist_sending_at, hist_submitting_at, hist_sent_at, hist_delivered_at, "
                    "hist_delivered_detail")


def control(sock: Path, request: dict[str, object]) -> dict[str, Any]:
    """One request on the simulator's control socket; asserts the answer is ok."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(CONTROL_TIMEOUT_S)
        s.connect(str(sock))
        s.sendall(json.dumps(request).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
    answer = json.loads(buf)
    assert answer.get("ok"), answer
    return dict(answer)


def db_rows(db: Path | str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of one read on the daemon's database: a SQLite file, or a PostgreSQL DSN."""
    if isinstance(db, str):
        return pg_rows(db, sql, params)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return list(conn.execute(sql, params))
    finally:
        conn.close()


def pg_rows(dsn: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    """One read written in smsd's SQL (``?`` parameters) on PostgreSQL, with smsd's codecs."""
    return [tuple(r) for r in pg_records(dsn, sql, params)]


def pg_records(dsn: str, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
    """As pg_rows, the rows as asyncpg Records (by index or by name, as sqlite3.Row)."""

    async def fetch() -> list[Any]:
        conn = await asyncpg.connect(dsn, timeout=CONTROL_TIMEOUT_S)
        try:
            await setup(conn)
            stmt = translate(sql)
            return list(await conn.fetch(stmt.sql, *stmt.args(params)))
        finally:
            await conn.close()

    # A thread of its own: callers may be sync code inside a running event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(fetch())).result()


def wait_for(what: str, check: Callable[[], bool], log: Path) -> None:
    deadline = time.monotonic() + STEP_DEADLINE_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; daemon log:\n{log.read_text()[-4000:]}")


def start_daemon(cfg: Path, log: Path,
                 env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "smsd", "run", "--config", str(cfg), "--log-level", "info"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
        env=None if env is None else {**os.environ, **env},
    )


def health(base: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
            return dict(json.loads(r.read()))
    except urllib.error.HTTPError as e:  # 503 (every modem capped...) still lists the modems
        try:
            return dict(json.loads(e.read()))
        except ValueError:
            return {}
    except (OSError, ValueError):
        return {}


def ready_modems(base: str) -> set[str]:
    return {m["id"] for m in health(base).get("modems", []) if m.get("state") == "ready"}


class Rig:
    """Simulated modems in their own process plus a config for a daemon using them."""

    def __init__(self, tmp_path: Path, modems: int, *, sim_args: tuple[str, ...] = (),
                 policy: str = "", modem_extra: str = "", user_name: str = "Bulk",
                 database: str | None = None) -> None:
        """``database``: a PostgreSQL DSN for the daemon (default: SQLite in its state
        dir, or the test's PostgreSQL database under SMSD_TEST_BACKEND=postgresql)."""
        self.tmp = tmp_path
        self.user_name = user_name  # the one user's full name (alphanumeric sender ID)
        self.agi_port = free_port()
        self.modems = modems
        self.sim_args = sim_args
        self.policy = policy
        self.modem_extra = modem_extra
        self.link = tmp_path / "modem"
        self.sock = tmp_path / "sim.sock"
        self.state = tmp_path / "state"
        # SMSD_TEST_BACKEND=postgresql: this test's database (tests/backend.py)
        self.database = database if database is not None else database_url()
        self.db: Path | str = (self.database if self.database is not None
                                else self.state / "smsd.sqlite3")
        self.cfg = tmp_path / "smsd.toml"
        self.log = tmp_path / "daemon.log"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.sim: subprocess.Popen[bytes] | None = None
        self.daemon: subprocess.Popen[bytes] | None = None

    def modem_path(self, i: int) -> str:
        return f"{self.link}{i}" if self.modems > 1 else str(self.link)

    def start_sim(self) -> None:
        self.sim = subprocess.Popen(
            [sys.executable, "-m", "smsd", "modem", "simulate", "--count", str(self.modems),
             "--link", str(self.link), "--control", str(self.sock), *self.sim_args],
            stdout=subprocess.PIPE,
            stderr=(self.tmp / "sim.log").open("wb"),
        )
        assert self.sim.stdout is not None
        for line in self.sim.stdout:
            if line.strip() == b"ready":
                break
        else:
            raise AssertionError((self.tmp / "sim.log").read_text())
        modems = "".join(
            f'[[gateways.gsm.modems]]\nid = "gsm{i}"\npath = "{self.modem_path(i)}"\n'
            + self.modem_extra
            for i in range(self.modems)
        )
        self.cfg.write_text(
            f'state_dir = "{self.state}"\nrouting = ["gsm"]\n'
            + (f'database = "{self.database}"\n' if self.database is not None else "")
            +
            f"[http]\nport = {self.port}\n[agi]\nport = {self.agi_port}\n"
            f'[policy]\ncountry = "GB"\n{self.policy}'
            f'[[users]]\nextension = "100"\nname = "{self.user_name}"\nusername = "bulk"\n'
            'licence = "uc-business"\n'
            f'password_hash = "{hash_password("pw", n=2**4)}"\n' + modems
        )

    def start_daemon(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        self.daemon = start_daemon(self.cfg, self.log, env)
        wait_for(f"{self.modems} ready modems",
                 lambda: len(ready_modems(self.base)) == self.modems, self.log)
        return self.daemon

    def send(self, numbers: list[str], text: str = "bulk") -> list[int]:
        req = urllib.request.Request(
            self.base + "/api/v1/sms",
            data=json.dumps({"to": numbers, "text": text}).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": "Basic " + base64.b64encode(b"bulk:pw").decode(),
            },
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 201
            ids: list[int] = json.loads(r.read())["ids"]
        return ids

    # --- evidence ---------------------------------------------------------------

    def submitted(self) -> list[dict[str, Any]]:
        """Every SMS-SUBMIT the simulated modems accepted, with the modem's index."""
        out: list[dict[str, Any]] = []
        for i in range(self.modems):
            for sub in control(self.sock, {"cmd": "submitted", "modem": i})["submitted"]:
                out.append({**sub, "modem": i})
        return out

    def received(self) -> Counter[str]:
        """How many times each recipient (each message's id) reached a modem."""
        return Counter(s["to"] for s in self.submitted())

    def states(self) -> dict[str, tuple[str, str | None]]:
        """recipient -> (state, error) of every message."""
        return {r[0]: (r[1], r[2])
                for r in db_rows(self.db, "SELECT recipient, state, error FROM messages")}

    def count(self, sql: str) -> int:
        return int(db_rows(self.db, sql)[0][0])

    def all_final(self) -> bool:
        marks = ",".join(f"'{s}'" for s in FINAL_STATES)
        return self.count(f"SELECT COUNT(*) FROM messages WHERE state NOT IN ({marks})") == 0

    def deferred(self) -> list[tuple[str, str]]:
        """(recipient, detail) of every put-back whose retry lay in the future."""
        out = []
        for recipient, at, detail in db_rows(
                self.db, "SELECT m.recipient, h.at, h.detail FROM message_history h "
                "JOIN messages m ON m.id = h.message_id "
                "WHERE h.state = 'queued' AND h.detail LIKE 'retry at %'"):
            m = _RETRY.match(detail)
            if m is not None and m.group(1) > at:
                out.append((recipient, detail))
        return out

    def history(self, recipient: str) -> list[str]:
        """'state: detail' of every history line of the messages to ``recipient``, as
        the API shows them (the rows of message_history between those kept in
        the message's own row, smsd.store.history)."""
        out = []
        for (mid,) in db_rows(self.db, "SELECT id FROM messages WHERE recipient = ? "
                              "ORDER BY id", (recipient,)):
            [msg] = db_rows(self.db, f"SELECT {_HISTORY_COLUMNS} FROM messages WHERE id = ?",
                            (mid,))
            table = db_rows(self.db, "SELECT at, state, detail FROM message_history "
                            "WHERE message_id = ? ORDER BY id", (mid,))
            out += [f"{h['state']}: {h['detail']}" for h in history_of(
                dict(zip(_HISTORY_COLUMNS.split(", "), msg, strict=True)),
                [dict(zip(("at", "state", "detail"), r, strict=True)) for r in table])]
        return out

    def log_events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": "unparsed", "line": line})
        return out

    def tracebacks(self) -> list[str]:
        """Log lines carrying a traceback (an unexpected exception somewhere)."""
        return [json.dumps(e)[:600] for e in self.log_events()
                if "exception" in e or "Traceback" in e.get("line", "")]

    def stop_daemon(self) -> int:
        assert self.daemon is not None
        self.daemon.send_signal(signal.SIGTERM)
        return self.daemon.wait(60)

    def close(self) -> None:
        terminate(self.daemon, self.sim)


def terminate(*procs: subprocess.Popen[Any] | None) -> None:
    """SIGTERM each process still running, SIGKILL the ones that outlive 20 s."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
