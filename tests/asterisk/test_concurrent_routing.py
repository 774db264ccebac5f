"""Inbound SMS are routed concurrently, one conversation's in order (issue 16, defect 5).

Routing one SMS waits on Asterisk (ShowDialPlan, Originate, the dialplan's AGI);
serially, 30 inbound SMS took 15.2 s on the lab Asterisk 20.20.1 (0.5 s each
with the sample's old Answer()).  The daemon's own wiring (build_services) is
used; the fake Asterisk holds every ShowDialPlan answer until five lookups are
waiting at once, which only concurrent routing can reach.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from smsd.core.directory import Directory
from smsd.core.events import InboundSms
from smsd.services import build_services
from smsd.store import open_database
from tests.asterisk.conftest import DID, add_inbound, make_config, route_state
from tests.fakes.asterisk_ami import FakeAmi, _Session

pytestmark = pytest.mark.timeout(60)
AT_ONCE = 5


class GatedLookups(FakeAmi):
    """Answers ShowDialPlan only once ``AT_ONCE`` lookups are waiting (then all, in order)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[tuple[_Session, dict[str, list[str]]]] = []
        self.most_waiting = 0
        self.at_once = AT_ONCE

    async def _dispatch(self, s: _Session, a: dict[str, list[str]]) -> bool:
        if a.get("action", [""])[0].lower() == "showdialplan" and s.authenticated:
            self.waiting.append((s, a))
            self.most_waiting = max(self.most_waiting, len(self.waiting))
            if len(self.waiting) >= self.at_once:
                held, self.waiting = self.waiting, []
                for session, action in held:
                    await super()._dispatch(session, action)
            return True
        return await super()._dispatch(s, a)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_burst_routed_at_once_and_in_order(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """1. Five customers text the DID at once: their lookups are all in flight together
       (the gate opens) and each SMS is routed.
    2. Two SMS of one customer are routed in their order (same conversation)."""
    fake = await GatedLookups().start()
    config = make_config(tmp_path, ami_port=fake.port)
    if backend == "postgresql":
        config = dataclasses.replace(config, database_url=request.getfixturevalue("pg_smsd_dsn"))
    store = await open_database(config.database, config.database_url)
    services = await build_services(config, store, Directory(config))
    assert services.ami is not None
    tasks = [asyncio.create_task(services.bus.run()), asyncio.create_task(services.ami.run())]
    try:
        assert await services.ami.wait_connected(10, hooks=True)
        burst: list[InboundSms] = []
        for i in range(AT_ONCE):
            burst.append(await add_inbound(store, f"+1555765430{i}", DID, f"hello {i}"))
        for sms in burst:
            services.bus.publish_inbound(sms)
        await asyncio.wait_for(services.bus.join(), 30)
        assert fake.most_waiting == AT_ONCE
        for sms in burst:
            assert (await route_state(store, sms.id))[0] == "routed"

        fake.at_once = 1                        # answer lookups at once from now on
        first = await add_inbound(store, "+15557654399", DID, "first")
        second = await add_inbound(store, "+15557654399", DID, "second")
        for sms in (first, second):
            services.bus.publish_inbound(sms)
        for i in range(AT_ONCE):
            services.bus.publish_inbound(await add_inbound(store, f"+1555765111{i}", DID, "x"))
        await asyncio.wait_for(services.bus.join(), 30)
        to_phone = [m.body for m in fake.messages if m.to == "pjsip:100"]
        assert to_phone.index("first") < to_phone.index("second")
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await store.close()
        await fake.stop()
