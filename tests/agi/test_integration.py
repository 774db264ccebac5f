"""sms-send through the real Outbox into a real SQLite store.

Fake Asterisk -> TCP -> AGI server -> smsd.core.outbox.Outbox -> smsd.store.Store
(temporary file): the ids the dialplan receives in SMS_ID are committed rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from smsd.agi.handlers import build_handlers
from smsd.agi.ports import AgiServices
from smsd.agi.server import AgiServer
from smsd.config import Policy
from smsd.core.outbox import Outbox
from smsd.store import Store
from tests.agi.conftest import ALICE, BOB, FakeDirectory, FakeInbox
from tests.backend import open_store
from tests.fakes.asterisk_agi import FakeAsteriskAgi

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    st = await open_store(tmp_path / "smsd.sqlite3")
    try:
        yield st
    finally:
        await st.close()


@pytest.fixture
async def real_server(store: Store) -> AsyncIterator[tuple[AgiServer, list[int]]]:
    wakes: list[int] = []
    outbox = Outbox(store, Policy(), wake=lambda: wakes.append(1))
    services = AgiServices(outbox=outbox, inbox=FakeInbox(), directory=FakeDirectory([ALICE, BOB]))
    srv = AgiServer(build_handlers(services), "127.0.0.1", 0)
    await srv.start()
    try:
        yield srv, wakes
    finally:
        await srv.close()


async def test_sms_send_commits_before_answering(
    real_server: tuple[AgiServer, list[int]], store: Store
) -> None:
    """Every id in SMS_ID is a committed, queued row with origin 'agi', the user and
    the exact multi-line UTF-8 text read through BASE64_ENCODE; the dispatcher was woken."""
    srv, wakes = real_server
    body = "Bonjour ✓\nsecond line"
    fake = FakeAsteriskAgi.message_pjsip(
        srv.port, "sms-send", from_='"Alice" <sip:100@127.0.0.1>',
        to="pjsip:+15557654321@127.0.0.1", body=body, extension="+15557654321",
        context="sms-out", callerid_name="Alice Agent",
    )
    await fake.run()
    assert fake.variables["SMS_STATUS"] == "QUEUED", fake.variables
    [sms_id] = [int(i) for i in fake.variables["SMS_ID"].split(",")]
    row = await store.get_message(sms_id)
    assert row is not None
    assert (row.recipient, row.text, row.origin, row.user) == (
        "+15557654321", body, "agi", "alice",
    )
    assert row.state in ("queued", "scheduled")
    assert wakes


async def test_bad_number_stores_nothing_for_it(
    real_server: tuple[AgiServer, list[int]], store: Store
) -> None:
    """A refused number is named in SMS_ERROR and has no row; the good one has one."""
    srv, _ = real_server
    fake = FakeAsteriskAgi(srv.port, "sms-send?to=+15557654321,0800-nope&from=bob&body=hi")
    await fake.run()
    assert fake.variables["SMS_STATUS"] == "QUEUED"
    assert "0800-nope" in fake.variables["SMS_ERROR"]
    ids = [int(i) for i in fake.variables["SMS_ID"].split(",")]
    assert len(ids) == 1
    rows = await store.fetchall("SELECT recipient FROM messages")
    assert [r[0] for r in rows] == ["+15557654321"]


async def test_empty_body_refused_and_nothing_stored(
    real_server: tuple[AgiServer, list[int]], store: Store
) -> None:
    """The Outbox's ValidationError reaches the dialplan as REFUSED; no row is written."""
    srv, _ = real_server
    fake = FakeAsteriskAgi(srv.port, "sms-send", args=["+15557654321", "100", "   "])
    await fake.run()
    assert fake.variables["SMS_STATUS"] == "REFUSED"
    assert fake.variables["SMS_ERROR"]
    assert await store.fetchall("SELECT id FROM messages") == []


async def test_sms_receive_commits_to_real_inbox(store: Store) -> None:
    """A PJSIP trunk message read over AGI is a committed inbound row with E.164 sender,
    DID and the exact multi-line body; SMS_ID is that row's id."""
    from smsd.core.events import EventBus
    from smsd.core.inbox import Inbox

    inbox = Inbox(store, EventBus())
    services = AgiServices(
        outbox=Outbox(store, Policy()), inbox=inbox, directory=FakeDirectory([ALICE])
    )
    srv = AgiServer(build_handlers(services), "127.0.0.1", 0)
    await srv.start()
    body = "Réponse ✓\n2nd line"
    try:
        fake = FakeAsteriskAgi.message_pjsip(
            srv.port, "sms-receive", from_='"Test Sender" <sip:+15557654321@127.0.0.1>',
            to="pjsip:+15551234567@127.0.0.1", body=body, extension="+15551234567",
        )
        await fake.run()
    finally:
        await srv.close()
    assert fake.variables["SMS_STATUS"] == "RECEIVED", fake.variables
    row = await store.fetchone(
        "SELECT sender, recipient, text, gateway FROM inbound WHERE id = ?",
        (int(fake.variables["SMS_ID"]),),
    )
    assert row is not None
    assert tuple(row) == ("+15557654321", "+15551234567", body, "classound")


async def test_store_refusing_writes_reported_as_such(
    real_server: tuple[AgiServer, list[int]], store: Store
) -> None:
    """The database refusing the write (full disk; on PostgreSQL also an unreachable
    server) reaches the dialplan as ERROR saying nothing was stored, not as an
    internal error; no row is written."""
    srv, _ = real_server
    await refuse_writes(store)
    fake = FakeAsteriskAgi(srv.port, "sms-send?to=+15557654321&from=bob&body=hi")
    await fake.run()
    assert fake.variables["SMS_STATUS"] == "ERROR"
    assert fake.variables["SMS_ERROR"] == "the database is unavailable, nothing was stored"
    assert await store.fetchall("SELECT id FROM messages") == []


async def refuse_writes(store: Store) -> None:
    """The writer refuses every write from now on (SQLite: query_only; PostgreSQL: a
    read-only session); reads, on other connections, still work."""
    async with store.transaction() as db:
        if store.dialect == "postgresql":
            await db.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        else:
            await db.execute("PRAGMA query_only = 1")
