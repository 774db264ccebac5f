"""The Wildix-compatible originate call over a real socket (DESIGN.md contract)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from smsd.api.common import MAX_BODY_BYTES
from tests.api.conftest import PASSWORD, Api, basic

URL = "/api/v1/originate/sms"
SUCCESS = b'{"type":"result","result":"Success"}'


async def post(
    api: Api, data: dict[str, str], auth: dict[str, str] | None = None
) -> tuple[int, bytes]:
    async with api.session.post(api.base + URL, data=data, headers=auth or api.auth) as r:
        return r.status, await r.read()


class TestSuccess:
    async def test_form_post_answers_exact_success_and_stores(self, api: Api) -> None:
        """A form POST answers the success JSON byte for byte, after the message is stored."""
        status, body = await post(api, {"number": "+447700900123", "message": "Hello"})
        assert (status, body) == (200, SUCCESS)
        rows = await api.services.store.list_messages()
        assert [(m.recipient, m.text, m.user is not None) for m in rows] == [
            ("+447700900123", "Hello", True)
        ]

    async def test_unencoded_plus_as_curl_sends_it(self, api: Api) -> None:
        """`curl -d number=+44...` sends a raw plus: it stays a plus in number (the demo's call)."""
        async with api.session.post(
            api.base + URL,
            data=b"number=+447700900123,+447700900124&message=Hello+World",
            headers={"Content-Type": "application/x-www-form-urlencoded", **api.auth},
        ) as r:
            assert (r.status, await r.read()) == (200, SUCCESS)
        async with api.session.get(
            api.base + URL + "?number=+447700900125&message=Q", headers=api.auth
        ) as r:
            assert (r.status, await r.read()) == (200, SUCCESS)
        got = {(m.recipient, m.text) for m in await api.services.store.list_messages()}
        assert got == {
            ("+447700900123", "Hello World"),
            ("+447700900124", "Hello World"),
            ("+447700900125", "Q"),
        }

    async def test_get_query_and_json_body(self, api: Api) -> None:
        """GET with query parameters and POST with a JSON body are accepted too."""
        async with api.session.get(
            api.base + URL, params={"number": "+447700900123", "message": "Q"}, headers=api.auth
        ) as r:
            assert (r.status, await r.read()) == (200, SUCCESS)
        async with api.session.post(
            api.base + URL, json={"number": "+447700900124", "message": "J"}, headers=api.auth
        ) as r:
            assert (r.status, await r.read()) == (200, SUCCESS)
        assert await api.count_messages() == 2

    async def test_several_numbers_and_sanitised_text(self, api: Api) -> None:
        """Comma-separated numbers each get a message; ' " \\ / become spaces."""
        _status, body = await post(
            api, {"number": "+447700900123, +447700900124", "message": 'it\'s "a" b\\c/d'}
        )
        assert body == SUCCESS
        texts = {m.recipient: m.text for m in await api.services.store.list_messages()}
        assert texts == {"+447700900123": "it s  a  b c d", "+447700900124": "it s  a  b c d"}

    async def test_300_characters_is_the_limit(self, api: Api) -> None:
        """Exactly 300 characters are accepted."""
        _status, body = await post(api, {"number": "+447700900123", "message": "x" * 300})
        assert body == SUCCESS

    async def test_postpone_in_daemon_time_zone(self, api: Api) -> None:
        """postpone dd/mm/yyyy HH:MM is read in policy.timezone (Europe/London here)."""
        _status, body = await post(
            api,
            {"number": "+447700900123", "message": "later", "postpone": "01/07/2031 09:30"},
        )
        assert body == SUCCESS
        (msg,) = await api.services.store.list_messages()
        assert msg.state == "scheduled"
        # 1 July is summer time in London: 09:30 BST = 08:30 UTC.
        assert msg.send_at == datetime(2031, 7, 1, 8, 30, tzinfo=UTC)


class TestWarning:
    async def test_bad_numbers_listed_rest_queued(self, api: Api) -> None:
        """Non-E.164 numbers come back in a warning; the valid ones are queued."""
        _status, body = await post(api, {"number": "+447700900123,0770090012,abc", "message": "Hi"})
        assert body == (
            b'{"type":"warning","reason":"Unable to add a SMS to the queue",'
            b'"result":["0770090012","abc"]}'
        )
        assert [m.recipient for m in await api.services.store.list_messages()] == ["+447700900123"]


class TestErrors:
    async def test_missing_number(self, api: Api) -> None:
        """No number: the documented error, nothing stored."""
        status, body = await post(api, {"message": "Hi"})
        assert body == b'{"type":"error","reason":"Number should not be empty","result":null}'
        assert status == 400
        assert await api.count_messages() == 0

    async def test_empty_message(self, api: Api) -> None:
        """An empty message is refused with a reason naming the message."""
        _status, body = await post(api, {"number": "+447700900123", "message": "  "})
        assert body == b'{"type":"error","reason":"Message should not be empty","result":null}'
        assert await api.count_messages() == 0

    async def test_301_characters_refused(self, api: Api) -> None:
        """301 characters: error naming the limit, nothing stored."""
        _status, body = await post(api, {"number": "+447700900123", "message": "x" * 301})
        assert b'"type":"error"' in body and b"300" in body and b"301" in body
        assert await api.count_messages() == 0

    async def test_multipart_without_boundary_is_a_400(self, api: Api) -> None:
        """A multipart body whose Content-Type has no boundary cannot be read: a
        400 naming the form, not a 500 (found by schemathesis); nothing stored."""
        async with api.session.post(
            api.base + URL, data=b"number=%2B447700900123&message=Hi",
            headers={**api.auth, "Content-Type": "multipart/form-data"},
        ) as r:
            assert r.status == 400
            body = json.loads(await r.read())
        assert body["type"] == "error" and "not a valid form" in body["reason"]
        assert await api.count_messages() == 0

    async def test_bad_postpone(self, api: Api) -> None:
        """A postpone not in dd/mm/yyyy HH:MM is refused, nothing stored."""
        for bad in ("2031-07-01 09:30", "1/7/31", "tomorrow 10:00"):
            _status, body = await post(
                api, {"number": "+447700900123", "message": "x", "postpone": bad}
            )
            assert body == (
                b'{"type":"error","reason":"Postpone should be in format dd/mm/yyyy HH:MM",'
                b'"result":null}'
            ), bad
        assert await api.count_messages() == 0

    async def test_postpone_on_no_real_date_says_invalid_date(self, api: Api) -> None:
        """31/02 or 25:00 has the right format but is no date: the error says so, nothing stored."""
        for bad in ("31/02/2031 10:00", "01/07/2031 25:00"):
            status, body = await post(
                api, {"number": "+447700900123", "message": "x", "postpone": bad}
            )
            answer = json.loads(body)
            assert status == 400 and answer["type"] == "error" and answer["result"] is None
            assert answer["reason"].startswith("Postpone is not a valid date: "), answer
            assert bad in answer["reason"] and "format" not in answer["reason"]
        assert await api.count_messages() == 0

    async def test_body_too_large_answers_in_the_originate_shape(self, api: Api) -> None:
        """A body over the API's limit gets 413 in the originate call's own error shape."""
        big = "x" * (MAX_BODY_BYTES + 1024)
        status, body = await post(api, {"number": "+447700900123", "message": big})
        answer = json.loads(body)
        assert status == 413
        assert answer["type"] == "error" and answer["result"] is None
        assert str(MAX_BODY_BYTES) in answer["reason"]
        assert await api.count_messages() == 0

    async def test_only_bad_numbers_is_an_error(self, api: Api) -> None:
        """When no number is valid nothing is queued: an error naming each number and
        why (a national number lacks its country code), not a warning; nothing stored."""
        status, body = await post(api, {"number": "07700900123,12", "message": "Hi"})
        assert status == 400
        doc = json.loads(body)
        assert doc["type"] == "error" and doc["result"] is None
        assert "07700900123" in doc["reason"] and "12" in doc["reason"]
        assert await api.count_messages() == 0

    async def test_licence_without_api(self, api: Api) -> None:
        """A UC-Essential user may not use the API: error, nothing stored."""
        status, body = await post(
            api,
            {"number": "+447700900123", "message": "x"},
            {"Authorization": basic("eve", PASSWORD)},
        )
        assert status == 403 and b"licence" in body
        assert await api.count_messages() == 0

    async def test_bad_json_body(self, api: Api) -> None:
        """A malformed JSON body gets a clear JSON error."""
        async with api.session.post(
            api.base + URL,
            data=b"{nope",
            headers={"Content-Type": "application/json", **api.auth},
        ) as r:
            assert r.status == 400
            assert (await r.json())["reason"].startswith("Body is not valid JSON")


class TestAuth:
    async def test_wrong_password_401_and_nothing_stored(self, api: Api) -> None:
        """Bad credentials: 401 with WWW-Authenticate: Basic, and nothing stored."""
        for header in (basic("alice", "wrong"), basic("nobody", PASSWORD), "Basic !!", None):
            headers = {"Authorization": header} if header else {}
            async with api.session.post(
                api.base + URL,
                data={"number": "+447700900123", "message": "x"},
                headers=headers,
            ) as r:
                assert r.status == 401, header
                assert r.headers["WWW-Authenticate"].startswith("Basic realm=")
                assert (await r.json())["type"] == "error"
        assert await api.count_messages() == 0
