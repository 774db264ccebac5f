"""The [sms-in] retry: sms-receive called a second time for the same SIP MESSAGE.

The sample dialplan calls sms-receive again when it did not hear
SMS_STATUS=RECEIVED.  When the first call committed and then lost its
connection (Asterisk saw the socket close before SET VARIABLE), the second
call must find that row, not store the message twice.  Fake Asterisk -> TCP
-> AGI server -> real Inbox -> real SQLite store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from smsd.agi.handlers import build_handlers
from smsd.agi.ports import AgiServices
from smsd.agi.server import AgiServer
from smsd.config import Policy
from smsd.core.events import EventBus, InboundSms
from smsd.core.inbox import Inbox
from smsd.core.outbox import Outbox
from smsd.store import Store
from tests.agi.conftest import ALICE, FakeDirectory
from tests.backend import open_store
from tests.fakes.asterisk_agi import FakeAsteriskAgi, SipMessage

pytestmark = pytest.mark.timeout(60)

FROM_PJSIP = '"Test Sender" <sip:+15557654321@127.0.0.1>'
TO_PJSIP = "pjsip:+15551234567@127.0.0.1"
FROM_SIP = '"Test Sender" <sip:+15557654321@127.0.0.1:5061>'
TO_SIP = "sip:+15551234567@127.0.0.1:5060"
DID = "+15551234567"
# What the sample dialplan's Set(SMSD_KEY=${EPOCH}-${RAND()}-${RAND()}) makes.
DIALPLAN_KEY = "1795609644-1804289383-846930886"
# Commands sms-receive sends on a message channel before it reports: the
# message read and the key read (both GET FULL VARIABLE).
READS_BEFORE_REPORT = 2


@dataclass
class Rig:
    store: Store
    server: AgiServer
    bus: EventBus
    published: list[InboundSms] = field(default_factory=list)

    async def idle(self) -> None:
        """Wait until the server has finished every session (the commit included)."""
        for _ in range(2000):
            if self.server.connections == 0:
                return
            await asyncio.sleep(0.005)
        raise AssertionError("AGI server still has sessions running")

    async def rows(self) -> list[tuple[int, str, str | None, str]]:
        rows = await self.store.fetchall(
            "SELECT id, sender, recipient, text FROM inbound ORDER BY id")
        return [(int(r[0]), r[1], r[2], r[3]) for r in rows]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    store = await open_store(tmp_path / "smsd.sqlite3")
    bus = EventBus()
    inbox = Inbox(store, bus)
    services = AgiServices(
        outbox=Outbox(store, Policy()), inbox=inbox, directory=FakeDirectory([ALICE])
    )
    server = AgiServer(build_handlers(services), "127.0.0.1", 0)
    await server.start()
    r = Rig(store, server, bus)

    async def collect(ev: InboundSms) -> None:
        r.published.append(ev)

    bus.subscribe_inbound(collect)
    bus_task = asyncio.create_task(bus.run())
    try:
        yield r
        await bus.join()
    finally:
        await server.close()
        bus_task.cancel()
        await asyncio.gather(bus_task, return_exceptions=True)
        await store.close()


def pjsip(port: int, body: str, *, variables: dict[str, str] | None = None,
          close_after: int | None = None) -> FakeAsteriskAgi:
    return FakeAsteriskAgi.message_pjsip(
        port, "sms-receive", from_=FROM_PJSIP, to=TO_PJSIP, body=body, extension=DID,
        variables=variables, close_after=close_after,
    )


def chan_sip(port: int, body: str, call_id: str, cseq: str, *,
             close_after: int | None = None) -> FakeAsteriskAgi:
    fake = FakeAsteriskAgi.message_chan_sip(
        port, "sms-receive", from_=FROM_SIP, to=TO_SIP, body=body, extension=DID,
        close_after=close_after,
    )
    # chan_sip copies the request's headers into MESSAGE_DATA (message-transcript.txt
    # shows the Call-ID/CSeq of each MESSAGE on the wire).
    assert fake.message is not None
    fake.message.data.update({"Call-ID": call_id, "CSeq": cseq})
    return fake


async def commit_then_lose_answer(rig: Rig, fake: FakeAsteriskAgi) -> None:
    """Run a first try that Asterisk ends right after the reads, before any SET VARIABLE."""
    assert fake.close_after == READS_BEFORE_REPORT
    await fake.run()
    await rig.idle()
    assert "SMS_STATUS" not in fake.variables and "SMS_ID" not in fake.variables
    assert not any(c.upper().startswith("SET VARIABLE") for c in fake.commands)


async def test_pjsip_retry_with_dialplan_key_is_stored_once(rig: Rig) -> None:
    """[sms-in] on PJSIP: the first sms-receive commits, the connection drops before
    SET VARIABLE; the second try (same SMSD_KEY on the channel) answers RECEIVED with
    the id of the one stored row, and the message is published once."""
    body = "retry me\nplease"
    first = pjsip(rig.server.port, body, variables={"SMSD_KEY": DIALPLAN_KEY},
                  close_after=READS_BEFORE_REPORT)
    await commit_then_lose_answer(rig, first)
    rows = await rig.rows()
    assert rows == [(rows[0][0], "+15557654321", DID, body)]

    retry = pjsip(rig.server.port, body, variables={"SMSD_KEY": DIALPLAN_KEY})
    await retry.run()
    await rig.idle()
    assert retry.variables["SMS_STATUS"] == "RECEIVED", retry.variables
    assert retry.variables["SMS_ID"] == str(rows[0][0])
    assert await rig.rows() == rows


async def test_pjsip_retry_published_once(rig: Rig) -> None:
    """The repeated try does not put the message on the EventBus a second time."""
    first = pjsip(rig.server.port, "once only", variables={"SMSD_KEY": DIALPLAN_KEY},
                  close_after=READS_BEFORE_REPORT)
    await commit_then_lose_answer(rig, first)
    retry = pjsip(rig.server.port, "once only", variables={"SMSD_KEY": DIALPLAN_KEY})
    await retry.run()
    await rig.idle()
    (row,) = await rig.rows()
    await asyncio.sleep(0)  # let the bus task take what was offered
    await rig.bus.join()
    assert [e.id for e in rig.published] == [row[0]]


async def test_chan_sip_retry_keyed_by_call_id(rig: Rig) -> None:
    """chan_sip shows Call-ID and CSeq in MESSAGE_DATA: without SMSD_KEY the retry of the
    same MESSAGE gets the same SMS_ID, while a new MESSAGE (new Call-ID) is a new row."""
    first = chan_sip(rig.server.port, "hello from sipp", "1-1995@127.0.0.1", "1 MESSAGE",
                     close_after=READS_BEFORE_REPORT)
    await commit_then_lose_answer(rig, first)
    retry = chan_sip(rig.server.port, "hello from sipp", "1-1995@127.0.0.1", "1 MESSAGE")
    await retry.run()
    await rig.idle()
    (row,) = await rig.rows()
    assert retry.variables["SMS_STATUS"] == "RECEIVED"
    assert retry.variables["SMS_ID"] == str(row[0])

    other = chan_sip(rig.server.port, "hello from sipp", "1-2022@127.0.0.1", "1 MESSAGE")
    await other.run()
    await rig.idle()
    rows = await rig.rows()
    assert len(rows) == 2 and other.variables["SMS_ID"] == str(rows[1][0])


async def test_query_key_wins_and_needs_no_extra_read(rig: Rig) -> None:
    """``sms-receive?key=...`` names the message: both tries give one row, and no
    key read is sent to Asterisk (one GET FULL VARIABLE, the message read)."""
    tries = []
    for _ in range(2):
        fake = FakeAsteriskAgi.message_pjsip(
            rig.server.port, "sms-receive?key=abc-123", from_=FROM_PJSIP, to=TO_PJSIP,
            body="keyed", extension=DID,
        )
        await fake.run()
        await rig.idle()
        tries.append(fake)
    (row,) = await rig.rows()
    assert [t.variables["SMS_ID"] for t in tries] == [str(row[0])] * 2
    for t in tries:
        reads = [c for c in t.commands if c.upper().startswith("GET FULL VARIABLE")]
        assert len(reads) == 1 and "Call-ID" not in reads[0]


async def test_pjsip_without_any_key_stores_every_try(rig: Rig) -> None:
    """PJSIP gives no Call-ID to the dialplan: with no SMSD_KEY and no ?key= nothing
    names the message, so each try is its own row (the old behaviour, nothing lost)."""
    for _ in range(2):
        fake = pjsip(rig.server.port, "unkeyed")
        await fake.run()
        await rig.idle()
        assert fake.variables["SMS_STATUS"] == "RECEIVED"
        assert any("MESSAGE_DATA(Call-ID)" in c for c in fake.commands)
    assert [r[3] for r in await rig.rows()] == ["unkeyed", "unkeyed"]


async def test_non_message_channel_key_argument(rig: Rig) -> None:
    """Off a message channel (from, to, body as arguments) argument 4 is the key."""
    ids = []
    for _ in range(2):
        fake = FakeAsteriskAgi(rig.server.port, "sms-receive",
                               args=["+15557654321", DID, "by args", "k-77"])
        await fake.run()
        await rig.idle()
        ids.append(fake.variables["SMS_ID"])
    (row,) = await rig.rows()
    assert ids == [str(row[0])] * 2


class GarbledKeyRead(FakeAsteriskAgi):
    """Answers the key read (the expression naming MESSAGE_DATA(Call-ID)) with junk."""

    def substitute(self, expr: str) -> str:
        if "MESSAGE_DATA(Call-ID)" in expr:
            return "not,base64!"
        return super().substitute(expr)


async def test_unreadable_key_answer_still_stores_the_message(rig: Rig) -> None:
    """A key read Asterisk answers with something that is not three marked base64 fields
    costs only the dedupe: the message is stored and RECEIVED, nothing is lost."""
    fake = GarbledKeyRead(
        rig.server.port, "sms-receive", channel="Message/ast_msg_queue",
        channel_type="Message", context="sms-in", extension=DID, priority=3,
        message=SipMessage(FROM_PJSIP, TO_PJSIP, "still here", {"PJSIP_ENDPOINT": ""}),
    )
    await fake.run()
    await rig.idle()
    assert fake.variables["SMS_STATUS"] == "RECEIVED", fake.variables
    (row,) = await rig.rows()
    assert fake.variables["SMS_ID"] == str(row[0]) and row[3] == "still here"
