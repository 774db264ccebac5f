"""SIGHUP (`systemctl reload smsd`) re-reads the config of a running daemon.

The real daemon runs as a subprocess on a config file, with a simulated modem
(`smsd modem simulate`) behind it; the test rewrites the file and sends SIGHUP,
and waits on the daemon's own RELOADING=1 / READY=1 notifications.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from smsd.passwords import hash_password
from tests.backend import database_toml
from tests.cli.sim_process import Simulator
from tests.daemon_process import ConfigDaemon
from tests.fakes.ports import free_port

pytestmark = pytest.mark.timeout(120)

# A cheap scrypt cost: these hashes guard nothing, and the daemon checks the
# password on every request of the test.
TEST_SCRYPT_N = 2**10
# Bounds how long a broken build waits for the modem; it is not measured.
MODEM_READY_DEADLINE_S = 30.0
SIM_NUMBER = "+447700900001"


def write_config(path: Path, *, http: int, agi: int, modem: str, password: str,
                 link_policy: str = "allow", extra: str = "") -> None:
    path.write_text(f"""
state_dir = "state"
{database_toml()}routing = ["gsm"]

[http]
host = "127.0.0.1"
port = {http}

[agi]
host = "127.0.0.1"
port = {agi}

[policy]
country = "GB"
timezone = "Europe/London"
link_policy = "{link_policy}"

[[users]]
extension = "100"
name = "Alice Example"
username = "alice"
licence = "uc-business"
office_number = "{SIM_NUMBER}"
password_hash = "{hash_password(password, n=TEST_SCRYPT_N)}"

[[gateways.gsm.modems]]
id = "gsm0"
path = "{modem}"
own_number = "{SIM_NUMBER}"
{extra}
""")


class Setup:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.http = free_port()
        self.agi = free_port()
        self.config = tmp / "smsd.toml"
        self.sim = Simulator(tmp)

    def write(self, password: str, **kw: str) -> None:
        write_config(self.config, http=self.http, agi=self.agi, modem=self.sim.link,
                     password=password, **kw)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    s = Setup(tmp_path)
    try:
        yield s
    finally:
        s.sim.stop()


def wait_modem_ready(d: ConfigDaemon) -> None:
    deadline = time.monotonic() + MODEM_READY_DEADLINE_S
    while time.monotonic() < deadline:
        status, body, _ = d.request("GET", "/healthz")
        if status == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"modem never ready: {body!r}\n{d.log_text()}")


def later_sms(d: ConfigDaemon, password: str, text: str) -> tuple[int, bytes]:
    """A message due in a day: it stays `scheduled`, so it must survive every reload."""
    send_at = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    body = json.dumps({"to": ["+447700900123"], "text": text, "send_at": send_at}).encode()
    status, answer, _ = d.request("POST", "/api/v1/sms", body, user="alice", password=password,
                                  content_type="application/json")
    return status, answer


def modem_opens(d: ConfigDaemon) -> int:
    """How many times the daemon opened the modem (a dropped session opens it again)."""
    return sum(1 for line in d.log_text().splitlines() if '"modem.port_opened"' in line)


class TestReload:
    def test_new_password_and_policy_apply_without_dropping_anything(
        self, setup: Setup, tmp_path: Path
    ) -> None:
        """1. a running daemon with user alice / old, links allowed, a scheduled message;
        2. the file now says alice / new and links refused; SIGHUP;
        3. the new password works and the old one gets 401; a link is refused;
        4. the scheduled message is still there, the modem was never reopened.
        """
        setup.write("old-password")
        d = ConfigDaemon(setup.config, tmp_path / "daemon.log", http_port=setup.http)
        d.start()
        try:
            wait_modem_ready(d)
            status, answer = later_sms(d, "old-password", "see https://example.com")
            assert status == 201, answer
            mid = json.loads(answer)["ids"][0]
            assert modem_opens(d) == 1

            setup.write("new-password", link_policy="refuse")
            ready = d.reload()
            assert "STATUS=config reloaded;" in ready, ready

            status, body, _ = d.request("GET", f"/api/v1/sms/{mid}", user="alice",
                                        password="new-password")
            assert status == 200, body
            assert json.loads(body)["state"] == "scheduled"
            status, _, _ = d.request("GET", f"/api/v1/sms/{mid}", user="alice",
                                     password="old-password")
            assert status == 401
            status, answer = later_sms(d, "new-password", "see https://example.com")
            assert status == 403 and b"link" in answer, answer
            status, _, _ = d.request("GET", "/healthz")
            assert status == 200
            assert modem_opens(d) == 1
            assert '"config.reloaded"' in d.log_text()
            assert d.stop() == 0
        finally:
            d.kill()

    def test_broken_config_is_refused_and_the_old_one_stays(
        self, setup: Setup, tmp_path: Path
    ) -> None:
        """1. a running daemon with alice / pw1; 2. the file gets a bad value; SIGHUP;
        3. the reload is refused, logged at error naming the key; alice / pw1 still works;
        4. a later good file is taken: reloading is not stuck after a refusal.
        """
        setup.write("pw1")
        d = ConfigDaemon(setup.config, tmp_path / "daemon.log", http_port=setup.http)
        d.start()
        try:
            setup.write("pw2", link_policy="sometimes")
            ready = d.reload()
            assert "STATUS=config reload refused" in ready, ready
            refusals = [json.loads(line) for line in d.log_text().splitlines()
                        if '"config.reload_refused"' in line]
            assert len(refusals) == 1 and refusals[0]["level"] == "error"
            assert any(p.startswith("policy.link_policy:") for p in refusals[0]["problems"])
            assert d.request("GET", "/api/v1/sms", user="alice", password="pw1")[0] == 200
            assert d.request("GET", "/api/v1/sms", user="alice", password="pw2")[0] == 401

            setup.config.write_text("this is [not TOML")
            assert "refused" in d.reload()
            assert d.request("GET", "/api/v1/sms", user="alice", password="pw1")[0] == 200

            setup.write("pw2")
            assert "STATUS=config reloaded" in d.reload()
            assert d.request("GET", "/api/v1/sms", user="alice", password="pw2")[0] == 200
            assert d.stop() == 0
        finally:
            d.kill()

    def test_restart_only_keys_are_named_and_kept(self, setup: Setup, tmp_path: Path) -> None:
        """A changed listener port cannot move under a running daemon: it is kept and named."""
        setup.write("pw1")
        d = ConfigDaemon(setup.config, tmp_path / "daemon.log", http_port=setup.http)
        d.start()
        try:
            write_config(setup.config, http=free_port(), agi=setup.agi, modem=setup.sim.link,
                         password="pw1")
            ready = d.reload()
            assert "(http at next restart)" in ready, ready
            assert d.request("GET", "/api/v1/sms", user="alice", password="pw1")[0] == 200
            assert d.stop() == 0
        finally:
            d.kill()
