"""AMI down at start, then up, with the daemon's real wiring (services.build_services):
inbox -> EventBus -> kite-sms procedure -> conversation -> AMI MessageSend."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from smsd.core.directory import Directory
from smsd.services import build_services
from tests.asterisk.conftest import CUSTOMER, DID_NO_GROUP, make_config, route_state
from tests.backend import open_store
from tests.fakes.asterisk_ami import FakeAmi

pytestmark = pytest.mark.timeout(60)


async def test_pending_inbound_delivered_when_ami_returns(tmp_path: Path) -> None:
    """1. Asterisk is down when the daemon starts; the daemon keeps running.
    2. An SMS arrives: it is committed and stays 'pending' (nobody can be told).
    3. Asterisk comes up: the client logs in by itself (backoff), the procedure
       routes the pending message and the phone gets it via MessageSend, with
       UserEvent SmsReceived announced."""
    probe = await FakeAmi().start()
    port = probe.port
    await probe.stop()
    cfg = make_config(tmp_path, ami_port=port)
    store = await open_store(cfg)
    services = await build_services(cfg, store, Directory(cfg))
    assert services.ami is not None and services.procedure is not None
    tasks = [asyncio.create_task(services.bus.run()), asyncio.create_task(services.ami.run())]
    up: FakeAmi | None = None
    try:
        sms_id = await services.inbox.receive(CUSTOMER, DID_NO_GROUP, "anyone there?",
                                              gateway="classound")
        await services.bus.join()
        assert await route_state(store, sms_id) == ("pending", None)
        assert not services.ami.connected
        up = await FakeAmi().start(port)
        await asyncio.wait_for(up.message_arrived.wait(), 20)
        for _ in range(500):
            if (await route_state(store, sms_id))[0] == "routed":
                break
            await asyncio.sleep(0.01)
        state, conv_id = await route_state(store, sms_id)
        assert state == "routed" and conv_id is not None
        assert [(m.to, m.body) for m in up.messages] == [("pjsip:203", "anyone there?")]
        for _ in range(500):
            if up.user_events:
                break
            await asyncio.sleep(0.01)
        assert [e["UserEvent"] for e in up.user_events] == ["SmsReceived"]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if up is not None:
            await up.stop()
        await store.close()
