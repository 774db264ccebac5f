"""The http transport against a local CLASSOUND REST API, and its webhooks into smsd's API."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from smsd.config import ClassoundGateway, Config, Licence, Policy, User
from smsd.daemon import open_services
from smsd.errors import GatewayError
from smsd.gateways.base import OutboundJob
from smsd.gateways.classound.http import (
    SIGNATURE_HEADER,
    HttpTrunk,
    MediaFile,
    sign,
    verify_signature,
)
from smsd.passwords import hash_password
from smsd.services import Services
from tests.api.conftest import serving
from tests.core.polling import eventually
from tests.fakes.classound_http import TOKEN, ClassoundCarrier
from tests.gateways.conftest import RECIPIENT, SENDER, Hooks

pytestmark = pytest.mark.timeout(60)

JOB = OutboundJob(12, RECIPIENT, "Héllo ✓", SENDER, None, 1, "ucs2")
HOOK_SECRET = "hook-secret-9"


def http_config(carrier: ClassoundCarrier, **kw: Any) -> ClassoundGateway:
    return ClassoundGateway(mode="http", url=carrier.url, secret=TOKEN,
                            webhook_secret=HOOK_SECRET, **kw)


async def trunk_for(carrier: ClassoundCarrier, **kw: Any) -> HttpTrunk:
    trunk = HttpTrunk(http_config(carrier, **kw), None)
    trunk.retry_base_s = 0.01  # the backoff schedule, scaled down for the test
    return trunk


class TestSend:
    async def test_sms_is_posted_exactly(self, carrier: ClassoundCarrier) -> None:
        """One POST /messages with the bearer token, the JSON fields and our reference as
        Idempotency-Key; the part is submitting before and sent after."""
        trunk = await trunk_for(carrier)
        hooks = Hooks()
        await trunk.send(JOB, hooks)
        await trunk.close()
        [req] = carrier.requests
        assert carrier.refused == []
        assert req.body == {"from": SENDER, "to": RECIPIENT, "text": "Héllo ✓",
                            "reference": "smsd-12"}
        assert req.headers["Idempotency-Key"] == "smsd-12"
        assert hooks.log == [("submitting", 1), ("sent", 1)]

    async def test_5xx_is_retried_with_backoff_then_sent(self, carrier: ClassoundCarrier) -> None:
        """503, 502, then 201: three requests, same Idempotency-Key, the message is sent."""
        carrier.script = [503, 502]
        trunk = await trunk_for(carrier)
        await trunk.send(JOB, Hooks())
        await trunk.close()
        assert len(carrier.requests) == 3
        assert {r.headers["Idempotency-Key"] for r in carrier.requests} == {"smsd-12"}

    async def test_persistent_5xx_is_temporary(self, carrier: ClassoundCarrier) -> None:
        """Every attempt 500: after HTTP_ATTEMPTS the router hears a temporary failure."""
        carrier.script = [500, 500, 500]
        trunk = await trunk_for(carrier)
        with pytest.raises(GatewayError) as err:
            await trunk.send(JOB, Hooks())
        await trunk.close()
        assert err.value.temporary and "after 3 attempts" in str(err.value)

    async def test_429_with_retry_after_is_retried(self, carrier: ClassoundCarrier) -> None:
        """429 Too Many Requests is about the moment: retried after Retry-After."""
        carrier.script = [429]
        carrier.retry_after = "0"
        trunk = await trunk_for(carrier)
        await trunk.send(JOB, Hooks())
        await trunk.close()
        assert len(carrier.requests) == 2

    async def test_4xx_is_permanent_and_not_retried(self, carrier: ClassoundCarrier) -> None:
        """400 refuses the message itself: one request, a permanent failure."""
        carrier.script = [400]
        trunk = await trunk_for(carrier)
        with pytest.raises(GatewayError) as err:
            await trunk.send(JOB, Hooks())
        await trunk.close()
        assert not err.value.temporary and len(carrier.requests) == 1

    async def test_wrong_token_is_refused_by_the_carrier(self, carrier: ClassoundCarrier) -> None:
        """The fake really checks the token: a wrong one gets 401, a permanent failure."""
        trunk = HttpTrunk(ClassoundGateway(mode="http", url=carrier.url, secret="nope"), None)
        with pytest.raises(GatewayError):
            await trunk.send(JOB, Hooks())
        await trunk.close()
        assert carrier.refused == ["bad token"]

    async def test_timeout_is_retried_then_temporary(self, carrier: ClassoundCarrier) -> None:
        """A carrier that never answers: each attempt ends at timeout_s, then temporary."""
        carrier.hang = True
        trunk = await trunk_for(carrier, timeout_s=0.2)
        with pytest.raises(GatewayError) as err:
            await trunk.send(JOB, Hooks())
        await trunk.close()
        assert err.value.temporary and "no answer" in str(err.value)
        assert len(carrier.requests) == 3

    async def test_mms_is_a_multipart_upload(self, carrier: ClassoundCarrier) -> None:
        """POST /mms: from, to, reference fields and one media part per file, byte-exact."""
        trunk = await trunk_for(carrier)
        files = [MediaFile("a.jpg", "image/jpeg", b"\xff\xd8jpeg"),
                 MediaFile("b.png", "image/png", b"\x89PNG" + bytes(range(256)))]
        answer = await trunk.send_mms("smsd-5", SENDER, RECIPIENT, files)
        await trunk.close()
        [req] = carrier.requests
        assert answer["id"] == "cl-1"
        assert req.body == {"from": SENDER, "to": RECIPIENT, "reference": "smsd-5"}
        assert req.files == [(f.filename, f.content_type, f.data) for f in files]


def test_signature_is_hmac_sha256_of_the_raw_body() -> None:
    """sha256=<hex> over the exact bytes; any change to body or secret fails."""
    body = b'{"type":"status"}'
    header = sign("k", body)
    assert header.startswith("sha256=") and verify_signature("k", body, header)
    assert not verify_signature("k", body + b" ", header)
    assert not verify_signature("other", body, header)
    assert not verify_signature("k", body, None)


# --- webhooks through the real API, store, dispatcher and trunk ---------------------

PASSWORD = "pw-webhook-1"
DID = "+15557654321"


def daemon_config(tmp_path: Path, carrier: ClassoundCarrier,
                  users: tuple[User, ...] | None = None) -> Config:
    return Config(
        state_dir=tmp_path,
        database=tmp_path / "smsd.sqlite3",
        users=users or (User("100", "Alice Example", "alice", DID, Licence.UC_BUSINESS,
                             "pjsip:100", hash_password(PASSWORD, n=2**4)),),
        classound=http_config(carrier),
        policy=Policy(country="US"),
    )


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, carrier: ClassoundCarrier, users: tuple[User, ...] | None = None
) -> AsyncIterator[tuple[str, aiohttp.ClientSession, Services]]:
    async with open_services(daemon_config(tmp_path, carrier, users)) as services:
        assert services.trunk is not None
        tasks = [asyncio.create_task(services.bus.run()),
                 asyncio.create_task(services.dispatcher.run())]
        try:
            async with serving(services) as base, aiohttp.ClientSession() as session:
                yield base, session, services
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await services.trunk.close()


AUTH = {"Authorization": "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()}


async def post_hook(session: aiohttp.ClientSession, base: str, payload: dict[str, Any],
                    secret: str = HOOK_SECRET) -> tuple[int, Any]:
    raw = json.dumps(payload).encode()
    async with session.post(f"{base}/api/v1/classound/webhook", data=raw,
                            headers={SIGNATURE_HEADER: sign(secret, raw),
                                     "Content-Type": "application/json"}) as resp:
        return resp.status, await resp.json()


async def state_of(session: aiohttp.ClientSession, base: str, sms_id: int) -> dict[str, Any]:
    async with session.get(f"{base}/api/v1/sms/{sms_id}", headers=AUTH) as resp:
        body: dict[str, Any] = await resp.json()
        return body


async def _is_sent(session: aiohttp.ClientSession, base: str, sms_id: int) -> bool:
    return (await state_of(session, base, sms_id))["state"] == "sent"


class TestWebhooks:
    async def test_sent_through_http_then_delivered_by_webhook(
        self, tmp_path: Path, carrier: ClassoundCarrier
    ) -> None:
        """POST /api/v1/sms goes to the carrier's REST API and is `sent`; the carrier's
        signed status webhook for its reference makes it `delivered`."""
        async with running(tmp_path, carrier) as (base, session, _):
            async with session.post(f"{base}/api/v1/sms", headers=AUTH,
                                    json={"to": [RECIPIENT], "text": "hi"}) as resp:
                [sms_id] = (await resp.json())["ids"]
            await eventually(
                lambda: _is_sent(session, base, sms_id)  # type: ignore[arg-type]
            )
            status, body = await post_hook(session, base, {
                "type": "status", "reference": f"smsd-{sms_id}", "status": "delivered"})
            assert (status, body) == (200, {"applied": True})
            view = await state_of(session, base, sms_id)
        assert (view["state"], view["gateway"]) == ("delivered", "classound")
        assert carrier.requests[0].body["from"] == DID

    async def test_inbound_sms_webhook_is_stored_once(
        self, tmp_path: Path, carrier: ClassoundCarrier
    ) -> None:
        """A signed inbound SMS is committed before 200; the carrier retrying the same
        webhook gets the same id, and only one inbound row exists."""
        payload = {"type": "message", "id": "cl-in-1", "from": RECIPIENT, "to": DID,
                   "text": "Bonjour"}
        async with running(tmp_path, carrier) as (base, session, services):
            first = await post_hook(session, base, payload)
            again = await post_hook(session, base, payload)
            rows = await services.store.fetchall("SELECT sender, recipient, text, gateway "
                                                 "FROM inbound")
        assert first[0] == 200 and first == again
        assert [tuple(r) for r in rows] == [(RECIPIENT, DID, "Bonjour", "classound")]

    async def test_unsigned_or_wrongly_signed_webhooks_change_nothing(
        self, tmp_path: Path, carrier: ClassoundCarrier
    ) -> None:
        """Wrong secret, and a status for a message never sent through the trunk: 401 and
        {"applied": false}; nothing is stored or changed."""
        async with running(tmp_path, carrier) as (base, session, services):
            status, _ = await post_hook(session, base, {
                "type": "message", "id": "x", "from": RECIPIENT, "to": DID, "text": "forged"},
                secret="wrong")
            assert status == 401
            status, body = await post_hook(session, base, {
                "type": "status", "reference": "smsd-999", "status": "delivered"})
            assert (status, body) == (200, {"applied": False})
            status, _ = await post_hook(session, base, {"type": "status", "reference": "x"})
            assert status == 400
            rows = await services.store.fetchall("SELECT id FROM inbound")
        assert rows == []
