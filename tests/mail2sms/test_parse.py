"""The pure Mail2SMS parser: MIME encodings, field lines, and what it refuses."""

from __future__ import annotations

import base64
import quopri

import pytest

from smsd.errors import MailRejected
from smsd.mail2sms.parse import message_from_bytes, parse_request
from tests.mail2sms.conftest import CC, SMS_PASSWORD, TO, body, plain_mail

TEXT = "Grüße from the shop: your order has shipped."


def _raw_plain(cte: str, text: str, charset: str = "utf-8") -> bytes:
    payload = text.encode(charset)
    if cte == "quoted-printable":
        encoded = quopri.encodestring(payload).decode("ascii")
    elif cte == "base64":
        encoded = base64.encodebytes(payload).decode("ascii")
    else:
        encoded = payload.decode(charset)
    return (
        "From: alice@pbx.example\r\nTo: sms@pbx.example\r\nSubject: SMS\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset={charset}\r\n"
        f"Content-Transfer-Encoding: {cte}\r\n\r\n{encoded}"
    ).encode(charset if cte == "8bit" else "ascii")


def _raw_alternative() -> bytes:
    plain = base64.encodebytes(body(message=TEXT).encode("utf-8")).decode("ascii")
    html = "<html><body><p>SENDSMS: FALSE</p><p>HTML is not read</p></body></html>"
    return (
        "From: alice@pbx.example\r\nTo: sms@pbx.example\r\nSubject: SMS\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{plain}\r\n"
        "--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        f"{html}\r\n--b1--\r\n"
    ).encode("ascii")


class TestEncodings:
    @pytest.mark.parametrize(
        "raw",
        [
            pytest.param(_raw_plain("8bit", body(message=TEXT)), id="8bit"),
            pytest.param(_raw_plain("quoted-printable", body(message=TEXT)), id="quoted-printable"),
            pytest.param(_raw_plain("base64", body(message=TEXT)), id="base64"),
            pytest.param(_raw_plain("quoted-printable", body(message=TEXT), "iso-8859-1"),
                         id="latin-1"),
            pytest.param(_raw_alternative(), id="multipart/alternative"),
        ],
    )
    def test_every_encoding_gives_the_same_request(self, raw: bytes) -> None:
        """QP, base64, a legacy charset and multipart/alternative all decode to the same request."""
        req = parse_request(message_from_bytes(raw))
        assert req.extension == "100"
        assert req.recipients == (TO, *CC)
        assert req.text == TEXT
        assert req.password == SMS_PASSWORD

    def test_html_only_is_refused(self) -> None:
        """A mail without a text/plain part is refused by name, not guessed from HTML."""
        raw = (
            "From: a@b\r\nTo: c@d\r\nMIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n"
            "<p>SENDSMS: TRUE</p>"
        ).encode("ascii")
        with pytest.raises(MailRejected, match="text/plain"):
            parse_request(message_from_bytes(raw))


class TestFields:
    def test_message_runs_to_the_signature(self) -> None:
        """MESSAGE: keeps its following lines and stops at the '-- ' signature separator."""
        text = body(message="line one\nline two") + "-- \nAlice\nACME Ltd\n"
        req = parse_request(plain_mail(text))
        assert req.text == "line one\nline two"

    def test_field_names_ignore_case_and_numbers_are_deduplicated(self) -> None:
        """Field names match in any case; a CC number equal to the TO number is sent once."""
        text = (f"sendsms: true\nFromNumber: 100\ntonumber: {TO}\nccnumber: {TO},{CC[0]}\n"
                f"smspassword: {SMS_PASSWORD}\nmessage: hi\n")
        assert parse_request(plain_mail(text)).recipients == (TO, CC[0])

    @pytest.mark.parametrize(
        ("text", "needle"),
        [
            pytest.param(body().replace("SENDSMS: TRUE", "SENDSMS: FALSE"), "SENDSMS",
                         id="sendsms-false"),
            pytest.param(body().replace("FROMNUMBER: 100\n", ""), "FROMNUMBER", id="no-from"),
            pytest.param(body().replace(f"TONUMBER: {TO}\n", ""), "TONUMBER", id="no-to"),
            pytest.param(body().replace(f"SMSPASSWORD: {SMS_PASSWORD}\n", ""), "SMSPASSWORD",
                         id="no-password"),
            pytest.param(body(message=""), "MESSAGE", id="empty-message"),
            pytest.param(body(to="07700900123"), "07700900123", id="national-number"),
            pytest.param(body(cc=("+44770090012x",)), "CCNUMBER", id="bad-cc"),
            pytest.param(body().replace("MESSAGE:", f"TONUMBER: {TO}\nMESSAGE:", 1), "twice",
                         id="field-twice"),
        ],
    )
    def test_malformed_requests_are_refused_by_name(self, text: str, needle: str) -> None:
        """Each missing or wrong line is refused with a reason that names it."""
        with pytest.raises(MailRejected, match=needle):
            parse_request(plain_mail(text))
