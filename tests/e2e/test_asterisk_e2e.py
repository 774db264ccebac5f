"""The Asterisk integration end to end, through real sockets and real ptys.

Daemon: ``smsd run --config`` as a subprocess with its real wiring.  Modems:
``smsd modem simulate --count 2`` on pseudo-terminals (modem 0 owns
DID_OTHER, modem 1 owns the Sales DID).  Asterisk: the fake manager of
tests/fakes/asterisk_ami.py on loopback, playing a ``[kite-sms]`` dialplan
that calls the daemon's FastAGI server as res_agi would; phone replies come
from the fake FastAGI client as a PJSIP ``Message/ast_msg_queue`` channel
(pjsip-message-transcript.txt).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest
from gsmmodem.pdu import decodeSmsPdu

from tests.e2e.conftest import (
    AMI_SECRET,
    AMI_USER,
    CUSTOMER,
    DID,
    DID_OTHER,
    Stack,
    StackFactory,
    kite_sms_dialplan,
    unused_ami_port,
    wait_for,
)
from tests.fakes.asterisk_agi import FakeAsteriskAgi
from tests.fakes.asterisk_ami import FakeAmi, SentMessage

pytestmark = pytest.mark.timeout(90)

# A report delay long past the end of every test: the simulated network sends
# no automatic delivery report, the test sends the one it wants.
NO_AUTO_REPORT_S = 3600.0


def from_number(message: SentMessage) -> str | None:
    """The From user MessageSend gives Asterisk: the bare number (Asterisk fills the
    host, messagesend-from-forms.txt) or ``"..." <sip:+1555...@host>`` with
    [ami] message_from_host."""
    if re.fullmatch(r"\+?[0-9]+", message.from_):
        return message.from_
    m = re.search(r"<sip:([^@>]+)@", message.from_)
    return m.group(1) if m else None


def messages_to(ami: FakeAmi, body: str) -> list[SentMessage]:
    return [m for m in ami.messages if m.body == body]


def received_events(ami: FakeAmi) -> list[dict[str, str]]:
    return [e for e in ami.user_events if e.get("UserEvent") == "SmsReceived"]


def status_events(ami: FakeAmi) -> list[dict[str, str]]:
    return [e for e in ami.user_events if e.get("UserEvent") == "SmsStatus"]


async def inbound_via_call_group(stack: Stack, text: str) -> dict[str, str]:
    """Inject CUSTOMER -> DID on modem 1; return the SmsReceived event once routed."""
    ami = stack.ami
    assert ami is not None
    await stack.sim.deliver(1, CUSTOMER, text)

    def routed() -> dict[str, str] | None:
        stack.daemon.assert_running()
        return next((e for e in received_events(ami)
                     if e.get("From") == CUSTOMER and e.get("State") == "routed"), None)

    event: dict[str, str] = await wait_for(routed, "UserEvent SmsReceived (routed)",
                                           diagnostics=stack.diagnostics)
    return event


async def reply_from_phone(stack: Stack, endpoint: str, to: str, body: str) -> FakeAsteriskAgi:
    """The phone of ``endpoint`` texts ``to``: [sms-out] runs AGI(agi://.../sms-send)."""
    agi = FakeAsteriskAgi.message_pjsip(
        stack.daemon.agi_port, "sms-send",
        from_=f'"Ext {endpoint}" <sip:{endpoint}@127.0.0.1>',
        to=f"pjsip:{to}@127.0.0.1", body=body, extension=to,
        context="sms-out", callerid_name=f"Ext {endpoint} name",
    )
    await asyncio.wait_for(agi.run(), 10)
    return agi


# --- 1. inbound ------------------------------------------------------------------------


async def test_inbound_reaches_call_group_members_via_kite_sms(make_stack: StackFactory) -> None:
    """An SMS to the Sales DID, arriving on the modem that owns it, reaches exactly
    the eligible static members named by the [kite-sms] dialplan:

    1. the daemon originates Local/<DID>@kite-sms carrying SMS_ID/SMS_FROM/SMS_TO;
    2. the fake Asterisk runs that extension and calls our FastAGI kite-sms script,
       which answers SMS_STATUS=ROUTED;
    3. MessageSend goes to pjsip:100 and pjsip:201 (UC-Business and UC-Premium,
       DID as office number) with the customer's number as From and the exact
       text; 202 (UC-Essential, also listed by the dialplan) gets nothing.
    """
    stack = await make_stack(report_delay_s=NO_AUTO_REPORT_S)
    ami = stack.ami
    assert ami is not None
    text = "Hello Sales, is the shop open? ✓"
    event = await inbound_via_call_group(stack, text)

    assert event["To"] == DID and event["Via"] == "dialplan"
    assert sorted(event["Members"].split(",")) == ["100", "201"]
    [originate] = ami.originates
    assert originate["channel"] == [f"Local/{DID}@kite-sms"]
    variables = dict(v.partition("=")[::2] for v in originate["variable"])
    assert variables["SMS_FROM"] == CUSTOMER and variables["SMS_TO"] == DID
    [run] = ami.agi_runs
    await asyncio.wait_for(run.done.wait(), 10)
    assert run.status == "SUCCESS"
    assert run.variables["SMS_STATUS"] == "ROUTED"
    assert run.variables["SMS_ID"] == variables["SMS_ID"]

    sent = messages_to(ami, text)
    assert sorted(m.to for m in sent) == ["pjsip:100", "pjsip:201"], ami.messages
    assert [from_number(m) for m in sent] == [CUSTOMER, CUSTOMER], [m.from_ for m in sent]
    assert not [m for m in ami.messages if m.to == "pjsip:202"]
    rows = stack.daemon.query("SELECT route_state, recipient, modem FROM inbound")
    assert [(r["route_state"], r["recipient"], r["modem"]) for r in rows] == [
        ("routed", DID, "gsm1")]
    stack.daemon.assert_running()
    assert await stack.daemon.stop() == 0, stack.daemon.log_text()


async def test_inbound_without_kite_sms_extension_uses_directory(
    make_stack: StackFactory,
) -> None:
    """An SMS to a DID with no [kite-sms] extension goes to the directory users whose
    office number is that DID and who may use two-way SMS (203), not to the
    UC-Essential user with the same number (204); no Originate is made for it."""
    stack = await make_stack(report_delay_s=NO_AUTO_REPORT_S)
    ami = stack.ami
    assert ami is not None
    text = "Anyone on the other line?"
    await stack.sim.deliver(0, CUSTOMER, text)

    def routed() -> dict[str, str] | None:
        stack.daemon.assert_running()
        return next((e for e in received_events(ami) if e.get("To") == DID_OTHER), None)

    event = await wait_for(routed, "UserEvent SmsReceived for DID_OTHER",
                           diagnostics=stack.diagnostics)
    assert (event["State"], event["Via"], event["Members"]) == ("routed", "directory", "203")
    assert [(m.to, m.body) for m in ami.messages] == [("pjsip:203", text)]
    assert from_number(ami.messages[0]) == CUSTOMER
    assert ami.originates == []


async def test_multipart_inbound_out_of_order_arrives_whole(make_stack: StackFactory) -> None:
    """A three-part UCS-2 SMS whose parts reach the modem in the order 3, 1, 2 is
    reassembled and reaches each member as one MessageSend carrying the whole
    text, exactly once (no part delivered on its own)."""
    stack = await make_stack(report_delay_s=NO_AUTO_REPORT_S)
    ami = stack.ami
    assert ami is not None
    text = "Ünïcödé ✓ " * 18   # 180 UCS-2 units: three parts of at most 67
    await stack.sim.control({"cmd": "deliver", "modem": 1, "from": CUSTOMER, "text": text,
                             "order": [3, 1, 2]})

    def routed() -> dict[str, str] | None:
        stack.daemon.assert_running()
        return next((e for e in received_events(ami) if e.get("State") == "routed"), None)

    await wait_for(routed, "UserEvent SmsReceived (routed)", diagnostics=stack.diagnostics)
    assert sorted((m.to, m.body) for m in ami.messages) == [
        ("pjsip:100", text), ("pjsip:201", text)]
    assert len(received_events(ami)) == 1


# --- 2. replies ----------------------------------------------------------------------------


async def only_submit_on(stack: Stack, modem: int, count: int) -> list[dict[str, Any]]:
    """Wait for ``count`` SMS-SUBMITs on ``modem``; the other modem must have none."""
    async def probe() -> list[dict[str, Any]] | None:
        stack.daemon.assert_running()
        subs = await stack.sim.submitted(modem)
        return subs if len(subs) >= count else None

    subs: list[dict[str, Any]] = await wait_for(
        probe, f"{count} SMS-SUBMIT on modem {modem}", diagnostics=stack.diagnostics)
    assert len(subs) == count, subs
    assert await stack.sim.submitted(1 - modem) == []
    return subs


async def test_member_reply_leaves_through_the_dids_modem(make_stack: StackFactory) -> None:
    """A member's reply through AGI sms-send (PJSIP message channel from endpoint 100,
    MESSAGE(to) = the customer, body read via BASE64_ENCODE) is committed before
    the dialplan hears QUEUED, and leaves through the modem that owns the
    conversation's DID (modem 1), never the other one: the SMS-SUBMIT that
    reached modem 1 decodes (independently, with python-gsmmodem) to the
    customer's number and the exact multi-line text, asking for a report.
    A message from an endpoint that is no PBX user is refused with a reason
    and stores and sends nothing.
    """
    stack = await make_stack(report_delay_s=NO_AUTO_REPORT_S)
    ami = stack.ami
    assert ami is not None
    await inbound_via_call_group(stack, "Can I change my booking?")

    stranger = await reply_from_phone(stack, "999", CUSTOMER, "not from a user")
    assert stranger.variables.get("SMS_STATUS") == "REFUSED", stranger.variables
    assert "999" in stranger.variables["SMS_ERROR"]
    assert stack.daemon.query("SELECT id FROM messages") == []

    reply = "Sure — which day suits you?\nAlice"
    agi = await reply_from_phone(stack, "100", CUSTOMER, reply)
    assert agi.variables.get("SMS_STATUS") == "QUEUED", agi.variables
    sms_id = int(agi.variables["SMS_ID"])
    assert any("BASE64_ENCODE" in c for c in agi.commands), agi.commands
    [row] = stack.daemon.query("SELECT recipient, sender, text, user FROM messages WHERE id = ?",
                               (sms_id,))
    assert (row["recipient"], row["sender"], row["text"]) == (CUSTOMER, DID, reply)

    [sub] = await only_submit_on(stack, 1, 1)
    decoded = decodeSmsPdu(sub["pdu"])
    assert decoded["type"] == "SMS-SUBMIT"
    assert (decoded["number"], decoded["text"]) == (CUSTOMER, reply)
    assert sub["request_report"] is True


# --- 3. delivery reports ------------------------------------------------------------------


async def test_delivery_report_from_the_dids_modem_emits_sms_status(
    make_stack: StackFactory,
) -> None:
    """Delivery reports become AMI UserEvent SmsStatus with the message id:

    1. the reply leaves through modem 1: SmsStatus State=sent, Id = the SMS_ID
       the dialplan was given;
    2. a report with the same TP-MR arriving on the *other* modem is recorded
       but matches nothing: the message stays 'sent', no 'delivered' event;
    3. the report from modem 1 (TP-ST 0): SmsStatus State=delivered, same Id,
       and the message is 'delivered' in the store;
    4. a second reply (from member 201) reported with TP-ST 0x41 (permanent
       error): SmsStatus State=failed for that id.
    """
    stack = await make_stack(report_delay_s=NO_AUTO_REPORT_S)
    ami = stack.ami
    assert ami is not None
    await inbound_via_call_group(stack, "Where is my parcel?")
    agi = await reply_from_phone(stack, "100", CUSTOMER, "On its way")
    assert agi.variables.get("SMS_STATUS") == "QUEUED", agi.variables
    sms_id = agi.variables["SMS_ID"]
    [sub] = await only_submit_on(stack, 1, 1)

    def status(state: str, sid: str) -> Any:
        return lambda: next((e for e in status_events(ami)
                             if e.get("Id") == sid and e.get("State") == state), None)

    sent = await wait_for(status("sent", sms_id), "SmsStatus sent",
                          diagnostics=stack.diagnostics)
    assert sent["Recipient"] == CUSTOMER

    await stack.sim.control({"cmd": "report", "modem": 0, "mr": sub["mr"], "to": CUSTOMER,
                             "status": 0})
    await wait_for(lambda: stack.daemon.query(
        "SELECT 1 FROM delivery_reports WHERE modem = 'gsm0'"),
        "the stray report recorded", diagnostics=stack.diagnostics)
    [row] = stack.daemon.query("SELECT state FROM messages WHERE id = ?", (int(sms_id),))
    assert row["state"] == "sent"
    assert not [e for e in status_events(ami) if e.get("State") == "delivered"]

    await stack.sim.control({"cmd": "report", "modem": 1, "mr": sub["mr"], "to": CUSTOMER,
                             "status": 0})
    event = await wait_for(status("delivered", sms_id), "SmsStatus delivered",
                           diagnostics=stack.diagnostics)
    assert event["Recipient"] == CUSTOMER
    rows = stack.daemon.query("SELECT state, sender, modem FROM messages WHERE id = ?",
                              (int(sms_id),))
    assert [(r["state"], r["sender"], r["modem"]) for r in rows] == [("delivered", DID, "gsm1")]

    second = await reply_from_phone(stack, "201", CUSTOMER, "Bob here, sorry for the delay")
    assert second.variables.get("SMS_STATUS") == "QUEUED", second.variables
    second_id = second.variables["SMS_ID"]
    subs = await only_submit_on(stack, 1, 2)
    assert subs[1]["mr"] != sub["mr"]
    await stack.sim.control({"cmd": "report", "modem": 1, "mr": subs[1]["mr"], "to": CUSTOMER,
                             "status": 0x41})
    failed = await wait_for(status("failed", second_id), "SmsStatus failed",
                            diagnostics=stack.diagnostics)
    assert failed["Recipient"] == CUSTOMER
    assert len([e for e in status_events(ami) if e.get("State") == "delivered"]) == 1


# --- 4. AMI outages ----------------------------------------------------------------------


async def test_inbound_waits_while_ami_is_down_then_is_delivered(
    make_stack: StackFactory,
) -> None:
    """1. The daemon starts while nothing listens on the AMI port; it keeps running.
    2. An SMS arrives on the DID's modem: it is committed and stays 'pending'.
    3. Asterisk comes up on that port: the daemon logs in on its own (backoff),
       routes the pending SMS through the kite-sms dialplan, and the members get it
       as MessageSend — once each, with nothing lost.
    """
    port = await unused_ami_port()
    stack = await make_stack(ami_up=False, ami_port=port, report_delay_s=NO_AUTO_REPORT_S)
    text = "Sent while the PBX was rebooting"
    await stack.sim.deliver(1, CUSTOMER, text)

    def pending() -> list[Any]:
        stack.daemon.assert_running()
        return [r for r in stack.daemon.query("SELECT route_state, text FROM inbound")
                if r["text"] == text and r["route_state"] == "pending"]

    await wait_for(pending, "the inbound SMS committed as pending",
                   diagnostics=stack.diagnostics)
    assert stack.daemon.events("ami.unreachable")

    ami = await FakeAmi(username=AMI_USER, secret=AMI_SECRET).start(port)
    stack.extra.append(ami)
    ami.dialplan.update(_dialplan(stack))

    def delivered() -> list[SentMessage] | None:
        stack.daemon.assert_running()
        sent = messages_to(ami, text)
        return sent if len(sent) >= 2 else None

    sent = await wait_for(delivered, "MessageSend to both members after AMI came up",
                          diagnostics=lambda: stack.diagnostics() + f"\n{ami.messages}")
    assert sorted(m.to for m in sent) == ["pjsip:100", "pjsip:201"]

    def routed() -> list[Any]:
        return [r for r in stack.daemon.query("SELECT route_state, text FROM inbound")
                if r["text"] == text and r["route_state"] == "routed"]

    await wait_for(routed, "route_state routed", diagnostics=stack.diagnostics)
    assert len(messages_to(ami, text)) == 2
    stack.daemon.assert_running()


def _dialplan(stack: Stack) -> dict[str, dict[str, list[str]]]:
    return kite_sms_dialplan(stack.daemon.agi_port)


# How long the wrong-secret test watches: with the reconnect backoff of an
# unreachable AMI (1 s, 2 s, ...) a client that treated "Authentication failed"
# like a lost link would have logged in again twice within 3.5 s.
AUTH_WATCH_S = 3.5


async def test_wrong_ami_secret_is_reported_once_and_not_hammered(
    make_stack: StackFactory,
) -> None:
    """With a wrong AMI secret the daemon keeps running, logs the refused login once
    (ami.auth_failed, without the secret), and does not retry at the short
    reconnect backoff: over a few seconds Asterisk sees exactly one login.
    Inbound SMS meanwhile is kept as pending, not lost or sent elsewhere.
    """
    port = await unused_ami_port()
    ami = await FakeAmi(username=AMI_USER, secret=AMI_SECRET).start(port)
    stack = await make_stack(ami_up=False, ami_port=port, ami_secret="not-the-secret",
                             report_delay_s=NO_AUTO_REPORT_S)
    stack.extra.append(ami)
    await wait_for(lambda: ami.logins, "the first login attempt", diagnostics=stack.diagnostics)
    started = time.monotonic()
    await stack.sim.deliver(1, CUSTOMER, "while the secret is wrong")

    def pending() -> list[Any]:
        stack.daemon.assert_running()
        return [r for r in stack.daemon.query("SELECT route_state FROM inbound")
                if r["route_state"] == "pending"]

    await wait_for(pending, "the inbound SMS committed as pending",
                   diagnostics=stack.diagnostics)
    # The negative half: no second login during the watch window.
    while time.monotonic() - started < AUTH_WATCH_S:
        stack.daemon.assert_running()
        await asyncio.sleep(0.1)
    assert ami.logins == [("smsd", False)]
    assert len(stack.daemon.events("ami.auth_failed")) == 1
    assert "not-the-secret" not in stack.daemon.log_text()
    assert ami.messages == []
    assert [r["route_state"] for r in stack.daemon.query("SELECT route_state FROM inbound")] == [
        "pending"]


async def test_ami_restart_mid_run_keeps_inbound_until_it_is_back(
    make_stack: StackFactory,
) -> None:
    """1. The daemon is logged in and delivering.
    2. Asterisk restarts (its manager closes every session and stops listening):
       the daemon keeps running and an SMS arriving meanwhile stays 'pending'.
    3. The manager listens again on the same port: the daemon logs in again by
       itself and the pending SMS reaches both members, once each.
    """
    stack = await make_stack(report_delay_s=NO_AUTO_REPORT_S)
    first = stack.ami
    assert first is not None
    await inbound_via_call_group(stack, "before the restart")
    port = first.port
    await first.stop()
    text = "during the restart"
    await stack.sim.deliver(1, CUSTOMER, text)

    def pending() -> list[Any]:
        stack.daemon.assert_running()
        return [r for r in stack.daemon.query("SELECT route_state, text FROM inbound")
                if r["text"] == text and r["route_state"] == "pending"]

    await wait_for(pending, "the SMS kept as pending while AMI is down",
                   diagnostics=stack.diagnostics)
    assert messages_to(first, text) == []

    again = await FakeAmi(username=AMI_USER, secret=AMI_SECRET).start(port)
    stack.extra.append(again)
    again.dialplan.update(_dialplan(stack))

    def delivered() -> list[SentMessage] | None:
        stack.daemon.assert_running()
        sent = messages_to(again, text)
        return sent if len(sent) >= 2 else None

    sent = await wait_for(delivered, "MessageSend after AMI came back",
                          diagnostics=lambda: stack.diagnostics() + f"\n{again.messages}")
    assert sorted(m.to for m in sent) == ["pjsip:100", "pjsip:201"]
    assert [m.body for m in again.messages] == [text, text]


async def test_first_sms_from_a_user_leaves_through_their_office_numbers_modem(
    make_stack: StackFactory,
) -> None:
    """Outside any conversation, a user's SMS goes out from their own office number:
    user 100 (office number DID, owned by modem 1) texting a new number produces
    an SMS-SUBMIT on modem 1 only; user 203 (DID_OTHER, modem 0) then texting
    another new number produces one on modem 0.  Each decodes to its recipient
    and exact text, and the store records the DID and modem used."""
    stack = await make_stack(report_delay_s=NO_AUTO_REPORT_S)
    cases = [("100", "+15550009999", "Hello from Alice", 1, DID),
             ("203", "+15550008888", "Hello from Dan", 0, DID_OTHER)]
    for endpoint, number, text, modem, did in cases:
        agi = await reply_from_phone(stack, endpoint, number, text)
        assert agi.variables.get("SMS_STATUS") == "QUEUED", agi.variables

        async def arrived(m: int = modem, n: str = number) -> list[dict[str, Any]]:
            return [s for s in await stack.sim.submitted(m) if s["to"] == n]

        [sub] = await wait_for(arrived, f"SMS-SUBMIT to {number} on modem {modem}",
                               diagnostics=stack.diagnostics)
        decoded = decodeSmsPdu(sub["pdu"])
        assert (decoded["number"], decoded["text"]) == (number, text)
        # The modem field is committed after +CMGS answers, which can be just
        # after the simulator has the PDU: wait for it rather than race it.
        sms_id = int(agi.variables["SMS_ID"])
        [row] = await wait_for(
            lambda i=sms_id: [r for r in stack.daemon.query(
                "SELECT sender, modem FROM messages WHERE id = ?", (i,)) if r["modem"]],
            f"message {sms_id} to record its modem", diagnostics=stack.diagnostics)
        assert (row["sender"], row["modem"]) == (did, f"gsm{modem}")
    assert len(await stack.sim.submitted(0)) == 1
    assert len(await stack.sim.submitted(1)) == 1
