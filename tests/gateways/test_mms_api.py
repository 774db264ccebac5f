"""MMS through the API: multipart POST /api/v1/sms to the carrier, inbound MMS links."""

from __future__ import annotations

import base64
from pathlib import Path

import aiohttp
import pytest

from smsd.config import Licence, User
from smsd.passwords import hash_password
from tests.fakes.classound_http import ClassoundCarrier
from tests.gateways.test_http_trunk import (
    AUTH,
    DID,
    PASSWORD,
    post_hook,
    running,
)

pytestmark = pytest.mark.timeout(60)
CUSTOMER = "+15550001111"


def form(to: list[str], text: str | None, files: list[tuple[str, str, bytes]]
         ) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for n in to:
        data.add_field("to", n)
    if text is not None:
        data.add_field("text", text)
    for name, ctype, blob in files:
        data.add_field("file", blob, filename=name, content_type=ctype)
    return data


class TestOutboundMms:
    async def test_media_to_the_carrier_text_as_sms_dropped_named(
        self, tmp_path: Path, carrier: ClassoundCarrier
    ) -> None:
        """Two images go as one MMS per recipient with exactly those files; the typed
        text and a long text file become SMS (the file split at 4,500 characters); an
        .exe and an image that would push the total over 3.5 MB are dropped by name."""
        small = b"\xff\xd8" + bytes(1000)
        mid = b"\x89PNG" + bytes(1_500_000)
        huge = b"\xff\xd8" + bytes(3_000_000)
        note = ("line of text " * 500).strip()  # 6,499 characters
        files = [("a.jpg", "image/jpeg", small), ("b.png", "image/png", mid),
                 ("c.jpg", "image/jpeg", huge), ("x.exe", "application/x-msdownload", b"MZ"),
                 ("note.txt", "text/plain", note.encode())]
        async with running(tmp_path, carrier) as (base, session, services):
            async with session.post(f"{base}/api/v1/sms", headers=AUTH,
                                    data=form([CUSTOMER], "Photos attached", files)) as resp:
                assert resp.status == 201, await resp.text()
                body = await resp.json()
            rows = await services.store.fetchall("SELECT text FROM messages ORDER BY id")
        [mms] = [r for r in carrier.requests if r.path == "/v1/mms"]
        assert mms.path == "/v1/mms" and mms.body["from"] == DID and mms.body["to"] == CUSTOMER
        assert mms.files == [("a.jpg", "image/jpeg", small), ("b.png", "image/png", mid)]
        assert body["mms"][0]["carrier_id"] == "cl-1"
        assert {d["file"] for d in body["dropped"]} == {"c.jpg", "x.exe"}
        texts = [r["text"] for r in rows]
        assert texts[0] == "Photos attached" and len(texts) == 3 and len(body["ids"]) == 3
        assert all(len(t) <= 4500 for t in texts[1:]) and " ".join(texts[1:]) == note

    async def test_non_us_did_cannot_send_mms(
        self, tmp_path: Path, carrier: ClassoundCarrier
    ) -> None:
        """MMS only for US/Canadian DIDs: a UK DID is refused and nothing is sent."""
        async with running(tmp_path, carrier, users=(User(
            "100", "Alice Example", "alice", "+447700900001", Licence.UC_BUSINESS,
            "pjsip:100", hash_password(PASSWORD, n=2**4)),)) as (base, session, services):
            async with session.post(f"{base}/api/v1/sms", headers=AUTH, data=form(
                    [CUSTOMER], None, [("a.jpg", "image/jpeg", b"x")])) as resp:
                assert resp.status == 400
                assert "US or Canadian" in (await resp.json())["error"]
            rows = await services.store.fetchall("SELECT id FROM messages")
        assert carrier.requests == [] and rows == []


class TestInboundMms:
    async def test_media_are_stored_and_reach_the_text_as_authenticated_links(
        self, tmp_path: Path, carrier: ClassoundCarrier
    ) -> None:
        """An inbound MMS webhook: the files land under the state directory, the inbound
        SMS text carries one link per file, and the link serves the bytes to an API user
        only (401 without credentials)."""
        blob = b"\x89PNG\r\n" + bytes(range(256))
        payload = {"type": "message", "id": "cl-mms-1", "from": CUSTOMER, "to": DID,
                   "text": "look", "media": [{"filename": "pic.png", "content_type":
                                               "image/png",
                                               "data": base64.b64encode(blob).decode()}]}
        async with running(tmp_path, carrier) as (base, session, services):
            status, _ = await post_hook(session, base, payload)
            assert status == 200
            [row] = await services.store.fetchall("SELECT text FROM inbound")
            text, link = row["text"].split("\n")
            assert text == "look" and link.startswith("http://127.0.0.1:8080/api/v1/mms/")
            path = link.removeprefix("http://127.0.0.1:8080")
            async with session.get(base + path) as resp:
                assert resp.status == 401
            async with session.get(base + path, headers=AUTH) as resp:
                assert resp.status == 200 and await resp.read() == blob
                assert resp.headers["Content-Type"] == "image/png"
        stored = list((tmp_path / "mms").rglob("*.png"))
        assert [p.read_bytes() for p in stored] == [blob]
