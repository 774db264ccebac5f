"""Mail2SMS through the real daemon (`smsd run --config`, a subprocess): smtplib to its SMTP
listener and `smsd mail2sms` piped to it each queue one SMS per TONUMBER/CCNUMBER."""

from __future__ import annotations

import base64
import json
import os
import smtplib
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from smsd.passwords import hash_password
from tests.backend import database_toml
from tests.mail2sms.conftest import CC, FAST_N, SMS_PASSWORD, TO, body, plain_mail
from tests.test_daemon import free_port

# Bounds for a broken build only: the daemon starts in about a second.
START_DEADLINE_S = 60.0
SMTPLIB_TIMEOUT_S = 30.0

CONFIG = """\
state_dir = "{state}"
{database}routing = ["gsm"]
[http]
port = {http}
[agi]
port = {agi}
[smtp]
port = {smtp}
password_hash = "{hash}"
[policy]
country = "GB"
[[users]]
extension = "100"
name = "Alice Example"
username = "alice"
office_number = "+447700900001"
licence = "uc-business"
password_hash = "{hash}"
"""


class Daemon:
    def __init__(self, tmp: Path) -> None:
        self.http, self.smtp = free_port(), free_port()
        self.config = tmp / "smsd.toml"
        self.config.write_text(CONFIG.format(
            state=tmp / "state", http=self.http, agi=free_port(), smtp=self.smtp,
            hash=hash_password(SMS_PASSWORD, n=FAST_N), database=database_toml()))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smsd", "run", "--config", str(self.config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, "SMSD_LOG_LEVEL": "info"},
        )

    def wait_ready(self) -> None:
        """Read the daemon's log until its daemon.ready event (listeners are bound by then)."""
        assert self.proc.stderr is not None
        seen = []
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace")
            seen.append(line)
            if "daemon.ready" in line:
                # Keep reading the log so a full pipe never blocks the daemon.
                threading.Thread(target=self.proc.stderr.read, daemon=True).start()
                return
        raise AssertionError("daemon did not start:\n" + "".join(seen))

    def queued(self) -> list[str]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http}/api/v1/sms?limit=100",
            headers={"Authorization": "Basic " + base64.b64encode(
                f"alice:{SMS_PASSWORD}".encode()).decode()},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            rows = json.loads(r.read())["messages"]
        return sorted(m["recipient"] for m in rows)

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(START_DEADLINE_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path)
    try:
        d.wait_ready()
        yield d
    finally:
        d.stop()


@pytest.mark.timeout(120)
def test_smtp_and_pipe_through_the_daemon(daemon: Daemon) -> None:
    """The same mail by SMTP and by pipe: three SMS each; a wrong password adds none;
    SIGTERM then stops the daemon cleanly with its SMTP listener."""
    with smtplib.SMTP("127.0.0.1", daemon.smtp, timeout=SMTPLIB_TIMEOUT_S) as client:
        client.send_message(plain_mail(body()))
        with pytest.raises(smtplib.SMTPDataError) as info:
            client.send_message(plain_mail(body(password="wrong")))
        assert info.value.smtp_code == 550
    assert daemon.queued() == sorted([TO, *CC])
    raw = plain_mail(body()).as_bytes()
    piped = subprocess.run([sys.executable, "-m", "smsd", "mail2sms", "--config",
                            str(daemon.config)], input=raw, capture_output=True, timeout=60)
    assert piped.returncode == 0, piped.stderr
    wrong = subprocess.run([sys.executable, "-m", "smsd", "mail2sms", "--config",
                            str(daemon.config)], input=plain_mail(body(password="x")).as_bytes(),
                           capture_output=True, timeout=60)
    assert wrong.returncode == 77
    assert daemon.queued() == sorted([TO, TO, *CC, *CC])
    assert daemon.stop() == 0  # the SMTP listener closes with the others on SIGTERM
