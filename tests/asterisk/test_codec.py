"""Pure AMI facts from the Asterisk 20.20.1 / panoramisk 1.4 captures."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsd.asterisk import codec
from smsd.errors import AmiError

# panoramisk-transcript.txt: what send_action(Originate, Async) resolved with.
PANORAMISK_ORIGINATE = [
    {"Response": "Success", "ActionID": "action/a6358fca/1/7",
     "Message": "Originate successfully queued", "content": ""},
    {"Event": "OriginateResponse", "Privilege": "call,all", "Timestamp": "1795609795.862537",
     "ActionID": "action/a6358fca/1/7", "Response": "Success",
     "Channel": "Local/s@agi-test-00000002;1", "Application": "Wait", "Data": "5",
     "Reason": "4", "Uniqueid": "1795609795.5", "CallerIDNum": "<unknown>",
     "CallerIDName": "<unknown>", "content": ""},
]


class TestOriginateOutcome:
    def test_panoramisk_list_success(self) -> None:
        """The captured [Response, OriginateResponse] list means answered (Reason 4)."""
        ok, headers = codec.originate_outcome(PANORAMISK_ORIGINATE)
        assert ok is True and headers["Reason"] == "4"

    def test_failure_event(self) -> None:
        """An OriginateResponse with Response: Failure is not answered."""
        failed = [PANORAMISK_ORIGINATE[0], {**PANORAMISK_ORIGINATE[1], "Response": "Failure",
                                            "Reason": "0"}]
        assert codec.originate_outcome(failed)[0] is False

    def test_refused_single_message(self) -> None:
        """A refused Originate is a single Error message, not a list."""
        ok, headers = codec.originate_outcome(
            {"Response": "Error", "Message": "Originate failed"})
        assert ok is False and headers["Message"] == "Originate failed"


class TestCommandOutput:
    def test_one_line_is_string_in_panoramisk(self) -> None:
        """panoramisk gives one Output line as a string (capture); we always get a list."""
        resp = {"Response": "Success", "Message": "Command output follows",
                "Output": "Asterisk 20.20.1 built by root"}
        assert codec.output_lines(resp) == ["Asterisk 20.20.1 built by root"]

    def test_several_lines_are_a_list(self) -> None:
        """Several Output headers arrive as a list and stay one."""
        assert codec.output_lines({"Output": ["a", "b"]}) == ["a", "b"]
        assert codec.output_lines({"Response": "Success"}) == []

    def test_dialplan_exact(self) -> None:
        """Exact extension names only, quotes and '+' included."""
        lines = ["[ Context 'kite-sms' created by 'pbx_config' ]",
                 "  '_+1X.' =>          1. NoOp(x)   [extensions.conf:3]",
                 "  '+15551234567' =>   1. Answer()  [extensions.conf:5]"]
        assert codec.dialplan_has_exact(lines, "+15551234567")
        assert not codec.dialplan_has_exact(lines, "+15551234568")
        assert not codec.dialplan_has_exact(lines, "15551234567")


class TestMessageSend:
    def test_to_forms(self) -> None:
        """Forms that worked on Asterisk 20 pass; 'sip:bob' (no peer) and bare names fail."""
        for good in ("sip:alice@alice", "sip:+15550001111@classound", "pjsip:alice",
                     "pjsip:PJSIP/+15550001111@classound-pj",
                     "pjsip:classound-pj/sip:+15550002222@127.0.0.1:5070"):
            assert codec.check_message_to(good) == good
        for bad in ("sip:bob", "alice", "pjsip:", "", "sip:a b@c"):
            with pytest.raises(codec.AmiAddressError):
                codec.check_message_to(bad)

    def test_from_is_bracketed(self) -> None:
        """A bare URI would become the display name of sip:asterisk@ (capture): bracket it."""
        assert codec.message_from("+15557654321") == '"+15557654321" <sip:+15557654321@127.0.0.1>'
        with pytest.raises(codec.AmiAddressError):
            codec.message_from('x" <sip:evil@h>')

    def test_variables_refuse_line_breaks(self) -> None:
        """A channel variable with a newline would inject AMI headers: refused."""
        assert codec.channel_variables({"SMS_ID": "1"}) == ["SMS_ID=1"]
        with pytest.raises(AmiError):
            codec.channel_variables({"SMS_FROM": "x\r\nAction: Command"})
        with pytest.raises(AmiError):
            list(codec.iter_user_event_headers({"Id": "1\nEvent: x"}))

    @given(st.text(max_size=3000))
    def test_split_rejoins_within_limit(self, body: str) -> None:
        """Any body splits into UTF-8 pieces within the limit that rejoin exactly."""
        pieces = codec.split_body(body, 300)
        assert "".join(pieces) == body
        assert all(len(p.encode("utf-8")) <= 300 for p in pieces)

    def test_actions_pick_body_kind(self) -> None:
        """Plain one-line ASCII uses Body; anything else Base64Body."""
        [plain] = codec.message_send_actions("pjsip:100", "<sip:1@h>", "hi there")
        assert plain["Body"] == "hi there" and "Base64Body" not in plain
        [b64] = codec.message_send_actions("pjsip:100", "<sip:1@h>", "multi\nline via Base64Body ✓")
        assert b64["Base64Body"] == "bXVsdGkKbGluZSB2aWEgQmFzZTY0Qm9keSDinJM="
