"""The console served on a real loopback socket over the real core (no modem)."""

from __future__ import annotations

import asyncio
import http.cookiejar
import re
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from smsd.api.app import build_app
from smsd.config import Ami, Config, Licence, Policy, User
from smsd.core.directory import Directory
from smsd.passwords import hash_password
from smsd.services import Services, build_services
from smsd.ui.app import add_console
from tests.backend import database_url, open_store
from tests.fakes.asterisk_ami import FakeAmi

# A cheap scrypt cost keeps the suite fast; the format and code path are the real ones.
FAST_N = 2**4
PASSWORD = "s3cret-pw"
DID = "+447700900001"
CUSTOMER = "+447700900123"


def make_config(tmp_path: Path, ami_port: int | None = None) -> Config:
    pw = hash_password(PASSWORD, n=FAST_N)
    ami = Ami(True, "127.0.0.1", ami_port, "smsd", "smsd-secret") if ami_port else Ami()
    return Config(
        state_dir=tmp_path,
        database=tmp_path / "smsd.sqlite3",
        database_url=database_url(),
        users=(
            User("100", "Alice Admin", "alice", DID, Licence.UC_BUSINESS, "pjsip:100", pw,
                 admin=True),
            User("101", "Bob Agent", "bob", DID, Licence.UC_BUSINESS, "pjsip:101", pw),
            User("102", "Carol Other", "carol", None, Licence.UC_BUSINESS, "pjsip:102", pw),
        ),
        policy=Policy(country="GB", timezone="Europe/London"),
        ami=ami,
    )


@dataclass
class Console:
    base: str
    services: Services
    app: web.Application

    def client(self) -> aiohttp.ClientSession:
        # unsafe=True: the cookie jar keeps cookies for an IP host (127.0.0.1).
        return aiohttp.ClientSession(self.base, cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def sign_in(self, session: aiohttp.ClientSession, user: str,
                      password: str = PASSWORD) -> aiohttp.ClientResponse:
        async with session.get("/ui/login") as r:
            token = csrf_of(await r.text())
        return await session.post("/ui/login", data={
            "csrf": token, "username": user, "password": password}, allow_redirects=False)

    async def inbound(self, text: str, sender: str = CUSTOMER) -> int:
        """An SMS from ``sender`` to the DID, committed and routed like a modem's."""
        sms_id = await self.services.inbox.receive(sender, DID, text, gateway="gsm")
        await self.services.bus.join()
        return sms_id


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


async def page_csrf(session: aiohttp.ClientSession, path: str = "/ui/conversations") -> str:
    async with session.get(path) as r:
        assert r.status == 200, await r.text()
        return csrf_of(await r.text())


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    async with serve_console(make_config(tmp_path)) as c:
        yield c


@pytest.fixture
async def fake_ami() -> AsyncIterator[FakeAmi]:
    server = await FakeAmi().start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def console_ami(tmp_path: Path, fake_ami: FakeAmi) -> AsyncIterator[Console]:
    """The console of a daemon logged in to the fake Asterisk (calls are followed)."""
    async with serve_console(make_config(tmp_path, fake_ami.port)) as c:
        ami = c.services.ami
        assert ami is not None
        task = asyncio.create_task(ami.run())
        try:
            assert await ami.wait_connected(30, hooks=True)
            yield c
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task


@asynccontextmanager
async def serve_console(cfg: Config) -> AsyncIterator[Console]:
    store = await open_store(cfg)
    services = await build_services(cfg, store, Directory(cfg))
    app = build_app(services)
    add_console(app, services)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    bus = asyncio.create_task(services.bus.run())
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield Console(f"http://127.0.0.1:{runner.addresses[0][1]}", services, app)
    finally:
        await runner.cleanup()
        bus.cancel()
        with suppress(asyncio.CancelledError):
            await bus
        await store.close()


class ConsoleClient:
    """A cookie-keeping HTTP client (urllib, no script) signed in to a running demo
    daemon's console as demo/demo."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        login = self.get("/ui/login")
        token = re.search(r'name="csrf" value="([^"]+)"', login)
        assert token, login
        data = urllib.parse.urlencode({"csrf": token.group(1), "username": "demo",
                                       "password": "demo"}).encode()
        with self.opener.open(self.base + "/ui/login", data, timeout=10) as r:
            assert r.url.endswith("/ui/conversations"), r.url

    def get(self, path: str) -> str:
        return self.fetch(path)[1]

    def fetch(self, path: str) -> tuple[str, str]:
        """(content type, body) of a GET."""
        with self.opener.open(self.base + path, timeout=10) as r:
            return r.headers.get_content_type(), str(r.read().decode(errors="replace"))
