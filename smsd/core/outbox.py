"""Submit: turn a request into committed outbound messages, or refuse clearly.

Everything a caller can get wrong is checked before anything is written, and
it is acknowledged only after every row of it is committed.  The accepted
recipients are written COMMIT_CHUNK at a time, each chunk its own (group)
commit: a 100,000-number bulk submit must not hold the writer for seconds
while every modem's ``submitting`` commit waits behind it (issue 17).  Up to
COMMIT_CHUNK recipients a submit is one transaction, all or nothing; a
bigger one that the store fails (or a crash interrupts) half-way keeps the
chunks already committed, which are sent, and the caller gets the error (or
no answer): logged as ``outbox.partly_committed`` with their ids.  Problems with
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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from smsd.config import Policy, User
from smsd.core.pending import QueueCounts
from smsd.core.senders import Refused, SenderChoice, _user_senders, choose_sender
from smsd.errors import InvalidNumber, MessageTooLong, NotAllowed, QuotaExceeded, ValidationError
from smsd.numbers import e164_text, parse_e164
from smsd.store import Store, ts, utcnow
from smsd.store.optouts import ADMIN_KEYWORD
from smsd.store.submits import (
    SCREEN_MAX,
    NewMessage,
    insert_messages,
    insert_parts_and_history,
    screen_numbers,
)
from smsd.store.usage import month_label, month_usage, record_submit
from smsd.store.writes import announce_work, new_message_ids
from smsd.text import contains_link, segments

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


BLOCKED = "the number is on the blocklist"
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


def _opt_out_reason(did: str | None, stopped: dict[str, str]) -> str:
    """Why an opted-out recipient is refused, naming the company number when known, and
    who asked: the customer's own word, or an admin who added it by hand."""
    if did is not None and did in stopped:
        source, keyword = f"SMS from {did}", stopped[did]
    elif "" in stopped:
        source, keyword = "SMS from this PBX", stopped[""]
    else:
        source, keyword = f"SMS from {', '.join(sorted(stopped))}", min(stopped.values())
    how = ("an administrator added the opt-out" if keyword == ADMIN_KEYWORD
           else f"texted {keyword}")
    return (f"the recipient opted out of {source} ({how}); "
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
LOOP_SLICE_S = 0.002
# Recipients per transaction of one submit (see the module docstring): about
# 30 ms of the writer each, so a modem's next commit waits no longer than
# that behind a bulk submit, and one commit (fsync) per 1,000 rows costs
# little beside the rows themselves.
COMMIT_CHUNK = 1000
# Numbers per blocklist / opt-out query: a 100,000-number JSON list built at
# once (json.dumps) is tens of milliseconds of the event loop.
LOOKUP_CHUNK = 5000
# Numbers screened (blocklist, opt-outs) between two turns of the loop in a
# bulk submit: about a millisecond of work.
SCREEN_SLICE = 2000


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


class ValidNumbers(list[str]):
    """Numbers parse_numbers wrote as E.164: the outbox takes them as they are.

    The items are plain ``str``, not E164: a bulk submit keeps 100,000 of them,
    and E164 instances are nearly twice the size and tracked by the garbage
    collector, whose full collections then froze the loop for 80 ms (issue 17).
    """


async def parse_numbers(raws: Iterable[str]) -> tuple[ValidNumbers, list[Refusal]]:
    """Each raw number parsed once, in slices that leave the loop free; refusals named."""
    parsed = ValidNumbers()
    refused: list[Refusal] = []
    turn = LoopTurns()
    for raw in raws:
        await turn.maybe_yield()
        try:
            parsed.append(e164_text(raw))
        except InvalidNumber as e:
            refused.append(Refusal(str(raw), e.reason))
    return parsed, refused


def _warnings_of(choice: SenderChoice, every: list[str]) -> list[str]:
    """The warnings one message is accepted with: the request's, then its sender's."""
    return [*every, choice.warning] if choice.warning else every


class Outbox:
    """Validates and commits submits; wakes the dispatcher after each commit."""

    def __init__(
        self,
        store: Store,
        policy: Policy,
        *,
        wake: Callable[[], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
        queue: QueueCounts | None = None,
        wake_for: Callable[[datetime], None] | None = None,
    ) -> None:
        """``wake``: new messages are due now (the dispatcher's wake); ``wake_for``:
        they are first due later, at the time given (``wake`` when not given)."""
        self._store = store
        self._policy = policy
        self._wake = wake
        self._wake_for = wake_for
        self._clock = clock
        # The queue's size for /healthz and systemd, with this outbox's submits
        # added as they commit (smsd.core.pending).
        self.queue = queue if queue is not None else QueueCounts(store)

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
        validated = isinstance(req.recipients, ValidNumbers)
        for raw in req.recipients:
            await turn.maybe_yield()
            try:
                # free for numbers the caller parsed already (ValidNumbers, E164)
                number = raw if validated else parse_e164(raw)
            except InvalidNumber as e:
                refused.append(Refusal(str(raw), e.reason))
                continue
            if number not in seen:
                seen.add(number)
                numbers.append(number)
        if not numbers and not refused:
            raise ValidationError("number should not be empty")

        bulk = req.origin == "bulk"
        senders = _user_senders(user, policy) if user is not None and explicit is None else None
        seg = segments(text)
        # Each number's sender, or why it has none (pure: no I/O).  One object
        # per distinct choice: a bulk submit has a handful for 100,000 numbers.
        picks: list[SenderChoice | str] = []
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
                    picks.append(r.reason)
                    continue
            picks.append(choices.setdefault(choice, choice))
        del seen, choices

        batch = _Batch(req, self._clock(), policy, seg.encoding, seg.parts, every)
        if len(numbers) <= SCREEN_MAX:
            # Blocklist and opt-outs read in the write that inserts: one hop
            # to the database thread per submit instead of two (issue 17).
            ids, screened, accepted_choice = await self._screen_and_commit(
                batch, numbers, picks)
            refused += screened
        else:
            blocked, opted_out = await self._blocked_and_opted_out(numbers)
            refused += [Refusal(n, BLOCKED) for n in blocked]
            blocked_set = set(blocked)
            del blocked
            # Two flat lists rather than a (number, choice) tuple each: a bulk
            # submit keeps 100,000 of them (issue 17: peak memory).
            accepted: list[str] = []
            accepted_choice = []
            for lo in range(0, len(numbers), SCREEN_SLICE):
                await turn.maybe_yield()
                refused += _screen(numbers[lo:lo + SCREEN_SLICE], picks[lo:lo + SCREEN_SLICE],
                                   blocked_set, opted_out, accepted, accepted_choice)
            del numbers, picks, blocked_set, opted_out
            ids = await self._commit(batch, accepted, accepted_choice) if accepted else []
        for choice in accepted_choice:
            if choice.warning and choice.warning not in warnings:
                warnings.append(choice.warning)
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
        if ids:
            self.queue.added(len(ids))
            if batch.state == "scheduled" and req.send_at is not None \
                    and self._wake_for is not None:
                self._wake_for(req.send_at)
            elif self._wake is not None:
                self._wake()
        return SubmitResult(ids=ids, refused=refused, warnings=warnings)

    async def _blocked_and_opted_out(
        self, numbers: list[str]
    ) -> tuple[list[str], dict[str, dict[str, str]]]:
        """Recipients an admin blocked (``smsd block add``), sorted; and those that
        opted out: number -> {company number ('' = all): the keyword (STOP, ADMIN, ...)}.

        The read of a submit of more than SCREEN_MAX numbers, before its chunked
        writes; one for both per LOOKUP_CHUNK numbers.
        """
        blocked: list[str] = []
        opted: list[tuple[str, str | None, str]] = []
        for i in range(0, len(numbers), LOOKUP_CHUNK):
            chunk_blocked, chunk_opted = await self._store.blocked_and_opted_out(
                numbers[i:i + LOOKUP_CHUNK])
            blocked += chunk_blocked
            opted += chunk_opted
        blocked.sort()
        return blocked, _opted_by_number(opted)

    async def _screen_and_commit(
        self, batch: _Batch, numbers: list[str], picks: list[SenderChoice | str]
    ) -> tuple[list[int], list[Refusal], list[SenderChoice]]:
        """A small submit (at most SCREEN_MAX numbers): blocklist, opt-outs and insert
        in one write; its ids, its refusals and the choices it accepted."""

        def write(db: sqlite3.Connection) -> tuple[list[int], list[Refusal], list[SenderChoice]]:
            # Pure database work, returning fresh lists: it may run twice (Store.write).
            blocked, opted = screen_numbers(db, numbers)
            refused = [Refusal(n, BLOCKED) for n in sorted(blocked)]
            accepted: list[str] = []
            accepted_choice: list[SenderChoice] = []
            refused += _screen(numbers, picks, set(blocked), _opted_by_number(opted),
                               accepted, accepted_choice)
            ids = batch.insert(db, accepted, accepted_choice, 0, len(accepted), len(accepted)) \
                if accepted else []
            return ids, refused, accepted_choice

        if not numbers:
            return [], [], []
        return await self._store.write(write)

    async def _commit(
        self, batch: _Batch, accepted: list[str], accepted_choice: list[SenderChoice]
    ) -> list[int]:
        """Insert the accepted recipients, COMMIT_CHUNK per transaction; their ids."""
        total = len(accepted)
        ids: list[int] = []
        for lo in range(0, total, COMMIT_CHUNK):
            hi = min(total, lo + COMMIT_CHUNK)
            try:
                ids += await self._store.write(
                    functools.partial(batch.insert, accepted=accepted,
                                      accepted_choice=accepted_choice, lo=lo, hi=hi, total=total))
            except BaseException as e:
                if ids:
                    log.error("outbox.partly_committed", user=batch.username, origin=batch.origin,
                              committed=len(ids), of=total, first_id=ids[0], last_id=ids[-1],
                              error=str(e) or type(e).__name__)
                raise
        return ids


def _opted_by_number(rows: Iterable[tuple[str, str | None, str]]) -> dict[str, dict[str, str]]:
    """(number, did, keyword) rows as number -> {company number ('' = all): keyword}."""
    opted: dict[str, dict[str, str]] = {}
    for number, did, keyword in rows:
        opted.setdefault(number, {})[did or ""] = keyword
    return opted


def _screen(
    numbers: Sequence[str],
    picks: Sequence[SenderChoice | str],
    blocked: set[str],
    opted: dict[str, dict[str, str]],
    accepted: list[str],
    accepted_choice: list[SenderChoice],
) -> list[Refusal]:
    """Append each number that may be sent to (and its sender) to ``accepted``;
    the refusals of the others, in their order.

    Blocked numbers are skipped: the caller refuses them first, sorted.  A
    number without a sender is refused with its reason; an opted-out one when
    its opt-out covers the chosen company number (or every one).
    """
    refused: list[Refusal] = []
    for number, pick in zip(numbers, picks, strict=True):
        if number in blocked:
            continue
        if isinstance(pick, str):
            refused.append(Refusal(number, pick))
            continue
        stopped = opted.get(number)
        if stopped is not None and ("" in stopped or pick.did is None or pick.did in stopped):
            refused.append(Refusal(number, _opt_out_reason(pick.did, stopped)))
            continue
        accepted.append(number)
        accepted_choice.append(pick)
    return refused


class _Batch:
    """What every message of one submit shares, and the insert of a slice of them."""

    def __init__(self, req: SubmitRequest, now: datetime, policy: Policy, encoding: str,
                 parts: int, every: list[str]) -> None:
        self.now = now
        self.now_s = ts(now)
        scheduled = req.send_at is not None and req.send_at > now
        self.state = "scheduled" if scheduled else "queued"
        self.send_at_s = ts(req.send_at) if req.send_at is not None else None
        self.due_s = self.send_at_s if scheduled and self.send_at_s else self.now_s
        self.username = req.user.username if req.user else None
        self.policy = policy
        self.text, self.origin, self.conversation_id = req.text, req.origin, req.conversation_id
        self.month = month_label(now, policy.timezone)
        self.encoding = encoding
        self.parts = parts
        self.every = every

    def insert(self, db: sqlite3.Connection, accepted: list[str],
               accepted_choice: list[SenderChoice], lo: int, hi: int, total: int) -> list[int]:
        """Insert accepted[lo:hi] (of ``total`` for this submit); their ids.

        Runs inside a group-commit write (Store.write): concurrent submits and
        the modems' commits share its fsync.  Pure database work, so it may
        safely run twice.
        """
        username, parts, policy = self.username, self.parts, self.policy
        package = policy.monthly_package
        used = used_this_month(db, username, self.now, policy) if username else 0
        # The hard cap is checked for the whole submit by its first chunk
        # (refused whole, nothing written); a concurrent submit committed
        # between two chunks is not counted against the later ones.
        if lo == 0 and username and policy.quota_hard_cap \
                and used + parts * total > package:
            raise QuotaExceeded(username, used, package, parts * total)
        count = hi - lo
        ids = new_message_ids(db, count)
        now_s, state, origin = self.now_s, self.state, self.origin

        def rows() -> Iterator[NewMessage]:
            # Streamed into executemany: no list of the chunk's rows.
            used_so_far = used
            for i in range(count):
                choice = accepted_choice[lo + i]
                billable = 0
                if username:
                    billable = max(0, used_so_far + parts - max(package, used_so_far))
                    used_so_far += parts
                yield NewMessage(
                    ids[i], username, choice.sender, choice.did, accepted[lo + i], self.text,
                    self.encoding, parts, state, self.send_at_s, now_s, now_s, self.due_s,
                    origin, self.conversation_id, billable, self.month,
                )

        insert_messages(db, rows())
        if username:
            record_submit(db, username, self.now, policy.timezone, parts * count)
        announce_work(db)
        # The warnings each message was accepted with, kept in its history.
        insert_parts_and_history(db, ids, parts, state, now_s, (
            (ids[i], WARNING_PREFIX + w)
            for i in range(count)
            for w in _warnings_of(accepted_choice[lo + i], self.every)
        ))
        return ids
