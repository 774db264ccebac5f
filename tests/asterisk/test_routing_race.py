"""Inbound routing when AMI reconnects while the same message is being routed.

The reconnect's ``route_pending`` asks for a message whose first attempt is
still running on the dropped link.  That request must not be lost: when the
first attempt ends "pending" and AMI is back, the message is routed again at
once (not at the next reconnect); when AMI is down again, the next login does
it.  And whoever delivers second (directory fallback or a late kite-sms AGI
claim) must find the message already routed, so no phone gets it twice.

Real store on disk, real AmiClient over TCP to the fake Asterisk manager on
127.0.0.1, real Conversations and KiteSmsProcedure.

Today's AmiClient fails an action the moment its link goes and logs in again
only after a backoff sleep, and the attempt awaits nothing between that
failure and its return; so with today's code the first attempt ends before
the reconnect's ``route_pending`` runs (checked by experiment).  The guard
matters once that stops being true (a client that notices a dead link later,
an await added on that path), so the tests force the interleaving: ``HeldTail``
holds the first attempt's AmiNotConnected until the reconnect has run its
hooks.  The late-claim tests need no such help: a kite-sms AGI call that
arrives after the claim timeout meets the directory fallback for real.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from smsd.asterisk.ami import AmiClient, AmiNotConnected
from smsd.config import Config
from smsd.core.conversations import Conversations
from smsd.core.events import InboundSms
from smsd.dialplan.procedure import KiteSmsProcedure
from smsd.store import Store
from tests.asterisk.conftest import CUSTOMER, DID, add_inbound, logged_in, route_state, wire
from tests.fakes.asterisk_ami import FakeAmi, _Session

pytestmark = pytest.mark.timeout(30)

# Bound on every wait for a condition below; only a broken build gets near it.
DEADLINE_S = 10.0
# The directory's users for DID (UC-Business+ with DID as office number).
DID_PHONES = ["pjsip:100", "pjsip:201"]


class GatedAmi(FakeAmi):
    """Asterisk's manager with two switches over MessageSend.

    ``drop_sends``: that many MessageSends close the connection unanswered, as
    an Asterisk restart (or a reset TCP link) does; the server keeps taking
    new logins.  ``gate``: while set to an unset Event, a MessageSend waits for
    it before Asterisk answers (a busy SIP stack); ``held`` is set once one
    waits.  Manager sessions handle one action at a time, as Asterisk's do.
    """

    def __init__(self) -> None:
        super().__init__()
        self.drop_sends = 0
        self.dropped = 0
        self.gate: asyncio.Event | None = None
        self.held = asyncio.Event()

    async def _dispatch(self, s: _Session, a: dict[str, list[str]]) -> bool:
        if a.get("action", [""])[0].lower() == "messagesend":
            if self.drop_sends > 0:
                self.drop_sends -= 1
                self.dropped += 1
                return False        # _handle closes the connection; the action is lost
            if self.gate is not None:
                self.held.set()
                await self.gate.wait()
        return await super()._dispatch(s, a)


class HeldTail(Conversations):
    """Conversations whose first AmiNotConnected is held until the test releases it.

    Stands for a routing attempt that finishes after AMI is back (see the
    module docstring).  ``entered`` counts on_inbound calls, so a test can see
    a second delivery start while the first one is still running.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hold_tail = False
        self.lost = asyncio.Event()       # the held attempt has lost AMI
        self.release = asyncio.Event()
        self.entered = 0

    async def on_inbound(self, sms: InboundSms, members: Sequence[str]) -> int | None:
        self.entered += 1
        try:
            return await super().on_inbound(sms, members)
        except AmiNotConnected:
            if self.hold_tail:
                self.hold_tail = False
                self.lost.set()
                await self.release.wait()
            raise


@dataclass
class Rig:
    config: Config
    store: Store
    client: AmiClient
    conversations: HeldTail
    procedure: KiteSmsProcedure

    async def conversations_count(self) -> int:
        row = await self.store.fetchone("SELECT COUNT(*) AS n FROM conversations")
        assert row is not None
        return int(row["n"])

    async def delivered_to(self, sms_id: int) -> list[str]:
        rows = await self.store.fetchall(
            "SELECT extension FROM inbound_deliveries WHERE inbound_id = ? ORDER BY extension",
            (sms_id,))
        return [str(r["extension"]) for r in rows]

    async def wait_state(self, sms_id: int, state: str) -> tuple[str, int | None]:
        """The message's route state once it is ``state`` (or when the deadline passes)."""
        got = await route_state(self.store, sms_id)
        with contextlib.suppress(TimeoutError):   # the caller asserts on what it got
            async with asyncio.timeout(DEADLINE_S):
                while got[0] != state:
                    await asyncio.sleep(0.005)
                    got = await route_state(self.store, sms_id)
        return got


async def until(cond: Callable[[], bool]) -> None:
    """Wait for ``cond`` with a deadline (a condition, never a timing claim)."""
    async with asyncio.timeout(DEADLINE_S):
        while True:
            if cond():
                return
            await asyncio.sleep(0.005)


def events(logs: Sequence[Mapping[str, Any]], name: str, sms_id: int) -> list[Mapping[str, Any]]:
    """The captured log events called ``name`` about message ``sms_id``."""
    return [e for e in logs if e["event"] == name and e.get("sms_id") == sms_id]


@pytest.fixture
async def fake() -> AsyncIterator[GatedAmi]:
    server = GatedAmi()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def rig(tmp_path: Path, fake: GatedAmi) -> AsyncIterator[Rig]:
    w = await wire(tmp_path, fake.port, conversations_cls=HeldTail)
    assert isinstance(w.conversations, HeldTail)
    async with logged_in(w, DEADLINE_S):
        yield Rig(w.config, w.store, w.client, w.conversations, w.procedure)


async def _attempt_outlives_reconnect(rig: Rig, fake: GatedAmi, sms_id: int) -> asyncio.Task[str]:
    """Steps 1-2 shared by the tests: the first attempt loses AMI and is still
    running when the client has logged in again and run its on_connected hook."""
    fake.drop_sends = 1
    rig.conversations.hold_tail = True
    attempt = asyncio.create_task(rig.procedure.route(sms_id))
    await asyncio.wait_for(rig.conversations.lost.wait(), DEADLINE_S)
    assert fake.dropped == 1 and fake.messages == []
    # The client logs in again by itself and its hook (route_pending) has run.
    assert await rig.client.wait_connected(DEADLINE_S, hooks=True)
    assert fake.connections == 2
    assert not attempt.done()
    assert await route_state(rig.store, sms_id) == ("pending", None)
    return attempt


class TestReconnectDuringAttempt:
    async def test_reconnect_during_attempt_routes_it_again(
        self, rig: Rig, fake: GatedAmi
    ) -> None:
        """1. An SMS to the Sales DID is being routed (directory: phones 100 and 201);
           Asterisk drops the link on the first MessageSend, unanswered.
        2. The client logs in again and route_pending asks for the message while the
           first attempt is still running: it is busy, so that call returns at once.
        3. The first attempt ends "pending" (its link is gone) with AMI up again: the
           message must be routed right then, not at some later reconnect, with one
           MessageSend per phone and a single conversation."""
        sms = await add_inbound(rig.store, CUSTOMER, DID, "are you open today?")
        with capture_logs() as logs:
            attempt = await _attempt_outlives_reconnect(rig, fake, sms.id)
            rig.conversations.release.set()
            result = await asyncio.wait_for(attempt, DEADLINE_S)
        state, conv_id = await route_state(rig.store, sms.id)
        assert (result, state) == ("routed", "routed")
        assert conv_id is not None
        assert sorted(m.to for m in fake.messages) == DID_PHONES
        assert {m.body for m in fake.messages} == {"are you open today?"}
        assert await rig.conversations_count() == 1
        assert await rig.delivered_to(sms.id) == ["100", "201"]
        assert len(events(logs, "kite_sms.route_queued", sms.id)) == 1
        assert len(events(logs, "kite_sms.route_again", sms.id)) == 1
        [routed] = events(logs, "kite_sms.routed", sms.id)
        assert routed["conversation"] == conv_id
        # Later logins find nothing left to do: nobody gets it a second time.
        await rig.procedure.route_pending()
        assert sorted(m.to for m in fake.messages) == DID_PHONES

    async def test_still_down_waits_for_next_login(self, rig: Rig, fake: GatedAmi) -> None:
        """1-2. As above: the reconnect's request is remembered while the attempt runs.
        3. Asterisk goes away again before the attempt ends: the attempt ends "pending"
           and is not repeated against a dead link (nothing is sent, nothing is lost).
        4. Asterisk comes back on the same port: that login's route_pending routes the
           message, one MessageSend per phone."""
        sms = await add_inbound(rig.store, CUSTOMER, DID, "second try")
        port = fake.port
        with capture_logs() as logs:
            attempt = await _attempt_outlives_reconnect(rig, fake, sms.id)
            await fake.stop()
            await until(lambda: not rig.client.connected)
            rig.conversations.release.set()
            result = await asyncio.wait_for(attempt, DEADLINE_S)
            assert result == "pending"
            assert await route_state(rig.store, sms.id) == ("pending", None)
            assert events(logs, "kite_sms.route_again", sms.id) == []
            assert [e for e in events(logs, "kite_sms.waiting_for_ami", sms.id)
                    if e.get("queued")]
            up = await FakeAmi().start(port)
            try:
                state, conv_id = await rig.wait_state(sms.id, "routed")
                assert state == "routed" and conv_id is not None
                assert sorted(m.to for m in up.messages) == DID_PHONES
                assert fake.messages == []
                assert await rig.conversations_count() == 1
            finally:
                await up.stop()


class TestOneDeliveryAtATime:
    async def test_late_claim_during_fallback_delivers_nothing_twice(
        self, rig: Rig, fake: GatedAmi
    ) -> None:
        """1. The directory fallback is handing the SMS to the phones (its first
           MessageSend waits in Asterisk).
        2. The kite-sms AGI claim for the same SMS arrives late, naming the same
           members: it must wait for that delivery instead of starting its own.
        3. Once Asterisk answers, each phone has the message exactly once, the
           claim returns the conversation the fallback made, and nothing is resent."""
        sms = await add_inbound(rig.store, CUSTOMER, DID, "who's there?")
        fake.gate = asyncio.Event()
        with capture_logs() as logs:
            attempt = asyncio.create_task(rig.procedure.route(sms.id))
            await asyncio.wait_for(fake.held.wait(), DEADLINE_S)
            claim = asyncio.create_task(rig.procedure.claim(sms.id, ["100", "201"]))
            # Either the claim queues behind the running delivery (fixed) or it starts
            # a delivery of its own (the double-send this test exists to catch).
            await until(lambda: bool(events(logs, "kite_sms.delivery_wait", sms.id))
                        or rig.conversations.entered >= 2)
            fake.gate.set()
            result = await asyncio.wait_for(attempt, DEADLINE_S)
            claimed = await asyncio.wait_for(claim, DEADLINE_S)
        state, conv_id = await route_state(rig.store, sms.id)
        assert (result, state) == ("routed", "routed")
        assert sorted(m.to for m in fake.messages) == DID_PHONES
        assert claimed == conv_id is not None
        assert rig.conversations.entered == 1
        assert await rig.conversations_count() == 1
        assert [e["route_state"] for e in events(logs, "kite_sms.claim_ignored", sms.id)] == [
            "routed"]

    async def test_route_waits_for_running_claim_and_sends_nothing(
        self, rig: Rig, fake: GatedAmi
    ) -> None:
        """A retry (route_pending at a login) that starts while a kite-sms claim is
        delivering the same SMS waits for it, then finds it routed: no Originate, no
        dialplan lookup, no second MessageSend."""
        sms = await add_inbound(rig.store, CUSTOMER, DID, "claimed first")
        fake.gate = asyncio.Event()
        claim = asyncio.create_task(rig.procedure.claim(sms.id, ["100"]))
        await asyncio.wait_for(fake.held.wait(), DEADLINE_S)
        actions_before = len(fake.actions)
        with capture_logs() as logs:
            retry = asyncio.create_task(rig.procedure.route(sms.id))
            # Asterisk handles one action at a time per session, so a retry that did
            # not wait would sit unseen behind the held MessageSend: the wait is what
            # is looked for (without it this deadline fails the test).
            await until(lambda: bool(events(logs, "kite_sms.delivery_wait", sms.id))
                        or retry.done())
            fake.gate.set()
            conv_id = await asyncio.wait_for(claim, DEADLINE_S)
            assert await asyncio.wait_for(retry, DEADLINE_S) == "routed"
        assert conv_id is not None
        assert await route_state(rig.store, sms.id) == ("routed", conv_id)
        assert [m.to for m in fake.messages] == ["pjsip:100"]
        # After the retry started only the claim's UserEvent SmsReceived reached
        # Asterisk: no dialplan lookup, no Originate, no MessageSend.
        later = [a.get("action", [""])[0].lower() for a in fake.actions[actions_before:]]
        assert later == ["userevent"], later
