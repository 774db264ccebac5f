"""Each AGI script end to end: fake Asterisk -> TCP -> our server -> fake services."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from smsd.agi.server import AgiServer
from tests.agi.conftest import Fakes
from tests.fakes.asterisk_agi import FakeAsteriskAgi

pytestmark = pytest.mark.timeout(30)

CHAN_SIP_FROM = '"Test Sender" <sip:+15557654321@127.0.0.1:5061>'
CHAN_SIP_TO = "sip:+15551234567@127.0.0.1:5060"
PJSIP_FROM = '"Test Sender" <sip:+15557654321@127.0.0.1>'
PJSIP_TO = "pjsip:+15551234567@127.0.0.1"


class TestSmsSend:
    async def test_query_keys_with_plus(self, server: AgiServer, fakes: Fakes) -> None:
        """to/from/body from the query: '+' stays a plus, the user is found by extension."""
        fake = FakeAsteriskAgi(
            server.port, "sms-send?to=+15557654321&from=100&body=hello%20there"
        )
        await fake.run()
        [req] = fakes.outbox.requests
        assert list(req.recipients) == ["+15557654321"]
        assert req.text == "hello there"
        assert req.user is not None and req.user.username == "alice"
        assert req.origin == "agi"
        assert fake.variables["SMS_STATUS"] == "QUEUED"
        assert fake.variables["SMS_ID"] == "1"
        assert fake.variables["SMS_ERROR"] == ""

    async def test_percent_2b_and_several_numbers(self, server: AgiServer, fakes: Fakes) -> None:
        """%2B works like '+'; a comma list gives one id per number, comma-separated."""
        fake = FakeAsteriskAgi(
            server.port, "sms-send?to=%2B15557654321,%2B447700900123&from=alice&body=hi"
        )
        await fake.run()
        [req] = fakes.outbox.requests
        assert list(req.recipients) == ["+15557654321", "+447700900123"]
        assert fake.variables["SMS_ID"] == "1,2"
        assert fake.variables["SMS_STATUS"] == "QUEUED"

    async def test_arguments_in_order(self, server: AgiServer, fakes: Fakes) -> None:
        """Without query keys, arguments 1..3 are to, from, body."""
        fake = FakeAsteriskAgi(
            server.port, "sms-send", args=["+15557654321", "201", 'He said "hi" \\o/']
        )
        await fake.run()
        [req] = fakes.outbox.requests
        assert req.text == 'He said "hi" \\o/'
        assert req.user is not None and req.user.username == "bob"
        assert fake.variables["SMS_STATUS"] == "QUEUED"

    async def test_partial_refusal_is_reported(self, server: AgiServer, fakes: Fakes) -> None:
        """A bad number is named in SMS_ERROR (quoted correctly) while the good one queues."""
        fake = FakeAsteriskAgi(server.port, "sms-send?to=+15557654321,12ab&from=100&body=x")
        await fake.run()
        assert fake.variables["SMS_STATUS"] == "QUEUED"
        assert fake.variables["SMS_ID"] == "1"
        assert fake.variables["SMS_ERROR"].startswith("12ab: ")

    async def test_unknown_sender_refused(self, server: AgiServer, fakes: Fakes) -> None:
        """An unknown 'from' refuses with a reason and submits nothing."""
        fake = FakeAsteriskAgi(server.port, "sms-send?to=+15557654321&from=999&body=x")
        await fake.run()
        assert fakes.outbox.requests == []
        assert fake.variables["SMS_STATUS"] == "REFUSED"
        assert "999" in fake.variables["SMS_ERROR"]

    async def test_validation_error_refused(self, server: AgiServer, fakes: Fakes) -> None:
        """The outbox's ValidationError (empty text) becomes REFUSED with its message."""
        fake = FakeAsteriskAgi(server.port, "sms-send?to=+15557654321&from=100&body=%20")
        await fake.run()
        assert fake.variables["SMS_STATUS"] == "REFUSED"
        assert "empty" in fake.variables["SMS_ERROR"]

    async def test_service_failure_is_error(self, server: AgiServer, fakes: Fakes) -> None:
        """An unexpected service failure sets SMS_STATUS=ERROR; the server keeps serving."""
        fakes.outbox.fail = RuntimeError("database is locked")
        fake = FakeAsteriskAgi(server.port, "sms-send?to=+15557654321&from=100&body=x")
        await fake.run()
        assert fake.variables["SMS_STATUS"] == "ERROR"
        assert "database" not in fake.variables["SMS_ERROR"]
        fakes.outbox.fail = None
        again = FakeAsteriskAgi(server.port, "sms-send?to=+15557654321&from=100&body=x")
        await again.run()
        assert again.variables["SMS_STATUS"] == "QUEUED"

    async def test_message_channel_pjsip_endpoint(self, server: AgiServer, fakes: Fakes) -> None:
        """A phone texting out over PJSIP: user from PJSIP_ENDPOINT, to from MESSAGE(to),
        multi-line non-ASCII body read through BASE64_ENCODE."""
        body = "Line one ✓\nline two café\n\nagi_arg_9: not injected"
        fake = FakeAsteriskAgi.message_pjsip(
            server.port, "sms-send", from_='"Alice" <sip:100@127.0.0.1>',
            to="pjsip:+15557654321@127.0.0.1", body=body, extension="+15557654321",
            context="sms-out", callerid_name="Alice Agent",
        )
        await fake.run()
        [req] = fakes.outbox.requests
        assert req.text == body
        assert list(req.recipients) == ["+15557654321"]
        assert req.user is not None and req.user.username == "alice"
        assert fake.variables["SMS_STATUS"] == "QUEUED"
        assert any("BASE64_ENCODE" in c for c in fake.commands)
        assert not any(c == "GET VARIABLE MESSAGE(body)" for c in fake.commands)

    async def test_message_channel_chan_sip_from_header(
        self, server: AgiServer, fakes: Fakes
    ) -> None:
        """chan_sip without a peer name: the extension in MESSAGE(from) maps to the user."""
        fake = FakeAsteriskAgi.message_chan_sip(
            server.port, "sms-send", from_='"Bob" <sip:201@127.0.0.1:5061>',
            to="sip:+15557654321@127.0.0.1:5060", body="hi", extension="+15557654321",
            context="sms-out",
        )
        await fake.run()
        [req] = fakes.outbox.requests
        assert req.user is not None and req.user.username == "bob"
        assert list(req.recipients) == ["+15557654321"]

    async def test_phone_with_callerid_name_sends(self, server: AgiServer, fakes: Fakes) -> None:
        """Issue 16 (1): phone 100 of asterisk-conf/pjsip.conf has callerid "Alice Agent" <100>,
        so Asterisk 20 shows MESSAGE_DATA(PJSIP_ENDPOINT) = "Alice Agent" (captured).  The
        sender is the user of the authenticated From user (the endpoint PJSIP identified
        and challenged), and the SMS is queued."""
        fake = FakeAsteriskAgi.message_pjsip(
            server.port, "sms-send", from_="<sip:100@127.0.0.1>",
            to="pjsip:+15557654321@127.0.0.1", body="hi", extension="+15557654321",
            context="sms-out", callerid_name="Alice Agent",
        )
        await fake.run()
        assert fake.variables["SMS_STATUS"] == "QUEUED", fake.variables
        [req] = fakes.outbox.requests
        assert req.user is not None and req.user.username == "alice"

    async def test_callerid_name_never_names_the_sender(
        self, server: AgiServer, fakes: Fakes
    ) -> None:
        """A caller-ID name equal to another user's extension is not an identity: endpoint
        "guest-phone" naming itself "100" is refused, naming the From user."""
        fake = FakeAsteriskAgi.message_pjsip(
            server.port, "sms-send", from_='"100" <sip:guest-phone@127.0.0.1>',
            to="pjsip:+15557654321@127.0.0.1", body="hi", extension="+15557654321",
            context="sms-out", callerid_name="100",
        )
        await fake.run()
        assert fakes.outbox.requests == []
        assert fake.variables["SMS_STATUS"] == "REFUSED"
        assert "guest-phone" in fake.variables["SMS_ERROR"]

    async def test_reply_inside_conversation(self, server: AgiServer, fakes: Fakes) -> None:
        """A reply to a customer in a conversation goes from its DID with its id."""
        fakes.conversations.contexts[("alice", "+15557654321")] = (12, "+15551234567")
        fake = FakeAsteriskAgi(
            server.port, "sms-send?to=+15557654321,+447700900123&from=100&body=hi"
        )
        await fake.run()
        by_conv = {r.conversation_id: r for r in fakes.outbox.requests}
        assert by_conv[12].sender == "+15551234567"
        assert list(by_conv[12].recipients) == ["+15557654321"]
        assert list(by_conv[None].recipients) == ["+447700900123"]
        assert sorted(fake.variables["SMS_ID"].split(",")) == ["1", "2"]

    async def test_participant_stop_blocks_and_is_not_sent(
        self, server: AgiServer, fakes: Fakes
    ) -> None:
        """A participant answering STOP to a customer on a US DID blocks that customer
        (SEED-NOTES) and the word is not sent on as an SMS; SMS_ERROR says so."""
        fakes.conversations.contexts[("alice", "+15557654321")] = (12, "+15551234567")
        fake = FakeAsteriskAgi(server.port, "sms-send?to=+15557654321&from=100&body=Stop")
        await fake.run()
        assert fakes.conversations.stops == [("alice", "+15557654321")]
        assert fakes.outbox.requests == []
        assert fake.variables["SMS_STATUS"] == "REFUSED"
        assert "blocked" in fake.variables["SMS_ERROR"]

    async def test_comma_split_query_refused(self, server: AgiServer, fakes: Fakes) -> None:
        """`?to=+1,+2&...` unescaped in AGI() arrives as a query plus arguments: refused
        with a hint instead of silently dropping a recipient."""
        fake = FakeAsteriskAgi(
            server.port, "sms-send?from=100&body=hi&to=+15557654321", args=["+447700900123"]
        )
        await fake.run()
        assert fakes.outbox.requests == []
        assert fake.variables["SMS_STATUS"] == "REFUSED"
        assert "\\," in fake.variables["SMS_ERROR"]

    async def test_partial_failure_reports_committed_ids(
        self, server: AgiServer, fakes: Fakes
    ) -> None:
        """When a later submit fails after an earlier one committed, the dialplan gets
        QUEUED with the committed id (so it does not retry and duplicate) and the
        failed number in SMS_ERROR."""
        fakes.conversations.contexts[("alice", "+15557654321")] = (12, "+15551234567")
        fakes.outbox.fail = RuntimeError("disk I/O error")
        fakes.outbox.fail_on_call = 2
        fake = FakeAsteriskAgi(
            server.port, "sms-send?to=+15557654321,+447700900123&from=100&body=hi"
        )
        await fake.run()
        assert fake.variables["SMS_STATUS"] == "QUEUED"
        assert fake.variables["SMS_ID"] == "1"
        assert fake.variables["SMS_ERROR"] == "+15557654321: not queued: internal error"

    async def test_missing_destination_refused(self, server: AgiServer, fakes: Fakes) -> None:
        """No 'to' anywhere: REFUSED naming what is missing."""
        fake = FakeAsteriskAgi(server.port, "sms-send?body=hi")
        await fake.run()
        assert fake.variables["SMS_STATUS"] == "REFUSED"
        assert "destination" in fake.variables["SMS_ERROR"]


class TestSmsReceive:
    @pytest.mark.parametrize(
        ("stack", "from_", "to"),
        [("chan_sip", CHAN_SIP_FROM, CHAN_SIP_TO), ("pjsip", PJSIP_FROM, PJSIP_TO)],
    )
    async def test_trunk_message(
        self, server: AgiServer, fakes: Fakes, stack: str, from_: str, to: str
    ) -> None:
        """Both SIP stacks' address forms give E.164 sender and DID; body via base64."""
        body = 'hi, "kite" ✓ café\nsecond line'
        maker: Callable[..., FakeAsteriskAgi] = FakeAsteriskAgi.message_pjsip
        if stack == "chan_sip":
            maker = FakeAsteriskAgi.message_chan_sip
        fake = maker(
            server.port, "sms-receive", from_=from_, to=to, body=body, extension="+15551234567"
        )
        await fake.run()
        [got] = fakes.inbox.received
        assert (got.sender, got.recipient, got.text) == ("+15557654321", "+15551234567", body)
        assert got.gateway == "classound"
        assert fake.variables["SMS_STATUS"] == "RECEIVED"
        assert fake.variables["SMS_ID"] == "501"

    async def test_did_from_extension(self, server: AgiServer, fakes: Fakes) -> None:
        """When MESSAGE(to) is not a number, the dialled extension is the DID."""
        fake = FakeAsteriskAgi.message_pjsip(
            server.port, "sms-receive", from_=PJSIP_FROM, to="pjsip:trunk@127.0.0.1",
            body="x", extension="+15551234567",
        )
        await fake.run()
        assert fakes.inbox.received[0].recipient == "+15551234567"

    async def test_alphanumeric_sender(self, server: AgiServer, fakes: Fakes) -> None:
        """A carrier's alphanumeric sender is kept as text, not refused."""
        fake = FakeAsteriskAgi.message_pjsip(
            server.port, "sms-receive", from_="<sip:ACMEBANK@carrier.example>", to=PJSIP_TO,
            body="code 1234", extension="+15551234567",
        )
        await fake.run()
        assert fakes.inbox.received[0].sender == "ACMEBANK"

    async def test_multiline_argument_session_resyncs(
        self, server: AgiServer, fakes: Fakes
    ) -> None:
        """The captured multi-line-argument case: the stream is resynchronised and the
        full body still arrives intact via base64, without the injected line."""
        body = "line one\nline two\n\nagi_arg_9: injected?\nlast line"
        fake = FakeAsteriskAgi.message_chan_sip(
            server.port, "sms-receive", from_="<sip:+15557654321@127.0.0.1:5062>",
            to=CHAN_SIP_TO, body=body, extension="+15551234567",
            args=["<sip:+15557654321@127.0.0.1:5062>", CHAN_SIP_TO, body],
        )
        await fake.run()
        [got] = fakes.inbox.received
        assert got.text == body
        assert fake.variables["SMS_STATUS"] == "RECEIVED"

    async def test_empty_body_is_still_stored(self, server: AgiServer, fakes: Fakes) -> None:
        """An empty trunk message (already answered 202 by Asterisk) is stored, not dropped;
        BASE64_ENCODE of an empty value (which fails in Asterisk) is never asked for."""
        fake = FakeAsteriskAgi.message_pjsip(
            server.port, "sms-receive", from_=PJSIP_FROM, to=PJSIP_TO, body="",
            extension="+15551234567",
        )
        await fake.run()
        assert [r.text for r in fakes.inbox.received] == [""]
        assert fake.variables["SMS_STATUS"] == "RECEIVED"

    async def test_no_sender_refused(self, server: AgiServer, fakes: Fakes) -> None:
        """Outside a message channel without a sender: REFUSED, nothing stored."""
        fake = FakeAsteriskAgi(server.port, "sms-receive")
        await fake.run()
        assert fakes.inbox.received == []
        assert fake.variables["SMS_STATUS"] == "REFUSED"


class TestKiteSms:
    async def test_members_from_query(self, server: AgiServer, fakes: Fakes) -> None:
        """SMS_ID from the channel, members from ?members=; SMS_CONVERSATION set."""
        fake = FakeAsteriskAgi(
            server.port, "kite-sms?members=100,201", variables={"SMS_ID": "42"},
            context="kite-sms", extension="+15551234567",
        )
        await fake.run()
        assert fakes.procedure.claims == [(42, ["100", "201"])]
        assert fake.variables["SMS_CONVERSATION"] == "77"
        assert fake.variables["SMS_STATUS"] == "ROUTED"

    async def test_members_from_arguments(self, server: AgiServer, fakes: Fakes) -> None:
        """Members may come as arguments (each possibly a comma list)."""
        fake = FakeAsteriskAgi(
            server.port, "kite-sms", args=["100", "201,202"], variables={"SMS_ID": "7"}
        )
        await fake.run()
        assert fakes.procedure.claims == [(7, ["100", "201", "202"])]

    async def test_unescaped_comma_members(self, server: AgiServer, fakes: Fakes) -> None:
        """AGI(agi://.../kite-sms?members=100,201) arrives split at the comma (query
        members=100, agi_arg_1 201): both are members, each once."""
        fake = FakeAsteriskAgi(
            server.port, "kite-sms?members=100", args=["201", "100"], variables={"SMS_ID": "9"}
        )
        await fake.run()
        assert fakes.procedure.claims == [(9, ["100", "201"])]

    async def test_unrouted(self, server: AgiServer, fakes: Fakes) -> None:
        """No conversation: SMS_CONVERSATION empty, status UNROUTED."""
        fakes.procedure.conversation = None
        fake = FakeAsteriskAgi(server.port, "kite-sms?members=100", variables={"SMS_ID": "7"})
        await fake.run()
        assert fake.variables["SMS_CONVERSATION"] == ""
        assert fake.variables["SMS_STATUS"] == "UNROUTED"

    async def test_missing_sms_id(self, server: AgiServer, fakes: Fakes) -> None:
        """On a non-message channel without SMS_ID nothing is claimed."""
        fake = FakeAsteriskAgi(server.port, "kite-sms?members=100")
        await fake.run()
        assert fakes.procedure.claims == []
        assert fake.variables["SMS_STATUS"] == "REFUSED"

    async def test_bad_sms_id(self, server: AgiServer, fakes: Fakes) -> None:
        """A non-numeric SMS_ID is refused by name."""
        fake = FakeAsteriskAgi(server.port, "kite-sms?members=100", variables={"SMS_ID": "x1"})
        await fake.run()
        assert fakes.procedure.claims == []
        assert "x1" in fake.variables["SMS_ERROR"]

    async def test_on_message_channel_receives_then_claims(
        self, server: AgiServer, fakes: Fakes
    ) -> None:
        """The captured dialplan (kite-sms?did=%2B... on the trunk's message channel):
        the message is received first, then claimed with the members."""
        fake = FakeAsteriskAgi.message_pjsip(
            server.port, "kite-sms?did=%2B15551234567&members=100", from_=PJSIP_FROM,
            to=PJSIP_TO, body="hello from sipp", extension="+15551234567",
        )
        await fake.run()
        [got] = fakes.inbox.received
        assert got.recipient == "+15551234567" and got.text == "hello from sipp"
        assert fakes.procedure.claims == [(501, ["100"])]
        assert fake.variables["SMS_ID"] == "501"


def test_base64_is_what_asterisk_sends() -> None:
    """The fake's BASE64_ENCODE matches the capture for the UTF-8 body."""
    fake = FakeAsteriskAgi(1, "x")
    got = fake.substitute("${BASE64_ENCODE(" + 'hi, "kite" ✓ café – from trunk port 5070' + ")}")
    assert got == "aGksICJraXRlIiDinJMgY2Fmw6kg4oCTIGZyb20gdHJ1bmsgcG9ydCA1MDcw"
    assert base64.b64decode(got).decode() == 'hi, "kite" ✓ café – from trunk port 5070'
