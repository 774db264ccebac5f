"""The fake Asterisk speaks exactly as the captured Asterisk 20.20.1 did.

If these fail, the other AGI tests prove nothing, so they pin the fake to the
capture bytes rather than to smsd's parser.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fakes.asterisk_agi import FakeAsteriskAgi, SipMessage, parse_args

DATA = Path(__file__).parent / "data" / "asterisk-20"

pytestmark = pytest.mark.timeout(30)


def test_local_environment_is_byte_exact() -> None:
    """The Local-channel environment equals agi-transcript.txt byte for byte."""
    fake = FakeAsteriskAgi(4573, "kite-sms?did=+15551234567")
    assert fake.environment() == (DATA / "local-kite-sms.env").read_bytes()


def test_chan_sip_message_environment_is_byte_exact() -> None:
    """The chan_sip message-channel environment equals message-transcript.txt."""
    fake = FakeAsteriskAgi.message_chan_sip(
        4573, "kite-sms?did=%2B15551234567",
        from_='"Test Sender" <sip:+15557654321@127.0.0.1:5061>',
        to="sip:+15551234567@127.0.0.1:5060", body="hello from sipp", extension="+15551234567",
        args=[
            '"Test Sender" <sip:+15557654321@127.0.0.1:5061>',
            "sip:+15551234567@127.0.0.1:5060",
            "hello from sipp",
        ],
    )
    assert fake.environment() == (DATA / "chan-sip-message.env").read_bytes()


def test_pjsip_message_environment_is_byte_exact() -> None:
    """The PJSIP message-channel environment equals pjsip-message-transcript.txt."""
    fake = FakeAsteriskAgi.message_pjsip(
        4573, "kite-sms?did=%2B15551234567",
        from_='"Test Sender" <sip:+15557654321@127.0.0.1>',
        to="pjsip:+15551234567@127.0.0.1", body="hello from sipp", extension="+15551234567",
        args=[
            '"Test Sender" <sip:+15557654321@127.0.0.1>',
            "pjsip:+15551234567@127.0.0.1",
            "hello from sipp",
        ],
    )
    assert fake.environment() == (DATA / "pjsip-message.env").read_bytes()


PHONE_AUTH = (
    'Digest username="100", realm="asterisk", nonce="1796624779/9e9be65e5b96a13ecfff8a5a4d819cbb",'
    ' uri="sip:127.0.0.1:5070", response="df735fefcacd6a0f1a4d495014985793", algorithm=MD5,'
    ' cnonce="6b8b4567", opaque="1195359465d3a6b0", qop=auth, nc=00000001'
)


def _phone_100() -> FakeAsteriskAgi:
    """Phone 100 of asterisk-conf/pjsip.conf (callerid "Alice Agent" <100>) texting out,
    as in pjsip-phone-sms-out.transcript."""
    return FakeAsteriskAgi.message_pjsip(
        4573, "sms-send", from_="<sip:100@127.0.0.1>", to="pjsip:+15557654321@127.0.0.1",
        body="hello from phone 100", extension="+15557654321", context="sms-out",
        callerid_name="Alice Agent", uniqueid="1796624353.0", threadid="139946224817856",
        headers={"Authorization": PHONE_AUTH, "From": "<sip:100@127.0.0.1>;tag=14288SIPpTag001"},
        priority=2,
    )


def test_pjsip_phone_environment_is_byte_exact() -> None:
    """A phone's MESSAGE into [sms-out] (AGI at priority 2) gives the captured environment."""
    assert _phone_100().environment() == (DATA / "pjsip-phone-sms-out.env").read_bytes()


def test_pjsip_endpoint_is_the_callerid_name() -> None:
    """MESSAGE_DATA(PJSIP_ENDPOINT) answers the endpoint's caller-ID name, not its id, and
    every SIP header is a message variable: the fake answers each captured command alike."""
    table = json.loads((DATA / "replies.json").read_text("utf-8"))
    rows = [r for r in table if r["capture"] == "pjsip-phone-sms-out"]
    assert len(rows) >= 5
    fake = _phone_100()
    for row in rows:
        assert fake.answer(row["command"]) == row["reply"], row["command"]


def test_multiline_argument_breaks_the_block_like_asterisk() -> None:
    """A body with newlines as an argument produces the captured broken stream."""
    body = "line one\nline two\n\nagi_arg_9: injected?\nlast line"
    fake = FakeAsteriskAgi.message_chan_sip(
        4573, "kite-sms?did=%2B15551234567", from_="<sip:+15557654321@127.0.0.1:5062>",
        to="sip:+15551234567@127.0.0.1:5060", body=body, extension="+15551234567",
        args=["<sip:+15557654321@127.0.0.1:5062>", "sip:+15551234567@127.0.0.1:5060", body],
    )
    assert fake.environment() == (DATA / "multiline-arg.stream").read_bytes()


@pytest.mark.parametrize(
    "capture",
    [
        "agi-transcript",
        "message-transcript",
        "message-transcript-utf8",
        "pjsip-message-transcript",
        "pjsip-message-transcript-utf8",
    ],
)
def test_replies_match_captures(capture: str) -> None:
    """Given the captured channel state, the fake answers every captured command identically."""
    table = json.loads((DATA / "replies.json").read_text("utf-8"))
    rows = [r for r in table if r["capture"] == capture]
    utf8 = 'hi, "kite" ✓ café – from trunk port 5070'
    body = utf8 if capture.endswith("utf8") else "hello from sipp"
    if capture == "agi-transcript":
        fake = FakeAsteriskAgi(
            4573, "kite-sms?did=+15551234567",
            message=SipMessage(
                "sip:+15557654321@127.0.0.1", "sip:+15551234567@127.0.0.1", "hello from agi-test"
            ),
        )
    elif capture.startswith("message"):
        port = "5070" if capture.endswith("utf8") else "5061"
        fake = FakeAsteriskAgi.message_chan_sip(
            4573, "kite-sms?did=%2B15551234567",
            from_=f'"Test Sender" <sip:+15557654321@127.0.0.1:{port}>',
            to="sip:+15551234567@127.0.0.1:5060", body=body, extension="+15551234567",
            peer="classound" if port == "5070" else "", recvaddr=f"127.0.0.1:{port}",
        )
    else:
        port = "5070" if capture.endswith("utf8") else "5061"
        fake = FakeAsteriskAgi.message_pjsip(
            4573, "kite-sms?did=%2B15551234567",
            from_='"Test Sender" <sip:+15557654321@127.0.0.1>',
            to="pjsip:+15551234567@127.0.0.1", body=body, extension="+15551234567",
            recvaddr=f"127.0.0.1:{port}",
        )
    assert rows
    for row in rows:
        assert fake.answer(row["command"]) == row["reply"], row["command"]


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("GET VARIABLE NOPE", "200 result=0"),
        ("GET VARIABLE MESSAGE(body)", "200 result=0"),  # no message on this channel
        ("GET FULL VARIABLE ${NOPE}", "200 result=1 ()"),
        ("FROBNICATE", "510 Invalid or unknown command"),
        ("SET VARIABLE X", "520-Invalid command syntax.  Proper usage follows:\n"
         " Usage: SET VARIABLE <variablename> <value>\n520 End of proper usage."),
        ("NOOP", "200 result=0"),
    ],
)
def test_documented_replies(line: str, reply: str) -> None:
    """Unset variables, failed function reads, unknown commands, bad syntax: as res_agi."""
    assert FakeAsteriskAgi(4573, "x").answer(line) == reply


def test_dead_channel_answers() -> None:
    """After a hangup, commands needing a live channel get 511; GET/SET VARIABLE still work."""
    fake = FakeAsteriskAgi(4573, "x")
    fake.dead = True
    assert fake.answer("ANSWER") == (
        "511 Command Not Permitted on a dead channel or intercept routine"
    )
    assert fake.answer("SET VARIABLE A b") == "200 result=1"


def test_parse_args_like_res_agi() -> None:
    """Quotes group, backslash escapes, an empty quoted word is a word."""
    assert parse_args('SET VARIABLE X "a \\"b\\" c"') == ["SET", "VARIABLE", "X", 'a "b" c']
    assert parse_args('SET VARIABLE X ""') == ["SET", "VARIABLE", "X", ""]
    assert parse_args("VERBOSE  a\\ b  1") == ["VERBOSE", "a b", "1"]
