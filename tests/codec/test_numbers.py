"""E.164 numbers and country capabilities (smsd.numbers)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsd.errors import InvalidNumber, ValidationError
from smsd.numbers import (
    country_of,
    is_mms_country,
    is_nanp,
    is_two_way_country,
    is_us_toll_free,
    parse_e164,
    sip_uri_to_e164,
)

CAPTURES = Path("/work/shared/captures/asterisk-20")


class TestParseE164:
    @pytest.mark.parametrize(
        ("raw", "e164"),
        [
            ("+447700900123", "+447700900123"),
            ("+44 7700 900123", "+447700900123"),
            ("0044 7700 900123", "+447700900123"),
            ("+1 (555) 123-4567", "+15551234567"),
            ("+1.555.765.4321", "+15557654321"),
            ("  +393331234567\t", "+393331234567"),
            ("+33 6 12 34 56 78", "+33612345678"),
            ("+18005551234", "+18005551234"),
            ("+44 (0) 7700 900123", "+447700900123"),  # the UK "(0)" trunk prefix
            ("+49 (0)30 123456", "+4930123456"),
            ("+39 06 1234 5678", "+390612345678"),  # Italy keeps its leading zero
        ],
    )
    def test_accepted(self, raw: str, e164: str) -> None:
        """International numbers as people write them normalise to +digits."""
        assert parse_e164(raw) == e164

    @pytest.mark.parametrize(
        ("raw", "reason"),
        [
            ("", "empty"),
            ("   ", "empty"),
            ("07700900123", "no country code"),
            ("7700 900123", "no country code"),
            ("+", "only digits"),
            ("+abc", "only digits"),
            ("+44 7700 900123 ext 2", "only digits"),
            ("+1-800-FLOWERS", "only digits"),
            ("hello", "not a phone number"),
            ("+0123456789", "unknown country code"),
            ("+1555", "too short"),
            ("+4477009001234567", "more than 15 digits"),
            ("+44770090012345", "too long"),
            ("+15551234567;DROP", "only digits"),
            ("+44\n7700900123", "only digits"),
        ],
    )
    def test_refused_with_reason(self, raw: str, reason: str) -> None:
        """Anything not international is refused; the error names the number and why."""
        with pytest.raises(InvalidNumber) as info:
            parse_e164(raw)
        assert info.value.number == raw
        assert reason in info.value.reason
        assert repr(raw) in str(info.value)
        assert isinstance(info.value, ValidationError)

    @given(st.text(max_size=30))
    def test_never_anything_but_digits(self, raw: str) -> None:
        """Whatever comes in, the result is '+' and 1..15 digits, or InvalidNumber."""
        try:
            out = parse_e164(raw)
        except InvalidNumber:
            return
        assert re.fullmatch(r"\+[1-9][0-9]{0,14}", out)


class TestCountries:
    @pytest.mark.parametrize(
        ("e164", "iso"),
        [
            ("+447700900123", "GB"),
            ("+15551234567", "US"),  # fictional 555 range: the country code's main country
            ("+14165550123", "CA"),
            ("+393331234567", "IT"),
            ("+4930123456", "DE"),
            ("+80012345678", "ZZ"),  # non-geographic
        ],
    )
    def test_country_of(self, e164: str, iso: str) -> None:
        """The ISO country of a number, falling back to the country code's main country."""
        assert country_of(e164) == iso

    def test_country_of_invalid(self) -> None:
        """country_of validates like parse_e164."""
        with pytest.raises(InvalidNumber):
            country_of("07700900123")

    @pytest.mark.parametrize(
        "iso", ["US", "CA", "GB", "BE", "DK", "CZ", "IT", "LT", "PL", "SG", "SE"]
    )
    def test_two_way_countries(self, iso: str) -> None:
        """The eleven two-way countries of the service rules, in any case."""
        assert is_two_way_country(iso)
        assert is_two_way_country(iso.lower())

    @pytest.mark.parametrize("iso", ["DE", "FR", "ES", "NL", "AT", "CH", "IE", "ZZ", ""])
    def test_not_two_way(self, iso: str) -> None:
        """Other countries are outbound-only."""
        assert not is_two_way_country(iso)

    def test_mms_only_us_and_canada(self) -> None:
        """MMS is for US and Canadian DIDs only."""
        assert is_mms_country("US") and is_mms_country("ca")
        assert not any(is_mms_country(c) for c in ("GB", "IT", "MX", "PR"))

    @pytest.mark.parametrize(
        ("e164", "nanp", "toll_free"),
        [
            ("+15551234567", True, False),
            ("+18005551234", True, True),
            ("+18335551234", True, True),
            ("+18445551234", True, True),
            ("+18555551234", True, True),
            ("+18665551234", True, True),
            ("+18775551234", True, True),
            ("+18885551234", True, True),
            ("+18805551234", True, False),  # reserved, not in service
            ("+14165550123", True, False),
            ("+447700900123", False, False),
            ("+1800555123", False, False),  # too short for NANP
            ("+78005551234", False, False),  # Russia's 800 is not NANP
        ],
    )
    def test_nanp_and_toll_free(self, e164: str, nanp: bool, toll_free: bool) -> None:
        """NANP is +1 and ten digits; US toll-free are the 8XX codes in service."""
        assert is_nanp(e164) == nanp
        assert is_us_toll_free(e164) == toll_free


class TestSipUri:
    @pytest.mark.parametrize(
        ("value", "e164"),
        [
            ('"Test Sender" <sip:+15557654321@127.0.0.1:5061>', "+15557654321"),
            ('"Test Sender" <sip:+15557654321@127.0.0.1:5061>;tag=1995SIPpTag001', "+15557654321"),
            ('"Test Sender" <sip:+15557654321@127.0.0.1>', "+15557654321"),
            ("sip:+15551234567@127.0.0.1:5060", "+15551234567"),
            ("pjsip:+15551234567@127.0.0.1", "+15551234567"),
            ("<sip:+15551234567@127.0.0.1:5060>", "+15551234567"),
            ("<sip:+15551234567@127.0.0.1:5060>;tag=as249c3a28", "+15551234567"),
            ("+15551234567", "+15551234567"),
            ("%2B15551234567", "+15551234567"),
            ("sip:%2B15551234567@127.0.0.1", "+15551234567"),
            ("sips:+447700900123@example.test;transport=tls", "+447700900123"),
            ("tel:+44-7700-900123", "+447700900123"),
            ("sip:+15551234567;user=phone@127.0.0.1", "+15551234567"),
            ('"Smith, J <ops>" <sip:+15551234567@127.0.0.1>', "+15551234567"),
            ("Bob <sip:+15551234567@127.0.0.1>", "+15551234567"),
            # edge-cases capture: MessageSend moved a bare-URI From into the display name
            (
                '"sip:+15557654321@127.0.0.1" <sip:asterisk@127.0.0.1>;tag=as48770ed6',
                "+15557654321",
            ),
            # the URI's own number wins over a number in the display name
            ('"+447700900123" <sip:+15551234567@127.0.0.1>', "+15551234567"),
        ],
    )
    def test_forms(self, value: str, e164: str) -> None:
        """Every address form Asterisk shows (chan_sip, PJSIP, AGI args, AMI) gives the number."""
        assert sip_uri_to_e164(value) == e164

    @pytest.mark.parametrize(
        "value",
        [
            "sip:alice@127.0.0.1:5080",
            "sip:127.0.0.1:5080",
            "sip:15551234567@127.0.0.1",  # no country code: not guessed
            "<sip:100@127.0.0.1>",
            "",
            "unknown",
            "<<>>",
            "sip:+1555@127.0.0.1",
        ],
    )
    def test_not_a_number(self, value: str) -> None:
        """Names, bare hosts and numbers without a country code give None."""
        assert sip_uri_to_e164(value) is None

    def test_every_capture_address(self) -> None:
        """Each From:/To:/agi_arg/MESSAGE() address with a +number in the captures parses to it."""
        pattern = re.compile(r"^(?:From|To|<< agi_arg_\d|<< agi_extension)[^:]*:\s*(.*)$")
        seen = 0
        for path in sorted(CAPTURES.glob("*.txt")):
            for line in path.read_text(encoding="utf-8").splitlines():
                m = pattern.match(line)
                if not m or ("+1555" not in m.group(1) and "%2B1555" not in m.group(1)):
                    continue
                value = m.group(1).strip()
                number = re.search(r"(?:\+|%2B)(1555\d{7})", value)
                assert number is not None
                assert sip_uri_to_e164(value) == "+" + number.group(1), (path.name, value)
                seen += 1
        assert seen >= 10
