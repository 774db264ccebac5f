"""Which sender a message goes out from (SEED-NOTES "Sender ID" and "Numbers").

Split from outbox.py: the rules for one recipient, given the user's senders
(worked out once per user and policy, cached) and the policy.  Pure, no I/O.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass

import structlog
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

from smsd.config import Policy, User
from smsd.errors import InvalidNumber, ValidationError
from smsd.numbers import country_of, is_two_way_country, is_us_toll_free, parse_e164
from smsd.text import ITALIAN_GIVEN_NAMES, sender_id_from_name

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SenderChoice:
    sender: str | None  # E.164 DID, alphanumeric ID, or None = the gateway's own number
    did: str | None  # the DID that picks the modem
    warning: str | None = None


class Refused(Exception):
    """One recipient cannot be sent to; ``reason`` goes into its Refusal."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class _UserSenders:
    office: str | None  # the user's DID
    numeric: str | None  # the DID when it may be a sender (toll-free must be verified)
    alpha: str | None  # sender ID from the full name
    two_way: bool


@functools.lru_cache(maxsize=1024)
def _user_senders(user: User, policy: Policy) -> _UserSenders:
    """Cached: a user's senders depend only on the (frozen) user and policy, and
    working them out (name -> sender ID, the DID's country) was a fifth of
    the daemon's CPU per one-number request."""
    office: str | None = None
    if user.office_number:
        try:
            office = parse_e164(user.office_number)
        except InvalidNumber:
            log.warning("outbox.bad_office_number", user=user.username)
    numeric = office
    if office and is_us_toll_free(office) and office not in policy.verified_toll_free:
        numeric = None  # SEED-NOTES: toll-free US numbers must be marked verified
    try:
        alpha: str | None = sender_id_from_name(user.name, policy.sender_id_max)
    except ValidationError:
        alpha = None
    two_way = bool(
        numeric
        and policy.two_way
        and user.licence.can_two_way
        and is_two_way_country(policy.country)
        and is_two_way_country(country_of(numeric))
    )
    return _UserSenders(office=office, numeric=numeric, alpha=alpha, two_way=two_way)


def _regions_of_code(e164: str) -> tuple[str, ...]:
    """Regions sharing the number's country code (codes are prefix-free: 1-3 digits)."""
    digits = e164[1:]
    for n in (1, 2, 3):
        regions = COUNTRY_CODE_TO_REGION_CODE.get(int(digits[:n]))
        if regions:
            return tuple(regions)
    return ()


def _country_in(e164: str, candidates: Collection[str]) -> str | None:
    """The number's country when it is one of ``candidates``, else None.

    The full lookup (country_of) costs tens of microseconds per number, which
    is most of a 10,000-number submit, so it runs only when the country code
    can belong to a candidate at all.
    """
    if not any(map(candidates.__contains__, _regions_of_code(e164))):
        return None
    country = country_of(e164)
    return country if country in candidates else None


def choose_sender(
    recipient: str, senders: _UserSenders, policy: Policy, *, bulk: bool = False
) -> SenderChoice:
    """Pick the sender for one recipient (SEED-NOTES sender rules); raise Refused.

    The DID wins when replies can come back to it; US destinations take only a
    numeric DID; a bulk send from a user whose DID is US/Canadian goes only
    from that numeric DID (SEED-NOTES "US bulk sending"); otherwise the name,
    unless the destination requires a registered sender (then the DID if there
    is one, else refuse or warn).
    """
    if bulk and senders.office is not None and _country_in(senders.office, ("US", "CA")):
        if senders.numeric is None:
            raise Refused(
                "bulk SMS from a US/Canadian DID go only from the user's numeric office "
                f"number, and {senders.office} is an unverified toll-free number"
            )
        return SenderChoice(senders.numeric, senders.office)
    if _country_in(recipient, ("US",)):
        if senders.numeric is None:
            raise Refused(
                "US destinations accept only a numeric sender and the user has no usable "
                "office number (DID)"
            )
        return SenderChoice(senders.numeric, senders.office)
    if senders.numeric and senders.two_way:
        return SenderChoice(senders.numeric, senders.office)
    alpha = senders.alpha
    if alpha is None:
        return SenderChoice(senders.numeric, senders.office)
    warning: str | None = None
    registered = policy.registered_sender_countries
    dest = _country_in(recipient, registered) if registered else None
    if dest is not None and alpha not in policy.registered_senders:
        if senders.numeric:
            return SenderChoice(senders.numeric, senders.office)
        why = f"{dest} requires a registered sender ID and {alpha!r} is not registered"
        if policy.sender_id_policy == "refuse":
            raise Refused(why)
        warning = why
    if alpha.split(" ")[0].casefold() in ITALIAN_GIVEN_NAMES and _country_in(recipient, ("IT",)):
        if senders.numeric:
            return SenderChoice(senders.numeric, senders.office)
        warning = f"Italian carriers may filter the sender {alpha!r} (a given name)"
    return SenderChoice(alpha, senders.office, warning)
