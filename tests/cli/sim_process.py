"""`smsd modem simulate` and the CLI verbs as subprocesses, for the modem CLI tests."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Start-up of a Python process plus the farm: well under a second here; 30 s
# only bounds a simulator that never comes up.
READY_TIMEOUT_S = 30.0
CLI_TIMEOUT_S = 60.0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def cli(*args: str, module: str = "smsd.cli.modem") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, env=_env(), cwd=ROOT)


class Simulator:
    def __init__(self, tmp: Path, *extra: str) -> None:
        self.link = str(tmp / "s0")
        self.control = str(tmp / "ctl")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smsd.cli.modem", "simulate", "--link", self.link,
             "--control", self.control, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_env(), cwd=ROOT)
        self.banner = self._wait_ready()

    def _wait_ready(self) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        seen = b""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while b"ready\n" not in seen and time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
        sel.close()
        if b"ready\n" not in seen:
            self.stop()
            raise AssertionError(f"simulator did not come up: {seen.decode(errors='replace')}")
        return seen.decode()

    def submitted(self) -> list[dict]:
        out = cli("submitted", "--control", self.control, "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
