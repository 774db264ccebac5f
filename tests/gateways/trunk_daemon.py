"""The real daemon (`smsd run --config FILE`) with a CLASSOUND trunk, as a subprocess.

Its log (stderr) is read by a task as it is written: start-up is awaited on
the ``daemon.ready`` event line, never on a delay, and the log is kept for
failure messages.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from smsd.passwords import hash_password
from tests.backend import database_toml
from tests.fakes.sipp import free_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "trunk-pw-1"
USERNAME = "alice"
DID = "+15557654321"
# A cheap scrypt cost: the format and code path are the real ones.
FAST_N = 2**4
POLL_S = 0.02


def config_toml(state: Path, *, http: int, agi: int, sip: dict[str, Any],
                modem_link: str | None = None) -> str:
    lines = [
        f'state_dir = "{state}"',
        database_toml().rstrip("\n"),
        "[[users]]",
        'extension = "100"',
        'name = "Alice Example"',
        f'username = "{USERNAME}"',
        f'office_number = "{DID}"',
        'licence = "uc-business"',
        f'password_hash = "{hash_password(PASSWORD, n=FAST_N)}"',
        "[policy]",
        'country = "US"',
        "[http]",
        'host = "127.0.0.1"',
        f"port = {http}",
        "[agi]",
        'host = "127.0.0.1"',
        f"port = {agi}",
        "[gateways.classound]",
    ]
    for k, v in sip.items():
        if isinstance(v, bool):
            lines.append(f"{k} = {'true' if v else 'false'}")
        elif isinstance(v, (int, float)):
            lines.append(f"{k} = {v}")
        elif isinstance(v, (list, tuple)):
            lines.append(f"{k} = [{', '.join(repr(x) for x in v)}]".replace("'", '"'))
        else:
            lines.append(f'{k} = "{v}"')
    if modem_link is not None:
        lines += [
            "[[gateways.gsm.modems]]",
            'id = "gsm0"',
            f'path = "{modem_link}"',
            f'own_number = "{DID}"',
            'profile = "generic"',
        ]
    return "\n".join(lines) + "\n"


class TrunkDaemon:
    def __init__(self, tmp: Path, sip: dict[str, Any], *, modem_link: str | None = None) -> None:
        self.state = tmp / "state"
        self.http_port = free_port()
        self.agi_port = free_port()
        self.sip_port = int(sip.get("sip_local_port") or free_port())
        sip = {**sip, "sip_local_port": self.sip_port}
        self.config = tmp / "smsd.toml"
        self.config.write_text(config_toml(self.state, http=self.http_port, agi=self.agi_port,
                                           sip=sip, modem_link=modem_link))
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.log = ""
        self._line = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        token = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
        self.auth = {"Authorization": f"Basic {token}"}
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        env = {**os.environ, "SMSD_LOG_LEVEL": "info",
               "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "smsd", "run", "--config", str(self.config),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
        )
        self._reader = asyncio.get_running_loop().create_task(self._read_log())
        self.session = aiohttp.ClientSession()
        await self.wait_log("daemon.ready")

    async def _read_log(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.log += line.decode(errors="replace")
            self._line.set()
        self._line.set()  # end of the log: wake a waiter to find out why

    async def wait_log(self, text: str) -> None:
        while text not in self.log:
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log}")
            if self._reader is not None and self._reader.done():
                rc = await self.proc.wait() if self.proc else None
                raise AssertionError(f"daemon exited {rc}:\n{self.log}")
            self._line.clear()
            await self._line.wait()

    async def stop(self) -> int:
        rc = -1
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            rc = await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader
        if self.session is not None:
            await self.session.close()
        return rc

    async def request(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        assert self.session is not None
        async with self.session.request(method, self.base + path, headers=self.auth,
                                        **kw) as resp:
            return resp.status, await resp.json(content_type=None)

    async def until(self, probe: Callable[[], Awaitable[Any]]) -> Any:
        """Poll ``probe`` until it returns something truthy (bounded by pytest-timeout)."""
        while not (result := await probe()):
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log}")
            await asyncio.sleep(POLL_S)
        return result

    async def wait_state(self, sms_id: int, states: set[str]) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            _, body = await self.request("GET", f"/api/v1/sms/{sms_id}")
            return body if body.get("state") in states else None

        result: dict[str, Any] = await self.until(probe)
        return result
