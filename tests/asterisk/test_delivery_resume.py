"""AMI drops while an inbound SMS is handed to several phones (MessageSend each).

The message stays 'pending' and is routed again when AMI is back; the phones
that Asterisk already took it for must not get it a second time.  Real store,
real AmiClient, conversations and kite-sms procedure, fake Asterisk manager
on a loopback socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from smsd.asterisk.ami import AmiClient
from smsd.dialplan.procedure import KiteSmsProcedure
from smsd.store import Store
from tests.asterisk.conftest import CUSTOMER, DID, add_inbound, logged_in, route_state, wire
from tests.fakes.asterisk_ami import FakeAmi, _Session

pytestmark = pytest.mark.timeout(60)


class DropsMidDelivery(FakeAmi):
    """An Asterisk that goes away when the (n+1)-th MessageSend arrives, unanswered.

    ``drop_after`` MessageSends are answered normally; the next one closes the
    manager connection without a response, as an Asterisk restart would, and
    the server then takes new logins again.
    """

    def __init__(self, drop_after: int) -> None:
        super().__init__()
        self.drop_after: int | None = drop_after
        self.dropped = 0

    async def _dispatch(self, s: _Session, a: dict[str, list[str]]) -> bool:
        action = a.get("action", [""])[0].lower()
        if (action == "messagesend" and self.drop_after is not None
                and len(self.messages) >= self.drop_after):
            self.drop_after = None
            self.dropped += 1
            return False        # _handle closes this connection; the action is lost
        return await super()._dispatch(s, a)


@dataclass
class Rig:
    store: Store
    client: AmiClient
    procedure: KiteSmsProcedure

    async def wait_routed(self, sms_id: int) -> tuple[str, int | None]:
        """Route state once the reconnect's retry has run (bounded wait, not a timing check)."""
        for _ in range(2000):
            state = await route_state(self.store, sms_id)
            if state[0] != "pending":
                return state
            await asyncio.sleep(0.005)
        return await route_state(self.store, sms_id)


@pytest.fixture
async def fake() -> AsyncIterator[DropsMidDelivery]:
    server = DropsMidDelivery(drop_after=1)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def rig(tmp_path: Path, fake: DropsMidDelivery) -> AsyncIterator[Rig]:
    w = await wire(tmp_path, fake.port)
    async with logged_in(w, 5):
        yield Rig(w.store, w.client, w.procedure)


async def test_drop_after_first_message_send_serves_each_phone_once(
    rig: Rig, fake: DropsMidDelivery
) -> None:
    """1. Routing starts: the first phone's MessageSend succeeds, then AMI drops on the
       second; the message stays pending, one delivery is recorded.
    2. AMI is back (the client logs in again): the pending message is routed and only
       the phones still waiting get it, so every participant has it exactly once."""
    sms = await add_inbound(rig.store, CUSTOMER, DID, "one copy each, please")
    assert await rig.procedure.route(sms.id) == "pending"
    assert fake.dropped == 1
    assert len(fake.messages) == 1
    first_phone = fake.messages[0].to
    rows = await rig.store.fetchall(
        "SELECT extension FROM inbound_deliveries WHERE inbound_id = ?", (sms.id,))
    assert [f"pjsip:{r['extension']}" for r in rows] == [first_phone]

    state, conv_id = await rig.wait_routed(sms.id)
    assert state == "routed" and conv_id is not None
    participants = await rig.store.fetchall(
        "SELECT extension FROM conversation_participants WHERE conversation_id = ?"
        " AND active = TRUE ORDER BY extension", (conv_id,))
    expected = sorted(f"pjsip:{r['extension']}" for r in participants)
    assert len(expected) >= 2, expected      # the drop really fell between two phones
    got = sorted(m.to for m in fake.messages)
    assert got == expected                   # each phone exactly once
    assert {m.body for m in fake.messages} == {"one copy each, please"}
    assert fake.connections >= 2             # the rest went over a new login


async def test_route_again_after_success_sends_nothing(rig: Rig, fake: DropsMidDelivery) -> None:
    """A message already routed is not handed to any phone again when routing is
    asked once more (route_pending at the next AMI login)."""
    fake.drop_after = None
    sms = await add_inbound(rig.store, CUSTOMER, DID, "just once")
    assert await rig.procedure.route(sms.id) == "routed"
    sent = len(fake.messages)
    assert sent >= 2
    await rig.procedure.route_pending()
    assert await rig.procedure.route(sms.id) == "routed"
    assert len(fake.messages) == sent
