"""The JSON API, /healthz, /metrics and the blocklist, over a real socket."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import phonenumbers
import pytest

from smsd.api.auth import Authenticator
from smsd.core.directory import Directory
from smsd.core.outbox import parse_numbers
from smsd.passwords import hash_password, parse, verify
from tests.api.conftest import FAST_N, PASSWORD, Api, basic


class TestSendJson:
    async def test_send_and_read_back(self, api: Api) -> None:
        """POST /api/v1/sms answers the committed ids; GET by id shows id, state and history."""
        async with api.session.post(
            api.base + "/api/v1/sms",
            json={"to": ["+447700900123", "+15555550100"], "text": "Hello"},
            headers=api.auth,
        ) as r:
            assert r.status == 201
            ids = (await r.json())["ids"]
        assert len(ids) == 2
        async with api.session.get(f"{api.base}/api/v1/sms/{ids[0]}", headers=api.auth) as r:
            msg = await r.json()
        assert msg["id"] == ids[0]
        assert msg["state"] == "queued"
        assert msg["recipient"] == "+447700900123"
        assert msg["history"][0]["state"] == "queued"

    async def test_the_answer_is_compact_utf8_json(self, api: Api) -> None:
        """The answer's bytes are compact JSON in UTF-8 as is (no escapes, no spaces),
        typed "application/json; charset=utf-8", with or without orjson."""
        async with api.session.post(
            api.base + "/api/v1/sms", json={"to": ["+447700900123", "+4477é"], "text": "x"},
            headers=api.auth,
        ) as r:
            assert r.status == 400
            assert r.headers["Content-Type"] == "application/json; charset=utf-8"
            raw = await r.read()
        reason = json.loads(raw)["invalid"][0]["reason"]
        assert raw == ('{"error":"some numbers are not valid E.164 numbers","invalid":'
                       f'[{{"number":"+4477é","reason":"{reason}"}}]}}').encode()
        async with api.session.post(
            api.base + "/api/v1/sms", json={"to": ["+447700900123"], "text": "é"},
            headers=api.auth,
        ) as r:
            assert r.status == 201
            assert r.headers["Content-Type"] == "application/json; charset=utf-8"
            raw = await r.read()
        (mid,) = json.loads(raw)["ids"]
        assert raw == f'{{"ids":[{mid}],"warnings":[]}}'.encode()

    async def test_send_at_schedules(self, api: Api) -> None:
        """send_at in ISO 8601 makes the message scheduled at that instant."""
        async with api.session.post(
            api.base + "/api/v1/sms",
            json={"to": ["+447700900123"], "text": "x", "send_at": "2031-01-02T03:04:00Z"},
            headers=api.auth,
        ) as r:
            (mid,) = (await r.json())["ids"]
        view = await api.services.store.get_message(mid)
        assert view is not None and view.state == "scheduled"
        assert view.send_at == datetime(2031, 1, 2, 3, 4, tzinfo=UTC)

    async def test_send_at_without_offset_is_policy_local_time(self, api: Api) -> None:
        """A send_at without an offset is in policy.timezone (Europe/London here), not UTC:
        09:00 in July is 08:00 UTC (BST)."""
        async with api.session.post(
            api.base + "/api/v1/sms",
            json={"to": ["+447700900123"], "text": "x", "send_at": "2031-07-01T09:00:00"},
            headers=api.auth,
        ) as r:
            assert r.status == 201
            (mid,) = (await r.json())["ids"]
        view = await api.services.store.get_message(mid)
        assert view is not None and view.send_at == datetime(2031, 7, 1, 8, 0, tzinfo=UTC)

    async def test_bad_numbers_listed_and_nothing_stored(self, api: Api) -> None:
        """Any non-E.164 recipient: 400 listing each bad number; nothing is stored."""
        async with api.session.post(
            api.base + "/api/v1/sms",
            json={"to": ["+447700900123", "07700900123", "+1"], "text": "x"},
            headers=api.auth,
        ) as r:
            assert r.status == 400
            body = await r.json()
        assert [b["number"] for b in body["invalid"]] == ["07700900123", "+1"]
        assert await api.count_messages() == 0

    async def test_each_number_is_parsed_once(
        self, api: Api, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A bulk POST parses each number with phonenumbers once (the API parses, the
        outbox takes the parsed numbers as they are), and every number is stored.
        Written with the national prefix, so that each needs the full parse (plain
        +<digits> numbers take parse_e164's shortcut and no phonenumbers.parse)."""
        to = [f"+44 07700 9{i:05d}" for i in range(1000, 1300)]
        keys = [f"+44077009{i:05d}" for i in range(1000, 1300)]
        calls: Counter[str] = Counter()
        real = phonenumbers.parse

        def counting(number: str, *args: Any, **kwargs: Any) -> Any:
            calls[number] += 1
            return real(number, *args, **kwargs)

        monkeypatch.setattr(phonenumbers, "parse", counting)
        async with api.session.post(
            api.base + "/api/v1/sms", json={"to": to, "text": "x"}, headers=api.auth
        ) as r:
            assert r.status == 201
        assert {n: calls[n] for n in keys} == dict.fromkeys(keys, 1)
        assert await api.count_messages() == len(to)

    async def test_parsing_a_bulk_post_leaves_the_loop_free(self) -> None:
        """Parsing thousands of numbers hands the event loop back between slices: a
        task started alongside runs before the parse has finished."""
        finished = False
        turns_during = 0

        async def other() -> None:
            nonlocal turns_during
            while not finished:
                turns_during += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(other())
        await asyncio.sleep(0)
        turns_before = turns_during
        parsed, refused = await parse_numbers([f"+4477009{i:05d}" for i in range(5000)])
        finished = True
        await task
        assert len(parsed) == 5000 and not refused
        assert turns_during > turns_before + 1

    async def test_bad_json_and_bad_fields(self, api: Api) -> None:
        """Malformed JSON, missing text and a bad send_at each get a 400 with a reason."""
        cases = [
            (b"[1,", "not valid JSON"),
            (b'{"to": ["+447700900123"]}', "'text'"),
            (b'{"to": [], "text": "x"}', "'to'"),
            (b'{"to": ["+447700900123"], "text": "x", "send_at": "soon"}', "send_at"),
        ]
        for raw, needle in cases:
            async with api.session.post(
                api.base + "/api/v1/sms",
                data=raw,
                headers={"Content-Type": "application/json", **api.auth},
            ) as r:
                assert r.status == 400, raw
                assert needle in (await r.json())["error"], raw
        assert await api.count_messages() == 0

    async def test_json_the_fast_parser_refuses_reads_as_before(self, api: Api) -> None:
        """Bodies orjson refuses and Python's json reads (an integer over 64 bits, NaN,
        1e400) are still accepted; a byte-order mark is still refused with json's
        own words, as before orjson parsed the bodies."""
        for extra in (b"123456789012345678901234567890", b"NaN", b"1e400"):
            raw = b'{"to": ["+447700900123"], "text": "x", "ignored": ' + extra + b"}"
            async with api.session.post(
                api.base + "/api/v1/sms", data=raw,
                headers={"Content-Type": "application/json", **api.auth},
            ) as r:
                assert r.status == 201, (extra, await r.text())
        async with api.session.post(
            api.base + "/api/v1/sms", data=b'\xef\xbb\xbf{"to": ["+447700900123"], "text": "x"}',
            headers={"Content-Type": "application/json", **api.auth},
        ) as r:
            assert r.status == 400
            assert (await r.json())["error"] == (
                "body is not valid JSON: Unexpected UTF-8 BOM (decode using utf-8-sig): "
                "line 1 column 1 (char 0)")
        assert await api.count_messages() == 3

    async def test_huge_and_non_ascii_ids(self, api: Api) -> None:
        """A message id beyond SQLite's integers is a 404 and non-ASCII digits a 400,
        never a 500 (found by schemathesis)."""
        for raw, code in ((str(2**63), 404), ("9" * 30, 404), ("\u00b2", 400)):
            async with api.session.get(api.base + f"/api/v1/sms/{raw}", headers=api.auth) as r:
                assert r.status == code, raw
                assert (await r.json())["error"]

    async def test_oversized_body_refused(self, api: Api) -> None:
        """A body over the 2 MiB limit is refused with 413 and a JSON reason; nothing stored."""
        async with api.session.post(
            api.base + "/api/v1/sms",
            data=b"x" * (3 * 1024 * 1024),
            headers={"Content-Type": "application/json", **api.auth},
        ) as r:
            assert r.status == 413
            assert "larger than" in (await r.json())["error"]
        assert await api.count_messages() == 0

    async def test_text_over_670_refused(self, api: Api) -> None:
        """671 characters are refused (SEED-NOTES 670 limit), nothing stored."""
        async with api.session.post(
            api.base + "/api/v1/sms",
            json={"to": ["+447700900123"], "text": "y" * 671},
            headers=api.auth,
        ) as r:
            assert r.status == 400
            assert "670" in (await r.json())["error"]
        assert await api.count_messages() == 0


class TestReadJson:
    async def test_list_filters_and_404(self, api: Api) -> None:
        """The list filters by state; an unknown id is 404; a bad state is 400."""
        async with api.session.post(
            api.base + "/api/v1/sms",
            json={"to": ["+447700900123"], "text": "now"},
            headers=api.auth,
        ) as r:
            assert r.status == 201
        async with api.session.post(
            api.base + "/api/v1/sms",
            json={"to": ["+447700900124"], "text": "later", "send_at": "2031-01-01T00:00:00Z"},
            headers=api.auth,
        ) as r:
            assert r.status == 201
        async with api.session.get(
            api.base + "/api/v1/sms", params={"state": "scheduled"}, headers=api.auth
        ) as r:
            msgs = (await r.json())["messages"]
        assert [m["recipient"] for m in msgs] == ["+447700900124"]
        async with api.session.get(api.base + "/api/v1/sms/999999", headers=api.auth) as r:
            assert r.status == 404
        async with api.session.get(
            api.base + "/api/v1/sms", params={"state": "lost"}, headers=api.auth
        ) as r:
            assert r.status == 400

    async def test_reads_need_credentials(self, api: Api) -> None:
        """Reading messages without credentials is 401 with a Basic challenge."""
        async with api.session.get(api.base + "/api/v1/sms") as r:
            assert r.status == 401
            assert "Basic" in r.headers["WWW-Authenticate"]


class TestHealthAndMetrics:
    async def test_healthz_follows_gateways(self, api: Api) -> None:
        """200 while a gateway is available, 503 naming the problem when none is."""
        async with api.session.get(api.base + "/healthz") as r:
            assert r.status == 200
            body = await r.json()
        assert body["gateways"] == {"gsm": {"available": True}}
        api.gateway.up = False
        async with api.session.get(api.base + "/healthz") as r:
            assert r.status == 503
            assert "no gateway available" in (await r.json())["problems"]

    async def test_healthz_queue_counts_waiting_and_in_flight(self, api: Api) -> None:
        """The queue in /healthz is what waits and what is in flight, from the partial
        indexes (never a count of every message ever stored: issue 17)."""
        async with api.session.post(
            api.base + "/api/v1/sms", json={"to": ["+447700900123", "+447700900124"],
                                            "text": "x"}, headers=api.auth,
        ) as r:
            assert r.status == 201
        async with api.session.get(api.base + "/healthz") as r:
            body = await r.json()
        assert body["queue"] == {"waiting": 2, "in_flight": 0}

    async def test_metrics_exposition(self, api: Api) -> None:
        """/metrics counts messages by state and API requests by route and status."""
        async with api.session.post(
            api.base + "/api/v1/originate/sms",
            data={"number": "+447700900123", "message": "m"},
            headers=api.auth,
        ) as r:
            assert r.status == 200
        async with api.session.get(api.base + "/metrics") as r:
            assert r.status == 200
            assert r.content_type == "text/plain"
            text = await r.text()
        assert 'smsd_messages{state="queued"} 1' in text
        assert "smsd_queue_depth 1" in text
        assert 'smsd_gateway_available{gateway="gsm"} 1' in text
        assert 'smsd_api_requests_total{route="/api/v1/originate/sms",status="200"} 1' in text
        assert "# TYPE smsd_api_requests_total counter" in text


class TestBlocklist:
    async def test_block_list_unblock(self, api: Api) -> None:
        """A number blocked through the API is in the store until unblocked."""
        async with api.session.post(
            api.base + "/api/v1/blocklist",
            json={"number": "+447700900666", "reason": "spam"},
            headers=api.auth,
        ) as r:
            assert r.status == 201
        assert await api.services.store.is_blocked("+447700900666")
        async with api.session.delete(
            api.base + "/api/v1/blocklist/%2B447700900666", headers=api.auth
        ) as r:
            assert r.status == 200
        assert not await api.services.store.is_blocked("+447700900666")

    async def test_block_bad_number(self, api: Api) -> None:
        """Blocking a non-E.164 number is a 400 naming it; nothing is stored."""
        async with api.session.post(
            api.base + "/api/v1/blocklist", json={"number": "666"}, headers=api.auth
        ) as r:
            assert r.status == 400
            assert (await r.json())["invalid"][0]["number"] == "666"
        assert await api.services.store.blocked() == []


class TestAuthTiming:
    async def test_unknown_user_costs_a_password_check(self, api: Api) -> None:
        """A name that does not exist still costs one scrypt check (against a decoy with
        the users' own cost), so the answer time does not reveal which names exist."""
        calls: list[str] = []

        def counting(password: str, encoded: str) -> bool:
            calls.append(encoded)
            return verify(password, encoded)

        auth = Authenticator(Directory(api.services.config), verify_fn=counting)
        assert await auth.check("nobody", "guess") is None
        assert await auth.check("alice", "wrong") is None
        assert len(calls) == 2
        alice = next(u for u in api.services.config.users if u.username == "alice")
        assert alice.password_hash is not None
        assert parse(calls[0]).n == parse(alice.password_hash).n


class TestAuthCache:
    async def test_a_known_header_follows_the_users_current_hash(self, api: Api) -> None:
        """Over HTTP, a header verified before is taken without decoding it only while
        the user keeps the hash it was verified against: after the directory is
        reloaded with a new password hash, the same header is refused (401) and
        the new password works; a user removed from the directory is refused too."""
        url = api.base + "/api/v1/sms"
        async with api.session.get(url, headers=api.auth) as r:
            assert r.status == 200
        async with api.session.get(url, headers=api.auth) as r:
            assert r.status == 200
        cfg = api.services.config
        users = tuple(replace(u, password_hash=hash_password("other", n=FAST_N))
                      if u.username == "alice" else u for u in cfg.users)
        api.services.directory.reload(replace(cfg, users=users))
        async with api.session.get(url, headers=api.auth) as r:
            assert r.status == 401
        other = {"Authorization": basic("alice", "other")}
        async with api.session.get(url, headers=other) as r:
            assert r.status == 200
        api.services.directory.reload(
            replace(cfg, users=tuple(u for u in cfg.users if u.username != "alice")))
        async with api.session.get(url, headers=other) as r:
            assert r.status == 401

    async def test_cache_invalidated_when_hash_changes(self, api: Api) -> None:
        """A cached verification stops counting once the user's hash changes."""
        cfg = api.services.config
        auth = Authenticator(Directory(cfg))
        assert await auth.check("alice", PASSWORD) is not None
        assert await auth.check("alice", PASSWORD) is not None  # from the cache
        new_users = tuple(
            replace(u, password_hash=hash_password("other", n=FAST_N))
            if u.username == "alice"
            else u
            for u in cfg.users
        )
        auth._directory = Directory(replace(cfg, users=new_users))
        assert await auth.check("alice", PASSWORD) is None
        assert await auth.check("alice", "other") is not None
        assert await auth.check("alice", "wrong") is None
        assert basic("a", "b").startswith("Basic ")
