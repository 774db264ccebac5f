"""Issue 9 over the real HTTP API: /api/v1/stats, /api/v1/reports, opted-out and blocked
numbers in the originate warning, admins and the blocklist, and a /metrics that
prometheus_client's parser reads (modem figures from a real pool on a simulated modem)."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from smsd.config import GsmGateway, Licence, User
from smsd.core.directory import Directory
from smsd.core.events import StatusChange
from smsd.core.outbox import SubmitRequest
from smsd.core.send_metrics import SendMetrics
from smsd.modem.pool import ModemPool
from smsd.modem.spec import ModemSpec
from smsd.passwords import hash_password
from smsd.simulator.modem import SimulatedModem
from tests.api.conftest import (
    FAST_N,
    PASSWORD,
    Api,
    FakeGateway,
    api_services,
    basic,
    make_config,
    serving,
)
from tests.backend import open_store
from tests.core.polling import eventually
from tests.modem.sim_spy import Recorder

pytestmark = pytest.mark.timeout(60)

CUSTOMER = "+447700900777"


async def _stats(api: Api, query: str = "", headers: dict[str, str] | None = None
                 ) -> tuple[int, str, str]:
    async with api.session.get(api.base + "/api/v1/stats" + query,
                               headers=headers or api.auth) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.text()


class TestStatsAndReports:
    async def test_stats_json_and_csv(self, api: Api) -> None:
        """GET /api/v1/stats answers the month's figures as JSON, and as CSV when asked by
        Accept header or ?format=csv."""
        alice = api.services.directory.user_by_username("alice")
        await api.services.outbox.submit(
            SubmitRequest(["+447700900101", "+447700900102"], "hi", user=alice)
        )
        async with api.session.get(api.base + "/api/v1/stats", headers=api.auth) as r:
            assert r.status == 200
            data = await r.json()
        [row] = data["by_user"]
        assert (row["user"], row["messages"], row["parts"], row["included"]) == ("alice", 2, 2, 2)
        for headers, query in (({**api.auth, "Accept": "text/csv"}, ""), (api.auth, "?format=csv")):
            status, ctype, text = await _stats(api, query, headers)
            assert status == 200 and ctype.startswith("text/csv")
            rows = list(csv.DictReader(io.StringIO(text)))
            assert rows[0]["group"] == "total" and rows[0]["messages"] == "2"
        status, _, text = await _stats(api, "?month=2026-13")
        assert status == 400 and "YYYY-MM" in text

    async def test_reports_filters_and_csv(self, api: Api) -> None:
        """GET /api/v1/reports lists messages with filters; ?format=csv exports them."""
        alice = api.services.directory.user_by_username("alice")
        await api.services.outbox.submit(
            SubmitRequest(["+447700900101", "+447700900102"], "hi", user=alice)
        )
        async with api.session.get(api.base + "/api/v1/reports?to=%2B447700900102",
                                   headers=api.auth) as r:
            assert r.status == 200
            [row] = (await r.json())["reports"]
        assert (row["recipient"], row["user"], row["status"]) == ("+447700900102", "alice",
                                                                  "queued")
        async with api.session.get(api.base + "/api/v1/reports?format=csv",
                                   headers=api.auth) as r:
            lines = (await r.text()).splitlines()
        assert lines[0] == "time,user,from,to,gateway,parts,status,cost" and len(lines) == 3


class TestAdmins:
    async def test_only_admins_manage_the_blocklist_and_read_others(self, tmp_path: Path
                                                                    ) -> None:
        """With an admin configured, another API user gets 403 on the blocklist and on
        another user's statistics, and sees their own."""
        h = hash_password(PASSWORD, n=FAST_N)
        cfg = make_config(tmp_path)
        cfg = replace(cfg, users=(
            replace(cfg.users[0], admin=True),
            User("103", "Carl Clerk", "carl", "+447700900001", Licence.UC_BUSINESS,
                 "pjsip:103", h),
        ))
        store = await open_store(cfg)
        services = api_services(cfg, store, FakeGateway("gsm"))
        services.directory = Directory(cfg)
        carl = {"Authorization": basic("carl", PASSWORD)}
        alice = {"Authorization": basic("alice", PASSWORD)}
        try:
            async with serving(services) as base, aiohttp.ClientSession() as s:
                async with s.post(base + "/api/v1/blocklist", json={"number": CUSTOMER},
                                  headers=carl) as r:
                    assert r.status == 403 and "admin" in (await r.json())["error"]
                async with s.post(base + "/api/v1/blocklist", json={"number": CUSTOMER},
                                  headers=alice) as r:
                    assert r.status == 201
                async with s.get(base + "/api/v1/stats?user=alice", headers=carl) as r:
                    assert r.status == 403
                async with s.get(base + "/api/v1/stats", headers=carl) as r:
                    assert r.status == 200 and (await r.json())["user"] == "carl"
        finally:
            await store.close()


class TestOptOutWarning:
    async def test_originate_warning_lists_opted_out_and_blocked(self, api: Api) -> None:
        """Originate to a good, an opted-out and a blocked number: the good one is queued and
        the warning result lists the other two."""
        async with api.services.store.transaction() as db:
            await db.execute("INSERT INTO opt_outs (number, did, keyword, created_at) "
                             f"VALUES ('{CUSTOMER}', '', 'STOP', '2026-11-25 13:00Z')")
        await api.services.store.block("+447700900666", by="alice", reason="spam")
        async with api.session.post(
            api.base + "/api/v1/originate/sms",
            data={"number": f"+447700900101,{CUSTOMER},+447700900666", "message": "hi"},
            headers=api.auth,
        ) as r:
            body = await r.json()
        assert body["type"] == "warning"
        assert body["reason"] == "Unable to add a SMS to the queue"
        assert sorted(body["result"]) == ["+447700900666", CUSTOMER]
        assert await api.count_messages() == 1


class TestOptOutRemoval:
    async def test_an_admin_lifts_an_opt_out_and_the_number_is_sent_to_again(
            self, api: Api) -> None:
        """An opt-out (the row a STOP writes) makes originate refuse the customer; DELETE
        /api/v1/opt-outs/{number}?did= lifts it (removed 1, then 0 the second time),
        a malformed number is a 400 that removes nothing, and the next originate
        to the customer is queued."""
        async with api.services.store.transaction() as db:
            await db.execute("INSERT INTO opt_outs (number, did, keyword, created_at) "
                             f"VALUES ('{CUSTOMER}', '+447700900001', 'STOP', '2026-11-25 13:00Z')")
        assert await api.services.store.is_opted_out(CUSTOMER)
        url = api.base + "/api/v1/opt-outs/"
        async with api.session.delete(url + "12ab", headers=api.auth) as r:
            assert r.status == 400
        assert await api.services.store.is_opted_out(CUSTOMER)
        for removed in (1, 0):
            async with api.session.delete(url + "%2B447700900777",
                                          params={"did": "+447700900001"},
                                          headers=api.auth) as r:
                assert r.status == 200
                assert await r.json() == {"opted_in": CUSTOMER, "did": "+447700900001",
                                          "removed": removed}
        assert not await api.services.store.is_opted_out(CUSTOMER)
        async with api.session.post(api.base + "/api/v1/originate/sms", headers=api.auth,
                                    data={"number": CUSTOMER, "message": "welcome back"}) as r:
            assert (await r.json())["type"] == "result"


@pytest.fixture
async def pool_api(tmp_path: Path) -> AsyncIterator[tuple[str, SendMetrics, Api]]:
    """The API over a real ModemPool driving one simulated modem on a pty."""
    spec = ModemSpec(id="gsm0", path=str(tmp_path / "ttyGSM0"), own_number="+447700900001")
    cfg = replace(make_config(tmp_path), gsm=GsmGateway((spec,)))
    store = await open_store(cfg)
    modem = SimulatedModem(own_number="+447700900001", seed=1)
    await modem.start(str(tmp_path / "ttyGSM0"))
    pool = ModemPool([spec], Recorder(), state_dir=tmp_path)
    services = api_services(cfg, store, FakeGateway("gsm"), pool)
    metrics = SendMetrics(store)
    services.send_metrics = metrics
    supervising = asyncio.create_task(pool.run())
    try:
        await eventually(pool.healthy)
        async with serving(services) as base, aiohttp.ClientSession() as session:
            yield base, metrics, Api(base, session, services, FakeGateway("gsm"))
    finally:
        supervising.cancel()
        await asyncio.gather(supervising, return_exceptions=True)
        await modem.stop()
        await store.close()


class TestMetrics:
    async def test_metrics_parse_with_prometheus_client(
        self, pool_api: tuple[str, SendMetrics, Api]
    ) -> None:
        """/metrics parses with prometheus_client's text parser and carries the send latency
        histogram, failures by cause, and the modem's registration and storage use."""
        base, metrics, api = pool_api
        res = await api.services.outbox.submit(SubmitRequest(["+447700900101"], "hi"))
        async with api.services.store.transaction() as db:
            await db.execute("UPDATE messages SET created_at = ? WHERE id = ?",
                             ("2000-01-01T00:00:00.000000+00:00", res.ids[0]))
        await metrics.on_status(StatusChange(res.ids[0], "sent", "+447700900101", None, "gsm",
                                             None))
        await metrics.on_status(StatusChange(res.ids[0], "failed", "+447700900101", None,
                                             "gsm", "CMS ERROR 500 (unknown error)"))
        await metrics.on_status(StatusChange(99, "expired", "+447700900101", None, None, None))
        async with api.session.get(base + "/metrics") as r:
            assert r.status == 200
            text = await r.text()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        latency = families["smsd_send_latency_seconds"]
        assert latency.type == "histogram"
        samples = {(s.name, s.labels.get("le")): s.value for s in latency.samples}
        assert samples[("smsd_send_latency_seconds_count", None)] == 1
        assert samples[("smsd_send_latency_seconds_bucket", "3600.0")] == 0  # years late
        assert samples[("smsd_send_latency_seconds_bucket", "+Inf")] == 1
        failures = {s.labels["cause"]: s.value for s in families["smsd_send_failures"].samples}
        assert failures["network_refused"] == 1 and failures["expired"] == 1
        reg = {s.labels["modem"]: s.value for s in families["smsd_modem_registered"].samples}
        assert reg == {"gsm0": 1}
        used = {s.labels["modem"]: s.value for s in families["smsd_modem_storage_total"].samples}
        assert used["gsm0"] > 0
        assert "smsd_queue_depth" in families and "smsd_modem_signal_dbm" in families
