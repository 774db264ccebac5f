"""The real daemon as a subprocess: demo start-up, a message end to end, clean stop."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.ports import free_port

SUCCESS = b'{"type":"result","result":"Success"}'
# Start-up of the demo (store, simulated modem, modem init) takes about a second;
# these bound how long a broken build can hang the suite, they are not measured.
START_DEADLINE_S = 30.0
DELIVERY_DEADLINE_S = 30.0
STOP_DEADLINE_S = 30.0


class DemoDaemon:
    """`smsd run --demo` on free loopback ports, with its stderr kept in a file."""

    def __init__(self, state_dir: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.state_dir = state_dir
        self._env = env or {}
        self.http_port = free_port()
        self.agi_port = free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        self._log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "smsd",
                "run",
                "--demo",
                "--state-dir",
                str(self.state_dir),
                "--http",
                f"127.0.0.1:{self.http_port}",
                "--agi",
                f"127.0.0.1:{self.agi_port}",
            ],
            stdout=subprocess.PIPE,
            stderr=self._log.open("ab"),
            env={**os.environ, "SMSD_LOG_LEVEL": "info", **self._env},
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_DEADLINE_S
        banner = b""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            banner += line
            if b"/api/v1/conversations" in banner:
                self.banner = banner.decode()
                return
        raise AssertionError(f"daemon did not start; log:\n{self.log_text()}")

    def log_text(self) -> str:
        return self._log.read_text(errors="replace")

    def request(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        auth: bool = True,
        content_type: str = "application/x-www-form-urlencoded",
    ) -> tuple[int, bytes]:
        headers = {"Content-Type": content_type}
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(b"demo:demo").decode()
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get_json(self, path: str) -> Any:
        status, body = self.request("GET", path)
        assert status == 200, body
        return json.loads(body)

    def wait_state(self, mid: int, states: set[str]) -> dict[str, Any]:
        deadline = time.monotonic() + DELIVERY_DEADLINE_S
        msg: dict[str, Any] = {}
        while time.monotonic() < deadline:
            msg = self.get_json(f"/api/v1/sms/{mid}")
            if msg["state"] in states:
                return msg
            time.sleep(0.1)
        raise AssertionError(f"message {mid} stuck in {msg.get('state')}: {msg}\n{self.log_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(STOP_DEADLINE_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def running_demo(root: Path) -> Iterator[DemoDaemon]:
    """A started ``smsd run --demo`` with its state and log under ``root``, killed on exit."""
    d = DemoDaemon(root / "state", root / "daemon.log")
    d.start()
    try:
        yield d
    finally:
        d.kill()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoDaemon]:
    with running_demo(tmp_path) as d:
        yield d


@pytest.mark.timeout(120)
class TestDemo:
    def test_originate_to_delivered_then_clean_stop_and_restart(
        self, demo: DemoDaemon, tmp_path: Path
    ) -> None:
        """The demo's documented curl call works end to end and data survives a restart.

        1. the originate call answers exactly the success JSON;
        2. the message reaches the simulated modem and becomes `delivered`
           (the simulator sends a status report);
        3. SIGTERM makes the daemon exit 0;
        4. a second run on the same state directory shows the same message.
        """
        assert f"http://127.0.0.1:{demo.http_port}/api/v1/originate/sms" in demo.banner
        assert "smsd modem" in demo.banner and "modem.sock" in demo.banner
        status, body = demo.request(
            "POST", "/api/v1/originate/sms", b"number=%2B447700900123&message=Hello"
        )
        assert (status, body) == (200, SUCCESS)
        listed = demo.get_json("/api/v1/sms?limit=10")["messages"]
        assert len(listed) == 1
        mid = listed[0]["id"]
        msg = demo.wait_state(mid, {"delivered", "failed"})
        assert msg["state"] == "delivered", msg
        assert msg["recipient"] == "+447700900123"
        assert [p["modem"] for p in msg["part_states"]] == ["gsm0"], msg
        assert (msg["gateway"], msg["modem"]) == ("gsm", "gsm0"), msg

        assert demo.stop() == 0

        again = DemoDaemon(demo.state_dir, tmp_path / "daemon2.log")
        again.start()
        try:
            assert again.get_json(f"/api/v1/sms/{mid}")["state"] == "delivered"
        finally:
            assert again.stop() == 0

    def test_healthz_and_metrics_show_the_modem(self, demo: DemoDaemon) -> None:
        """/healthz reports the simulated modem ready and /metrics exposes it."""
        deadline = time.monotonic() + START_DEADLINE_S
        status, body = demo.request("GET", "/healthz", auth=False)
        while status != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
            status, body = demo.request("GET", "/healthz", auth=False)
        health = json.loads(body)
        assert status == 200, health
        assert health["gateways"]["gsm"]["available"] is True
        assert [m["id"] for m in health["modems"]] == ["gsm0"]
        status, text = demo.request("GET", "/metrics", auth=False)
        assert status == 200
        assert b'smsd_modem_up{modem="gsm0"} 1' in text

    def test_injected_reply_opens_a_conversation(self, demo: DemoDaemon) -> None:
        """The banner's `smsd modem inject` command makes an inbound SMS reach user demo.

        The simulated network delivers it to the modem, the daemon stores it and,
        with no Asterisk configured, the directory routes it to the user whose
        office number is the SIM's number: a conversation with the sender opens.
        """
        control = demo.state_dir / "modem.sock"
        assert f"smsd modem inject --control {control}" in demo.banner
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "smsd",
                "modem",
                "inject",
                "--control",
                str(control),
                "--from",
                "+447700900123",
                "--text",
                "Hi",
            ],
            capture_output=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + DELIVERY_DEADLINE_S
        convs: list[dict[str, Any]] = []
        while not convs and time.monotonic() < deadline:
            convs = demo.get_json("/api/v1/conversations")["conversations"]
            time.sleep(0.1)
        assert [c["external"] for c in convs] == ["+447700900123"], demo.log_text()
        assert [p["extension"] for p in convs[0]["participants"]] == ["100"]

    def test_bad_credentials_store_nothing(self, demo: DemoDaemon) -> None:
        """A wrong password gets 401 + WWW-Authenticate and no message is stored."""
        req = urllib.request.Request(
            demo.base + "/api/v1/originate/sms",
            data=b"number=%2B447700900123&message=x",
            headers={"Authorization": "Basic " + base64.b64encode(b"demo:nope").decode()},
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=10)
        assert info.value.code == 401
        assert info.value.headers["WWW-Authenticate"].startswith("Basic")
        assert demo.get_json("/api/v1/sms")["messages"] == []


class TestSystemd:
    def test_sd_notify_ready_watchdog_stopping(self, tmp_path: Path) -> None:
        """Under systemd the daemon speaks sd_notify on $NOTIFY_SOCKET.

        1. READY=1 arrives once the listeners are bound, with a STATUS= line
           giving the queue depth and the modems up;
        2. WATCHDOG=1 follows, as $WATCHDOG_USEC asks, and the status line is
           refreshed until it shows the simulated modem up;
        3. SIGTERM brings STOPPING=1 and exit status 0.
        """
        sock_path = tmp_path / "notify.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(sock_path))
            sock.settimeout(START_DEADLINE_S)
            d = DemoDaemon(
                tmp_path / "state",
                tmp_path / "daemon.log",
                env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"},
            )
            d.start()
            try:
                seen: list[str] = []
                while not any(m.startswith("WATCHDOG=1") for m in seen) or not any(
                    "modems 1/1 up" in m for m in seen
                ):
                    seen.append(sock.recv(4096).decode())
                assert seen[0].startswith("READY=1\nSTATUS=0 queued, 0 sending; modems "), seen
                assert d.proc is not None
                d.proc.send_signal(signal.SIGTERM)
                while "STOPPING=1" not in seen:
                    seen.append(sock.recv(4096).decode())
                assert d.proc.wait(STOP_DEADLINE_S) == 0
            finally:
                d.kill()


class TestStartupErrors:
    def test_port_in_use_is_a_clear_error(self, tmp_path: Path) -> None:
        """A taken HTTP port: exit status 2 and a message naming the listener and why."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "smsd",
                    "run",
                    "--demo",
                    "--state-dir",
                    str(tmp_path / "s"),
                    "--http",
                    f"127.0.0.1:{port}",
                    "--agi",
                    f"127.0.0.1:{free_port()}",
                ],
                capture_output=True,
                timeout=60,
            )
        assert proc.returncode == 2
        assert f"HTTP listener 127.0.0.1:{port}: address already in use" in proc.stderr.decode()

    def test_bad_config_exits_2_naming_keys(self, tmp_path: Path) -> None:
        """`smsd run` with a bad config lists every problem and does not start."""
        cfg = tmp_path / "smsd.toml"
        cfg.write_text('[http]\nport = "x"\n[policy]\ntimezone = "Nowhere/Land"\n')
        proc = subprocess.run(
            [sys.executable, "-m", "smsd", "run", "--config", str(cfg)],
            capture_output=True,
            timeout=60,
        )
        err = proc.stderr.decode()
        assert proc.returncode == 2
        assert "http.port: must be an integer" in err
        assert "policy.timezone" in err


class TestNotifier:
    def test_abstract_socket_and_watchdog_interval(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A leading @ in $NOTIFY_SOCKET is the abstract namespace; the interval is half."""
        from smsd.sdnotify import Notifier, watchdog_interval

        name = f"smsd-test-{os.getpid()}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind("\0" + name)
            sock.settimeout(5)
            n = Notifier("@" + name)
            n.ready("up")
            assert sock.recv(100) == b"READY=1\nSTATUS=up"
            n.close()
        assert not Notifier("").enabled
        monkeypatch.setenv("WATCHDOG_USEC", "30000000")
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        assert watchdog_interval() == 15.0
        monkeypatch.setenv("WATCHDOG_PID", "1")
        assert watchdog_interval() is None  # meant for another process
