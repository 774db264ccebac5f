"""During a call: the user's current call from AMI, over the API and in the console."""

from __future__ import annotations

import base64
import re
from typing import Any

from tests.core.polling import eventually
from tests.fakes.asterisk_ami import FakeAmi
from tests.ui.conftest import DID, PASSWORD, Console

CALLER = "+447700900444"


def basic(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()}


class TestCurrentCall:
    async def test_the_api_answers_the_users_own_call(self, console_ami: Console,
                                                      fake_ami: FakeAmi) -> None:
        """Before the call Bob has none (tracking); while Asterisk rings his phone
        the API gives the caller's number and the ringing state; Alice (an admin)
        still sees only her own phone's calls; after the hangup Bob has none."""
        async with console_ami.client() as s:
            async with s.get("/api/v1/calls/current", headers=basic("bob")) as r:
                assert await r.json() == {"extension": "101", "tracking": True, "calls": []}
            call = fake_ami.calls.ring_phone(CALLER, DID, phone="101", phone_name="Bob Agent")
            answer: dict[str, Any] = {}

            async def bobs_calls() -> list[dict[str, Any]]:
                async with s.get("/api/v1/calls/current", headers=basic("bob")) as r:
                    answer.update(await r.json())
                return list(answer["calls"])

            await eventually(bobs_calls)
            [got] = answer["calls"]
            assert (got["number"], got["direction"], got["channel"]) == (
                CALLER, "in", call.phone.name)
            async with s.get("/api/v1/calls/current", headers=basic("alice")) as r:
                assert (await r.json())["calls"] == []
            call.hangup()

            async def no_call() -> bool:
                return not await bobs_calls()

            await eventually(no_call)

    async def test_without_ami_nothing_is_tracked(self, console: Console) -> None:
        """A daemon without AMI answers tracking false and no call, and the console
        shows no call box content."""
        async with console.client() as s:
            async with s.get("/api/v1/calls/current", headers=basic("bob")) as r:
                assert await r.json() == {"extension": "101", "tracking": False, "calls": []}
            await console.sign_in(s, "bob")
            async with s.get("/ui/conversations") as r:
                assert ('<section id="current-call" data-live-region aria-label="Current call">'
                        '</section>') in await r.text()

    async def test_sms_to_this_caller_opens_the_conversation(
            self, console_ami: Console, fake_ami: FakeAmi) -> None:
        """The event stream says ``call`` when Bob's phone rings; the page then shows
        the call with "SMS to this caller", whose form opens a conversation with the
        caller on Bob's service, and the same conversation the second time."""
        async with console_ami.client() as s:
            await console_ami.sign_in(s, "bob")
            async with s.get("/ui/events") as stream:
                assert await stream.content.readline() == b"retry: 2000\n"
                call = fake_ami.calls.ring_phone(CALLER, DID, phone="101",
                                                 phone_name="Bob Agent")
                line = b""
                while not line.startswith(b"event: call"):
                    line = await stream.content.readline()
            async with s.get("/ui/conversations") as r:
                page = await r.text()
            box = re.search(r'<section id="current-call".*?</section>', page, re.S)
            assert box is not None
            assert "Incoming call" in box.group(0) and CALLER in box.group(0)
            form = re.search(r'<form[^>]*action="/ui/conversations".*?</form>', box.group(0))
            assert form is not None and "SMS to this caller" in form.group(0)
            fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form.group(0)))
            assert fields["number"] == CALLER and fields["service"] == DID
            ids = []
            for _ in range(2):
                r = await s.post("/ui/conversations", data=fields, allow_redirects=False)
                assert r.status == 303
                ids.append(r.headers["Location"])
            assert ids[0] == ids[1] and ids[0].startswith("/ui/conversations/")
            conv = await console_ami.services.conversations.get(  # type: ignore[union-attr]
                int(ids[0].rsplit("/", 1)[1]))
            assert conv["external"] == CALLER
            call.hangup()
