"""Conversation rules (SEED-NOTES "Inbound and conversations") over the real store
and outbox; inbound delivery through the fake AMI."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from smsd.asterisk.ami import AmiClient
from smsd.config import Config
from smsd.core.conversations import ConversationError, Conversations
from smsd.core.directory import Directory
from smsd.core.outbox import Outbox
from smsd.errors import MessageTooLong
from smsd.store import Store, open_database
from tests.asterisk.conftest import CUSTOMER, DID, DID_GB, add_inbound, make_config
from tests.fakes.asterisk_ami import FakeAmi

pytestmark = pytest.mark.timeout(30)


class World:
    def __init__(self, cfg: Config, store: Store, conv: Conversations, fake: FakeAmi) -> None:
        self.cfg = cfg
        self.store = store
        self.conv = conv
        self.fake = fake
        self.dir = Directory(cfg)

    def user(self, ext: str):  # type: ignore[no-untyped-def]
        u = self.dir.user_by_extension(ext)
        assert u is not None
        return u

    async def active(self, conv_id: int) -> list[str]:
        data = await self.conv.get(conv_id)
        return sorted(p["extension"] for p in data["participants"] if p["active"])


@pytest.fixture(params=["sqlite", "postgresql"])
async def world(
    request: pytest.FixtureRequest, tmp_path: Path, fake_ami: FakeAmi
) -> AsyncIterator[World]:
    """The conversation tests run on both stores: a SQLite file, a fresh PostgreSQL database."""
    cfg = make_config(tmp_path, ami_port=fake_ami.port)
    if request.param == "postgresql":
        cfg = dataclasses.replace(cfg, database_url=request.getfixturevalue("pg_smsd_dsn"))
    store = await open_database(cfg.database, cfg.database_url)
    client = AmiClient(cfg.ami, backoff_min_s=0.05)
    task = asyncio.create_task(client.run())
    assert await client.wait_connected(5, hooks=True)
    conv = Conversations(store, Directory(cfg), cfg, ami=client, outbox=Outbox(store, cfg.policy))
    yield World(cfg, store, conv, fake_ami)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await store.close()


class TestCreateAndJoin:
    async def test_same_number_and_service_joins(self, world: World) -> None:
        """A second request for the same number and service joins the first conversation."""
        first, created = await world.conv.create(world.user("100"), CUSTOMER, "Sales")
        second, created2 = await world.conv.create(world.user("201"), CUSTOMER, "Sales")
        assert (created, created2) == (True, False)
        assert first == second
        assert await world.active(first) == ["100", "201"]
        data = await world.conv.get(first)
        assert data["title"] == CUSTOMER and data["did"] == DID

    async def test_inbound_joins_the_created_conversation(self, world: World) -> None:
        """The customer's SMS lands in the conversation a user opened for their number."""
        conv_id, _ = await world.conv.create(world.user("100"), CUSTOMER, "Sales")
        sms = await add_inbound(world.store, CUSTOMER, DID, "hi")
        assert await world.conv.on_inbound(sms, []) == conv_id
        assert [m.to for m in world.fake.messages] == ["pjsip:100"]

    async def test_service_needs_sms_number(self, world: World) -> None:
        """Only a service (call group) with an SMS number can hold conversations."""
        with pytest.raises(ConversationError) as err:
            await world.conv.create(world.user("100"), CUSTOMER, "NoNumber")
        assert err.value.status == 404
        assert [s.name for s in world.conv.services_for(world.user("100"))] == ["Sales"]

    async def test_bad_number_and_non_member(self, world: World) -> None:
        """A non-E.164 number or a user outside the service is refused, nothing stored."""
        with pytest.raises(ConversationError):
            await world.conv.create(world.user("100"), "5557654321", "Sales")
        with pytest.raises(ConversationError) as err:
            await world.conv.create(world.user("202"), CUSTOMER, "Sales")  # UC-Essential
        assert err.value.status == 403
        assert await world.store.fetchall("SELECT id FROM conversations") == []


class TestParticipants:
    async def test_internal_only(self, world: World) -> None:
        """Internal users can be added and removed; the external party never."""
        conv_id, _ = await world.conv.create(world.user("100"), CUSTOMER, "Sales")
        alice = world.user("100")
        await world.conv.add_participant(conv_id, "201", alice)
        assert await world.active(conv_id) == ["100", "201"]
        for bad in (CUSTOMER, "+15550009999"):
            with pytest.raises(ConversationError):
                await world.conv.add_participant(conv_id, bad, alice)
            with pytest.raises(ConversationError):
                await world.conv.remove_participant(conv_id, bad, alice)
        with pytest.raises(ConversationError):
            await world.conv.add_participant(conv_id, "202", alice)   # UC-Essential
        with pytest.raises(ConversationError) as err:
            await world.conv.add_participant(conv_id, "999", alice)
        assert err.value.status == 404
        await world.conv.remove_participant(conv_id, "201", alice)
        assert await world.active(conv_id) == ["100"]
        with pytest.raises(ConversationError):
            await world.conv.remove_participant(conv_id, "201", alice)  # already gone

    async def test_assign_and_reassign(self, world: World) -> None:
        """A conversation is assigned to one service member and can be reassigned."""
        conv_id, _ = await world.conv.create(world.user("100"), CUSTOMER, "Sales")
        await world.conv.assign(conv_id, "100", world.user("100"))
        assert (await world.conv.get(conv_id))["assignee"] == "100"
        await world.conv.assign(conv_id, "201", world.user("100"))
        data = await world.conv.get(conv_id)
        assert data["assignee"] == "201"
        assert "201" in await world.active(conv_id)
        with pytest.raises(ConversationError):
            await world.conv.assign(conv_id, "300", world.user("100"))  # not a service member
        assert (await world.conv.get(conv_id))["assignee"] == "201"

    async def test_everyone_left_then_customer_writes(self, world: World) -> None:
        """When all participants left and the customer writes again, the service's
        members are added back and get the message."""
        conv_id, _ = await world.conv.create(world.user("100"), CUSTOMER, "Sales")
        await world.conv.remove_participant(conv_id, "100", world.user("100"))
        assert await world.active(conv_id) == []
        sms = await add_inbound(world.store, CUSTOMER, DID, "hello again")
        assert await world.conv.on_inbound(sms, []) == conv_id
        assert await world.active(conv_id) == ["100", "201"]
        assert sorted(m.to for m in world.fake.messages) == ["pjsip:100", "pjsip:201"]


class TestReplies:
    async def test_reply_goes_out_from_the_did(self, world: World) -> None:
        """A reply is queued to the customer with the conversation's DID as sender."""
        conv_id, _ = await world.conv.create(world.user("100"), CUSTOMER, "Sales")
        msg_id = await world.conv.reply(conv_id, world.user("100"), "We open at 9.")
        row = await world.store.fetchone(
            "SELECT sender, recipient, conversation_id, origin, user FROM messages WHERE id = ?",
            (msg_id,))
        assert row is not None
        assert tuple(row) == (DID, CUSTOMER, conv_id, "conversation", "alice")
        history = await world.conv.history(conv_id)
        assert [(h["direction"], h["text"]) for h in history] == [("out", "We open at 9.")]

    async def test_reply_limit(self, world: World) -> None:
        """Conversation input is at most 670 characters; longer stores nothing."""
        conv_id, _ = await world.conv.create(world.user("100"), CUSTOMER, "Sales")
        with pytest.raises(MessageTooLong):
            await world.conv.reply(conv_id, world.user("100"), "x" * 671)
        assert await world.store.fetchall("SELECT id FROM messages") == []

    async def test_stop_on_us_did_blocks(self, world: World) -> None:
        """STOP from a participant on a US DID blocks the number; nothing is sent."""
        conv_id, _ = await world.conv.create(world.user("100"), CUSTOMER, "Sales")
        assert await world.conv.reply(conv_id, world.user("100"), " stop ") is None
        assert await world.store.is_blocked(CUSTOMER)
        assert await world.store.fetchall("SELECT id FROM messages") == []

    async def test_stop_through_the_phone_path(self, world: World) -> None:
        """participant_stop (AGI sms-send) blocks only for an active participant's STOP."""
        await world.conv.create(world.user("100"), CUSTOMER, "Sales")
        assert not await world.conv.participant_stop(world.user("100"), CUSTOMER, "stopping by")
        assert not await world.conv.participant_stop(world.user("201"), CUSTOMER, "STOP")
        assert not await world.store.is_blocked(CUSTOMER)
        assert await world.conv.participant_stop(world.user("100"), CUSTOMER, "Stop")
        assert await world.store.is_blocked(CUSTOMER)

    async def test_stop_on_uk_did_is_just_text(self, world: World) -> None:
        """On a non-NANP DID, STOP is an ordinary reply; an admin blocks numbers there."""
        conv_id, _ = await world.conv.create(world.user("400"), CUSTOMER, DID_GB)
        assert await world.conv.reply(conv_id, world.user("400"), "STOP") is not None
        assert not await world.store.is_blocked(CUSTOMER)

    async def test_reply_context(self, world: World) -> None:
        """reply_context finds the active participant's conversation and its DID."""
        conv_id, _ = await world.conv.create(world.user("100"), CUSTOMER, "Sales")
        assert await world.conv.reply_context(world.user("100"), CUSTOMER) == (conv_id, DID)
        assert await world.conv.reply_context(world.user("201"), CUSTOMER) is None
        await world.conv.remove_participant(conv_id, "100", world.user("100"))
        assert await world.conv.reply_context(world.user("100"), CUSTOMER) is None

    async def test_history_in_and_out(self, world: World) -> None:
        """History lists inbound and outbound messages of the conversation in order."""
        conv_id, _ = await world.conv.create(world.user("100"), CUSTOMER, "Sales")
        sms = await add_inbound(world.store, CUSTOMER, DID, "question")
        await world.conv.on_inbound(sms, [])
        await world.conv.reply(conv_id, world.user("100"), "answer")
        history = await world.conv.history(conv_id)
        assert [(h["direction"], h["text"]) for h in history] == [
            ("in", "question"), ("out", "answer")]
