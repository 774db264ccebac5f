"""The AMI client against the fake Asterisk 20 manager over real TCP."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from smsd.asterisk.ami import AmiClient, AmiNotConnected
from smsd.asterisk.codec import BASE64_BODY_MAX_CHARS, AmiAddressError, AmiPermissionError
from smsd.config import Ami
from smsd.core.events import StatusChange
from smsd.errors import AmiError
from tests.asterisk.conftest import fresh_login, wait_login
from tests.core.polling import eventually
from tests.fakes.asterisk_ami import FakeAmi

pytestmark = pytest.mark.timeout(30)


MANAGER_CONF = Path(__file__).resolve().parents[2] / "asterisk-conf" / "manager.conf"


def sample_write_classes() -> tuple[str, ...]:
    """The ``write =`` classes of [smsd] in the sample manager.conf."""
    section = ""
    for raw in MANAGER_CONF.read_text().splitlines():
        line = raw.split(";", 1)[0].strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "smsd" and line.partition("=")[0].strip() == "write":
            return tuple(c.strip() for c in line.partition("=")[2].split(","))
    raise AssertionError("no write = line in [smsd]")


def settings(port: int, secret: str = "smsd-secret") -> Ami:
    return Ami(True, "127.0.0.1", port, "smsd", secret)


async def until(predicate: object) -> None:
    """Wait for a condition the test then asserts (never a timing assertion).

    No bound of its own (it was 5 s, then the assertion failed): pytest-timeout
    bounds the test, so a loaded machine makes it slower, not red.
    """
    await eventually(predicate)  # type: ignore[arg-type]


@pytest.fixture
async def client(fake_ami: FakeAmi) -> AsyncIterator[AmiClient]:
    c = AmiClient(settings(fake_ami.port), backoff_min_s=0.05, backoff_max_s=0.2)
    task = asyncio.create_task(c.run())
    assert await c.wait_connected(5)
    yield c
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


class TestLogin:
    async def test_login(self, fake_ami: FakeAmi, client: AmiClient) -> None:
        """Login with the right secret connects, with events on."""
        assert fake_ami.logins == [("smsd", True)]
        assert client.connected
        [login] = [a for a in fake_ami.actions if a["action"] == ["Login"]]
        assert login["username"] == ["smsd"] and login["events"] == ["on"]

    async def test_wrong_secret_reported_once_and_retried_slowly(self, fake_ami: FakeAmi) -> None:
        """A refused login is logged once (ami.auth_failed) and not retried in a tight loop."""
        c = AmiClient(settings(fake_ami.port, "wrong"), backoff_min_s=0.01)
        with capture_logs() as logs:
            task = asyncio.create_task(c.run())
            await until(lambda: c.next_retry_s is not None)
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert fake_ami.logins == [("smsd", False)]      # one attempt in the window
        assert c.next_retry_s is not None and c.next_retry_s >= 60
        assert not c.connected
        failed = [e for e in logs if e["event"] == "ami.auth_failed"]
        assert len(failed) == 1
        assert "wrong" not in repr(logs)                  # the secret is never logged

    async def test_repeated_refusals_log_once(self, fake_ami: FakeAmi) -> None:
        """Even when retried (fast here), the auth failure is reported only once."""
        c = AmiClient(settings(fake_ami.port, "wrong"), auth_retry_s=0.02)
        with capture_logs() as logs:
            task = asyncio.create_task(c.run())
            await until(lambda: len(fake_ami.logins) >= 3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert len(fake_ami.logins) >= 3
        assert [e["event"] for e in logs].count("ami.auth_failed") == 1

    async def test_unreachable_backs_off_exponentially(self) -> None:
        """No Asterisk listening: the daemon keeps running and doubles its delay."""
        probe = await FakeAmi().start()
        port = probe.port
        await probe.stop()                                 # nothing listens there now
        c = AmiClient(settings(port), backoff_min_s=0.01, backoff_max_s=0.04)
        with capture_logs() as logs:
            task = asyncio.create_task(c.run())

            def delays() -> list[float]:
                # every failed attempt logs the delay before the next (not sampled:
                # a loaded machine polling late would miss one)
                return [e["retry_in_s"] for e in logs if e["event"] == "ami.unreachable"]

            await until(lambda: len(delays()) >= 4)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert delays()[:4] == [0.01, 0.02, 0.04, 0.04]
        assert c.next_retry_s == 0.04
        with pytest.raises(AmiNotConnected):
            await c.user_event("SmsStatus", {"Id": "1"})


class TestReconnect:
    async def test_reconnects_after_drop_and_runs_hooks(self, fake_ami: FakeAmi) -> None:
        """When Asterisk drops the link, the client logs in again and re-runs on_connected."""
        c = AmiClient(settings(fake_ami.port), backoff_min_s=0.05)
        calls: list[int] = []

        async def hook() -> None:
            calls.append(1)

        c.on_connected(hook)
        task = asyncio.create_task(c.run())
        assert await c.wait_connected(5)
        await fake_ami.drop()
        await until(lambda: not c.connected)
        assert await c.wait_connected(5)
        await until(lambda: len(calls) >= 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert fake_ami.connections == 2
        assert [ok for _, ok in fake_ami.logins] == [True, True]
        assert len(calls) == 2

    async def test_not_connected_is_a_typed_error(self) -> None:
        """Before any connection, actions fail at once with AmiNotConnected."""
        c = AmiClient(settings(1))
        with pytest.raises(AmiNotConnected):
            await c.message_send("pjsip:100", "+15557654321", "hi")

    async def test_cancel_as_the_connect_finishes_stops_run(self, fake_ami: FakeAmi) -> None:
        """A cancel that lands as the TCP connect finishes ends run() (the daemon's shutdown).

        Checking every loop turn, the test cancels in the turn in which the fake
        counts the connection: the client's connect has finished by then, but
        run() has not resumed with its result.  asyncio.wait_for on 3.11 returned
        the connection there and dropped the cancel (CPython gh-86296): run()
        logged in and kept reconnecting, and the TaskGroup that stops the daemon
        (or this test's await) waited for it for ever.
        """
        c = AmiClient(settings(fake_ami.port))
        task = asyncio.create_task(c.run())
        # Looked at every loop turn (not every POLL_S, not via an Event's wake-up):
        # the window in which the cancel was lost is one turn wide.
        while fake_ami.connections == 0:  # noqa: ASYNC110 - the turn is the point
            await asyncio.sleep(0)
        task.cancel()
        await until(lambda: task.done() or fake_ami.logins)
        assert fake_ami.logins == [], "run() went on to log in after it was cancelled"
        assert task.cancelled()


class TestActions:
    async def test_originate_returns_answered(self, fake_ami: FakeAmi, client: AmiClient) -> None:
        """Async Originate: panoramisk's [Response, OriginateResponse] list becomes True."""
        fake_ami.dialplan = {"kite-sms": {"+15551234567": ["Answer()", "NoOp(sms)"]}}
        ok = await client.originate_local(
            "+15551234567", "kite-sms",
            {"SMS_ID": "7", "SMS_FROM": "+15557654321", "SMS_TO": "+15551234567"})
        assert ok is True
        sent = fake_ami.originates[-1]
        assert sent["channel"] == ["Local/+15551234567@kite-sms"]
        assert sent["async"] == ["true"]
        assert sorted(sent["variable"]) == [
            "SMS_FROM=+15557654321", "SMS_ID=7", "SMS_TO=+15551234567"]

    async def test_originate_failure_is_false(self, fake_ami: FakeAmi, client: AmiClient) -> None:
        """An OriginateResponse with Response: Failure (no such extension) gives False."""
        assert await client.originate_local("+1999", "kite-sms", {"SMS_ID": "1"}) is False

    async def test_has_extension_exact_match(self, fake_ami: FakeAmi, client: AmiClient) -> None:
        """Only the exact DID counts: not a pattern matching it, not the DID without '+',
        not a missing context; asked with ShowDialPlan, never a CLI Command."""
        fake_ami.dialplan = {"kite-sms": {
            "+15551234567": ["Answer()", "AGI(agi://127.0.0.1:4573/kite-sms?members=100,201)"],
            "_1X.": ["NoOp(pattern)"],
            "_+1NXX.": ["NoOp(pattern)"],
        }}
        assert await client.has_extension("kite-sms", "+15551234567") is True
        assert await client.has_extension("kite-sms", "15551234567") is False   # only _1X.
        assert await client.has_extension("kite-sms", "+15550000000") is False  # only _+1NXX.
        assert await client.has_extension("kite-sms", "+4930123456") is False   # nothing
        assert await client.has_extension("no-such-context", "+15551234567") is False
        asked = [a for a in fake_ami.actions if a["action"] != ["Login"]]
        assert [a["action"] for a in asked] == [["ShowDialPlan"]] * 5
        assert (asked[0]["context"], asked[0]["extension"]) == (["kite-sms"], ["+15551234567"])

    async def test_sample_manager_conf_rights_suffice(
        self, fake_ami: FakeAmi, client: AmiClient
    ) -> None:
        """With exactly the write classes of asterisk-conf/manager.conf (no 'command')
        every action smsd sends is allowed: lookup, Originate, MessageSend, UserEvent."""
        fake_ami.write = sample_write_classes()
        assert "command" not in fake_ami.write
        fake_ami.dialplan = {"kite-sms": {"+15551234567": ["Answer()", "NoOp(sms)"]}}
        assert await client.has_extension("kite-sms", "+15551234567") is True
        assert await client.originate_local("+15551234567", "kite-sms", {"SMS_ID": "1"})
        await client.message_send("pjsip:100", "+15557654321", "hi")
        await client.user_event("SmsStatus", {"Id": "1", "State": "sent"})
        assert len(fake_ami.messages) == 1 and len(fake_ami.user_events) == 1

    async def test_permission_denied_names_reporting(
        self, fake_ami: FakeAmi, client: AmiClient
    ) -> None:
        """An AMI user without 'reporting' (the old sample's rights) gets a clear error
        naming the class and the user; messages still go out."""
        fake_ami.write = ("originate", "message", "user", "command")
        await fresh_login(fake_ami, client)
        fake_ami.dialplan = {"kite-sms": {"+15551234567": ["Answer()"]}}
        with pytest.raises(AmiPermissionError) as info:
            await client.has_extension("kite-sms", "+15551234567")
        assert isinstance(info.value, AmiError)
        assert "'reporting'" in str(info.value) and "'smsd'" in str(info.value)
        await fresh_login(fake_ami, client)
        await client.message_send("pjsip:100", "+15557654321", "still works")
        assert [m.body for m in fake_ami.messages] == ["still works"]

    async def test_relogin_after_permission_denied(self, fake_ami: FakeAmi) -> None:
        """Issue 16 (4): the admin adds 'reporting' and reloads manager.conf while smsd
        is logged in.  Asterisk keeps the old rights in the live session, so the first
        lookup is refused; smsd logs in again at once and the next lookup works.  A
        second refusal within relogin_interval_s does not log in again."""
        fake_ami.write = ("originate", "message", "user")
        fake_ami.dialplan = {"kite-sms": {"+15551234567": ["Answer()"]}}
        c = AmiClient(settings(fake_ami.port), backoff_min_s=0.05, relogin_interval_s=3600)
        task = asyncio.create_task(c.run())
        try:
            assert await c.wait_connected(5)
            fake_ami.write = ("originate", "message", "user", "reporting")  # manager reload
            with capture_logs() as logs, pytest.raises(AmiPermissionError):
                await c.has_extension("kite-sms", "+15551234567")
            [denied] = [e for e in logs if e["event"] == "ami.permission_denied"]
            assert denied["relogin"] == "now" and "restart" in denied["hint"]
            await wait_login(fake_ami, c, 2, 10)
            assert await c.has_extension("kite-sms", "+15551234567") is True
            assert c.relogins == 1

            fake_ami.write = ("originate", "message", "user")
            await fresh_login(fake_ami, c)
            logins = len(fake_ami.logins)
            for _ in range(2):
                with capture_logs() as logs, pytest.raises(AmiPermissionError):
                    await c.has_extension("kite-sms", "+15551234567")
                assert [e["relogin"] for e in logs if e["event"] == "ami.permission_denied"] \
                    == ["not yet"]
            assert len(fake_ami.logins) == logins and c.relogins == 1
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def test_lookup_bounded_when_asterisk_hangs(self, fake_ami: FakeAmi) -> None:
        """A ShowDialPlan that is never answered fails with AmiError after the deadline
        (shortened here) instead of hanging the routing of an inbound SMS."""
        fake_ami.silent_actions = ("showdialplan",)
        c = AmiClient(settings(fake_ami.port), backoff_min_s=0.05)
        task = asyncio.create_task(c.run())
        try:
            assert await c.wait_connected(5)
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr("smsd.asterisk.ami.SHOW_DIALPLAN_TIMEOUT_S", 0.2)
                with pytest.raises(AmiError, match="ShowDialPlan got no answer"):
                    await c.has_extension("kite-sms", "+15551234567")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def test_odd_lookup_refused(self, client: AmiClient) -> None:
        """An extension with spaces could smuggle CLI words: refused before sending."""
        with pytest.raises(AmiError):
            await client.has_extension("kite-sms", "1 2")

    async def test_message_send_plain(self, fake_ami: FakeAmi, client: AmiClient) -> None:
        """A one-line ASCII body goes as Body; From is the bare number, so Asterisk keeps
        the endpoint's from_domain as host (issue 16.6; it was 127.0.0.1, hard-coded)."""
        await client.message_send("pjsip:100", "+15557654321", "hello alice")
        m = fake_ami.messages[-1]
        assert (m.to, m.from_, m.body, m.base64) == (
            "pjsip:100", "+15557654321", "hello alice", False)

    async def test_message_from_host_configured(self, fake_ami: FakeAmi) -> None:
        """[ami] message_from_host forces '"num" <sip:num@host>' for every phone."""
        c = AmiClient(replace(settings(fake_ami.port), message_from_host="pbx.example.com"))
        task = asyncio.create_task(c.run())
        try:
            assert await c.wait_connected(10)
            await c.message_send("pjsip:100", "+15557654321", "hi")
            assert fake_ami.messages[-1].from_ == (
                '"+15557654321" <sip:+15557654321@pbx.example.com>')
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    @pytest.mark.parametrize("body", ["multi\nline via Base64Body ✓", "naïve café", "a\r\nb"])
    async def test_message_send_base64(
        self, fake_ami: FakeAmi, client: AmiClient, body: str
    ) -> None:
        """Multi-line or non-ASCII bodies go as Base64Body and arrive unchanged."""
        await client.message_send("sip:+15550001111@classound", "+15557654321", body)
        m = fake_ami.messages[-1]
        assert m.base64 and m.body == body

    async def test_long_body_is_split(self, fake_ami: FakeAmi, client: AmiClient) -> None:
        """A body over 1300 bytes is split into several MessageSends that rejoin to it."""
        body = ("Ünïcödé words in a long message " * 60).strip()
        assert len(body.encode()) > 1300
        await client.message_send("pjsip:100", "+15557654321", body)
        parts = fake_ami.messages
        assert len(parts) >= 2
        assert "".join(p.body for p in parts) == body
        for action in fake_ami.actions:
            for value in action.get("base64body", []):
                assert len(value) <= BASE64_BODY_MAX_CHARS
                assert len(base64.b64decode(value)) <= 1300
        assert fake_ami.dumped_lines == []

    async def test_bad_to_refused_locally(self, fake_ami: FakeAmi, client: AmiClient) -> None:
        """'sip:bob' (no peer) fails on Asterisk; the client refuses it before sending."""
        with pytest.raises(AmiAddressError):
            await client.message_send("sip:bob", "+15557654321", "x")
        with pytest.raises(AmiAddressError):
            await client.message_send("alice", "+15557654321", "x")
        assert fake_ami.messages == []

    async def test_asterisk_error_is_raised(self, client: AmiClient, fake_ami: FakeAmi) -> None:
        """'Message technology not found.' from Asterisk surfaces as AmiError with the reason."""
        fake_ami.techs = ("sip",)
        with pytest.raises(AmiError, match="Message technology not found"):
            await client.message_send("pjsip:alice", "+15557654321", "tech not loaded")

    async def test_status_user_event(self, fake_ami: FakeAmi, client: AmiClient) -> None:
        """sent/delivered/failed/expired become UserEvent SmsStatus; other states are not
        announced."""
        await client.on_status(StatusChange(5, "queued", "+15550001111", "alice", None, None))
        await client.on_status(StatusChange(5, "delivered", "+15550001111", "alice", "gsm", None))
        await client.on_status(StatusChange(6, "failed", "+15550002222", None, "gsm",
                                            "CMS ERROR 21\nrejected"))
        await client.on_status(StatusChange(7, "expired", "+15550003333", "alice", None,
                                            "not sent within 24 h of being due"))
        assert [e["UserEvent"] for e in fake_ami.user_events] == ["SmsStatus"] * 3
        assert fake_ami.user_events[0]["State"] == "delivered"
        assert fake_ami.user_events[0]["Id"] == "5"
        # Issue 16: SmsStatus numbers outbound SMS, SmsReceived inbound ones: say which.
        assert fake_ami.user_events[0]["OutboundId"] == "5"
        assert "InboundId" not in fake_ami.user_events[0]
        assert fake_ami.user_events[1]["Error"] == "CMS ERROR 21 rejected"
        assert (fake_ami.user_events[2]["Id"], fake_ami.user_events[2]["State"]) == (
            "7", "expired")


class TestDeadLinks:
    async def test_inflight_action_fails_and_is_not_resent(self, fake_ami: FakeAmi) -> None:
        """An unanswered MessageSend fails with AmiNotConnected when the link drops,
        and is not sent again after the reconnect (the caller decides about retries)."""
        fake_ami.silent_actions = ("messagesend",)
        c = AmiClient(settings(fake_ami.port), backoff_min_s=0.05)
        task = asyncio.create_task(c.run())
        assert await c.wait_connected(5)
        send = asyncio.create_task(c.message_send("pjsip:100", "+15557654321", "once"))

        def sent_count() -> int:
            return sum(1 for a in fake_ami.actions if a["action"] == ["MessageSend"])

        await until(lambda: sent_count() == 1)
        await fake_ami.drop()
        with pytest.raises(AmiNotConnected):
            await send
        assert await c.wait_connected(5)
        await c.user_event("SmsdPing", {})      # a full round trip after FullyBooted
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert sent_count() == 1

    async def test_watchdog_reconnects_a_silent_asterisk(self, fake_ami: FakeAmi) -> None:
        """A link that stops answering Ping counts as lost: the client connects again."""
        fake_ami.silent_actions = ("ping",)
        c = AmiClient(settings(fake_ami.port), backoff_min_s=0.05, watchdog_s=0.05,
                      ping_timeout_s=0.1)
        with capture_logs() as logs:
            task = asyncio.create_task(c.run())
            await until(lambda: fake_ami.connections >= 2)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert fake_ami.connections >= 2
        assert "ami.watchdog_timeout" in [e["event"] for e in logs]
