"""The API served on a real loopback socket over the real store and outbox."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import web

from smsd.api.app import build_app
from smsd.config import Config, Licence, Policy, User
from smsd.core.directory import Directory
from smsd.core.events import EventBus
from smsd.core.outbox import Outbox
from smsd.core.router import Router
from smsd.passwords import hash_password
from smsd.services import Services
from smsd.store import Store
from tests.backend import database_url, open_store

if TYPE_CHECKING:
    from smsd.modem.pool import ModemPool

# A cheap scrypt cost keeps the suite fast; the format and code path are the real ones.
FAST_N = 2**4
PASSWORD = "s3cret-pw"


class FakeGateway:
    """A gateway that is up or down as the test says; never sends."""

    def __init__(self, name: str, up: bool = True) -> None:
        self.name = name
        self.up = up

    def available(self) -> bool:
        return self.up

    async def send(self, job: Any, hooks: Any) -> None:  # pragma: no cover - unused
        raise AssertionError("the API tests do not dispatch")


def make_config(tmp_path: Path) -> Config:
    h = hash_password(PASSWORD, n=FAST_N)
    return Config(
        state_dir=tmp_path,
        database=tmp_path / "smsd.sqlite3",
        database_url=database_url(),
        users=(
            User(
                "100",
                "Alice Example",
                "alice",
                "+447700900001",
                Licence.UC_BUSINESS,
                "pjsip:100",
                h,
            ),
            User(
                "101", "Eve Essential", "eve", "+447700900001", Licence.UC_ESSENTIAL, "pjsip:101", h
            ),
        ),
        policy=Policy(country="GB", timezone="Europe/London"),
    )


@dataclass
class Api:
    base: str
    session: aiohttp.ClientSession
    services: Services
    gateway: FakeGateway
    auth: dict[str, str] = field(
        default_factory=lambda: {"Authorization": basic("alice", PASSWORD)}
    )

    async def count_messages(self) -> int:
        row = await self.services.store.fetchone("SELECT COUNT(*) AS n FROM messages")
        assert row is not None
        return int(row["n"])


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    cfg = make_config(tmp_path)
    store = await open_store(cfg)
    gw = FakeGateway("gsm")
    services = api_services(cfg, store, gw)
    async with serving(services) as base, aiohttp.ClientSession() as session:
        yield Api(base, session, services, gw)
    await store.close()


def api_services(cfg: Config, store: Store, gateway: FakeGateway,
                 pool: ModemPool | None = None) -> Services:
    """What the HTTP API needs: a real store and outbox, one fake gateway, no inbox."""
    return Services(
        config=cfg,
        store=store,
        bus=EventBus(),
        outbox=Outbox(store, cfg.policy),
        inbox=None,  # type: ignore[arg-type]
        dispatcher=None,  # type: ignore[arg-type]
        router=Router([gateway], ("gsm",)),  # type: ignore[list-item]
        pool=pool,
        directory=Directory(cfg),
    )


@asynccontextmanager
async def serving(services: Services) -> AsyncIterator[str]:
    """The real HTTP API of ``services`` on an unused loopback port; yields its base URL."""
    runner = web.AppRunner(build_app(services), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
