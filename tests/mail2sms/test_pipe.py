"""`smsd mail2sms < message.eml` as a real subprocess against the daemon's real HTTP API."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from smsd.core.directory import Directory
from tests.api.conftest import FakeGateway, api_services, serving
from tests.mail2sms.conftest import CC, TO, MailRig, body, plain_mail

# A CLI start-up (imports) takes about a second; this bounds a hung child only.
CHILD_DEADLINE_S = 60.0


@dataclass
class Piped:
    code: int
    stdout: str
    stderr: str


async def pipe(base: str, raw: bytes, *extra: str) -> Piped:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smsd", "mail2sms", "--url", base, *extra,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(CHILD_DEADLINE_S):
        out, err = await proc.communicate(raw)
    assert proc.returncode is not None
    return Piped(proc.returncode, out.decode(), err.decode())


@pytest.fixture
async def base(rig: MailRig) -> AsyncIterator[str]:
    services = api_services(rig.config, rig.store, FakeGateway("gsm"))
    services.outbox = rig.outbox
    services.directory = Directory(rig.config)
    services.mail2sms = rig.mail
    async with serving(services) as url:
        yield url


class TestPipeMode:
    async def test_one_sms_per_tonumber_and_ccnumber(self, rig: MailRig, base: str) -> None:
        """The piped mail queues one SMS per TONUMBER/CCNUMBER and exits 0 (EX_OK)."""
        r = await pipe(base, plain_mail(body()).as_bytes())
        assert r.code == 0, r.stderr
        assert await rig.queued() == [TO, *CC]
        assert "queued 3 SMS" in r.stderr

    async def test_wrong_password_exits_77_and_queues_nothing(
        self, rig: MailRig, base: str
    ) -> None:
        """A wrong SMSPASSWORD exits EX_NOPERM (77) with the reason on stderr; nothing queued."""
        r = await pipe(base, plain_mail(body(password="guess")).as_bytes())
        assert r.code == 77
        assert "SMSPASSWORD" in r.stderr
        assert await rig.queued() == []

    async def test_malformed_mail_exits_65(self, rig: MailRig, base: str) -> None:
        """A mail without SENDSMS: TRUE exits EX_DATAERR (65) and says which line is missing."""
        text = body().replace("SENDSMS: TRUE\n", "")
        r = await pipe(base, plain_mail(text).as_bytes())
        assert r.code == 65
        assert "SENDSMS" in r.stderr
        r = await pipe(base, b"")
        assert r.code == 65 and "stdin" in r.stderr
        assert await rig.queued() == []

    async def test_not_configured_exits_69(self, rig: MailRig, base: str) -> None:
        """A daemon without an SMSPASSWORD answers 404; the pipe exits EX_UNAVAILABLE (69)."""
        services = api_services(rig.config, rig.store, FakeGateway("gsm"))
        async with serving(services) as other:
            r = await pipe(other, plain_mail(body()).as_bytes())
        assert r.code == 69 and "not configured" in r.stderr
        assert await rig.queued() == []

    async def test_daemon_down_exits_75(self) -> None:
        """No daemon listening: EX_TEMPFAIL (75), so the MTA keeps the mail and retries."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # bound, never listening: connections are refused
            r = await pipe(f"http://127.0.0.1:{port}", plain_mail(body()).as_bytes())
        assert r.code == 75 and "cannot reach the daemon" in r.stderr

    async def test_stray_argument_exits_64(self, base: str) -> None:
        """An argument where the mail was expected exits EX_USAGE (64), not argparse's 2."""
        r = await pipe(base, plain_mail(body()).as_bytes(), "message.eml")
        assert r.code == 64 and "stdin" in r.stderr
