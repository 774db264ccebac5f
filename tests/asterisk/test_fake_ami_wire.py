"""The fake AMI speaks as the captured Asterisk 20.20.1 does (ami-transcript.txt,
edge-cases-transcript.txt): same banner, same headers in the same order, the
close after a refused login.  Volatile values (Timestamp, Uniqueid) are ignored."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.asterisk_ami import FakeAmi

pytestmark = pytest.mark.timeout(30)
VOLATILE = ("Timestamp", "Uniqueid")


class Raw:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, *lines: str) -> None:
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self.writer.drain()

    async def frame(self) -> list[str]:
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5)
        lines = raw.decode().split("\r\n")[:-2]
        return [ln if not ln.startswith(VOLATILE) else ln.split(":")[0] + ": *" for ln in lines]


@pytest.fixture
async def raw(fake_ami: FakeAmi) -> AsyncIterator[Raw]:
    reader, writer = await asyncio.open_connection("127.0.0.1", fake_ami.port)
    assert await reader.readline() == b"Asterisk Call Manager/9.0.0\r\n"
    yield Raw(reader, writer)
    writer.close()


async def login(raw: Raw, secret: str = "smsd-secret", events: str = "on") -> list[str]:
    await raw.send("Action: Login", "ActionID: smsd-1", "Username: smsd",
                   f"Secret: {secret}", f"Events: {events}")
    return await raw.frame()


async def test_login_command_userevent(raw: Raw) -> None:
    """Login, FullyBooted, Command and the UserEvent echo exactly as captured."""
    assert await login(raw) == ["Response: Success", "ActionID: smsd-1",
                                "Message: Authentication accepted"]
    assert await raw.frame() == ["Event: FullyBooted", "Privilege: system,all", "Uptime: 6",
                                 "LastReload: 6", "Status: Fully Booted"]
    await raw.send("Action: Command", "ActionID: smsd-2", "Command: core show version")
    assert await raw.frame() == [
        "Response: Success", "ActionID: smsd-2", "Message: Command output follows",
        "Output: Asterisk 20.20.1 built by root @ vm on a x86_64 running Linux on "
        "2026-11-25 12:08:51 UTC"]
    await raw.send("Action: UserEvent", "ActionID: smsd-3", "UserEvent: SmsdPing",
                   "Header1: Kite: lab")
    assert await raw.frame() == ["Response: Success", "ActionID: smsd-3", "Message: Event Sent"]
    assert await raw.frame() == ["Event: UserEvent", "Privilege: user,all", "Timestamp: *",
                                 "UserEvent: SmsdPing", "ActionID: smsd-3",
                                 "Header1: Kite: lab"]


async def test_refused_login_closes(raw: Raw, fake_ami: FakeAmi) -> None:
    """A wrong secret gets Error 'Authentication failed' and the connection is closed."""
    assert await login(raw, "nope") == ["Response: Error", "ActionID: smsd-1",
                                        "Message: Authentication failed"]
    assert await asyncio.wait_for(raw.reader.read(), 5) == b""
    assert fake_ami.logins == [("smsd", False)]


async def test_async_originate_then_response_event(raw: Raw, fake_ami: FakeAmi) -> None:
    """Async Originate: 'successfully queued', then OriginateResponse with the ActionID."""
    fake_ami.dialplan = {"agi-test": {"s": ["Answer()", "Wait(5)"]}}
    await login(raw, events="on")
    await raw.frame()                                       # FullyBooted
    await raw.send("Action: Originate", "ActionID: smsd-4", "Channel: Local/s@agi-test",
                   "Application: Wait", "Data: 5", "Async: true", "Timeout: 10000")
    assert await raw.frame() == ["Response: Success", "ActionID: smsd-4",
                                 "Message: Originate successfully queued"]
    event = await raw.frame()
    assert event[:5] == ["Event: OriginateResponse", "Privilege: call,all", "Timestamp: *",
                         "ActionID: smsd-4", "Response: Success"]
    assert event[5].startswith("Channel: Local/s@agi-test-") and event[5].endswith(";1")
    assert event[6:9] == ["Application: Wait", "Data: 5", "Reason: 4"]


async def test_message_send_failure_modes(raw: Raw, fake_ami: FakeAmi) -> None:
    """MessageSend answers of the edge-cases capture, including Base64Body."""
    fake_ami.techs = ("sip",)                               # chan_sip lab: no pjsip
    await login(raw, events="off")
    cases = [
        ("To: sip:bob", "Body: to unregistered dynamic peer bob",
         ["Response: Error", "ActionID: smsd-2", "Message: Message failed to send."]),
        ("To: sip:nobody@127.0.0.1:5099", "Body: nobody listens on 5099",
         ["Response: Success", "ActionID: smsd-2", "Message: Message successfully sent"]),
        ("To: pjsip:alice", "Body: tech not loaded",
         ["Response: Error", "ActionID: smsd-2", "Message: Message technology not found."]),
        ("To: sip:+15550001111@classound",
         "Base64Body: bXVsdGkKbGluZSB2aWEgQmFzZTY0Qm9keSDinJM=",
         ["Response: Success", "ActionID: smsd-2", "Message: Message successfully sent"]),
    ]
    for to, body, expected in cases:
        await raw.send("Action: MessageSend", "ActionID: smsd-2", to, body,
                       "From: sip:+15557654321@127.0.0.1")
        assert await raw.frame() == expected
    assert fake_ami.messages[-1].body == "multi\nline via Base64Body ✓"
    await raw.send("Action: Logoff", "ActionID: smsd-6")
    assert await raw.frame() == ["Response: Goodbye", "ActionID: smsd-6",
                                 "Message: Thanks for all the fish."]
    assert await asyncio.wait_for(raw.reader.read(), 5) == b""


# ShowDialPlan has no capture: the frames below are what main/pbx.c
# manager_show_dialplan writes (listack "DialPlan list will follow" with
# EventList: start, one ListDialplan per priority, ShowDialPlanComplete via
# main/manager.c astman_send_list_complete_start) and its error texts.
KITE_SMS = {"kite-sms": {
    "_+1NXX.": ["NoOp(pattern)"],
    "+15551234567": ["Answer()", "AGI(agi://127.0.0.1:4573/kite-sms?members=100\\,201)"],
}}


async def show(raw: Raw, context: str, exten: str) -> list[list[str]]:
    """Send ShowDialPlan; the frames up to its Error or ShowDialPlanComplete."""
    await raw.send("Action: ShowDialPlan", "ActionID: dp-1", f"Context: {context}",
                   f"Extension: {exten}")
    frames = [await raw.frame()]
    while frames[0][0] == "Response: Success" and frames[-1][0] != (
            "Event: ShowDialPlanComplete"):
        frames.append(await raw.frame())
    return frames


async def test_show_dialplan_lists_matches(raw: Raw, fake_ami: FakeAmi) -> None:
    """A concrete DID lists its exact extension and every pattern matching it, one
    ListDialplan per priority, plain extensions first, then the Complete event."""
    fake_ami.dialplan = KITE_SMS
    await login(raw, events="off")
    assert await show(raw, "kite-sms", "+15551234567") == [
        ["Response: Success", "ActionID: dp-1", "EventList: start",
         "Message: DialPlan list will follow"],
        ["Event: ListDialplan", "ActionID: dp-1", "Context: kite-sms",
         "Extension: +15551234567", "Priority: 1", "Application: Answer", "AppData: ",
         "Registrar: pbx_config"],
        ["Event: ListDialplan", "ActionID: dp-1", "Context: kite-sms",
         "Extension: +15551234567", "Priority: 2", "Application: AGI",
         "AppData: agi://127.0.0.1:4573/kite-sms?members=100\\,201", "Registrar: pbx_config"],
        ["Event: ListDialplan", "ActionID: dp-1", "Context: kite-sms", "Extension: _+1NXX.",
         "Priority: 1", "Application: NoOp", "AppData: pattern", "Registrar: pbx_config"],
        ["Event: ShowDialPlanComplete", "ActionID: dp-1", "EventList: Complete",
         "ListItems: 3", "ListExtensions: 2", "ListPriorities: 3", "ListContexts: 1"],
    ]


async def test_show_dialplan_pattern_only(raw: Raw, fake_ami: FakeAmi) -> None:
    """Another US number matches only the pattern: the listing holds just that."""
    fake_ami.dialplan = KITE_SMS
    await login(raw, events="off")
    frames = await show(raw, "kite-sms", "+15557770000")
    assert [f[3] for f in frames[1:-1]] == ["Extension: _+1NXX."]
    assert frames[-1][3:5] == ["ListItems: 1", "ListExtensions: 1"]


async def test_show_dialplan_not_found(raw: Raw, fake_ami: FakeAmi) -> None:
    """A missing context and an unmatched number get pbx.c's two error texts; a
    number the pattern does not fit (N is 2-9, '.' needs one more digit) is unmatched."""
    fake_ami.dialplan = KITE_SMS
    await login(raw, events="off")
    assert await show(raw, "no-such", "+15551234567") == [
        ["Response: Error", "ActionID: dp-1", "Message: Did not find context no-such"]]
    for number in ("+4930123456", "+11551234567", "+1555"):
        assert await show(raw, "kite-sms", number) == [
            ["Response: Error", "ActionID: dp-1",
             f"Message: Did not find extension {number}@kite-sms"]]


async def test_write_classes_gate_actions(raw: Raw, fake_ami: FakeAmi) -> None:
    """With write classes set, ShowDialPlan needs 'reporting' or 'config' and Command
    needs 'command' (else Permission denied, session kept); Ping needs no class."""
    fake_ami.dialplan = KITE_SMS
    fake_ami.write = ("originate", "message", "user")
    await login(raw, events="off")
    denied = [["Response: Error", "ActionID: dp-1", "Message: Permission denied"]]
    assert await show(raw, "kite-sms", "+15551234567") == denied
    await raw.send("Action: Command", "ActionID: dp-1", "Command: core show version")
    assert [await raw.frame()] == denied
    await raw.send("Action: Ping", "ActionID: dp-2")
    assert (await raw.frame())[:3] == ["Response: Success", "ActionID: dp-2", "Ping: Pong"]
    for granted in (("reporting",), ("config",), ("all",)):
        # manager.conf changed and reloaded: the live session keeps its rights
        # (ami-rights-copied-at-login.txt), a new login has the new ones.
        fake_ami.write = granted
        assert await show(raw, "kite-sms", "+15551234567") == denied
        reader, writer = await asyncio.open_connection("127.0.0.1", fake_ami.port)
        await reader.readline()
        fresh = Raw(reader, writer)
        await login(fresh, events="off")
        assert (await show(fresh, "kite-sms", "+15551234567"))[-1][0] == (
            "Event: ShowDialPlanComplete")
        writer.close()


CALL_CAPTURE = Path(__file__).parent / "data" / "ami-call-tracking.txt"


def _normalise_call_frame(lines: list[str]) -> list[str]:
    """Ids, durations and channel sequence numbers differ from run to run."""
    out = []
    for ln in lines:
        key, _, value = ln.partition(": ")
        if key.endswith(("Uniqueid", "Linkedid", "BridgeId", "Duration", "Timestamp")):
            value = "*"
        out.append(f"{key}: {re.sub(r'-[0-9a-f]{8}$', '-*', value)}")
    return out


async def test_a_call_to_a_phone_as_smsd_receives_it(raw: Raw, fake_ami: FakeAmi) -> None:
    """Section 3 of ami-call-tracking.txt frame by frame: a carrier call ringing phone
    100, answered, CoreShowChannels mid-call, the carrier hanging up (what the smsd
    user gets with the sample eventfilters)."""
    text = CALL_CAPTURE.read_text().split("## 3.", 1)[1].split("\n", 1)[1]
    expected = [_normalise_call_frame(block.strip().split("\n"))
                for block in text.split("\n\n") if block.strip() and not block.startswith(">>")]
    await login(raw)
    await raw.frame()  # FullyBooted
    call = fake_ami.calls.ring_phone("+447700900123", "+447700900001")
    call.answer()
    got = [_normalise_call_frame(await raw.frame()) for _ in range(10)]
    await raw.send("Action: CoreShowChannels", "ActionID: rec-2")
    got += [_normalise_call_frame(await raw.frame()) for _ in range(4)]
    call.hangup()
    got += [_normalise_call_frame(await raw.frame()) for _ in range(3)]
    assert got == expected
