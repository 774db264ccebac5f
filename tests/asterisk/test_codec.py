"""Pure AMI facts from the Asterisk 20.20.1 / panoramisk 1.4 captures."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsd.asterisk import codec
from smsd.errors import AmiError

DATA = Path(__file__).parent / "data"

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


# What panoramisk resolves ShowDialPlan with, framed as main/pbx.c
# manager_show_dialplan and main/manager.c astman_send_listack /
# astman_send_list_complete_start write it (no capture of this action exists).
ACK = {"Response": "Success", "ActionID": "a/1", "EventList": "start",
       "Message": "DialPlan list will follow"}


def listed(context: str, exten: str, priority: int = 1, app: str = "Answer",
           data: str = "") -> dict[str, str]:
    return {"Event": "ListDialplan", "ActionID": "a/1", "Context": context,
            "Extension": exten, "Priority": str(priority), "Application": app,
            "AppData": data, "Registrar": "pbx_config"}


def complete(items: int, extens: int) -> dict[str, str]:
    return {"Event": "ShowDialPlanComplete", "ActionID": "a/1", "EventList": "Complete",
            "ListItems": str(items), "ListExtensions": str(extens),
            "ListPriorities": str(items), "ListContexts": "1"}


def error(message: str) -> dict[str, str]:
    return {"Response": "Error", "ActionID": "a/1", "Message": message}


class TestShowDialPlan:
    def test_action(self) -> None:
        """One exten@context per lookup; an empty value (list everything) or a line break
        (a second header) is refused before anything is sent."""
        assert codec.show_dialplan_action("kite-sms", "+15551234567") == {
            "Action": "ShowDialPlan", "Context": "kite-sms", "Extension": "+15551234567"}
        for ctx, exten in (("", "+1555"), ("kite-sms", ""), ("kite-sms", "+1\r\nAction: X"),
                           ("kite\nsms", "+1555")):
            with pytest.raises(AmiError):
                codec.show_dialplan_action(ctx, exten)

    def test_exact_extension_found(self) -> None:
        """The DID itself, '+' included, listed in the asked context counts."""
        result = [ACK, listed("kite-sms", "+15551234567"),
                  listed("kite-sms", "+15551234567", 2, "AGI", "agi://127.0.0.1:4573/kite-sms"),
                  complete(2, 1)]
        assert codec.show_dialplan_has_exact(result, "kite-sms", "+15551234567") is True

    def test_pattern_is_not_an_exact_match(self) -> None:
        """Asterisk lists '_+1NXX.' for a lookup of +15551234567; that is not the DID."""
        result = [ACK, listed("kite-sms", "_+1NXX.", app="NoOp", data="pattern"), complete(1, 1)]
        assert codec.show_dialplan_has_exact(result, "kite-sms", "+15551234567") is False

    def test_other_forms_of_the_number_do_not_count(self) -> None:
        """Without '+', or with other digits, the Extension is not the DID."""
        for name in ("15551234567", "+15551234568", "+1555123456"):
            result = [ACK, listed("kite-sms", name), complete(1, 1)]
            assert codec.show_dialplan_has_exact(result, "kite-sms", "+15551234567") is False

    def test_dashes_are_decoration_as_in_asterisk(self) -> None:
        """Asterisk ignores '-' in a plain extension, so '+1-555-123-4567' is the DID;
        a pattern with dashes stays a pattern."""
        result = [ACK, listed("kite-sms", "+1-555-123-4567"), complete(1, 1)]
        assert codec.show_dialplan_has_exact(result, "kite-sms", "+15551234567") is True
        result = [ACK, listed("kite-sms", "_+1-NXX-NXX-XXXX"), complete(1, 1)]
        assert codec.show_dialplan_has_exact(result, "kite-sms", "+1-NXX-NXX-XXXX") is False

    def test_included_context_counts(self) -> None:
        """Issue 16 (7): Asterisk routes Local/<DID>@kite-sms into a context [kite-sms]
        includes, and ShowDialPlan lists it under the included context's name, so an
        exact DID there is found (a pattern there still is not)."""
        result = [ACK, listed("kite-sms-extra", "+15551234567"), complete(1, 1)]
        assert codec.show_dialplan_has_exact(result, "kite-sms", "+15551234567") is True
        result = [ACK, listed("kite-sms-extra", "_+1NXXNXXXXXX"), complete(1, 1)]
        assert codec.show_dialplan_has_exact(result, "kite-sms", "+15551234567") is False

    def test_captured_include_answer(self) -> None:
        """The lab Asterisk 20.20.1's answers (ami-showdialplan-include.txt): a DID of an
        included context, a DID of [kite-sms] itself, and one that is nowhere."""
        answers: dict[str, list[dict[str, str]]] = {}
        text = (DATA / "ami-showdialplan-include.txt").read_text("utf-8")
        for block in text.split("\n\n"):
            frame = dict(ln.split(": ", 1) for ln in block.splitlines()
                         if ": " in ln and not ln.startswith(">>>"))
            if frame.get("ActionID", "").startswith("d"):
                answers.setdefault(frame["ActionID"], []).append(frame)
        assert {f["Context"] for f in answers["d1"] if "Context" in f} == {"kite-sms-branch"}
        assert codec.show_dialplan_has_exact(answers["d1"], "kite-sms", "+15551230000") is True
        assert codec.show_dialplan_has_exact(answers["d2"], "kite-sms", "+15551234567") is True
        [refused] = answers["d3"]
        assert codec.show_dialplan_has_exact(refused, "kite-sms", "+15559999999") is False

    @pytest.mark.parametrize("message", [
        "Did not find context kite-sms", "Did not find extension +15551234567@kite-sms"])
    def test_not_found_is_false(self, message: str) -> None:
        """Both of manager_show_dialplan's not-found errors mean: no such extension."""
        assert codec.show_dialplan_has_exact(
            error(message), "kite-sms", "+15551234567") is False

    def test_error_after_partial_listing_is_false(self) -> None:
        """A [kite-sms] with a switch lists it (ack first), then still answers
        'Did not find extension': panoramisk hands the whole list back."""
        switch = {"Event": "ListDialplan", "ActionID": "a/1", "Context": "kite-sms",
                  "Switch": "Realtime/kite@extensions", "Registrar": "pbx_config"}
        result = [ACK, switch, error("Did not find extension +15551234567@kite-sms")]
        assert codec.show_dialplan_has_exact(result, "kite-sms", "+15551234567") is False

    def test_permission_denied_names_the_class(self) -> None:
        """A user without the 'reporting' (or 'config') write class gets Permission denied;
        the error says which class to add, for which user."""
        with pytest.raises(codec.AmiPermissionError) as info:
            codec.show_dialplan_has_exact(
                error("Permission denied"), "kite-sms", "+15551234567", "smsd")
        assert isinstance(info.value, AmiError)
        assert info.value.needed == "reporting" and info.value.action == "ShowDialPlan"
        assert "'reporting'" in str(info.value) and "'smsd'" in str(info.value)
        assert "manager.conf" in str(info.value)

    def test_other_errors_raise(self) -> None:
        """An unknown refusal is an error with Asterisk's text, never a silent False."""
        with pytest.raises(AmiError, match="Failed to lock contexts"):
            codec.show_dialplan_has_exact(
                error("Failed to lock contexts"), "kite-sms", "+15551234567")

    def test_unfinished_listing_raises(self) -> None:
        """Without ShowDialPlanComplete the listing may be cut: not a reliable 'no'."""
        with pytest.raises(AmiError, match="ShowDialPlanComplete"):
            codec.show_dialplan_has_exact(
                [ACK, listed("kite-sms", "_X.")], "kite-sms", "+15551234567")
        with pytest.raises(AmiError):
            codec.show_dialplan_has_exact([], "kite-sms", "+15551234567")


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

    def test_from_lets_asterisk_fill_the_host(self) -> None:
        """Issue 16 (6), messagesend-from-forms.txt: by default no host is forced.  To a
        PJSIP endpoint the bare number (Asterisk replaces only the user, from_domain
        holds); to chan_sip '"num" <num>' (name and user, chan_sip's own domain)."""
        n = "+15557654321"
        assert codec.message_from(n, None, "pjsip:100") == n
        assert codec.message_from(n, None, "pjsip:classound/sip:+1555@h") == n
        assert codec.message_from(n, None, "sip:alice") == f'"{n}" <{n}>'

    def test_from_with_a_configured_host(self) -> None:
        """With [ami] message_from_host the URI is bracketed (a bare URI would become the
        display name of sip:asterisk@ on chan_sip, edge-cases capture)."""
        n = "+15557654321"
        assert codec.message_from(n, "pbx.example.com", "pjsip:100") == (
            f'"{n}" <sip:{n}@pbx.example.com>')
        with pytest.raises(codec.AmiAddressError):
            codec.message_from('x" <sip:evil@h>', None, "pjsip:100")

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
