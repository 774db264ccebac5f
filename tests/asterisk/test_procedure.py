"""The kite-sms procedure end to end: fake Asterisk (AMI + its FastAGI client),
the real FastAGI server and handlers, the real store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from smsd.agi.handlers import build_handlers
from smsd.agi.ports import AgiServices
from smsd.agi.server import AgiServer
from smsd.asterisk.ami import AmiClient
from smsd.config import Config, Policy
from smsd.core.conversations import Conversations
from smsd.dialplan.procedure import KiteSmsProcedure
from smsd.store import Store
from tests.asterisk.conftest import (
    CUSTOMER,
    DID,
    DID_DE,
    DID_NO_GROUP,
    DID_NOBODY,
    add_inbound,
    fresh_login,
    route_state,
    wire,
)
from tests.core.polling import eventually
from tests.fakes.asterisk_ami import FakeAmi

pytestmark = pytest.mark.timeout(60)


@dataclass
class Pbx:
    config: Config
    store: Store
    ami: FakeAmi
    client: AmiClient
    conversations: Conversations
    procedure: KiteSmsProcedure
    agi: AgiServer

    def kite_sms_exten(self, did: str, members: str, *, agi_port: int | None = None) -> None:
        """[kite-sms] DID => Answer, AGI(...kite-sms?members=a\\,b), Hangup.

        The commas are escaped as a dialplan writer must: Asterisk splits
        application data on unescaped commas.
        """
        port = self.agi.port if agi_port is None else agi_port
        escaped = members.replace(",", "\\,")
        self.ami.dialplan.setdefault("kite-sms", {})[did] = [
            "Answer()", f"AGI(agi://127.0.0.1:{port}/kite-sms?members={escaped})", "Hangup()"]

    async def participants(self, conv_id: int) -> list[str]:
        rows = await self.store.fetchall(
            "SELECT extension FROM conversation_participants WHERE conversation_id = ?"
            " AND active = TRUE ORDER BY extension", (conv_id,))
        return [r["extension"] for r in rows]


async def build(tmp_path: Path, fake: FakeAmi, *, policy: Policy | None = None,
                claim_timeout_s: float = 10.0, ami_port: int | None = None
                ) -> tuple[Pbx, asyncio.Task[None]]:
    w = await wire(tmp_path, fake.port if ami_port is None else ami_port, policy=policy,
                   claim_timeout_s=claim_timeout_s)
    services = AgiServices(outbox=None, inbox=None, directory=w.directory,  # type: ignore[arg-type]
                           conversations=w.conversations, procedure=w.procedure)
    agi = AgiServer(build_handlers(services), "127.0.0.1", 0)
    await agi.start()
    task = asyncio.create_task(w.client.run())
    return Pbx(w.config, w.store, fake, w.client, w.conversations, w.procedure, agi), task


@pytest.fixture
async def pbx(tmp_path: Path, fake_ami: FakeAmi) -> AsyncIterator[Pbx]:
    p, task = await build(tmp_path, fake_ami)
    assert await p.client.wait_connected(5, hooks=True)
    yield p
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await p.agi.close()
    await p.store.close()


class TestDialplanRoute:
    async def test_extension_originate_agi_claim(self, pbx: Pbx) -> None:
        """DID in [kite-sms]: Originate -> FastAGI kite-sms -> claim; only eligible static
        members (UC-Business+, DID as office number) join and get the SMS on their phones."""
        pbx.kite_sms_exten(DID, "100,201,202,300")
        sms = await add_inbound(pbx.store, CUSTOMER, DID, "Hi, is the shop open?")
        assert await pbx.procedure.route(sms.id) == "routed"
        state, conv_id = await route_state(pbx.store, sms.id)
        assert state == "routed" and conv_id is not None
        assert await pbx.participants(conv_id) == ["100", "201"]
        run = pbx.ami.agi_runs[-1]
        await asyncio.wait_for(run.done.wait(), 10)   # the AGI reports after the claim
        assert run.status == "SUCCESS"
        assert run.variables["SMS_STATUS"] == "ROUTED"
        assert run.variables["SMS_CONVERSATION"] == str(conv_id)
        assert sorted(m.to for m in pbx.ami.messages) == ["pjsip:100", "pjsip:201"]
        for m in pbx.ami.messages:
            # Issue 16 (6): the bare number; Asterisk fills the host from the endpoint.
            assert m.from_ == CUSTOMER
            assert m.body == "Hi, is the shop open?"
        [event] = [e for e in pbx.ami.user_events if e["UserEvent"] == "SmsReceived"]
        assert event["InboundId"] == event["Id"] and "OutboundId" not in event
        assert (event["Id"], event["From"], event["To"], event["Via"], event["State"]) == (
            str(sms.id), CUSTOMER, DID, "dialplan", "routed")
        assert event["Conversation"] == str(conv_id) and event["Members"] == "100,201"
        conv = await pbx.conversations.get(conv_id)
        assert conv["title"] == CUSTOMER and conv["service"] == {"kind": "group", "name": "Sales"}

    async def test_unescaped_commas_reach_the_claim(self, pbx: Pbx) -> None:
        """The documented form AGI(agi://.../kite-sms?members=100,201) gives both members."""
        pbx.ami.dialplan["kite-sms"] = {DID: [
            "Answer()", f"AGI(agi://127.0.0.1:{pbx.agi.port}/kite-sms?members=100,201)"]}
        sms = await add_inbound(pbx.store, CUSTOMER, DID, "both?")
        assert await pbx.procedure.route(sms.id) == "routed"
        _, conv_id = await route_state(pbx.store, sms.id)
        assert conv_id is not None
        await asyncio.wait_for(pbx.ami.agi_runs[-1].done.wait(), 10)
        assert await pbx.participants(conv_id) == ["100", "201"]
        assert pbx.ami.agi_runs[-1].variables.get("SMS_STATUS") == "ROUTED"

    async def test_second_message_joins_same_conversation(self, pbx: Pbx) -> None:
        """A second SMS from the same customer to the same DID lands in the same conversation."""
        pbx.kite_sms_exten(DID, "100")
        first = await add_inbound(pbx.store, CUSTOMER, DID, "one")
        second = await add_inbound(pbx.store, CUSTOMER, DID, "two")
        await pbx.procedure.route(first.id)
        await pbx.procedure.route(second.id)
        assert (await route_state(pbx.store, first.id))[1] == (
            await route_state(pbx.store, second.id))[1]

    async def test_agi_unreachable_falls_back_after_timeout(
        self, tmp_path: Path, fake_ami: FakeAmi
    ) -> None:
        """The DID exists but the AGI never claims (server down): bounded wait, then directory."""
        p, task = await build(tmp_path, fake_ami, claim_timeout_s=0.3)
        try:
            assert await p.client.wait_connected(5)
            probe = await FakeAmi().start()
            dead_port = probe.port
            await probe.stop()
            p.kite_sms_exten(DID, "100", agi_port=dead_port)
            sms = await add_inbound(p.store, CUSTOMER, DID, "anyone?")
            assert await p.procedure.route(sms.id) == "routed"
            _, conv_id = await route_state(p.store, sms.id)
            assert conv_id is not None
            assert await p.participants(conv_id) == ["100", "201"]   # directory users of DID
            await asyncio.wait_for(p.ami.agi_runs[-1].done.wait(), 10)
            assert p.ami.agi_runs[-1].status == "FAILURE"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await p.agi.close()
            await p.store.close()


class TestDialplanLookup:
    """The [kite-sms] lookup is the AMI action ShowDialPlan (write class 'reporting');
    only the DID itself routes through the dialplan, anything else goes to the directory."""

    def asked(self, pbx: Pbx) -> list[tuple[str, str]]:
        return [(a["context"][0], a["extension"][0]) for a in pbx.ami.actions
                if a["action"] == ["ShowDialPlan"]]

    async def test_exact_did_routes_via_dialplan(self, pbx: Pbx) -> None:
        """The DID as an extension: ShowDialPlan finds it, the Originate runs the AGI,
        and no CLI Command is ever sent."""
        pbx.ami.write = ("originate", "message", "user", "reporting")
        pbx.kite_sms_exten(DID, "100")
        sms = await add_inbound(pbx.store, CUSTOMER, DID, "via dialplan")
        assert await pbx.procedure.route(sms.id) == "routed"
        _, conv_id = await route_state(pbx.store, sms.id)
        assert conv_id is not None and await pbx.participants(conv_id) == ["100"]
        assert self.asked(pbx) == [("kite-sms", DID)]
        assert [a["channel"] for a in pbx.ami.originates] == [[f"Local/{DID}@kite-sms"]]
        assert not [a for a in pbx.ami.actions if a["action"] == ["Command"]]

    async def test_did_in_included_context_routes_via_dialplan(self, pbx: Pbx) -> None:
        """Issue 16 (7): the DID's extension is in a context [kite-sms] includes (no
        Answer(), as the sample now has it).  Asterisk lists it under the included
        context and routes Local/<DID>@kite-sms there, so the dialplan decides: only
        100 takes part, not the directory's 100 and 201."""
        pbx.ami.dialplan["kite-sms"] = {}
        pbx.ami.dialplan["kite-sms-branch"] = {DID: [
            f"AGI(agi://127.0.0.1:{pbx.agi.port}/kite-sms?members=100)", "Hangup()"]}
        pbx.ami.includes["kite-sms"] = ["kite-sms-branch"]
        sms = await add_inbound(pbx.store, CUSTOMER, DID, "via an include")
        assert await pbx.procedure.route(sms.id) == "routed"
        _, conv_id = await route_state(pbx.store, sms.id)
        assert conv_id is not None and await pbx.participants(conv_id) == ["100"]
        assert [a["channel"] for a in pbx.ami.originates] == [[f"Local/{DID}@kite-sms"]]
        [run] = pbx.ami.agi_runs
        await asyncio.wait_for(run.done.wait(), 10)
        assert run.status == "SUCCESS"

    async def test_pattern_only_falls_back_to_directory(self, pbx: Pbx) -> None:
        """[kite-sms] holds only a pattern matching the DID: Asterisk lists it, but it is
        not the DID, so nothing is originated and the directory users get the SMS."""
        pbx.ami.dialplan["kite-sms"] = {"_+1NXX.": [
            "Answer()", f"AGI(agi://127.0.0.1:{pbx.agi.port}/kite-sms?members=100)"]}
        sms = await add_inbound(pbx.store, CUSTOMER, DID, "pattern?")
        with capture_logs() as logs:
            assert await pbx.procedure.route(sms.id) == "routed"
        _, conv_id = await route_state(pbx.store, sms.id)
        assert conv_id is not None and await pbx.participants(conv_id) == ["100", "201"]
        assert self.asked(pbx) == [("kite-sms", DID)]
        assert pbx.ami.originates == [] and pbx.ami.agi_runs == []
        assert [e["did"] for e in logs if e["event"] == "kite_sms.no_extension"] == [DID]

    async def test_missing_context_falls_back_to_directory(self, pbx: Pbx) -> None:
        """No [kite-sms] at all ('Did not find context'): directory users get it."""
        pbx.ami.dialplan = {"other": {DID: ["Answer()"]}}
        sms = await add_inbound(pbx.store, CUSTOMER, DID_NO_GROUP, "no context")
        assert await pbx.procedure.route(sms.id) == "routed"
        _, conv_id = await route_state(pbx.store, sms.id)
        assert conv_id is not None and await pbx.participants(conv_id) == ["203"]
        assert self.asked(pbx) == [("kite-sms", DID_NO_GROUP)]
        assert pbx.ami.originates == []

    async def test_permission_denied_logs_and_falls_back(self, pbx: Pbx) -> None:
        """An AMI user without 'reporting': the lookup is refused, the procedure logs
        kite_sms.dialplan_lookup_failed with the fix ('reporting') and the directory
        users still get the message; nothing is lost."""
        pbx.ami.write = ("originate", "message", "user", "command")
        await fresh_login(pbx.ami, pbx.client)
        pbx.kite_sms_exten(DID, "100")
        sms = await add_inbound(pbx.store, CUSTOMER, DID, "denied lookup")
        with capture_logs() as logs:
            assert await pbx.procedure.route(sms.id) == "routed"
        [failed] = [e for e in logs if e["event"] == "kite_sms.dialplan_lookup_failed"]
        assert failed["sms_id"] == sms.id and "'reporting'" in failed["error"]
        _, conv_id = await route_state(pbx.store, sms.id)
        assert conv_id is not None and await pbx.participants(conv_id) == ["100", "201"]
        assert pbx.ami.originates == []
        assert sorted((m.to, m.body) for m in pbx.ami.messages) == [
            ("pjsip:100", "denied lookup"), ("pjsip:201", "denied lookup")]


class TestDirectoryFallback:
    async def test_no_extension_uses_directory(self, pbx: Pbx) -> None:
        """No [kite-sms] extension for the DID: users whose office number it is get it."""
        sms = await add_inbound(pbx.store, CUSTOMER, DID_NO_GROUP, "hello Dan")
        assert await pbx.procedure.route(sms.id) == "routed"
        _, conv_id = await route_state(pbx.store, sms.id)
        assert conv_id is not None
        assert await pbx.participants(conv_id) == ["203"]
        assert [m.to for m in pbx.ami.messages] == ["pjsip:203"]
        assert pbx.ami.originates == []                  # nothing to originate into
        conv = await pbx.conversations.get(conv_id)
        assert conv["service"] == {"kind": "did", "name": DID_NO_GROUP}

    async def test_no_recipient_is_unrouted_and_counted(self, pbx: Pbx) -> None:
        """Nobody has the DID: the message is kept, marked unrouted, logged and counted."""
        sms = await add_inbound(pbx.store, CUSTOMER, DID_NOBODY, "lost?")
        assert await pbx.procedure.route(sms.id) == "unrouted"
        assert await route_state(pbx.store, sms.id) == ("unrouted", None)
        assert pbx.procedure.unrouted == 1
        assert pbx.ami.messages == []
        [event] = pbx.ami.user_events
        assert (event["UserEvent"], event["State"], event["Id"]) == (
            "SmsReceived", "unrouted", str(sms.id))
        row = await pbx.store.fetchone("SELECT text FROM inbound WHERE id = ?", (sms.id,))
        assert row is not None and row["text"] == "lost?"
        assert await pbx.store.fetchall("SELECT id FROM conversations") == []

    async def test_outbound_only_did_is_unrouted(self, pbx: Pbx) -> None:
        """A German DID is outbound-only (SEED-NOTES): no conversation."""
        sms = await add_inbound(pbx.store, CUSTOMER, DID_DE, "hallo")
        assert await pbx.procedure.route(sms.id) == "unrouted"

    async def test_blocked_sender(self, pbx: Pbx) -> None:
        """A blocked number's message is kept but never delivered."""
        await pbx.store.block(CUSTOMER, by="admin", reason="spam")
        sms = await add_inbound(pbx.store, CUSTOMER, DID, "spam")
        assert await pbx.procedure.route(sms.id) == "blocked"
        assert pbx.ami.messages == []


class TestTwoWayPolicy:
    @pytest.mark.parametrize("policy", [Policy(country="DE"), Policy(country="US", two_way=False)])
    async def test_pbx_country_or_switch_off(
        self, tmp_path: Path, fake_ami: FakeAmi, policy: Policy
    ) -> None:
        """Two-way needs the PBX's country two-way and policy.two_way on, even for a US DID."""
        p, task = await build(tmp_path, fake_ami, policy=policy)
        try:
            assert await p.client.wait_connected(5)
            sms = await add_inbound(p.store, CUSTOMER, DID, "hi")
            assert await p.procedure.route(sms.id) == "unrouted"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await p.agi.close()
            await p.store.close()


class TestAmiOutage:
    async def test_pending_until_ami_returns(self, tmp_path: Path) -> None:
        """AMI down at start: inbound waits as 'pending'; when Asterisk comes up the
        reconnect routes and delivers it, without a restart."""
        probe = await FakeAmi().start()
        port = probe.port
        await probe.stop()
        down = FakeAmi()
        down.port = port
        p, task = await build(tmp_path, down, ami_port=port)
        try:
            sms = await add_inbound(p.store, CUSTOMER, DID_NO_GROUP, "are you there?")
            assert await p.procedure.route(sms.id) == "pending"
            assert await route_state(p.store, sms.id) == ("pending", None)
            up = await FakeAmi().start(port)
            p.ami = up
            await up.message_arrived.wait()    # the reconnect, after its backoff

            async def routed() -> bool:
                return (await route_state(p.store, sms.id))[0] == "routed"

            await eventually(routed)
            assert [(m.to, m.body) for m in up.messages] == [("pjsip:203", "are you there?")]
            await up.stop()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await p.agi.close()
            await p.store.close()

    async def test_claim_directly_from_message_context(self, pbx: Pbx) -> None:
        """claim() without a waiting originate (dialplan called kite-sms itself) still routes."""
        sms = await add_inbound(pbx.store, CUSTOMER, DID, "direct")
        conv_id = await pbx.procedure.claim(sms.id, ["201", "202"])
        assert conv_id is not None
        assert await pbx.participants(conv_id) == ["201"]
        assert await pbx.procedure.route(sms.id) == "routed"     # already routed: unchanged

    async def test_repeated_claim_does_not_deliver_twice(self, pbx: Pbx) -> None:
        """A second kite-sms AGI call for the same SMS returns the conversation, no resend."""
        sms = await add_inbound(pbx.store, CUSTOMER, DID, "once")
        first = await pbx.procedure.claim(sms.id, ["100"])
        assert await pbx.procedure.claim(sms.id, ["100", "201"]) == first
        assert [m.to for m in pbx.ami.messages] == ["pjsip:100"]

    async def test_claim_with_nobody_eligible(self, pbx: Pbx) -> None:
        """Members none of whom qualify: claim returns None and routes nothing."""
        sms = await add_inbound(pbx.store, CUSTOMER, DID, "x")
        assert await pbx.procedure.claim(sms.id, ["202", "300", "999"]) is None
        assert await route_state(pbx.store, sms.id) == ("pending", None)

