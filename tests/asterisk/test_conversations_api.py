"""/api/v1/conversations over a real loopback HTTP socket, real store and outbox."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from smsd.core.conversations import Conversations
from smsd.core.directory import Directory
from smsd.core.events import EventBus
from smsd.core.outbox import Outbox
from smsd.services import Services
from smsd.store import Store
from tests.api.conftest import serving
from tests.asterisk.conftest import CUSTOMER, DID, PASSWORD, add_inbound, make_config
from tests.backend import open_store

pytestmark = pytest.mark.timeout(30)
BASE = "/api/v1/conversations"


def auth(user: str, password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@dataclass
class Client:
    url: str
    http: aiohttp.ClientSession
    store: Store
    conversations: Conversations

    async def call(self, method: str, path: str, user: str | None = "alice",
                   json: Any = None) -> tuple[int, Any]:
        headers = auth(user) if user else {}
        async with self.http.request(method, self.url + path, json=json, headers=headers) as r:
            return r.status, await r.json()


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    cfg = make_config(tmp_path)
    store = await open_store(cfg)
    directory = Directory(cfg)
    outbox = Outbox(store, cfg.policy)
    conversations = Conversations(store, directory, cfg, ami=None, outbox=outbox)
    services = Services(
        config=cfg, store=store, bus=EventBus(), outbox=outbox,
        inbox=None, dispatcher=None, router=None,  # type: ignore[arg-type]
        pool=None, directory=directory, conversations=conversations,
    )
    async with serving(services) as base, aiohttp.ClientSession() as http:
        yield Client(base, http, store, conversations)
    await store.close()


async def test_auth_required(client: Client) -> None:
    """No or wrong credentials get 401 with a challenge; nothing is listed."""
    status, body = await client.call("GET", BASE, user=None)
    assert status == 401 and "error" in body
    async with client.http.get(client.url + BASE, headers=auth("alice", "nope")) as r:
        assert r.status == 401
        assert r.headers["WWW-Authenticate"].startswith("Basic")


async def test_create_join_show_and_list(client: Client) -> None:
    """POST creates (201), the same number and service joins (200, same id); GET shows it."""
    status, body = await client.call("POST", BASE, json={"number": CUSTOMER, "service": "Sales"})
    assert status == 201 and body["created"] is True
    conv_id = body["conversation"]["id"]
    assert body["conversation"]["title"] == CUSTOMER
    status, body = await client.call("POST", BASE, "bob", json={"number": CUSTOMER})
    assert status == 200 and body["created"] is False and body["conversation"]["id"] == conv_id
    sms = await add_inbound(client.store, CUSTOMER, DID, "hi there")
    await client.conversations.on_inbound(sms, [])
    status, body = await client.call("GET", f"{BASE}/{conv_id}")
    assert status == 200
    assert [p["extension"] for p in body["participants"]] == ["100", "201"]
    assert [m["text"] for m in body["messages"]] == ["hi there"]
    status, body = await client.call("GET", BASE)
    assert status == 200 and [c["id"] for c in body["conversations"]] == [conv_id]
    status, body = await client.call("GET", BASE, "oscar")
    assert status == 200 and body["conversations"] == []


async def test_bad_requests(client: Client) -> None:
    """Bad input gets a clear 4xx and stores nothing."""
    for payload, code in (({"number": "12345"}, 400), ({"service": "Sales"}, 400),
                          ({"number": CUSTOMER, "service": "NoNumber"}, 404), ([1, 2], 400)):
        status, body = await client.call("POST", BASE, json=payload)
        assert status == code and body["error"]
    async with client.http.post(client.url + BASE, data=b"{not json",
                                headers=auth("alice")) as r:
        assert r.status == 400
    status, _ = await client.call("GET", f"{BASE}/999")
    assert status == 404
    status, _ = await client.call("GET", f"{BASE}/abc")
    assert status == 404
    assert await client.store.fetchall("SELECT id FROM conversations") == []


async def test_ids_beyond_sqlite_or_ascii_are_not_found(client: Client) -> None:
    """An id SQLite cannot hold (more than 2**63-1) or written in non-ASCII digits
    is a 404, not a 500 from the driver's OverflowError (found by schemathesis)."""
    for raw in ("010227582340871602654540455", str(2**63), "\u00b2"):
        for method, path in (("GET", f"{BASE}/{raw}"), ("POST", f"{BASE}/{raw}/messages")):
            status, body = await client.call(method, path, json={"text": "hi"})
            assert status == 404, (raw, method, body)


async def test_reply_participants_assign(client: Client) -> None:
    """Reply (202, from the DID), the 670 limit, participants add/remove, assign, access."""
    _, body = await client.call("POST", BASE, json={"number": CUSTOMER, "service": "Sales"})
    cid = body["conversation"]["id"]
    status, body = await client.call("POST", f"{BASE}/{cid}/messages", json={"text": "Hello!"})
    assert status == 202
    row = await client.store.fetchone("SELECT sender, recipient FROM messages WHERE id = ?",
                                      (body["id"],))
    assert row is not None and tuple(row) == (DID, CUSTOMER)
    status, body = await client.call("POST", f"{BASE}/{cid}/messages", json={"text": "y" * 671})
    assert status == 400 and body["limit"] == 670
    status, body = await client.call("POST", f"{BASE}/{cid}/participants",
                                     json={"extension": "201"})
    assert status == 200 and {p["extension"] for p in body["participants"]} == {"100", "201"}
    status, _ = await client.call("POST", f"{BASE}/{cid}/participants",
                                  json={"extension": CUSTOMER})
    assert status == 400
    status, _ = await client.call("DELETE", f"{BASE}/{cid}/participants/{CUSTOMER}")
    assert status == 400
    status, body = await client.call("DELETE", f"{BASE}/{cid}/participants/201")
    assert status == 200
    assert [p["extension"] for p in body["participants"] if p["active"]] == ["100"]
    status, body = await client.call("POST", f"{BASE}/{cid}/assign", json={"extension": "201"})
    assert status == 200 and body["assignee"] == "201"
    status, _ = await client.call("GET", f"{BASE}/{cid}", "oscar")
    assert status == 403
    status, body = await client.call("POST", f"{BASE}/{cid}/messages", json={"text": "STOP"})
    assert status == 200 and body["blocked"] is True
    assert await client.store.is_blocked(CUSTOMER)


async def test_list_gives_each_conversation_its_own_participants(client: Client) -> None:
    """A listing of several conversations shows each with exactly its participants,
    the same as its own GET, newest activity first."""
    other = "+15557654399"
    status, body = await client.call("POST", BASE, json={"number": CUSTOMER, "service": "Sales"})
    assert status == 201
    first = body["conversation"]["id"]
    status, body = await client.call("POST", BASE, json={"number": other, "service": "Sales"})
    assert status == 201
    second = body["conversation"]["id"]
    status, _ = await client.call("POST", BASE, "bob", json={"number": other})
    assert status == 200
    status, body = await client.call("GET", BASE)
    assert status == 200
    assert [c["id"] for c in body["conversations"]] == [second, first]
    listed = {c["id"]: c for c in body["conversations"]}
    assert [p["extension"] for p in listed[first]["participants"]] == ["100"]
    assert [p["extension"] for p in listed[second]["participants"]] == ["100", "201"]
    for conv_id, conv in listed.items():
        status, shown = await client.call("GET", f"{BASE}/{conv_id}")
        assert status == 200
        shown.pop("messages")
        assert shown == conv
    status, body = await client.call("GET", BASE, "bob")
    assert status == 200 and {c["id"] for c in body["conversations"]} == {first, second}
