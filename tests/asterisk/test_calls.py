"""The phones' current calls, followed by the real AMI client over a loopback socket
from the fake Asterisk's call events (ami-call-tracking.txt)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from smsd.asterisk.ami import AmiClient
from smsd.asterisk.calls import CallTracker, endpoint_of, normalise_endpoint
from smsd.config import Ami
from tests.core.polling import eventually
from tests.fakes.asterisk_ami import FakeAmi

pytestmark = pytest.mark.timeout(30)
CALLER = "+447700900123"
DID = "+447700900001"


@pytest.fixture
async def tracked(fake_ami: FakeAmi) -> AsyncIterator[tuple[CallTracker, AmiClient]]:
    client = AmiClient(Ami(True, "127.0.0.1", fake_ami.port, "smsd", "smsd-secret"),
                       backoff_min_s=0.05, backoff_max_s=0.2)
    tracker = CallTracker()
    tracker.attach(client)
    task = asyncio.create_task(client.run())
    try:
        assert await client.wait_connected(10, hooks=True)
        yield tracker, client
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class TestNames:
    def test_channel_names_map_to_user_endpoints(self) -> None:
        """A phone's channel names its endpoint; Local and Message channels name none;
        a user's endpoint is compared case-insensitively on the technology."""
        assert endpoint_of("PJSIP/100-00000001") == "pjsip:100"
        assert endpoint_of("SIP/alice-0000000a") == "sip:alice"
        assert endpoint_of("PJSIP/my-phone-0000000a") == "pjsip:my-phone"
        assert endpoint_of("Local/s@agi-test-00000000;2") is None
        assert endpoint_of("Message/ast_msg_queue") is None
        assert normalise_endpoint("PJSIP/100") == normalise_endpoint("pjsip:100") == "pjsip:100"


class TestTracking:
    async def test_a_call_to_the_phone_rings_is_answered_and_ends(
            self, fake_ami: FakeAmi, tracked: tuple[CallTracker, AmiClient]) -> None:
        """The carrier's caller rings phone 100: shown as incoming and ringing with the
        caller's number; answered, it is up; after the hangup phone 100 has no call,
        and the trunk's own channel is never anyone's call."""
        tracker, _ = tracked
        assert tracker.tracking and tracker.calls_of("pjsip:100") == []
        call = fake_ami.calls.ring_phone(CALLER, DID)
        await eventually(lambda: [c.state for c in tracker.calls_of("pjsip:100")] == ["ringing"])
        [ringing] = tracker.calls_of("pjsip:100")
        assert (ringing.direction, ringing.number, ringing.channel) == (
            "in", CALLER, call.phone.name)
        call.answer()
        await eventually(lambda: [c.state for c in tracker.calls_of("pjsip:100")] == ["up"])
        assert tracker.calls_of("pjsip:100")[0].answered_at is not None
        assert tracker.calls_of("pjsip:classound")[0].number == "100"
        call.hangup()
        await eventually(lambda: tracker.calls_of("pjsip:100") == [])

    async def test_a_number_the_phone_dials_is_the_other_party(
            self, fake_ami: FakeAmi, tracked: tuple[CallTracker, AmiClient]) -> None:
        """Phone 100 dials out: the call is outgoing with the dialled number, and a
        change hook names the endpoint at each step."""
        tracker, _ = tracked
        changed: list[str] = []
        tracker.on_change(changed.append)
        call = fake_ami.calls.phone_dials("+447700900555")
        await eventually(lambda: tracker.calls_of("pjsip:100"))
        [out] = tracker.calls_of("pjsip:100")
        assert (out.direction, out.number, out.name) == ("out", "+447700900555", None)
        call.answer()
        call.hangup()
        await eventually(lambda: tracker.calls_of("pjsip:100") == [])
        assert "pjsip:100" in changed

    async def test_after_a_reconnect_the_live_calls_are_listed_again(
            self, fake_ami: FakeAmi, tracked: tuple[CallTracker, AmiClient]) -> None:
        """While AMI is down no call is shown (events are being missed); after the new
        login, CoreShowChannels brings back the call in progress with its number and
        a start time taken from its duration."""
        tracker, client = tracked
        call = fake_ami.calls.ring_phone(CALLER, DID)
        call.answer()
        await eventually(lambda: [c.state for c in tracker.calls_of("pjsip:100")] == ["up"])
        before = datetime.now(UTC)
        await fake_ami.drop()
        await eventually(lambda: not client.connected)
        assert not tracker.tracking and tracker.calls_of("pjsip:100") == []
        assert await client.wait_connected(10, hooks=True)
        [again] = tracker.calls_of("pjsip:100")
        assert (again.direction, again.number, again.state) == ("in", CALLER, "up")
        assert again.since <= before - timedelta(seconds=2)  # "Duration: 00:00:03"
        call.hangup()
        await eventually(lambda: tracker.calls_of("pjsip:100") == [])
