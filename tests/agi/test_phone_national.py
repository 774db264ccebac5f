"""A phone texting a national number, and a phone told why its SMS was refused
(issue 16, "also seen").

[sms-out] now matches ``_[0-9+].``: a national number reaches sms-send, which
completes it with ``policy.country`` or refuses it; a refused SMS from a phone
gets a SIP MESSAGE back from "smsd" (AMI MessageSend to the user's endpoint),
since the phone itself shows nothing (Asterisk answered 202 already).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from smsd.agi.handlers import build_handlers
from smsd.agi.server import AgiServer
from smsd.asterisk.ami import AmiClient
from smsd.config import Ami
from smsd.errors import InvalidNumber
from smsd.numbers import complete_national
from tests.agi.conftest import Fakes
from tests.fakes.asterisk_agi import FakeAsteriskAgi
from tests.fakes.asterisk_ami import FakeAmi

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def rig(fakes: Fakes) -> AsyncIterator[tuple[AgiServer, FakeAmi]]:
    ami = await FakeAmi().start()
    client = AmiClient(Ami(True, "127.0.0.1", ami.port, "smsd", "smsd-secret"))
    task = asyncio.create_task(client.run())
    assert await client.wait_connected(10)
    services = replace(fakes.services(), country="GB", notices=client)
    srv = AgiServer(build_handlers(services), "127.0.0.1", 0)
    await srv.start()
    try:
        yield srv, ami
    finally:
        await srv.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await ami.stop()


def phone(port: int, to: str) -> FakeAsteriskAgi:
    """Phone 100 (callerid "Alice Agent") texting ``to`` through [sms-out]."""
    return FakeAsteriskAgi.message_pjsip(
        port, "sms-send", from_="<sip:100@127.0.0.1>", to=f"pjsip:{to}@127.0.0.1",
        body="hi", extension=to, context="sms-out", callerid_name="Alice Agent")


def test_complete_national() -> None:
    """National digits as dialled in the PBX's country become E.164; an international
    form is kept; letters or an impossible length are refused, naming the number."""
    assert complete_national("07700 900123", "GB") == "+447700900123"
    assert complete_national("(555) 765-4321", "US") == "+15557654321"
    assert complete_national("0044 7700 900123", "US") == "+447700900123"
    for bad in ("alice", "0770", ""):
        with pytest.raises(InvalidNumber):
            complete_national(bad, "GB")


async def test_national_number_is_completed(
        rig: tuple[AgiServer, FakeAmi], fakes: Fakes) -> None:
    """07700900123 from a GB PBX's phone is queued to +447700900123."""
    srv, ami = rig
    agi = phone(srv.port, "07700900123")
    await agi.run()
    assert agi.variables["SMS_STATUS"] == "QUEUED", agi.variables
    [req] = fakes.outbox.requests
    assert list(req.recipients) == ["+447700900123"]
    assert ami.messages == []


async def test_refusal_is_told_to_the_phone(
        rig: tuple[AgiServer, FakeAmi], fakes: Fakes) -> None:
    """A number that is no GB number is refused, and phone 100 gets a MESSAGE from
    "smsd" saying why (and nothing is queued)."""
    srv, ami = rig
    agi = phone(srv.port, "0770")
    await agi.run()
    assert agi.variables["SMS_STATUS"] == "REFUSED"
    assert fakes.outbox.requests == []
    [notice] = ami.messages
    assert notice.to == "pjsip:100" and notice.from_ == "smsd"
    assert notice.body.startswith("SMS not sent:") and "0770" in notice.body
