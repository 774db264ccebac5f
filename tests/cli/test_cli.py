"""The `smsd` command line as a subprocess, against a running demo daemon where needed."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from smsd.passwords import verify
from tests.test_daemon import DemoDaemon, free_port, running_demo

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "smsd.toml"
READY_DEADLINE_S = 30.0


def smsd(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smsd", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoDaemon]:
    with running_demo(tmp_path_factory.mktemp("cli")) as d:
        yield d


@pytest.fixture(scope="module")
def pwfile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    f = tmp_path_factory.mktemp("pw") / "pw"
    f.write_text("demo\n")
    return f


class TestCheckConfig:
    def test_example_ok(self) -> None:
        """The shipped example passes and the summary names its gateways."""
        r = smsd("check-config", str(EXAMPLE))
        assert r.returncode == 0, r.stderr
        assert "OK" in r.stdout and "gateways gsm" in r.stdout

    def test_every_problem_listed(self, tmp_path: Path) -> None:
        """A bad file exits 1 and lists each bad key with its reason."""
        f = tmp_path / "bad.toml"
        f.write_text('routing = ["gsm", "fax"]\n[http]\nport = -1\n[[users]]\nextension = "1"\n')
        r = smsd("check-config", str(f))
        assert r.returncode == 1
        assert "3 problem(s)" in r.stderr
        for needle in ("routing[1]: 'fax'", "http.port: must be in", "users[0].name: is required"):
            assert needle in r.stderr

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file exits 1 naming it."""
        r = smsd("check-config", str(tmp_path / "none.toml"))
        assert r.returncode == 1 and "none.toml" in r.stderr


class TestPasswd:
    def test_hash_from_stdin_verifies(self) -> None:
        """`smsd passwd` prints a scrypt hash of the password read from stdin."""
        r = smsd("passwd", stdin="correct horse\n")
        assert r.returncode == 0
        h = r.stdout.strip()
        assert h.startswith("scrypt$") and verify("correct horse", h)
        assert "correct horse" not in r.stderr

    def test_empty_password_refused(self) -> None:
        """An empty password is refused with a non-zero exit and nothing printed."""
        r = smsd("passwd", stdin="\n")
        assert r.returncode != 0 and r.stdout == ""


class TestSendWithoutDaemon:
    def test_unreachable_daemon(self, pwfile: Path) -> None:
        """No daemon listening: exit 1 with a message saying it cannot be reached."""
        url = f"http://127.0.0.1:{free_port()}"
        r = smsd(
            "send",
            "--url",
            url,
            "--user",
            "demo",
            "--password-file",
            str(pwfile),
            "--to",
            "+447700900123",
            "--text",
            "x",
        )
        assert r.returncode == 1 and "cannot reach the daemon" in r.stderr

    def test_credentials_required(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without --user/--password-file (or the env variables) send exits 2."""
        monkeypatch.delenv("SMSD_USER", raising=False)
        monkeypatch.delenv("SMSD_PASSWORD", raising=False)
        r = smsd("send", "--url", "http://127.0.0.1:9", "--to", "+447700900123", "--text", "x")
        assert r.returncode == 2 and "credentials" in r.stderr


def send_as_demo(daemon: DemoDaemon, pwfile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`smsd send` to the demo daemon as the demo user."""
    return smsd("send", "--url", daemon.base, "--user", "demo", "--password-file", str(pwfile),
                *args)


class TestAgainstDaemon:
    def test_send_queues_each_number(self, daemon: DemoDaemon, pwfile: Path) -> None:
        """`smsd send` to two numbers prints two ids that the API then knows."""
        r = send_as_demo(
            daemon,
            pwfile,
            "--to",
            "+447700900123,+447700900124",
            "--text",
            "from the CLI",
        )
        assert r.returncode == 0, r.stderr
        ids = [int(line.split()[1]) for line in r.stdout.splitlines()]
        assert len(ids) == 2
        got = {daemon.get_json(f"/api/v1/sms/{i}")["recipient"] for i in ids}
        assert got == {"+447700900123", "+447700900124"}

    def test_send_bad_number_stores_nothing(self, daemon: DemoDaemon, pwfile: Path) -> None:
        """A non-E.164 number: exit 1 naming it, and no message is stored."""
        before = len(daemon.get_json("/api/v1/sms?limit=1000")["messages"])
        r = send_as_demo(
            daemon,
            pwfile,
            "--to",
            "+447700900123,12345",
            "--text",
            "x",
        )
        assert r.returncode == 1 and "12345" in r.stderr
        assert len(daemon.get_json("/api/v1/sms?limit=1000")["messages"]) == before

    def test_send_at_schedules(self, daemon: DemoDaemon, pwfile: Path) -> None:
        """--at dd/mm/yyyy HH:MM schedules the message in the daemon's time zone."""
        r = send_as_demo(
            daemon,
            pwfile,
            "--to",
            "+447700900125",
            "--text",
            "later",
            "--at",
            "01/01/2031 12:00",
        )
        assert r.returncode == 0, r.stderr
        mid = int(r.stdout.split()[1])
        msg = daemon.get_json(f"/api/v1/sms/{mid}")
        assert msg["state"] == "scheduled"
        assert msg["send_at"].startswith("2031-01-01T12:00:00")  # Europe/London in winter = UTC

    def test_status_shows_modem(self, daemon: DemoDaemon, pwfile: Path) -> None:
        """`smsd status` lists the gsm gateway and the simulated modem once it is ready."""
        deadline = time.monotonic() + READY_DEADLINE_S
        r = smsd("status", "--url", daemon.base)
        while r.returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.2)
            r = smsd("status", "--url", daemon.base)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "gateway gsm: available" in r.stdout
        assert "modem gsm0: ready" in r.stdout

    def test_block_and_unblock(self, daemon: DemoDaemon, pwfile: Path) -> None:
        """`smsd block` then `smsd unblock` change the daemon's blocklist."""
        auth = ("--url", daemon.base, "--user", "demo", "--password-file", str(pwfile))
        r = smsd("block", "+447700900999", *auth)
        assert r.returncode == 0, r.stderr
        listed = daemon.get_json("/api/v1/blocklist")["blocked"]
        assert any(b["number"] == "+447700900999" for b in listed)
        r = smsd("unblock", "+447700900999", *auth)
        assert r.returncode == 0, r.stderr
        assert not any(
            b["number"] == "+447700900999" for b in daemon.get_json("/api/v1/blocklist")["blocked"]
        )
        r = smsd("block", "999", *auth)
        assert r.returncode == 1 and "999" in r.stderr


class TestStats:
    def test_stats_reads_the_database(self, daemon: DemoDaemon, tmp_path: Path) -> None:
        """`smsd stats --csv` reads the demo's database read-only and lists report rows."""
        status, _ = daemon.request(
            "POST", "/api/v1/originate/sms", b"number=%2B447700900777&message=stat"
        )
        assert status == 200
        cfg = tmp_path / "smsd.toml"
        cfg.write_text(f'state_dir = "{daemon.state_dir}"\n[policy]\ntimezone = "Europe/London"\n')
        r = smsd("stats", "--config", str(cfg), "--csv")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == "time,user,from,to,gateway,parts,status,cost"
        assert any(",+447700900777," in line and ",demo," in line for line in lines[1:])
        r = smsd("stats", "--config", str(cfg))
        assert r.returncode == 0 and "demo" in r.stdout
        r = smsd("stats", "--config", str(cfg), "--month", "2026-13")
        assert r.returncode == 2 and "YYYY-MM" in r.stderr
