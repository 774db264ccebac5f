"""SIGKILL during a bulk send: after a restart every message reaches a modem.

The modems are a separate `smsd modem simulate --count 4` process, so they
outlive the daemon and their control socket tells what they really received.
Invariants 1 and 2 of DESIGN.md: nothing acknowledged is lost, and only the
messages that were `submitting` at the kill may be sent twice.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from smsd.dispatcher import MAX_IN_FLIGHT
from smsd.passwords import hash_password
from tests.test_daemon import free_port

MESSAGES = 2000
MODEMS = 4
KILL_AFTER_SENT = 300
# These bound how long a broken build can hang the test; nothing is measured.
STEP_DEADLINE_S = 60.0


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
        [sys.executable, "-m", "smsd", "run", "--config", str(cfg), "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


def healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
            body = json.loads(r.read())
    except (OSError, ValueError):
        return False
    return sum(m["state"] == "ready" for m in body.get("modems", [])) == MODEMS


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigkill_mid_bulk_loses_nothing(tmp_path: Path) -> None:
    """Kill -9 the daemon mid-way through 2,000 sends; restart; check the modems.

    1. four simulated modems run in their own process;
    2. one API call queues 2,000 messages to distinct numbers (committed: 201);
    3. once 300 are sent, the daemon is SIGKILLed; the messages then in
       `submitting` are noted from the database;
    4. a new daemon on the same database finishes the work;
    5. every one of the 2,000 numbers reached a modem at least once, and any
       number received twice belongs to a message that was `submitting`.
    """
    link = tmp_path / "modem"
    sock = tmp_path / "sim.sock"
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "smsd",
            "modem",
            "simulate",
            "--count",
            str(MODEMS),
            "--link",
            str(link),
            "--control",
            str(sock),
        ],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "sim.log").open("wb"),
    )
    daemon: subprocess.Popen[bytes] | None = None
    try:
        assert sim.stdout is not None
        for line in sim.stdout:
            if line.strip() == b"ready":
                break
        else:
            raise AssertionError((tmp_path / "sim.log").read_text())

        port = free_port()
        state = tmp_path / "state"
        cfg = tmp_path / "smsd.toml"
        modems = "".join(
            f'[[gateways.gsm.modems]]\nid = "gsm{i}"\npath = "{link}{i}"\n' for i in range(MODEMS)
        )
        cfg.write_text(
            f'state_dir = "{state}"\nrouting = ["gsm"]\n'
            f"[http]\nport = {port}\n[agi]\nport = {free_port()}\n"
            '[policy]\ncountry = "GB"\n'
            '[[users]]\nextension = "100"\nname = "Bulk"\nusername = "bulk"\n'
            'licence = "uc-business"\n'
            f'password_hash = "{hash_password("pw", n=2**4)}"\n' + modems
        )
        log = tmp_path / "daemon.log"
        base = f"http://127.0.0.1:{port}"
        daemon = start_daemon(cfg, log)
        wait_for("four ready modems", lambda: healthy(base), log)

        numbers = [f"+4477009{i:05d}" for i in range(MESSAGES)]
        req = urllib.request.Request(
            base + "/api/v1/sms",
            data=json.dumps({"to": numbers, "text": "bulk"}).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": "Basic " + base64.b64encode(b"bulk:pw").decode(),
            },
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 201
            assert len(json.loads(r.read())["ids"]) == MESSAGES

        db = state / "smsd.sqlite3"
        sent_sql = "SELECT COUNT(*) FROM messages WHERE state IN ('sent', 'delivered')"
        wait_for(
            f"{KILL_AFTER_SENT} sent", lambda: db_rows(db, sent_sql)[0][0] >= KILL_AFTER_SENT, log
        )
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

        daemon = start_daemon(cfg, log)
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
    finally:
        for proc in (daemon, sim):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        assert os.path.exists(tmp_path)
