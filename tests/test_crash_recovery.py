"""SIGKILL during a bulk send: after a restart every message reaches a modem.

The modems are a separate `smsd modem simulate --count 4` process, so they
outlive the daemon and their control socket tells what they really received.
Invariants 1 and 2 of DESIGN.md: nothing acknowledged is lost, and only the
messages that were `submitting` at the kill may be sent twice.
"""

from __future__ import annotations

import base64
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from smsd.core.dispatcher import MAX_IN_FLIGHT
from smsd.passwords import hash_password
from tests.test_daemon import free_port

MESSAGES = 2000
MODEMS = 4
KILL_AFTER_SENT = 300
# These bound how long a broken build can hang the test; nothing is measured.
STEP_DEADLINE_S = 90.0


def control(sock: Path, request: dict[str, object]) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
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


def db_rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return list(conn.execute(sql))
    finally:
        conn.close()


def wait_for(what: str, check, log: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + STEP_DEADLINE_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; daemon log:\n{log.read_text()[-4000:]}")


def start_daemon(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "smsd", "run", "--config", str(cfg), "--log-level", "info"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


def healthy(base: str, modems: int) -> bool:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as e:  # 503 (a capped modem...) still lists the modems
        try:
            body = json.loads(e.read())
        except ValueError:
            return False
    except (OSError, ValueError):
        return False
    return sum(m["state"] == "ready" for m in body.get("modems", [])) == modems


class Rig:
    """Simulated modems in their own process plus a config for a daemon using them."""

    def __init__(
        self,
        tmp_path: Path,
        modems: int,
        *,
        sim_args: tuple[str, ...] = (),
        modem_toml: str = "",
        policy_toml: str = "",
        user_name: str = "Bulk",
    ) -> None:
        self.tmp = tmp_path
        self.modems = modems
        self.sim_args = sim_args          # e.g. ("--latency-ms", "300")
        self.modem_toml = modem_toml      # extra keys for every [[gateways.gsm.modems]]
        self.policy_toml = policy_toml    # extra lines for [policy]
        self.user_name = user_name        # the one user's full name (alphanumeric sender ID)
        self.agi_port = free_port()
        self.link = tmp_path / "modem"
        self.sock = tmp_path / "sim.sock"
        self.state = tmp_path / "state"
        self.db = self.state / "smsd.sqlite3"
        self.cfg = tmp_path / "smsd.toml"
        self.log = tmp_path / "daemon.log"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.sim: subprocess.Popen[bytes] | None = None
        self.daemon: subprocess.Popen[bytes] | None = None

    def start_sim(self) -> None:
        self.sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "smsd",
                "modem",
                "simulate",
                "--count",
                str(self.modems),
                "--link",
                str(self.link),
                "--control",
                str(self.sock),
                *self.sim_args,
            ],
            stdout=subprocess.PIPE,
            stderr=(self.tmp / "sim.log").open("wb"),
        )
        assert self.sim.stdout is not None
        for line in self.sim.stdout:
            if line.strip() == b"ready":
                break
        else:
            raise AssertionError((self.tmp / "sim.log").read_text())
        link = self.link
        modems = (
            "".join(
                f'[[gateways.gsm.modems]]\nid = "gsm{i}"\npath = "{link}{i}"\n'
                + self.modem_toml
                for i in range(self.modems)
            )
            if self.modems > 1
            else f'[[gateways.gsm.modems]]\nid = "gsm0"\npath = "{link}"\n' + self.modem_toml
        )
        self.cfg.write_text(
            f'state_dir = "{self.state}"\nrouting = ["gsm"]\n'
            f"[http]\nport = {self.port}\n[agi]\nport = {self.agi_port}\n"
            '[policy]\ncountry = "GB"\n' + self.policy_toml +
            f'[[users]]\nextension = "100"\nname = "{self.user_name}"\nusername = "bulk"\n'
            'licence = "uc-business"\n'
            f'password_hash = "{hash_password("pw", n=2**4)}"\n' + modems
        )

    def start_daemon(self) -> subprocess.Popen[bytes]:
        self.daemon = start_daemon(self.cfg, self.log)
        wait_for(f"{self.modems} ready modems", lambda: healthy(self.base, self.modems), self.log)
        return self.daemon

    def send(self, numbers: list[str]) -> list[int]:
        req = urllib.request.Request(
            self.base + "/api/v1/sms",
            data=json.dumps({"to": numbers, "text": "bulk"}).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": "Basic " + base64.b64encode(b"bulk:pw").decode(),
            },
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 201
            ids: list[int] = json.loads(r.read())["ids"]
        return ids

    def close(self) -> None:
        for proc in (self.daemon, self.sim):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path, MODEMS)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def rig1(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path, 1)
    try:
        yield r
    finally:
        r.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_mid_bulk_loses_nothing(rig: Rig) -> None:
    """Kill -9 the daemon mid-way through 2,000 sends; restart; check the modems.

    1. four simulated modems run in their own process;
    2. one API call queues 2,000 messages to distinct numbers (committed: 201);
    3. once 300 are sent, the daemon is SIGKILLed; the messages then in
       `submitting` are noted from the database;
    4. a new daemon on the same database finishes the work;
    5. every one of the 2,000 numbers reached a modem at least once, and any
       number received twice belongs to a message that was `submitting`.
    """
    rig.start_sim()
    daemon = rig.start_daemon()
    numbers = [f"+4477009{i:05d}" for i in range(MESSAGES)]
    assert len(rig.send(numbers)) == MESSAGES
    db, log, sock = rig.db, rig.log, rig.sock
    sent_sql = "SELECT COUNT(*) FROM messages WHERE state IN ('sent', 'delivered')"
    wait_for(f"{KILL_AFTER_SENT} sent", lambda: db_rows(db, sent_sql)[0][0] >= KILL_AFTER_SENT, log)
    daemon.send_signal(signal.SIGKILL)
    daemon.wait(30)
    in_flight = {
        r[0]
        for r in db_rows(
            db,
            "SELECT DISTINCT m.recipient FROM messages m LEFT JOIN message_parts p "
            "ON p.message_id = m.id WHERE m.state = 'submitting' OR p.state = 'submitting'",
        )
    }
    done_at_kill = db_rows(db, sent_sql)[0][0]
    assert done_at_kill < MESSAGES, "the kill came too late to prove anything"

    daemon = rig.start_daemon()
    wait_for(
        "all messages sent after the restart",
        lambda: db_rows(db, sent_sql)[0][0] == MESSAGES,
        log,
    )
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(30) == 0

    received: Counter[str] = Counter()
    for i in range(MODEMS):
        for sub in control(sock, {"cmd": "submitted", "modem": i})["submitted"]:  # type: ignore[union-attr]
            received[sub["to"]] += 1
    missing = set(numbers) - set(received)
    assert not missing, f"{len(missing)} messages never reached a modem"
    duplicated = {n for n, c in received.items() if c > 1}
    assert duplicated <= in_flight, (
        f"duplicates outside the submitting set: {sorted(duplicated - in_flight)[:10]}"
    )
    assert len(in_flight) <= MAX_IN_FLIGHT
    print(
        f"killed with {done_at_kill} sent, {len(in_flight)} submitting, "
        f"{len(duplicated)} sent twice"
    )


@pytest.mark.timeout(120)
def test_second_signal_forces_exit(rig1: Rig) -> None:
    """A second SIGTERM ends a drain that waits on a stuck modem.

    1. the modem goes silent, so the next AT+CMGS never gets an answer;
    2. a message is submitted and reaches `submitting` (in flight);
    3. the first SIGTERM starts the drain, which would wait for that send;
    4. a second SIGTERM forces the exit: status 1, logged as forced;
    5. the message is still `submitting` in the database, for recover() at the next start.
    """
    rig1.start_sim()
    daemon = rig1.start_daemon()
    control(rig1.sock, {"cmd": "silent", "modem": 0})
    (mid,) = rig1.send(["+447700900123"])
    state_sql = f"SELECT state FROM messages WHERE id = {int(mid)}"
    wait_for(
        "the send in flight", lambda: db_rows(rig1.db, state_sql)[0][0] == "submitting", rig1.log
    )
    daemon.send_signal(signal.SIGTERM)
    wait_for("the drain to start", lambda: "daemon.stopping" in rig1.log.read_text(), rig1.log)
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(60) == 1
    assert "daemon.forced_exit" in rig1.log.read_text()
    assert db_rows(rig1.db, state_sql)[0][0] == "submitting"
