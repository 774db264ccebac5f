"""parse_e164's shortcut for plain international numbers agrees with phonenumbers (issue 17)."""

from __future__ import annotations

import phonenumbers
from hypothesis import example, given, settings
from hypothesis import strategies as st
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

from smsd.errors import InvalidNumber
from smsd.numbers import _plain_e164, parse_e164

CODES = sorted(COUNTRY_CODE_TO_REGION_CODE)


def full_parse(digits: str) -> str | None:
    """What parse_e164 answered before the shortcut: phonenumbers' E.164, or None if refused."""
    try:
        parsed = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return None
    if phonenumbers.is_possible_number_with_reason(parsed) != (
            phonenumbers.ValidationResult.IS_POSSIBLE):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


numbers_after_a_code = st.builds(
    lambda code, rest: f"{code}{rest}",
    st.sampled_from(CODES),
    st.text(alphabet="0123456789", min_size=0, max_size=13),
).filter(lambda d: 1 <= len(d) <= 15)


class TestPlainShortcut:
    @settings(max_examples=1500, deadline=None)
    @given(st.one_of(numbers_after_a_code, st.text(alphabet="0123456789", min_size=1,
                                                     max_size=15)))
    @example("447700900123")      # GB mobile: the shortcut
    @example("4407700900123")     # GB with its national prefix: parse strips the 0
    @example("112025550143")      # NANP with a trunk 1: parse strips it
    @example("390612345678")      # Italian leading zero
    @example("12025550143")
    def test_shortcut_agrees_with_the_full_parse(self, digits: str) -> None:
        """Whenever the shortcut answers, it is what the full phonenumbers parse answers."""
        plain = _plain_e164(digits)
        if plain is not None:
            assert plain == full_parse(digits)

    @settings(max_examples=500, deadline=None)
    @given(numbers_after_a_code)
    def test_parse_e164_answers_as_before(self, digits: str) -> None:
        """parse_e164 accepts exactly the numbers the full parse accepts, with its E.164."""
        expected = full_parse(digits)
        try:
            got: str | None = parse_e164("+" + digits)
        except InvalidNumber:
            got = None
        assert got == expected

    def test_plain_numbers_take_the_shortcut(self) -> None:
        """A bare +<country code><number> of a common country needs no full parse."""
        assert _plain_e164("447700900123") == "+447700900123"
        assert _plain_e164("12025550143") == "+12025550143"
        assert _plain_e164("4407700900123") is None     # national prefix: the full parse
