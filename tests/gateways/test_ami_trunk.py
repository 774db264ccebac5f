"""The ami transport: MessageSend through Asterisk's own trunk, against the fake Asterisk 20 AMI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from smsd.asterisk.ami import AmiClient
from smsd.config import Ami, ClassoundGateway
from smsd.errors import GatewayError, GatewayUnavailable
from smsd.gateways.base import OutboundJob
from smsd.gateways.classound.ami import AmiTrunk
from tests.fakes.asterisk_ami import FakeAmi
from tests.gateways.conftest import RECIPIENT, SENDER, Hooks

pytestmark = pytest.mark.timeout(30)

ENDPOINT = "pjsip:classound-pj/sip:{number}@127.0.0.1:5070"
JOB = OutboundJob(3, RECIPIENT, "Héllo via Asterisk", SENDER, None, 1, "ucs2")


@pytest.fixture
async def ami() -> AsyncIterator[tuple[FakeAmi, AmiClient]]:
    fake = FakeAmi(username="smsd", secret="smsd-secret")
    await fake.start()
    client = AmiClient(Ami(True, "127.0.0.1", fake.port, "smsd", "smsd-secret"))
    task = asyncio.create_task(client.run())
    assert await client.wait_connected(10)
    try:
        yield fake, client
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await fake.stop()


class TestAmiTrunk:
    async def test_message_send_to_the_trunk_endpoint(
        self, ami: tuple[FakeAmi, AmiClient]
    ) -> None:
        """MessageSend goes to pjsip:<trunk>/sip:<number>@<host> with the sender's number
        in From and the text as body; the part is submitting before and sent after."""
        fake, client = ami
        trunk = AmiTrunk(ClassoundGateway(mode="ami", ami_endpoint=ENDPOINT), client)
        assert trunk.available()
        hooks = Hooks()
        await trunk.send(JOB, hooks)
        [m] = fake.messages
        assert m.to == f"pjsip:classound-pj/sip:{RECIPIENT}@127.0.0.1:5070"
        assert SENDER in m.from_ and m.body == JOB.text
        assert hooks.log == [("submitting", 1), ("sent", 1)]

    async def test_refused_message_send_is_temporary(
        self, ami: tuple[FakeAmi, AmiClient]
    ) -> None:
        """Asterisk refusing the action (no such technology) is the PBX's configuration,
        not the message: temporary, so the router can go elsewhere."""
        fake, client = ami
        fake.techs = ("pjsip",)  # an Asterisk built without chan_sip
        endpoint = "sip:{number}@127.0.0.1:5070"
        trunk = AmiTrunk(ClassoundGateway(mode="ami", ami_endpoint=endpoint), client)
        with pytest.raises(GatewayError) as err:
            await trunk.send(JOB, Hooks())
        assert err.value.temporary and "technology not found" in str(err.value)
        assert fake.messages == []

    async def test_without_ami_the_trunk_is_unavailable(self) -> None:
        """mode = 'ami' with AMI disabled: never available, send says why."""
        trunk = AmiTrunk(ClassoundGateway(mode="ami"), None)
        assert not trunk.available()
        with pytest.raises(GatewayUnavailable):
            await trunk.send(JOB, Hooks())
