"""`smsd run --config FILE` as a subprocess, watched through a fake $NOTIFY_SOCKET.

The test binds the AF_UNIX datagram socket systemd would, so it waits on the
daemon's own READY=1 / RELOADING=1 messages rather than on the clock.  Used
by the reload and security tests; tests/test_daemon.py has the demo's twin.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

# Bounds on a broken build, not measurements: start-up takes about a second.
START_DEADLINE_S = 30.0
NOTIFY_DEADLINE_S = 30.0
STOP_DEADLINE_S = 30.0
REQUEST_TIMEOUT_S = 10.0


class ConfigDaemon:
    """The daemon on ``config``, its stderr (JSON log lines) kept in ``log``."""

    def __init__(self, config: Path, log: Path, *, http_port: int, scheme: str = "http",
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.config = config
        self.log = log
        self.base = f"{scheme}://127.0.0.1:{http_port}"
        self._ssl = ssl_context
        self.notify_path = config.parent / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.notify.settimeout(NOTIFY_DEADLINE_S)
        self.messages: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smsd", "run", "--config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("ab"),
            env={**os.environ, "NOTIFY_SOCKET": str(self.notify_path),
                 "SMSD_LOG_LEVEL": "debug"},
        )
        self.wait_notify("READY=1")

    def wait_notify(self, prefix: str) -> str:
        """The next datagram starting with ``prefix`` (earlier ones are kept in messages)."""
        while True:
            try:
                msg = self.notify.recv(4096).decode()
            except TimeoutError:
                raise AssertionError(f"no {prefix}; log:\n{self.log_text()}") from None
            self.messages.append(msg)
            if msg.startswith(prefix):
                return msg

    def reload(self) -> str:
        """SIGHUP, then the READY=1 that ends the reload; returns its STATUS line."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)
        self.wait_notify("RELOADING=1")
        return self.wait_notify("READY=1")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def request(self, method: str, path: str, data: bytes | None = None, *,
                user: str | None = None, password: str = "",
                content_type: str = "application/x-www-form-urlencoded",
                ) -> tuple[int, bytes, dict[str, str]]:
        headers = {"Content-Type": content_type}
        if user is not None:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers["Authorization"] = "Basic " + token
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S, context=self._ssl) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_DEADLINE_S)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.notify.close()
