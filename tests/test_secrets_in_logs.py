"""No configured secret ever reaches the log, through a full run of the real daemon.

The daemon runs as a subprocess at log level debug with every kind of secret
smsd has configured: API user passwords, the AMI secret (a fake Asterisk
checks the login), the Mail2SMS password, the curl provider's token (in an
Authorization header the fake provider checks), and a SIM PIN (the
simulated modem asks for it).  The test drives each of them (good and bad
logins, a failing then working provider, a reload) and then searches the
whole log for each secret, raw and in the encodings it travels in.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from smsd.passwords import hash_password
from tests.backend import database_toml
from tests.cli.sim_process import Simulator
from tests.fakes.asterisk_ami import FakeAmi
from tests.fakes.http_provider import HttpProvider
from tests.fakes.ports import free_port

pytestmark = pytest.mark.timeout(120)

PASSWORD = "pw-Alice-7f3kQ"
AMI_SECRET = "ami-S3cret-91x"
MAIL_PASSWORD = "mail-Pw-55zz"
CURL_TOKEN = "tok-Curl-abc123xyz"
PIN = "97531864"
SECRETS = (PASSWORD, AMI_SECRET, MAIL_PASSWORD, CURL_TOKEN, PIN)
# Bounds on a broken build; nothing here is measured.
DEADLINE_S = 30.0
TEST_SCRYPT_N = 2**10


def secret_file(tmp: Path, name: str, value: str) -> Path:
    p = tmp / name
    p.write_text(value + "\n")
    p.chmod(0o600)
    return p


def auth(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"alice:{password}".encode()).decode()}


def forms(secret: str) -> list[str]:
    """The secret as it could leak: raw, in basic auth, percent- or JSON-escaped."""
    basic = base64.b64encode(f"alice:{secret}".encode()).decode()
    return [secret, basic, json.dumps(secret)[1:-1], secret.encode().hex()]


async def poll(check: Callable[[], Awaitable[bool] | bool]) -> None:
    """Wait, bounded, for a state held by another process (the daemon, a fake peer's log)."""
    async with asyncio.timeout(DEADLINE_S):
        while not await _truth(check()):  # noqa: ASYNC110 - nothing to await across processes
            await asyncio.sleep(0.02)


async def _truth(value: Awaitable[bool] | bool) -> bool:
    return value if isinstance(value, bool) else await value


@contextlib.asynccontextmanager
async def daemon(config: Path, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    notify_path = config.parent / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.setblocking(False)
    loop = asyncio.get_running_loop()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smsd", "run", "--config", str(config), "--log-level", "debug",
        stdout=asyncio.subprocess.DEVNULL, stderr=log.open("ab"),
        env={**os.environ, "NOTIFY_SOCKET": str(notify_path)},
    )
    try:
        async with asyncio.timeout(DEADLINE_S):
            while not (await loop.sock_recv(notify, 4096)).startswith(b"READY=1"):
                pass
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        notify.close()


class TestSecretsNeverLogged:
    async def test_full_run_logs_no_secret(self, tmp_path: Path) -> None:
        """1. start with every secret configured; 2. AMI logs in, the modem takes its PIN;
        3. bad and good API logins; a send through a failing provider falls to the modem,
           the next goes through the provider with its token; 4. SIGHUP, SIGTERM;
        5. the log holds evidence of each step, and no secret in any form."""
        ami = await FakeAmi(username="smsd", secret=AMI_SECRET).start()
        provider = HttpProvider(status=500)
        await provider.start()
        sim = Simulator(tmp_path, "--pin", PIN)
        http = free_port()
        config = tmp_path / "smsd.toml"
        config.write_text(f"""
state_dir = "state"
{database_toml()}routing = ["curl", "gsm"]
[http]
port = {http}
[agi]
port = {free_port()}
[smtp]
port = {free_port()}
password_file = "{secret_file(tmp_path, 'mail.secret', MAIL_PASSWORD)}"
[ami]
port = {ami.port}
username = "smsd"
secret_file = "{secret_file(tmp_path, 'ami.secret', AMI_SECRET)}"
[policy]
country = "GB"
[[users]]
extension = "100"
name = "Alice Example"
username = "alice"
licence = "uc-business"
office_number = "+447700900001"
password_hash = "{hash_password(PASSWORD, n=TEST_SCRYPT_N)}"
[gateways.curl]
url = "{provider.url}/send"
body = "to={{number}}&text={{message}}"
headers = {{ "Authorization" = "Bearer {CURL_TOKEN}" }}
[[gateways.gsm.modems]]
id = "gsm0"
path = "{sim.link}"
own_number = "+447700900001"
pin_file = "{secret_file(tmp_path, 'sim.pin', PIN)}"
""")
        config.chmod(0o600)
        log = tmp_path / "daemon.log"
        base = f"http://127.0.0.1:{http}"
        try:
            async with daemon(config, log) as proc, aiohttp.ClientSession() as session:
                await poll(lambda: bool(ami.logins))
                assert ami.logins[0] == ("smsd", True)

                async def get(path: str, password: str) -> int:
                    async with session.get(base + path, headers=auth(password)) as r:
                        return r.status

                async def ready() -> bool:
                    async with session.get(base + "/healthz") as r:
                        body = await r.json()
                    return any(m["state"] == "ready" for m in body["modems"])

                await poll(ready)
                assert await get("/api/v1/sms", PASSWORD + "x") == 401
                assert await get("/api/v1/sms", PASSWORD) == 200

                async def send(text: str) -> int:
                    async with session.post(
                        base + "/api/v1/sms", headers=auth(PASSWORD),
                        json={"to": ["+447700900123"], "text": text},
                    ) as r:
                        assert r.status == 201, await r.text()
                        return int((await r.json())["ids"][0])

                async def state(mid: int) -> str:
                    async with session.get(base + f"/api/v1/sms/{mid}",
                                           headers=auth(PASSWORD)) as r:
                        return str((await r.json())["state"])

                async def sent(mid: int) -> bool:
                    return await state(mid) in ("sent", "delivered")

                first = await send("via the modem")
                await poll(lambda: sent(first))
                assert provider.requests, "the provider was tried first"
                provider.status = 200
                second = await send("via the provider")
                await poll(lambda: sent(second))
                assert provider.requests[-1].headers["Authorization"] == f"Bearer {CURL_TOKEN}"

                proc.send_signal(signal.SIGHUP)
                await poll(lambda: '"config.reloaded"' in log.read_text())
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), DEADLINE_S) == 0
        finally:
            sim.stop()
            await provider.stop()
            await ami.stop()

        text = log.read_text(errors="replace")
        for evidence in ('"api.auth_failed"', '"config.reloaded"', '"daemon.stopped"',
                         '"modem.port_opened"', '"modem.pin_accepted"'):
            assert evidence in text, evidence
        for secret in SECRETS:
            for form in forms(secret):
                leaked = [ln for ln in text.splitlines() if form in ln]
                assert leaked == [], f"{secret!r} leaked as {form!r}: {leaked[:3]}"
