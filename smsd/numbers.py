"""Phone numbers: E.164 validation and what a number's country can do.

Every destination must be written internationally (``+`` and a country code,
or the ``00`` international prefix); a national number is refused rather than
guessed, because the same digits dial different people in different
countries.  Validation checks the length plan of the country code
(``phonenumbers.is_possible_number``), not whether the range is assigned:
operators open ranges faster than any library learns about them, and the
fictional ranges used in tests and demos (+1 555 01xx, +44 7700 900xxx) must
pass.

The capability lists are the PBX vendor's service rules (SEED-NOTES).
"""

from __future__ import annotations

import functools
import re
from urllib.parse import unquote

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

from smsd.errors import InvalidNumber

# Two-way SMS exists for DIDs of these countries (SEED-NOTES "Numbers and capabilities").
TWO_WAY_COUNTRIES = frozenset({"US", "CA", "GB", "BE", "DK", "CZ", "IT", "LT", "PL", "SG", "SE"})
# MMS (two-way) only for US and Canadian DIDs.
MMS_COUNTRIES = frozenset({"US", "CA"})
# NANP toll-free area codes in service (FCC / NANPA: 800, 833, 844, 855, 866, 877, 888).
US_TOLL_FREE_AREA_CODES = frozenset({"800", "833", "844", "855", "866", "877", "888"})

_E164_MAX_DIGITS = 15  # ITU-T E.164 section 6
# What a person may type around the digits: spaces and the usual separators.
_ALLOWED = re.compile(r"[0-9 ()\-./\u00a0]+")

_REASONS = {
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    phonenumbers.ValidationResult.TOO_SHORT: "too short for its country code",
    phonenumbers.ValidationResult.TOO_LONG: "too long for its country code",
    phonenumbers.ValidationResult.INVALID_LENGTH: "wrong length for its country code",
}


class E164(str):
    """A number :func:`parse_e164` accepted and wrote as E.164 (``"+447700900123"``).

    A plain ``str`` everywhere, but its type says it was validated: the outbox
    takes such a number as it is instead of parsing it a second time (the
    phonenumbers parse costs tens of microseconds, most of a bulk submit).
    Only :func:`parse_e164` should make one.
    """

    __slots__ = ()


def parse_e164(raw: str) -> E164:
    """``"+447700900123"`` from an international number as a person writes it.

    Accepts ``+`` or ``00`` before the country code and spaces, dashes, dots
    and brackets between digits; refuses everything else with the reason.
    """
    if type(raw) is E164:
        return raw
    return E164(e164_text(raw))


def e164_text(raw: str) -> str:
    """What parse_e164 answers, as a plain ``str``: for a bulk submit's 100,000
    numbers (an E164 instance is nearly twice a str's size, and the garbage
    collector tracks it: issue 17); the caller keeps the "validated" fact."""
    if type(raw) is E164:
        return str.__str__(raw)
    if not isinstance(raw, str):
        raise InvalidNumber(repr(raw), "not a string")
    text = raw.strip()
    if not text:
        raise InvalidNumber(raw, "empty")
    if text.startswith("+"):
        body = text[1:]
    elif text.startswith("00"):
        body = text[2:]
    else:
        if _ALLOWED.fullmatch(text):
            raise InvalidNumber(raw, "no country code: write it as +<country code><number>")
        raise InvalidNumber(raw, "not a phone number")
    if body.isascii() and body.isdigit():
        digits = body                   # already bare digits (every bulk number)
    elif not body or not _ALLOWED.fullmatch(body):
        raise InvalidNumber(raw, "only digits, spaces and - . ( ) may follow the +")
    else:
        digits = re.sub(r"\D", "", body)
    if not digits:
        raise InvalidNumber(raw, "no digits")
    if len(digits) > _E164_MAX_DIGITS:
        raise InvalidNumber(raw, f"more than {_E164_MAX_DIGITS} digits")
    plain = _plain_e164(digits)
    if plain is not None:
        return plain
    try:
        parsed = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise InvalidNumber(raw, "unknown country code") from None
        raise InvalidNumber(raw, str(exc.args[0]) if exc.args else "unparseable") from None
    result = phonenumbers.is_possible_number_with_reason(parsed)
    if result != phonenumbers.ValidationResult.IS_POSSIBLE:
        # IS_POSSIBLE_LOCAL_ONLY: a subscriber number without its area code.
        raise InvalidNumber(raw, _REASONS.get(result, "too short: it lacks an area code"))
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def _plain_e164(digits: str) -> str | None:
    """The answer phonenumbers would give for ``+<digits>``, when it is plainly possible.

    phonenumbers.parse is most of a bulk submit's CPU (about 40 us a number:
    a dozen regular expressions for what people type around numbers).  For
    the usual case it is not needed: the country code is the first 1-3 digits
    that name one, and when what follows cannot start with the country's
    national prefix (which parse would strip) nor a 0 (Italian-style leading
    zeros), the number is exactly those two parts, so only the length test
    remains.  Anything else (or an impossible length, to get parse's reason)
    returns None and takes the full parse; tests/test_numbers_fast.py checks
    with hypothesis that both always agree.
    """
    if digits[0] == "0":
        return None
    for n in (1, 2, 3):
        code = int(digits[:n])
        if code in COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    national = digits[n:]
    if len(national) < 2 or national[0] == "0":
        return None
    meta = _metadata(code)
    if meta is None:
        return None
    prefix = meta.national_prefix_for_parsing
    if prefix and re.match(prefix, national):
        return None
    number = phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
    if phonenumbers.is_possible_number_with_reason(number) != (
            phonenumbers.ValidationResult.IS_POSSIBLE):
        return None
    return "+" + digits


@functools.lru_cache(maxsize=512)
def _metadata(code: int) -> phonenumbers.PhoneMetadata | None:
    """The metadata parse uses for a country code (its main region's)."""
    region = phonenumbers.region_code_for_country_code(code)
    meta: phonenumbers.PhoneMetadata | None = (
        phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, region))
    return meta


def complete_national(raw: str, country: str) -> str:
    """E.164 of a number a phone user dialled nationally in ``country`` (``07700 900123``
    in GB is ``+447700900123``); InvalidNumber when it is not one.

    Only for numbers typed on a PBX phone, where the PBX's country is the only
    sensible reading; everywhere else a national number is refused (see above).
    """
    text = raw.strip()
    if text.startswith(("+", "00")):
        return parse_e164(text)
    if not text or not _ALLOWED.fullmatch(text) or not re.search(r"\d", text):
        raise InvalidNumber(raw, "not a phone number")
    try:
        parsed = phonenumbers.parse(re.sub(r"\D", "", text), country)
    except phonenumbers.NumberParseException:
        raise InvalidNumber(raw, f"not a number of {country}") from None
    if phonenumbers.is_possible_number_with_reason(parsed) != (
            phonenumbers.ValidationResult.IS_POSSIBLE):
        raise InvalidNumber(raw, f"not a possible number of {country}: write it as "
                                 "+<country code><number>")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def country_of(e164: str) -> str:
    """ISO 3166 alpha-2 of the number ("GB"); the country code's main country
    when the range is unknown to phonenumbers; "ZZ" for non-geographic codes."""
    parsed = phonenumbers.parse(parse_e164(e164), None)
    region = phonenumbers.region_code_for_number(parsed)
    if (not region or region == "ZZ") and parsed.country_code is not None:
        region = phonenumbers.region_code_for_country_code(parsed.country_code)
    if not region or region == "001":
        return "ZZ"
    return str(region)


def is_two_way_country(iso: str) -> bool:
    return iso.upper() in TWO_WAY_COUNTRIES


def is_mms_country(iso: str) -> bool:
    return iso.upper() in MMS_COUNTRIES


def is_nanp(e164: str) -> bool:
    """True for North American Numbering Plan numbers (+1 and ten digits)."""
    return len(e164) == 12 and e164.startswith("+1") and e164[1:].isdigit()


def is_us_toll_free(e164: str) -> bool:
    return is_nanp(e164) and e164[2:5] in US_TOLL_FREE_AREA_CODES


# The user part of a SIP/PJSIP URI, optionally inside <...> after a display
# name, or a bare number; the host, port and parameters are ignored.
_URI_RE = re.compile(
    r"""^(?:"(?P<quoted>(?:[^"\\]|\\.)*)"\s*|[^<"]*?\s*)?   # optional display name
        <?\s*
        (?:(?:pj)?sips?:|tel:)?                   # scheme
        (?P<user>[^@;>?\s]+)                      # user part (the number)
        (?:[@;?][^>]*)?                           # host, port, parameters
        >?\s*(?:;.*)?$                            # header parameters (;tag=...)
    """,
    re.VERBOSE,
)


def sip_uri_to_e164(value: str) -> str | None:
    """The E.164 number in a SIP/PJSIP address as Asterisk shows it, else None.

    Handles ``"Name" <sip:+15557654321@127.0.0.1:5061>``, ``<sip:...>;tag=..``,
    ``sip:+15551234567@127.0.0.1:5060``, ``pjsip:+15551234567@127.0.0.1``,
    ``tel:+1555...``, a bare ``+1555...`` and ``%2B`` escapes.  A user part
    that is a name (``sip:alice@...``) or lacks a country code gives None,
    unless the quoted display name is itself such an address: Asterisk's
    MessageSend turns a bare-URI From into ``"sip:+1555...@host"
    <sip:asterisk@host>`` (captures/asterisk-20/edge-cases-transcript.txt).
    """
    if not isinstance(value, str):
        return None
    text = unquote(value.strip())
    if not text:
        return None
    match = _URI_RE.match(text)
    if match is None:
        return None
    user = match.group("user")
    if not user.lower().startswith(("sip:", "sips:", "pjsip:", "tel:")):
        try:
            return parse_e164(user)
        except InvalidNumber:
            pass
    quoted = match.group("quoted")
    if quoted and "<" not in quoted and quoted != text:
        return sip_uri_to_e164(quoted)
    return None
