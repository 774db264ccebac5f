"""The GSM gateway: one outbound message -> SMS-SUBMIT PDUs on a pooled modem.

The pool owns the modems; this adapter only decides which modem (the one
that owns the sender's DID, so replies come back to the same number, else the
least busy), waits until that modem is free, builds the PDUs with a fresh
concatenation reference from that modem, and marks each part ``submitting``
(committed) before the modem is asked to send it.  Modem errors are translated
into the router's language: a temporary TS 24.011 cause (congestion, network
out of order) lets the router fail over or retry, a permanent one (unassigned
number, barred) fails the message at once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Collection, Mapping
from typing import Any, Protocol

import structlog

from smsd.codec.pdu import SubmitPdu, encode_submit
from smsd.errors import (
    AtError,
    AtTimeout,
    CmsError,
    GatewayError,
    GatewayUnavailable,
    PartNotSent,
    PduError,
    PortGone,
    SubmitInterrupted,
    SubmitUnconfirmed,
)
from smsd.gateways.base import OutboundJob, PartHooks
from smsd.turns import Turns

log = structlog.get_logger(__name__)

NAME = "gsm"

# Outer bound on one part's AT+CMGS exchange, a safety net behind the modem
# layer's own deadlines (the ``> `` prompt, then ModemSpec.send_timeout_s,
# 120 s by default): it only catches a pool that never answers.
SEND_PART_DEADLINE_S = 300.0
# How often a send waiting for a free modem looks at the ready count again
# even when no send ended (a modem that becomes ready adds room).
READY_RECHECK_S = 1.0
# Our sends per ready modem: one talking to it, one in its seat (next, with
# its first part marked 'submitting' ahead when the policy allows).  More
# would only wait longer in a modem's line instead of the dispatcher's queue.
LINE_DEPTH = 2


class _SentPart(Protocol):
    @property
    def modem(self) -> str: ...

    @property
    def message_reference(self) -> int | None: ...


class ModemPoolLike(Protocol):
    """The part of smsd.modem.pool.ModemPool this gateway uses."""

    def healthy(self) -> bool: ...

    def ready_count(self) -> int: ...

    def is_ready(self, modem: str) -> bool: ...

    def choose(self, did: str | None = None, *, exclude: Collection[str] = (),
               busy: Mapping[str, int] | None = None) -> str | None: ...

    def unavailable_reason(self) -> str: ...

    async def send_pdu(self, pdu: SubmitPdu, *, modem: str) -> _SentPart: ...

    def next_reference(self, modem: str) -> int: ...

    def requests_reports(self, modem: str) -> bool: ...


class _Line:
    """One modem's line of our sends: ``talk`` is held by the send talking to it,
    ``seat`` by the next one.

    Both are Turns of one (FIFO locks whose free take is a plain call): every
    message takes both (issue 17).
    """

    __slots__ = ("seat", "talk")

    def __init__(self) -> None:
        self.seat = Turns(1)
        self.talk = Turns(1)


class _Refused(Exception):
    """The chosen modem took nothing of this message: try another one now."""


class GsmGateway:
    """Sends through the pool: one message talking to each modem, one next in line.

    A modem sends one SMS at a time.  A part marked ``submitting`` while it
    waits for its modem widens what a crash leaves unresolved, so at most two
    of ours are ``submitting`` per modem: the one talking to it, and the next
    in line (its seat), marked ahead only when the hooks allow it
    (``submit_ahead``: the ``resend`` policy, under which that part is sent
    again after a crash, which is right, as it never left; under ``fail`` it
    would fail a message that never left, so the seat's part is marked only
    once it holds the modem).  Marked ahead, its commit overlaps the send
    before it, and its ``AT+CMGS`` follows that send's ``OK`` at once
    (issue 17: the commit between them was most of a modem's idle time).

    Modems are chosen from the pool's live state, never a cached snapshot, so
    a modem whose port vanished is not chosen again; a modem that refuses a
    message before any of it left (gone while we waited, dead port, no ``> ``
    prompt) hands it to another ready modem at once instead of sending it
    back to the queue for ``retry_base_s``.
    """

    name = NAME
    # Sends at once the router lets through (smsd.core.router): this gateway
    # bounds itself, LINE_DEPTH per ready modem, so only the dispatcher's
    # in-flight limit applies.
    concurrency = 256

    def __init__(
        self,
        pool: ModemPoolLike,
        *,
        validity_minutes: int | None = None,
    ) -> None:
        self._pool = pool
        self._validity = validity_minutes
        self._lines: dict[str, _Line] = {}
        # Our sends in each modem's line (talking, in its seat or waiting for
        # it), only modems with any: the pool chooses the modem with fewest.
        self._load: dict[str, int] = {}
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        # One timer for all waiters (see _recheck_waiters), set while any wait.
        self._recheck: asyncio.TimerHandle | None = None
        # Sends talking to a modem -> the loop time by which the part must be
        # answered (SEND_PART_DEADLINE_S); one lazy timer for all (_PartDeadlines).
        self._deadlines = _PartDeadlines()

    def available(self) -> bool:
        return self._pool.healthy()

    def _room(self) -> int:
        """How many more of our sends may start: LINE_DEPTH per ready modem (the
        pool's count is kept current, so asking costs nothing), at least one line."""
        return max(1, self._pool.ready_count()) * LINE_DEPTH - self._active

    async def _wait_for_slot(self) -> None:
        """Until there is room for one more send; waiters woken one at a time."""
        loop = asyncio.get_running_loop()
        while self._room() <= 0:
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            # One recheck timer for all waiters, not one per wait (issue 17).
            if self._recheck is None:
                self._recheck = loop.call_later(READY_RECHECK_S, self._recheck_waiters)
            try:
                await fut
            finally:
                if not fut.done():
                    fut.cancel()

    def _recheck_waiters(self) -> None:
        """Every READY_RECHECK_S while sends wait: room a modem that became ready
        added goes to the longest waiters, as many as there is room for."""
        self._recheck = None
        room = self._room()
        waiting = False
        for waiter in self._waiters:
            if waiter.done():
                continue
            if room > 0:
                waiter.set_result(None)
                room -= 1
            else:
                waiting = True
        if waiting:
            self._recheck = asyncio.get_running_loop().call_later(
                READY_RECHECK_S, self._recheck_waiters)

    def _free_slot(self) -> None:
        self._active -= 1
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    async def send(self, job: OutboundJob, hooks: PartHooks) -> None:
        # At most LINE_DEPTH of our sends per ready modem.  Taken and freed by
        # hand, not with an async context manager: this runs once per message
        # (issue 17).
        if self._room() <= 0:
            await self._wait_for_slot()
        self._active += 1
        try:
            refused: list[str] = []
            while True:
                modem = self._pool.choose(job.did, exclude=refused, busy=self._load)
                if modem is None:
                    # "daily cap reached (3)" rather than a vague "no ready modem".
                    why = f" (refused by {', '.join(refused)})" if refused else ""
                    raise GatewayUnavailable(self._pool.unavailable_reason() + why, gateway=NAME)
                load = self._load
                load[modem] = load.get(modem, 0) + 1
                try:
                    await self._send_in_line(modem, job, hooks)
                    return
                except _Refused as e:
                    log.info("gsm.handed_on", sms_id=job.message_id, modem=modem,
                             reason=str(e.__cause__ or e))
                    refused.append(modem)
                finally:
                    if load[modem] == 1:
                        del load[modem]
                    else:
                        load[modem] -= 1
        finally:
            self._free_slot()

    async def _send_in_line(self, modem: str, job: OutboundJob, hooks: PartHooks) -> None:
        """Take ``modem``'s seat, then its turn to talk, then send every part.

        The seat holder is always the next to talk (both locks are FIFO).
        When the hooks allow it, it marks its first part 'submitting' while
        the modem still sends the message before it, so that its ``AT+CMGS``
        follows that one's ``OK`` without waiting for a commit.
        """
        line = self._lines.get(modem)
        if line is None:
            line = self._lines[modem] = _Line()
        seat, talk = line.seat, line.talk
        if not seat.try_take():
            await seat.take()
        try:
            pdus: list[SubmitPdu] | None = None
            if hooks.submit_ahead and talk.taken():
                pdus = self._encode(modem, job)
                await hooks.submitting(pdus[0].part, ahead=True)
            if not talk.try_take():
                await talk.take()
        finally:
            seat.give()
        try:
            if not self._pool.is_ready(modem):   # it went while we waited
                if pdus is not None:
                    await hooks.not_sent(pdus[0].part)
                raise _Refused(f"{modem} is not ready any more")
            await self._send_on(modem, job, hooks, pdus)
        finally:
            talk.give()

    def _encode(self, modem: str, job: OutboundJob) -> list[SubmitPdu]:
        try:
            return encode_submit(
                job.recipient,
                job.text,
                reference=self._pool.next_reference(modem),
                # Per modem (its request_reports): a SIM whose operator bills
                # or refuses status reports sends SUBMITs without TP-SRR.
                request_report=self._pool.requests_reports(modem),
                validity_minutes=self._validity,
            )
        except PduError as e:
            raise GatewayError(f"cannot encode: {e}", temporary=False, gateway=NAME) from e

    async def _send_on(self, modem: str, job: OutboundJob, hooks: PartHooks,
                       marked: list[SubmitPdu] | None) -> None:
        """Send every part on ``modem``, whose turn we hold; ``marked``: the PDUs
        whose first part is already 'submitting' (marked ahead)."""
        pdus = marked if marked is not None else self._encode(modem, job)
        deadlines = self._deadlines
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        for pdu in pdus:
            if marked is not None and pdu is marked[0]:
                hooks.talk_now()
            else:
                await hooks.submitting(pdu.part)
            # SEND_PART_DEADLINE_S around the send, as asyncio.timeout() would
            # be, without a frame of its own per part (_PartDeadlines).
            deadlines.start(task)
            try:
                sent = await self._pool.send_pdu(pdu, modem=modem)
            except asyncio.CancelledError as e:
                if deadlines.expired(task, cancelling):
                    raise SubmitInterrupted(
                        f"{modem}: part {pdu.part} of {pdu.parts}: "
                        f"no answer within {SEND_PART_DEADLINE_S:g} s", gateway=NAME
                    ) from e
                raise
            except CmsError as e:
                raise GatewayError(
                    f"{modem}: {e.raw}", temporary=e.temporary, gateway=NAME
                ) from e
            except (GatewayUnavailable, PartNotSent) as e:
                if pdu.part == 1:
                    # Nothing of this message left: another modem may take it
                    # whole (its parts must all come from one SIM to join up).
                    await hooks.not_sent(pdu.part)
                    raise _Refused(str(e)) from e
                raise GatewayError(f"{modem}: {e}", temporary=True, gateway=NAME) from e
            except (SubmitUnconfirmed, TimeoutError) as e:
                why = str(e) or f"no answer within {SEND_PART_DEADLINE_S:g} s"
                raise SubmitInterrupted(
                    f"{modem}: part {pdu.part} of {pdu.parts}: {why}", gateway=NAME
                ) from e
            except (AtTimeout, PortGone, AtError) as e:
                # Plain ERROR, +CME ERROR, a timeout or an unplugged port say
                # nothing about the number: worth another try elsewhere.
                raise GatewayError(f"{modem}: {e}", temporary=True, gateway=NAME) from e
            finally:
                deadlines.end(task)
            await hooks.sent(pdu.part, modem=sent.modem, reference=sent.message_reference)
            log.debug(
                "gsm.part_sent",
                sms_id=job.message_id,
                modem=sent.modem,
                part=pdu.part,
                parts=pdu.parts,
                mr=sent.message_reference,
            )


class _PartDeadlines:
    """SEND_PART_DEADLINE_S around each part's send, with one timer for all sends.

    The same outcome as ``asyncio.timeout()`` around the send (the send is
    cancelled, and the caller sees the deadline instead of the cancellation
    unless the task was also cancelled from outside), without a Timeout object
    and a timer handle of its own per part, nor a coroutine frame around the
    send (issue 17): the sender calls start() before it awaits, end() after,
    and asks expired() when cancelled.  The deadline is only a safety net
    behind the modem layer's own, so nearly every send ends long before it:
    the timer stays set for the earliest deadline noted while it was idle,
    and moves on when it fires.
    """

    def __init__(self) -> None:
        self._due: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def start(self, task: asyncio.Task[Any]) -> None:
        """``task`` now awaits a part: its deadline is SEND_PART_DEADLINE_S from now."""
        loop = task.get_loop()
        due = self._due[task] = loop.time() + SEND_PART_DEADLINE_S
        if self._timer is None:
            self._timer = loop.call_at(due, self._fire)

    def expired(self, task: asyncio.Task[Any], cancelling: int) -> bool:
        """Whether ``task``'s cancellation is its deadline's alone (then uncancelled),
        not also one from outside; ``cancelling``: its count before the send."""
        return task in self._expired and task.uncancel() <= cancelling

    def end(self, task: asyncio.Task[Any]) -> None:
        del self._due[task]
        if self._expired:
            self._expired.discard(task)

    def _fire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        for task, due in self._due.items():
            if due <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        later = [due for task, due in self._due.items() if task not in self._expired]
        if later:
            self._timer = loop.call_at(min(later), self._fire)
