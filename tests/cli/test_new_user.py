"""What a new user ran into (issue 15), each as the real `smsd` subprocess.

Closed pipes after success, Ctrl-D at the password prompt, reports without a
config, the blocklist verbs, postpone dates and config warnings.
"""

from __future__ import annotations

import json
import os
import pty
import select
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_daemon import DemoDaemon, running_demo

# Bounds for a broken build, not measurements.
CLI_TIMEOUT_S = 60.0


def smsd_closed_stdout(*args: str) -> subprocess.CompletedProcess[str]:
    """Run smsd with stdout a pipe whose reader is already gone (`| head -0`)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "smsd", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "SMSD_PASSWORD": "demo"},
        )
    finally:
        os.close(write_end)
    _out, err = proc.communicate(timeout=CLI_TIMEOUT_S)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", err)


def smsd(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smsd", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env={**os.environ, "SMSD_PASSWORD": "demo"},
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoDaemon]:
    with running_demo(tmp_path_factory.mktemp("newuser")) as d:
        yield d


def count(db: Path, sql: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


@pytest.mark.timeout(120)
class TestClosedStdout:
    def test_send_into_a_closed_pipe_exits_0_quietly(self, demo: DemoDaemon) -> None:
        """`smsd send ... | head -0`: all queued, no traceback, exit 0 (a retry would resend)."""
        db = demo.state_dir / "smsd.sqlite3"
        before = count(db, "SELECT COUNT(*) FROM messages")
        numbers = ",".join(f"+4477009{i:05d}" for i in range(20))
        done = smsd_closed_stdout(
            "send", "--url", demo.base, "--user", "demo", "--to", numbers, "--text", "pipe"
        )
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
        assert count(db, "SELECT COUNT(*) FROM messages") == before + 20

    def test_modem_submitted_into_a_closed_pipe_exits_0(self, demo: DemoDaemon) -> None:
        """`smsd modem submitted | head -0` against the demo's simulator: exit 0, no traceback."""
        done = smsd_closed_stdout(
            "modem", "submitted", "--control", str(demo.state_dir / "modem.sock"), "--json"
        )
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr, done.stderr

    def test_a_real_failure_still_fails(self, tmp_path: Path) -> None:
        """With stdout closed, a failure (no daemon listening) still exits 1 with its reason."""
        done = smsd_closed_stdout(
            "send", "--url", "http://127.0.0.1:9", "--user", "demo",
            "--to", "+447700900123", "--text", "x",
        )
        assert done.returncode == 1
        assert "smsd send:" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.timeout(60)
def test_passwd_ctrl_d_at_the_prompt_is_a_clean_message() -> None:
    """Ctrl-D at `smsd passwd`'s prompt (a real terminal): a clean line, exit 1, no traceback."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "smsd", "passwd"],
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
    )
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + CLI_TIMEOUT_S
        while b"Password:" not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], deadline - time.monotonic())[0]:
                seen += os.read(master, 4096)
        assert b"Password:" in seen, seen
        os.write(master, b"\x04")          # Ctrl-D on an empty line: end of input
        proc.wait(CLI_TIMEOUT_S)
        while select.select([master], [], [], 0.5)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:                 # EIO: the child closed its side
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = seen.decode(errors="replace")
    assert proc.returncode == 1, text
    assert "Traceback" not in text and "EOFError" not in text, text
    assert "no password given" in text, text


class TestStatsWithoutConfig:
    def test_database_alone_is_enough(self, tmp_path: Path) -> None:
        """`smsd stats --database FILE` with no config reports, saying the policy defaults apply."""
        import asyncio

        from smsd.store import Store

        db = tmp_path / "smsd.sqlite3"

        async def make() -> None:
            store = await Store.open(db)
            await store.close()

        asyncio.run(make())
        done = smsd("stats", "--database", str(db))
        assert done.returncode == 0, done.stderr
        assert "outgoing 0 messages" in done.stdout
        assert "policy defaults" in done.stderr

    def test_no_config_hint_does_not_point_at_the_demo(self) -> None:
        """Without config or database the hint names --config and --database, not the demo."""
        done = smsd("stats")
        assert done.returncode == 2
        assert "--database" in done.stderr and "demo" not in done.stderr


@pytest.mark.timeout(120)
class TestBlocklist:
    def test_bad_number_reason_once(self, demo: DemoDaemon) -> None:
        """`smsd block 0123`: exit 1, the reason for the bad number said once."""
        done = smsd("block", "0123", "--url", demo.base, "--user", "demo")
        assert done.returncode == 1
        line = done.stderr.strip()
        assert "0123" in line and len(line.splitlines()) == 1
        assert line.count("no country code") == 1, line

    def test_reblock_keeps_reason_and_unblock_twice(self, demo: DemoDaemon) -> None:
        """Blocking again without --reason keeps the stored reason; unblocking a number
        that is not blocked says so (exit 0: the number is not blocked, as asked)."""
        number = "+447700900555"
        args = ("--url", demo.base, "--user", "demo")
        assert smsd("block", number, "--reason", "spam", *args).returncode == 0
        assert smsd("block", number, *args).returncode == 0
        status, body = demo.request("GET", "/api/v1/blocklist")
        assert status == 200
        rows = {r["number"]: r for r in json.loads(body)["blocked"]}
        assert rows[number]["reason"] == "spam"
        first = smsd("unblock", number, *args)
        assert first.returncode == 0 and first.stdout.strip() == f"unblocked {number}"
        again = smsd("unblock", number, *args)
        assert again.returncode == 0 and again.stdout.strip() == f"{number} was not blocked"


def test_send_at_names_an_impossible_date(tmp_path: Path) -> None:
    """`--at "31/02/2026 09:00"` is an invalid date, not a format error (exit 2, nothing sent)."""
    done = smsd(
        "send", "--url", "http://127.0.0.1:9", "--user", "demo",
        "--to", "+447700900123", "--text", "x", "--at", "31/02/2026 09:00",
    )
    assert done.returncode == 2
    assert "not a valid date" in done.stderr and "expected" not in done.stderr


def test_check_config_warns_about_an_empty_config(tmp_path: Path) -> None:
    """An empty config is valid (exit 0) but warns: no users, no gateway."""
    cfg = tmp_path / "empty.toml"
    cfg.write_text("")
    done = smsd("check-config", str(cfg))
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout
    assert "warning: no [[users]]" in done.stderr
    assert "warning: no gateway" in done.stderr


def test_api_only_user_in_a_config(tmp_path: Path) -> None:
    """`api_only = true` users need no extension or name; an extension with it is refused."""
    from smsd.passwords import hash_password

    h = hash_password("pw", n=2**4)
    good = tmp_path / "good.toml"
    good.write_text(
        f'[[users]]\napi_only = true\nusername = "dialplan"\nlicence = "uc-business"\n'
        f'password_hash = "{h}"\n'
    )
    done = smsd("check-config", str(good))
    assert done.returncode == 0, done.stderr
    assert "1 users" in done.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('[[users]]\napi_only = true\nusername = "x"\nextension = "100"\n')
    done = smsd("check-config", str(bad))
    assert done.returncode == 1
    assert "extension" in done.stderr and "password_hash" in done.stderr


def test_each_modem_state_change_is_logged_once(demo: DemoDaemon) -> None:
    """The demo modem turning ready is one `modem.state` event in the daemon's log, not two."""
    deadline = time.monotonic() + CLI_TIMEOUT_S
    while time.monotonic() < deadline:
        _status, body = demo.request("GET", "/healthz", auth=False)
        if any(m["state"] == "ready" for m in json.loads(body).get("modems", [])):
            break
        time.sleep(0.05)
    events = []
    for line in demo.log_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "modem.state" and event.get("state") == "ready":
            events.append(event)
    assert len(events) == 1, events
    assert events[0]["modem"] == "gsm0" and events[0]["path"]
