"""The console over HTTP: sign-in, CSRF, headers, escaping, roles, pages, live events."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from datetime import UTC, datetime

import aiohttp

from smsd.core.stats import month_bounds, monthly_usage
from smsd.ui.session import CSP, MAX_SESSIONS, Sessions
from tests.ui.conftest import CUSTOMER, DID, PASSWORD, Console, csrf_of, page_csrf

PAGES = ("/ui/conversations", "/ui/send", "/ui/messages", "/ui/search", "/ui/modems",
         "/ui/stats", "/ui/blocklist")


class TestSignIn:
    async def test_session_cookie_is_httponly_strict_and_expires(self, console: Console) -> None:
        """A good password answers 303 to the conversations with an HttpOnly,
        SameSite=Strict session cookie that has a Max-Age."""
        async with console.client() as s:
            r = await console.sign_in(s, "alice")
            assert r.status == 303 and r.headers["Location"] == "/ui/conversations"
            cookie = next(c for c in r.headers.getall("Set-Cookie")
                          if c.startswith("smsd_session="))
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
            assert re.search(r"Max-Age=\d+", cookie)
            async with s.get("/ui/conversations") as page:
                assert page.status == 200 and "Alice Admin" in await page.text()

    async def test_wrong_password_and_unknown_user_are_refused(self, console: Console) -> None:
        """A wrong password or an unknown name answers 401 with the form again and
        sets no session cookie; the pages stay closed."""
        for user, pw in (("alice", "nope"), ("mallory", PASSWORD)):
            async with console.client() as s:
                r = await console.sign_in(s, user, pw)
                assert r.status == 401
                assert "Wrong user name or password" in await r.text()
                assert not any(c.startswith("smsd_session=")
                               for c in r.headers.getall("Set-Cookie", []))
                async with s.get("/ui/messages", allow_redirects=False) as page:
                    assert page.status == 303 and page.headers["Location"] == "/ui/login"

    async def test_login_without_its_csrf_token_is_refused(self, console: Console) -> None:
        """A sign-in POST that does not echo the login form's token (a cross-site
        form) answers 403 even with the right password."""
        async with console.client() as s:
            r = await s.post("/ui/login", data={"username": "alice", "password": PASSWORD},
                             allow_redirects=False)
            assert r.status == 403
            assert not any(c.startswith("smsd_session=")
                           for c in r.headers.getall("Set-Cookie", []))

    async def test_logout_ends_the_session(self, console: Console) -> None:
        """After sign-out the old cookie opens nothing."""
        async with console.client() as s:
            await console.sign_in(s, "bob")
            token = await page_csrf(s)
            r = await s.post("/ui/logout", data={"csrf": token}, allow_redirects=False)
            assert r.status == 303
            async with s.get("/ui/conversations", allow_redirects=False) as page:
                assert page.status == 303

    async def test_the_event_stream_needs_a_session(self, console: Console) -> None:
        """Without a session the event stream answers 401, it never streams."""
        async with console.client() as s, s.get(
                "/ui/events", headers={"Accept": "text/event-stream"}) as r:
            assert r.status == 401

    def test_sessions_are_bounded_and_expire(self) -> None:
        """An expired token opens nothing; past MAX_SESSIONS the oldest one goes."""
        gone = Sessions(ttl_s=-1).create("alice")
        assert Sessions(ttl_s=-1).get(gone.token) is None
        sessions = Sessions()
        first = sessions.create("alice")
        for _ in range(MAX_SESSIONS):
            sessions.create("bob")
        assert sessions.get(first.token) is None


class TestCsrfAndHeaders:
    async def test_post_without_token_is_refused_and_changes_nothing(
            self, console: Console) -> None:
        """A signed-in POST without the CSRF token answers 403 and blocks nobody;
        the same POST with the token blocks the number."""
        async with console.client() as s:
            await console.sign_in(s, "alice")
            r = await s.post("/ui/blocklist", data={"number": "+447700900999"},
                             allow_redirects=False)
            assert r.status == 403
            assert not await console.services.store.is_blocked("+447700900999")
            token = await page_csrf(s, "/ui/blocklist")
            r = await s.post("/ui/blocklist", data={"number": "+447700900999", "csrf": token},
                             allow_redirects=False)
            assert r.status == 303
            assert await console.services.store.is_blocked("+447700900999")

    async def test_every_page_has_a_strict_csp_and_no_inline_script(
            self, console: Console) -> None:
        """Each console page answers with the strict CSP and every <script> has a
        src from /ui/static (no inline code for the CSP to allow)."""
        async with console.client() as s:
            await console.sign_in(s, "alice")
            for path in (*PAGES, "/ui/login", "/api/v1/doc"):
                async with s.get(path) as r:
                    assert r.status == 200, path
                    assert r.headers["Content-Security-Policy"] == CSP
                    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
                    assert r.headers["X-Frame-Options"] == "DENY"
                    scripts = re.findall(r"<script[^>]*>", await r.text())
                    assert scripts and all('src="/ui/static/' in t for t in scripts), path
                    assert " style=" not in await r.text(), path


class TestConversations:
    async def test_script_in_an_inbound_sms_shows_as_text(self, console: Console) -> None:
        """An inbound SMS containing <script> is escaped in the list and the thread."""
        await console.inbound("<script>alert('x')</script> hello")
        async with console.client() as s:
            await console.sign_in(s, "bob")
            for path in ("/ui/conversations", "/ui/conversations/1"):
                async with s.get(path) as r:
                    body = await r.text()
                    assert "<script>alert" not in body, path
                    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; hello" in body

    async def test_list_shows_service_number_unread_and_assignee(
            self, console: Console) -> None:
        """The list has the title, service, customer, last message and unread
        count; opening the thread clears the count; assigning shows the agent."""
        await console.inbound("first")
        await console.inbound("second")
        async with console.client() as s:
            await console.sign_in(s, "bob")
            async with s.get("/ui/conversations") as r:
                row = re.search(r'<tr data-conversation="1">.*?</tr>', await r.text())
            assert row is not None
            assert CUSTOMER in row.group(0) and "second" in row.group(0)
            assert 'aria-label="2 unread"' in row.group(0)
            token = await page_csrf(s, "/ui/conversations/1")
            r = await s.post("/ui/conversations/1/assign",
                             data={"csrf": token, "assignee": "101"}, allow_redirects=False)
            assert r.status == 303
            async with s.get("/ui/conversations") as r:
                row = re.search(r'<tr data-conversation="1">.*?</tr>', await r.text())
            assert row is not None and "unread" not in row.group(0)
            assert '<td data-label="Assigned">101</td>' in row.group(0)

    async def test_create_joins_the_existing_conversation(self, console: Console) -> None:
        """Creating a conversation for a number that already has one on the same
        service opens that one (same id), as SEED-NOTES says."""
        await console.inbound("hi")
        async with console.client() as s:
            await console.sign_in(s, "alice")
            token = await page_csrf(s)
            r = await s.post("/ui/conversations", data={
                "csrf": token, "number": CUSTOMER, "service": "+447700900001"},
                allow_redirects=False)
            assert r.status == 303 and r.headers["Location"] == "/ui/conversations/1"
            r = await s.post("/ui/conversations", data={
                "csrf": token, "number": "+447700900555", "service": "+447700900001"},
                allow_redirects=False)
            # A new conversation (PostgreSQL's ids may skip a number: not "/2").
            assert re.fullmatch(r"/ui/conversations/\d+", r.headers["Location"])
            assert r.headers["Location"] != "/ui/conversations/1"

    async def test_reply_rename_and_participants(self, console: Console) -> None:
        """A reply is queued from the DID in the conversation; rename changes the
        title; a participant can be removed and added back."""
        await console.inbound("hi")
        async with console.client() as s:
            await console.sign_in(s, "bob")
            token = await page_csrf(s, "/ui/conversations/1")
            for path, data in (("reply", {"text": "On our way"}),
                               ("rename", {"title": "Mrs Smith"}),
                               ("participants/remove", {"extension": "100"})):
                r = await s.post(f"/ui/conversations/1/{path}", data={"csrf": token, **data},
                                 allow_redirects=False)
                assert r.status == 303, await r.text()
            conv = await console.services.conversations.get(1)  # type: ignore[union-attr]
            assert conv["title"] == "Mrs Smith"
            assert [p["extension"] for p in conv["participants"] if p["active"]] == ["101"]
            row = await console.services.store.fetchone(
                "SELECT sender, recipient, text, conversation_id FROM messages")
            assert row is not None and tuple(row) == ("+447700900001", CUSTOMER,
                                                      "On our way", 1)
            r = await s.post("/ui/conversations/1/participants",
                             data={"csrf": token, "extension": "100"}, allow_redirects=False)
            assert r.status == 303

    async def test_user_outside_the_service_cannot_open_the_thread(
            self, console: Console) -> None:
        """Carol (not a member, not admin) gets 403 for the thread and does not
        see it in her list."""
        await console.inbound("private")
        async with console.client() as s:
            await console.sign_in(s, "carol")
            async with s.get("/ui/conversations/1") as r:
                assert r.status == 403
            async with s.get("/ui/conversations") as r:
                assert "private" not in await r.text()

    async def test_a_new_inbound_sms_is_announced_on_the_event_stream(
            self, console: Console) -> None:
        """An open event stream gets ``conversation`` with the id once the inbound
        SMS is in its conversation (so a refetch shows it)."""
        async with console.client() as s:
            await console.sign_in(s, "bob")
            async with s.get("/ui/events") as stream:
                assert stream.headers["Content-Type"] == "text/event-stream"
                assert await stream.content.readline() == b"retry: 2000\n"
                sms_task = asyncio.create_task(console.inbound("are you there?"))
                event = b""
                while not event.startswith(b"event: conversation"):
                    event = await stream.content.readline()
                data = json.loads((await stream.content.readline())[len(b"data: "):])
                assert data == {"kind": "conversation", "id": 1}
                await sms_task
            async with s.get("/ui/conversations/1") as r:
                assert "are you there?" in await r.text()

    async def test_open_streams_end_when_the_daemon_stops(self, console: Console) -> None:
        """Shutting the app down (the daemon's first stop step) ends every open event
        stream at once, so the drain does not wait for browsers left open."""
        async with console.client() as s:
            await console.sign_in(s, "bob")
            async with s.get("/ui/events") as stream:
                assert await stream.content.readline() == b"retry: 2000\n"
                await console.app.shutdown()
                rest = await asyncio.wait_for(stream.content.read(), 30)
                assert rest == b"\n"  # the end of the retry line's block, then EOF


class TestSendAndMessages:
    async def test_send_queues_good_numbers_and_lists_refused_ones(
            self, console: Console) -> None:
        """Several numbers: the valid ones are queued, the others listed with why."""
        async with console.client() as s:
            await console.sign_in(s, "bob")
            token = await page_csrf(s, "/ui/send")
            async with s.post("/ui/send", data={
                    "csrf": token, "to": "+447700900201, +447700900202, 12345",
                    "text": "Meeting at 3", "send_at": ""}) as r:
                body = await r.text()
            assert "2 queued, 1 refused." in body and "12345:" in body
            rows = await console.services.store.fetchall(
                "SELECT recipient, user FROM messages ORDER BY id")
            assert [tuple(x) for x in rows] == [("+447700900201", "bob"),
                                                ("+447700900202", "bob")]

    async def test_postponed_send_is_scheduled_in_the_daemon_zone(
            self, console: Console) -> None:
        """A postpone time is read in the daemon's zone and the message waits."""
        async with console.client() as s:
            await console.sign_in(s, "bob")
            token = await page_csrf(s, "/ui/send")
            await s.post("/ui/send", data={"csrf": token, "to": "+447700900201",
                                           "text": "later", "send_at": "2099-07-01T09:30"})
        row = await console.services.store.fetchone("SELECT state, send_at FROM messages")
        assert row is not None and row["state"] == "scheduled"
        assert row["send_at"].startswith("2099-07-01T08:30")  # BST is UTC+1

    async def test_bulk_batch_answers_json_with_refusals(self, console: Console) -> None:
        """The script's batch call answers how many were queued and which refused."""
        async with console.client() as s:
            await console.sign_in(s, "bob")
            token = await page_csrf(s, "/ui/send")
            async with s.post("/ui/send/batch", data={
                    "to": "+447700900301,+447700900302,abc", "text": "bulk", "send_at": ""},
                    headers={"X-CSRF-Token": token}) as r:
                answer = await r.json()
            assert answer["accepted"] == 2
            assert [x["number"] for x in answer["refused"]] == ["abc"]

    async def test_bulk_file_without_script(self, console: Console) -> None:
        """The plain form upload of a CSV queues every good number in it."""
        async with console.client() as s:
            await console.sign_in(s, "bob")
            token = await page_csrf(s, "/ui/send")
            form = aiohttp.FormData()
            form.add_field("csrf", token)
            form.add_field("bulk-text", "from a file")
            form.add_field("file", b"number\n+447700900401\n+447700900402\nnot-a-number\n",
                           filename="list.csv", content_type="text/csv")
            async with s.post("/ui/send/bulk", data=form) as r:
                assert "2 queued, 1 refused." in await r.text()

    async def test_users_see_only_their_own_messages(self, console: Console) -> None:
        """Bob's list and CSV hold only his messages; Alice's message is a 404 for him;
        the admin sees both."""
        for user in ("alice", "bob"):
            async with console.client() as s:
                await console.sign_in(s, user)
                token = await page_csrf(s, "/ui/send")
                await s.post("/ui/send", data={"csrf": token, "to": "+447700900201",
                                               "text": f"from {user}"})
        async with console.client() as s:
            await console.sign_in(s, "bob")
            async with s.get("/ui/messages.csv") as r:
                rows = list(csv.DictReader(io.StringIO(await r.text())))
            assert [r["text"] for r in rows] == ["from bob"]
            async with s.get("/ui/messages/1") as r:
                assert r.status == 404
            async with s.get("/ui/messages/2") as r:
                assert r.status == 200 and "queued" in await r.text()
        async with console.client() as s:
            await console.sign_in(s, "alice")
            async with s.get("/ui/messages.csv?user=bob") as r:
                assert [x["user"] for x in csv.DictReader(io.StringIO(await r.text()))] == [
                    "bob"]
            async with s.get("/ui/messages?state=queued") as r:
                body = await r.text()
            assert "from alice" in body and "from bob" in body


class TestAdminPages:
    async def test_modems_and_blocklist_are_for_admins(self, console: Console) -> None:
        """A non-admin gets 403 on Modems and Blocklist and no link to them."""
        async with console.client() as s:
            await console.sign_in(s, "bob")
            async with s.get("/ui/modems") as r:
                assert r.status == 403
            async with s.get("/ui/blocklist") as r:
                assert r.status == 403
                assert 'href="/ui/modems"' not in await r.text()

    async def test_an_admin_lifts_an_opt_out(self, console: Console) -> None:
        """A customer's STOP is listed with a Remove form; a non-admin's post changes
        nothing (403); the admin's post lifts it and the list says nobody opted out."""
        await console.inbound("STOP")
        store = console.services.store
        assert await store.is_opted_out(CUSTOMER)
        async with console.client() as s:
            await console.sign_in(s, "bob")
            token = await page_csrf(s)
            r = await s.post("/ui/blocklist/opt-outs/remove", data={
                "csrf": token, "number": CUSTOMER, "did": DID}, allow_redirects=False)
            assert r.status == 403
        assert await store.is_opted_out(CUSTOMER)
        async with console.client() as s:
            await console.sign_in(s, "alice")
            async with s.get("/ui/blocklist") as r:
                table = re.search(r'<table id="opted-out">.*?</table>', await r.text())
            assert table and CUSTOMER in table.group(0)
            assert 'action="/ui/blocklist/opt-outs/remove"' in table.group(0)
            token = await page_csrf(s, "/ui/blocklist")
            r = await s.post("/ui/blocklist/opt-outs/remove", data={
                "csrf": token, "number": CUSTOMER, "did": DID}, allow_redirects=False)
            assert r.status == 303
            async with s.get("/ui/blocklist") as r:
                assert "Nobody has opted out." in await r.text()
        assert not await store.is_opted_out(CUSTOMER)

    async def test_an_admin_adds_an_opt_out(self, console: Console) -> None:
        """The opt-outs section has an "Opt out" form: the admin's post (with the CSRF
        token) opts the number out of SMS from that DID only, or from every DID when
        the DID is blank; the list shows it as ADMIN.  Without the token, as a
        non-admin, or with a bad number the post answers 403/403/400 and adds nothing."""
        store = console.services.store
        other_did = "+447700900002"
        second = "+447700900124"
        async with console.client() as s:
            await console.sign_in(s, "bob")
            token = await page_csrf(s)
            r = await s.post("/ui/blocklist/opt-outs", data={
                "csrf": token, "number": CUSTOMER, "did": DID}, allow_redirects=False)
            assert r.status == 403
        async with console.client() as s:
            await console.sign_in(s, "alice")
            async with s.get("/ui/blocklist") as r:
                form = re.search(r'<form[^>]*id="add-opt-out".*?</form>', await r.text())
            assert form and 'action="/ui/blocklist/opt-outs"' in form.group(0)
            assert 'name="csrf"' in form.group(0) and 'name="did"' in form.group(0)
            r = await s.post("/ui/blocklist/opt-outs", data={"number": CUSTOMER, "did": DID},
                             allow_redirects=False)
            assert r.status == 403
            token = await page_csrf(s, "/ui/blocklist")
            r = await s.post("/ui/blocklist/opt-outs", data={
                "csrf": token, "number": "0123", "did": DID}, allow_redirects=False)
            assert r.status == 400 and "0123" in await r.text()
            assert await store.opt_outs() == []

            r = await s.post("/ui/blocklist/opt-outs", data={
                "csrf": token, "number": CUSTOMER, "did": DID}, allow_redirects=False)
            assert r.status == 303
            assert await store.is_opted_out(CUSTOMER, DID)
            assert not await store.is_opted_out(CUSTOMER, other_did)
            r = await s.post("/ui/blocklist/opt-outs", data={
                "csrf": token, "number": second, "did": ""}, allow_redirects=False)
            assert r.status == 303
            assert await store.is_opted_out(second, other_did)
            async with s.get("/ui/blocklist") as r:
                table = re.search(r'<table id="opted-out">.*?</table>', await r.text())
            assert table
            rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td>", table.group(0))
            assert rows == [(CUSTOMER, DID, "ADMIN"), (second, "", "ADMIN")]
            assert "was opted out by an admin" in table.group(0)

    async def test_statistics_match_smsd_stats(self, console: Console) -> None:
        """The per-user table shows the numbers core.stats.monthly_usage computes."""
        async with console.client() as s:
            await console.sign_in(s, "bob")
            token = await page_csrf(s, "/ui/send")
            await s.post("/ui/send", data={"csrf": token, "to": "+447700900201",
                                           "text": "x" * 200})
        async with console.client() as s:
            await console.sign_in(s, "alice")
            async with s.get("/ui/stats") as r:
                body = await r.text()
        policy = console.services.config.policy
        start, end = month_bounds(None, policy.timezone, datetime.now(UTC))
        [usage] = await monthly_usage(console.services.store, start, end, policy)
        expect = (f"<tr><td>bob</td><td>{usage.messages}</td><td>{usage.parts}</td>"
                  f"<td>{usage.included}</td><td>{usage.billable}</td><td>{usage.fee:.2f}</td>")
        assert usage.parts == 2 and expect in body
        assert 'id="totals">Outgoing 1 messages (2 parts' in body


class TestSearch:
    async def test_phonebook_import_search_and_export(self, console: Console) -> None:
        """Imported contacts are found by name and offered with SMS and 2 Way SMS;
        a bad row is reported, the export gives the book back."""
        async with console.client() as s:
            await console.sign_in(s, "bob")
            token = await page_csrf(s, "/ui/search")
            form = aiohttp.FormData()
            form.add_field("csrf", token)
            form.add_field("file", b"name,number\nAcme Plumbing,+447700900777\nBad,12\n",
                           filename="book.csv", content_type="text/csv")
            async with s.post("/ui/phonebook", data=form) as r:
                assert "1 contacts imported" in await r.text()
            async with s.get("/ui/search?q=acme") as r:
                body = await r.text()
            assert "Acme Plumbing" in body and 'href="/ui/send?to=+447700900777"' in body
            assert "2 Way SMS" in body
            async with s.get("/ui/phonebook.csv") as r:
                assert await r.text() == "name,number\r\nAcme Plumbing,+447700900777\r\n"

    async def test_a_typed_number_is_offered(self, console: Console) -> None:
        """A full number typed in search is offered even when nobody knows it."""
        async with console.client() as s:
            await console.sign_in(s, "bob")
            async with s.get("/ui/search?q=%2B447700900888") as r:
                body = await r.text()
            assert "Number <strong>+447700900888</strong>" in body and "2 Way SMS" in body


class TestApiDescription:
    async def test_every_route_is_described(self, console: Console) -> None:
        """Every HTTP route of the daemon, the console's included, is a path of
        openapi.json, and the doc page lists them all."""
        async with console.client() as s, s.get("/api/v1/openapi.json") as r:
            spec = await r.json()
        assert spec["openapi"] == "3.1.0"
        app_routes = set()
        async with console.client() as s:
            await console.sign_in(s, "alice")
            async with s.get("/api/v1/doc") as r:
                doc = await r.text()
        from smsd.api.app import build_app

        for app in (build_app(console.services), console.app):
            for res in app.router.resources():
                info = res.get_info()
                if "prefix" not in info:  # static files are not endpoints
                    app_routes.add(info.get("path") or info.get("formatter"))
        assert app_routes <= set(spec["paths"]), app_routes - set(spec["paths"])
        for path in spec["paths"]:
            assert f"{path}</code>" in doc


def test_csrf_of_reads_the_hidden_field() -> None:
    """The tests' helper finds the token the server wrote (guards the helpers)."""
    assert csrf_of('<input type="hidden" name="csrf" value="abc">') == "abc"
