"""An inbound SMS for a phone that is off reaches it when it registers (issue 16, defect 3).

On Asterisk 20.20.1 MessageSend to a PJSIP endpoint without a registered contact
answers "Message failed to send."; when the phone registers Asterisk sends
PeerStatus (Reachable) and ContactStatus (NonQualified) events
(tests/asterisk/data/ami-unregistered-phone.txt, ami-smsd-contact-status.txt).
Real store, AmiClient, conversations and procedure; the fake manager says what
the lab Asterisk said.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from smsd.core.deliveries import backoff_s, endpoint_from_event
from smsd.services import follow_phones
from tests.asterisk.conftest import CUSTOMER, DID, add_inbound, logged_in, route_state, wire
from tests.fakes.asterisk_ami import FakeAmi

pytestmark = pytest.mark.timeout(60)
DATA = Path(__file__).parent / "data"


def _frames(path: Path) -> list[dict[str, str]]:
    """The AMI frames Asterisk sent in a lab transcript (our own lines start with >>>)."""
    out = []
    for block in path.read_text("utf-8").split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln and not ln.startswith(">>>")]
        frame = dict(ln.split(": ", 1) for ln in lines if ": " in ln)
        if frame:
            out.append(frame)
    return out


def test_captured_events_name_the_endpoint() -> None:
    """The captured PeerStatus and ContactStatus of phone 100 registering both mean
    pjsip:100 is back; the trunk's Registry event and security events mean nothing."""
    frames = _frames(DATA / "ami-unregistered-phone.txt")
    back = {endpoint_from_event(f) for f in frames if "Event" in f}
    assert back == {None, "pjsip:100"}
    assert [f["Message"] for f in frames if f.get("ActionID") == "m1"] == [
        "Message failed to send."]
    [contact] = [f for f in _frames(DATA / "ami-smsd-contact-status.txt")
                 if f.get("Event") == "ContactStatus"]
    assert endpoint_from_event(contact) == "pjsip:100"
    assert endpoint_from_event({"Event": "ContactStatus", "ContactStatus": "Removed",
                                "EndpointName": "100"}) is None
    assert endpoint_from_event({"Event": "PeerStatus", "Peer": "SIP/alice",
                                "PeerStatus": "Registered"}) == "sip:alice"


def test_backoff_doubles_to_a_ceiling() -> None:
    """A phone that stays off is tried after 30 s, 60 s, ... and at most every 15 min."""
    assert [backoff_s(n) for n in (1, 2, 3)] == [30.0, 60.0, 120.0]
    assert backoff_s(50) == 900.0


async def test_phone_off_gets_the_sms_when_it_registers(tmp_path: Path) -> None:
    """1. Phone 100 is off, 201 is registered; an SMS to the Sales DID is routed to both.
    2. 201 gets it; 100's copy waits, and the conversation's history says so.
    3. 100 registers (the captured events): it gets the SMS without any new inbound,
       and the history then says delivered."""
    fake = await FakeAmi(pjsip_contacts=("201",), read=("call", "system")).start()
    w = await wire(tmp_path, fake.port)
    follow_phones(w.client, w.conversations.deliveries)
    retry = asyncio.create_task(w.conversations.deliveries.run())
    try:
        async with logged_in(w, 10):
            sms = await add_inbound(w.store, CUSTOMER, DID, "while you were off")
            assert await w.procedure.route(sms.id) == "routed"
            assert [m.to for m in fake.messages] == ["pjsip:201"]
            _, conv_id = await route_state(w.store, sms.id)
            assert conv_id is not None
            [item] = [i for i in await w.conversations.history(conv_id) if i["direction"] == "in"]
            by_ext = {d["extension"]: d for d in item["deliveries"]}
            assert by_ext["201"]["state"] == "delivered"
            assert by_ext["100"]["state"] == "waiting"
            assert by_ext["100"]["error"] == (
                "MessageSend to pjsip:100 refused: Message failed to send.")

            fake.message_arrived.clear()
            fake.register_phone("100")
            async with asyncio.timeout(10):
                while not any(m.to == "pjsip:100" for m in fake.messages):
                    await fake.message_arrived.wait()
                    fake.message_arrived.clear()
            [got] = [m for m in fake.messages if m.to == "pjsip:100"]
            assert got.body == "while you were off"
            assert CUSTOMER in got.from_
            async with asyncio.timeout(10):
                while True:
                    [item] = [i for i in await w.conversations.history(conv_id)
                              if i["direction"] == "in"]
                    if {d["extension"]: d["state"] for d in item["deliveries"]}.get("100") \
                            == "delivered":
                        break
                    await asyncio.sleep(0.01)
            assert [m.to for m in fake.messages].count("pjsip:201") == 1
    finally:
        retry.cancel()
        await asyncio.gather(retry, return_exceptions=True)
        await fake.stop()


async def test_without_system_events_the_timed_retry_still_delivers(tmp_path: Path) -> None:
    """An AMI user without read = system never hears ContactStatus: the copy is still
    sent by the timed retry once due (here: forced due), and only once."""
    fake = await FakeAmi(pjsip_contacts=("201",), read=("call",)).start()
    w = await wire(tmp_path, fake.port)
    try:
        async with logged_in(w, 10):
            sms = await add_inbound(w.store, CUSTOMER, DID, "later")
            assert await w.procedure.route(sms.id) == "routed"
            deliveries = w.conversations.deliveries
            assert await deliveries.retry() == 0          # not due yet: nothing sent
            fake.register_phone("100")                    # the event does not reach smsd
            async with w.store.transaction() as db:
                await db.execute("UPDATE inbound_delivery_waits SET next_attempt_at ="
                                 " '2000-01-01T00:00:00+00:00'")
            assert await deliveries.retry() == 1
            assert await deliveries.retry() == 0
            assert [m.to for m in fake.messages].count("pjsip:100") == 1
    finally:
        await fake.stop()
