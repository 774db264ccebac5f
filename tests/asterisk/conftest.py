"""Shared setup for the Asterisk-side tests: a small PBX directory, a real
store on disk, and the fake Asterisk manager on a loopback socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from smsd.asterisk.ami import AmiClient
from smsd.config import Ami, CallGroup, Config, Licence, Policy, User
from smsd.core.conversations import Conversations
from smsd.core.directory import Directory
from smsd.core.events import InboundSms
from smsd.dialplan.procedure import CLAIM_TIMEOUT_S, KiteSmsProcedure
from smsd.passwords import hash_password
from smsd.store import Store, ts
from tests.backend import database_url, open_store
from tests.fakes.asterisk_ami import FakeAmi

# A cheap scrypt cost keeps the suite fast; the format and code path are the real ones.
FAST_N = 2**4
PASSWORD = "pw-for-tests"

DID = "+15551234567"          # US DID of the "Sales" call group
DID_NO_GROUP = "+15557770000"  # US DID with one user and no call group
DID_NOBODY = "+15550001111"   # US DID nobody has
DID_GB = "+447700900001"      # UK DID (two-way country)
DID_DE = "+4930123456789"     # German DID (outbound only)
CUSTOMER = "+15557654321"


def make_config(tmp_path: Path, *, ami_port: int = 0, policy: Policy | None = None) -> Config:
    h = hash_password(PASSWORD, n=FAST_N)
    users = (
        User("100", "Alice Agent", "alice", DID, Licence.UC_BUSINESS, "pjsip:100", h),
        User("201", "Bob Boss", "bob", DID, Licence.UC_PREMIUM, "pjsip:201", h),
        User("202", "Carol Cheap", "carol", DID, Licence.UC_ESSENTIAL, "pjsip:202", h),
        User("203", "Dan Direct", "dan", DID_NO_GROUP, Licence.UC_BUSINESS, "pjsip:203", h),
        User("300", "Oscar Other", "oscar", "+15559990000", Licence.UC_BUSINESS, "pjsip:300", h),
        User("400", "Gina Gb", "gina", DID_GB, Licence.UC_BUSINESS, "pjsip:400", h),
    )
    groups = (
        # 300 is a static member but lacks the DID as office number; 202 lacks the licence.
        CallGroup("Sales", DID, ("100", "201", "202", "300")),
        CallGroup("NoNumber", None, ("100",)),
    )
    return Config(
        state_dir=tmp_path,
        database=tmp_path / "smsd.sqlite3",
        database_url=database_url(),
        users=users,
        call_groups=groups,
        policy=policy or Policy(country="US"),
        ami=Ami(True, "127.0.0.1", ami_port, "smsd", "smsd-secret"),
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(tmp_path / "smsd.sqlite3")
    yield s
    await s.close()


@pytest.fixture
async def fake_ami() -> AsyncIterator[FakeAmi]:
    server = await FakeAmi().start()
    yield server
    await server.stop()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
def directory(config: Config) -> Directory:
    return Directory(config)


async def add_inbound(store: Store, sender: str, recipient: str | None, text: str) -> InboundSms:
    """Commit an inbound SMS as the inbox does (route_state 'pending')."""
    now = datetime.now(UTC)
    async with store.transaction() as db:
        cur = await db.execute(
            "INSERT INTO inbound (sender, recipient, text, received_at, gateway)"
            " VALUES (?, ?, ?, ?, 'classound') RETURNING id",
            (sender, recipient, text, ts(now)),
        )
        row = await cur.fetchone()
        assert row is not None
        sms_id = int(row[0])
    return InboundSms(sms_id, sender, recipient, text, now, "classound", None)


async def route_state(store: Store, sms_id: int) -> tuple[str, int | None]:
    row = await store.fetchone(
        "SELECT route_state, conversation_id FROM inbound WHERE id = ?", (sms_id,))
    assert row is not None
    return str(row["route_state"]), row["conversation_id"]


@dataclass
class Collected:
    """SubmitRequests an outbox stand-in received (for tests without a dispatcher)."""

    requests: list[object]


@dataclass
class Wired:
    """The inbound chain as the daemon wires it, against the fake AMI on ``ami_port``."""

    config: Config
    store: Store
    directory: Directory
    client: AmiClient
    conversations: Conversations
    procedure: KiteSmsProcedure


async def wire(tmp_path: Path, ami_port: int, *, policy: Policy | None = None,
               conversations_cls: type[Conversations] = Conversations,
               claim_timeout_s: float = CLAIM_TIMEOUT_S) -> Wired:
    cfg = make_config(tmp_path, ami_port=ami_port, policy=policy)
    store = await open_store(cfg)
    directory = Directory(cfg)
    client = AmiClient(cfg.ami, backoff_min_s=0.05, backoff_max_s=0.1)
    conversations = conversations_cls(store, directory, cfg, ami=client)
    procedure = KiteSmsProcedure(store, directory, conversations, client,
                                 claim_timeout_s=claim_timeout_s)
    return Wired(cfg, store, directory, client, conversations, procedure)


@asynccontextmanager
async def logged_in(w: Wired, deadline_s: float) -> AsyncIterator[Wired]:
    """The AMI client running and logged in (its on_connected hooks done); stops it and
    closes the store afterwards."""
    task = asyncio.create_task(w.client.run())
    try:
        assert await w.client.wait_connected(deadline_s, hooks=True)
        yield w
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await w.store.close()


async def fresh_login(fake: FakeAmi, client: AmiClient, within_s: float = 10.0) -> None:
    """Asterisk restarted (the connection drops) and the client logged in again: its new
    session has the rights ``fake.write`` names now.  Bounded wait on the login itself."""
    before = len(fake.logins)
    await fake.drop()
    await wait_login(fake, client, before + 1, within_s)


async def wait_login(fake: FakeAmi, client: AmiClient, count: int, within_s: float) -> None:
    """Until ``fake`` saw ``count`` logins and the client is logged in (hooks done)."""
    async with asyncio.timeout(within_s):
        while len(fake.logins) < count:
            fake.login_arrived.clear()
            await fake.login_arrived.wait()
        assert await client.wait_connected(within_s, hooks=True)
