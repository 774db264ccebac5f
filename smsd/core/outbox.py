"""Submit: turn a request into committed outbound messages, or refuse clearly.

Everything a caller can get wrong is checked before anything is written, and
the accepted recipients are written in one transaction (one ``executemany``
per table), so a submit of 10,000 numbers is either entirely committed or not
at all, and it is acknowledged only after the commit returned.  Problems with
single numbers (not E.164, opted out, no usable sender for that country) are
refusals naming the number; the rest of the batch still goes.  Problems with
the whole request (empty or overlong text, no licence, a refused link) raise a
ValidationError subclass and store nothing.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

from smsd.config import Policy, User
from smsd.errors import InvalidNumber, MessageTooLong, NotAllowed, QuotaExceeded, ValidationError
from smsd.numbers import E164, country_of, is_two_way_country, is_us_toll_free, parse_e164
from smsd.store import Store, ts, utcnow
from smsd.store.usage import month_label, month_usage, record_submit
from smsd.store.writes import announce_work, new_message_ids
from smsd.text import ITALIAN_GIVEN_NAMES, contains_link, segments, sender_id_from_name

log = structlog.get_logger(__name__)

# Characters accepted from a conversation or API caller (SEED-NOTES: 670 per
# message); the originate API passes 300.
DEFAULT_MAX_CHARS = 670

# "bulk": a mass send (``smsd send --to-file``, or the API with "bulk": true):
# outbound only, from the numeric DID on US/Canadian DIDs, and counted as
# delivered once a gateway accepted it (smsd.core.monthly).
ORIGINS = ("originate", "api", "agi", "cli", "mail2sms", "conversation", "bulk")


@dataclass(frozen=True)
class SubmitRequest:
    recipients: Sequence[str]
    text: str
    user: User | None = None
    send_at: datetime | None = None
    origin: str = "api"
    sender: str | None = None
    conversation_id: int | None = None
    max_chars: int = DEFAULT_MAX_CHARS


@dataclass(frozen=True)
class Refusal:
    number: str
    reason: str


LINK_WARNING = "the message contains a link: carriers may filter it"
# History rows of a warning read "warning: <text>" (state = the message's state then).
WARNING_PREFIX = "warning: "


@dataclass(frozen=True)
class SubmitResult:
    ids: list[int]
    refused: list[Refusal]
    # Accepted, but the caller should know (link in the text, a sender that
    # Italian carriers may filter, an unregistered sender under "warn").
    warnings: list[str] = field(default_factory=list)


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
    if not any(r in candidates for r in _regions_of_code(e164)):
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


def _opt_out_reason(did: str | None, stopped: set[str]) -> str:
    """Why an opted-out recipient is refused, naming the company number when known."""
    if did is not None and did in stopped:
        source = f"SMS from {did}"
    elif "" in stopped:
        source = "SMS from this PBX"
    else:
        source = f"SMS from {', '.join(sorted(stopped))}"
    return (f"the recipient opted out of {source} (texted STOP); "
            "they can text START to opt back in")


def used_this_month(
    db: sqlite3.Connection, user: str, now: datetime, policy: Policy
) -> int:
    """SMS parts ``user`` submitted in the calendar month of ``now`` (policy time zone).

    Failed and expired messages do not use the package (smsd.store.usage.NOT_USED,
    the same rule as the reports).  Read from the per-month counter that the
    store keeps in the same transaction as every change (one row, whatever
    the month's volume).  Runs on the database thread, inside the submit's write.
    """
    return month_usage(db, user, now, policy.timezone)


# Longest stretch of a bulk submit's CPU work (parsing, sender choice) on the
# event loop before it lets the other tasks run: a 100,000-number request
# takes seconds of CPU, and /healthz, the API and the modems' I/O must not
# wait that long (issue 17: never more than 50 ms).
LOOP_SLICE_S = 0.005


class LoopTurns:
    """Yields to the event loop once ``LOOP_SLICE_S`` of work has run since the last turn."""

    def __init__(self, slice_s: float = LOOP_SLICE_S) -> None:
        self._slice = slice_s
        self._since = time.perf_counter()

    async def maybe_yield(self) -> None:
        now = time.perf_counter()
        if now - self._since >= self._slice:
            await asyncio.sleep(0)
            self._since = time.perf_counter()


async def parse_numbers(raws: Iterable[str]) -> tuple[list[E164], list[Refusal]]:
    """Each raw number parsed once, in slices that leave the loop free; refusals named."""
    parsed: list[E164] = []
    refused: list[Refusal] = []
    turn = LoopTurns()
    for raw in raws:
        await turn.maybe_yield()
        try:
            parsed.append(parse_e164(raw))
        except InvalidNumber as e:
            refused.append(Refusal(str(raw), e.reason))
    return parsed, refused


class Outbox:
    """Validates and commits submits; wakes the dispatcher after each commit."""

    def __init__(
        self,
        store: Store,
        policy: Policy,
        *,
        wake: Callable[[], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._policy = policy
        self._wake = wake
        self._clock = clock

    def set_policy(self, policy: Policy) -> None:
        """A reloaded config's policy (SIGHUP): the next submission is checked against it."""
        self._policy = policy

    async def submit(self, req: SubmitRequest) -> SubmitResult:
        text = req.text
        policy = self._policy
        if not text or not text.strip():
            raise ValidationError("message should not be empty")
        if len(text) > req.max_chars:
            raise MessageTooLong(len(text), req.max_chars)
        if req.origin not in ORIGINS:
            raise ValidationError(f"unknown origin {req.origin!r}")
        if req.send_at is not None and req.send_at.tzinfo is None:
            raise ValidationError("send_at must carry a time zone")
        user = req.user
        if user is not None and not user.licence.can_send:
            raise NotAllowed(
                f"user {user.username!r} has licence {user.licence.value}: "
                "UC-Essential or higher is needed to send SMS"
            )
        warnings: list[str] = []
        if contains_link(text):
            if policy.link_policy == "refuse":
                raise NotAllowed("the message contains a link and the link policy refuses links")
            if policy.link_policy == "warn":
                warnings.append(LINK_WARNING)
        every = list(warnings)      # warnings that hold for every recipient
        explicit: str | None = None
        if req.sender is not None:
            try:
                explicit = parse_e164(req.sender)
            except InvalidNumber as e:
                raise ValidationError(f"sender {req.sender!r} is not a DID: {e.reason}") from e

        refused: list[Refusal] = []
        numbers: list[str] = []
        seen: set[str] = set()
        turn = LoopTurns()
        number: str
        for raw in req.recipients:
            await turn.maybe_yield()
            try:
                number = parse_e164(raw)  # free for an E164 the caller parsed already
            except InvalidNumber as e:
                refused.append(Refusal(str(raw), e.reason))
                continue
            if number not in seen:
                seen.add(number)
                numbers.append(number)
        if not numbers and not refused:
            raise ValidationError("number should not be empty")

        for number, reason in await self._blocked(numbers):
            seen.discard(number)
            refused.append(Refusal(number, reason))
        numbers = [n for n in numbers if n in seen]
        opted_out = await self._opted_out(numbers)
        bulk = req.origin == "bulk"

        senders = _user_senders(user, policy) if user is not None and explicit is None else None
        seg = segments(text)
        accepted: list[tuple[str, SenderChoice]] = []
        choices: dict[SenderChoice, SenderChoice] = {}
        for number in numbers:
            await turn.maybe_yield()
            if explicit is not None:
                choice = SenderChoice(explicit, explicit)
            elif senders is None:
                choice = SenderChoice(None, None)
            else:
                try:
                    choice = choose_sender(number, senders, policy, bulk=bulk)
                except Refused as r:
                    refused.append(Refusal(number, r.reason))
                    continue
            stopped = opted_out.get(number)
            if stopped is not None and ("" in stopped or choice.did is None
                                        or choice.did in stopped):
                refused.append(Refusal(number, _opt_out_reason(choice.did, stopped)))
                continue
            if choice.warning and choice.warning not in warnings:
                warnings.append(choice.warning)
            # One object per distinct choice: a bulk submit has a handful.
            accepted.append((number, choices.setdefault(choice, choice)))

        ids = (
            await self._commit(req, accepted, seg.encoding, seg.parts, every) if accepted else []
        )
        log.info(
            "outbox.submitted",
            user=user.username if user else None,
            origin=req.origin,
            accepted=len(ids),
            refused=len(refused),
            parts=seg.parts,
        )
        if ids:
            # A "warn" policy's whole point is that someone hears of it: the
            # caller (API, AGI, CLI), the log, and each message's history.
            for warning in warnings:
                log.warning(
                    "outbox.warning",
                    user=user.username if user else None,
                    origin=req.origin,
                    warning=warning,
                    ids=ids[:10],
                    messages=len(ids),
                )
        if ids and self._wake is not None:
            self._wake()
        return SubmitResult(ids=ids, refused=refused, warnings=warnings)

    async def _blocked(self, numbers: list[str]) -> list[tuple[str, str]]:
        """Recipients an admin blocked (``smsd block add``), with the reason."""
        if not numbers:
            return []
        found = await self._store.blocked_among(numbers)
        return [(n, "the number is on the blocklist") for n in found]

    async def _opted_out(self, numbers: list[str]) -> dict[str, set[str]]:
        """Recipient -> the company numbers it texted STOP to ('' = DID unknown: all)."""
        if not numbers:
            return {}
        found: dict[str, set[str]] = {}
        for number, did in await self._store.opt_outs_among(numbers):
            found.setdefault(number, set()).add(did or "")
        return found

    async def _commit(
        self,
        req: SubmitRequest,
        accepted: list[tuple[str, SenderChoice]],
        encoding: str,
        parts: int,
        every: list[str],
    ) -> list[int]:
        now = self._clock()
        now_s = ts(now)
        scheduled = req.send_at is not None and req.send_at > now
        state = "scheduled" if scheduled else "queued"
        send_at_s = ts(req.send_at) if req.send_at is not None else None
        due_s = send_at_s if scheduled and send_at_s else now_s
        username = req.user.username if req.user else None
        package = self._policy.monthly_package
        policy = self._policy
        text, origin, conversation_id = req.text, req.origin, req.conversation_id
        month = month_label(now, policy.timezone)

        def write(db: sqlite3.Connection) -> list[int]:
            # One group-commit write (Store.write): concurrent submits share
            # one fsync.  Pure database work, so it may safely run twice.
            used = used_this_month(db, username, now, policy) if username else 0
            if username and policy.quota_hard_cap and used + parts * len(accepted) > package:
                raise QuotaExceeded(username, used, package, parts * len(accepted))
            ids = new_message_ids(db, len(accepted))

            def rows() -> Iterator[tuple[object, ...]]:
                # Streamed into executemany: a 100,000-number submit never
                # holds all its rows in memory at once.
                used_so_far = used
                for msg_id, (number, choice) in zip(ids, accepted, strict=True):
                    billable = 0
                    if username:
                        billable = max(0, used_so_far + parts - max(package, used_so_far))
                        used_so_far += parts
                    yield (
                        msg_id, username, choice.sender, choice.did, number, text,
                        encoding, parts, state, send_at_s, now_s, now_s, due_s, origin,
                        conversation_id, billable, month,
                    )

            db.executemany(
                "INSERT INTO messages (id, user, sender, did, recipient, text, encoding, parts, "
                "state, send_at, created_at, updated_at, next_attempt_at, origin, "
                "conversation_id, cost_billable, usage_month) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows(),
            )
            if username:
                record_submit(db, username, now, policy.timezone, parts * len(accepted))
            announce_work(db)
            db.executemany(
                "INSERT INTO message_parts (message_id, part) VALUES (?, ?)",
                ((i, p) for i in ids for p in range(1, parts + 1)),
            )
            db.executemany(
                "INSERT INTO message_history (message_id, at, state, detail) VALUES (?,?,?,?)",
                ((i, now_s, state, f"origin={origin}") for i in ids),
            )
            # The warnings each message was accepted with, kept in its history.
            db.executemany(
                "INSERT INTO message_history (message_id, at, state, detail) VALUES (?,?,?,?)",
                (
                    (i, now_s, state, WARNING_PREFIX + w)
                    for i, (_, choice) in zip(ids, accepted, strict=True)
                    for w in ([*every, choice.warning] if choice.warning else every)
                ),
            )
            return ids

        return await self._store.write(write)
