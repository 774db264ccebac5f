"""The kite-sms procedure: who gets an inbound SMS to a company DID.

Admins route inbound SMS exactly as they route calls: an extension equal to
the DID (``+`` included) in the ``kite-sms`` context, ending in the call-group
application ``AGI(agi://127.0.0.1:4573/kite-sms?members=100,201)``.  The daemon
originates ``Local/<DID>@kite-sms`` carrying SMS_ID/SMS_FROM/SMS_TO, and the
AGI handler "claims" the message for those members (:meth:`claim`).  When the
context has no such extension, AMI is not configured, or no claim arrives in
time, the directory decides: users whose office number is the DID.

A message is committed as ``pending`` before anybody sees it; it leaves that
state only here (routed, unrouted, blocked).  When AMI is configured but down,
messages stay pending and are routed again when AMI comes back (and at start).

Two rules keep that retry honest.  A ``route()`` asked for while the same
message is already being routed is remembered, not dropped: if the running
attempt ends ``pending`` (its AMI link went away) and AMI is up again, the
message is routed once more at once instead of waiting for the next reconnect.
And only one party delivers a message at a time (the directory fallback, or a
kite-sms AGI claim): whoever comes second re-reads the route state first, so a
claim or a routed state from an earlier attempt wins and no phone gets it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from smsd.core.events import InboundSms
from smsd.errors import AmiError, AmiNotConnected
from smsd.store import inbound

if TYPE_CHECKING:
    from smsd.asterisk.ami import AmiClient
    from smsd.core.conversations import Conversations
    from smsd.core.directory import Directory
    from smsd.store import Store

log = structlog.get_logger(__name__)

CONTEXT = "kite-sms"
# How long to wait for the kite-sms AGI call after the Originate was queued:
# the captured Originate -> FastAGI round trip on Asterisk 20 took ~0.5 s
# (including a 0.5 s Wait in the test dialplan); 15 s covers a busy PBX and
# still delivers well before a person would notice.
CLAIM_TIMEOUT_S = 15.0
# After a failed or unanswered Originate, how long a claim may still arrive: the
# kite-sms context may run its AGI without Answer(), so the claim can trail the
# OriginateResponse by one AGI round trip (well under 0.5 s on loopback).
LATE_CLAIM_GRACE_S = 0.5


@dataclass(frozen=True)
class _Loaded:
    sms: InboundSms
    route_state: str
    conversation_id: int | None


@dataclass
class _Turn:
    """The per-message lock of whoever delivers it, and how many hold or await it."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class KiteSmsProcedure:
    def __init__(
        self,
        store: Store,
        directory: Directory,
        conversations: Conversations,
        ami: AmiClient | None,
        *,
        claim_timeout_s: float = CLAIM_TIMEOUT_S,
    ) -> None:
        self._store = store
        self._directory = directory
        self._conversations = conversations
        self._ami = ami
        self._claim_timeout = claim_timeout_s
        self._claims: dict[int, asyncio.Future[int | None]] = {}
        self._busy: set[int] = set()
        self._again: set[int] = set()     # asked for while busy: route once more if pending
        self._turns: dict[int, _Turn] = {}
        self.unrouted = 0           # counted for tests and a future metric
        self.routed = 0
        if ami is not None:
            ami.on_connected(self.route_pending)

    # --- entry points --------------------------------------------------------------

    async def on_inbound(self, ev: InboundSms) -> None:
        """EventBus subscriber."""
        await self.route(ev.id)

    async def route_pending(self) -> int:
        """Route every message still pending (start-up, AMI back); how many were tried."""
        ids = await inbound.pending_ids(self._store)
        for sms_id in ids:
            try:
                await self.route(sms_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("kite_sms.route_failed", sms_id=sms_id)
        return len(ids)

    async def claim(self, sms_id: int, members: Sequence[str]) -> int | None:
        """The kite-sms AGI call for ``sms_id``: route it to those static members.

        Members are filtered to UC-Business+ users with the DID as their office
        number.  Returns the conversation id (None when nobody qualified: the
        procedure then falls back to the directory).  A claim for a message that
        is already routed (a repeated AGI call, or one that arrives after the
        directory fallback took over) delivers nothing and returns its
        conversation.
        """
        conv_id: int | None = None
        async with self._turn(sms_id, "claim"):
            # Read under the lock: a directory fallback or another claim that is
            # delivering this message right now (a late AGI call of an earlier
            # attempt) finishes first, and its outcome is what we read.
            loaded = await self._load(sms_id)
            waiter = self._claims.get(sms_id)
            sms = None if loaded is None else loaded.sms
            if loaded is None or sms is None or sms.recipient is None:
                log.warning("kite_sms.claim_unknown", sms_id=sms_id)
                return None
            if loaded.route_state != "pending":
                # Already decided (a repeated or late AGI call): never deliver twice.
                log.info("kite_sms.claim_ignored", sms_id=sms_id,
                         route_state=loaded.route_state)
                if waiter is not None and not waiter.done():
                    waiter.set_result(loaded.conversation_id)
                return loaded.conversation_id
            if await self._store.is_blocked(sms.sender):
                await self._set_state(sms_id, "blocked")
                return None
            if not self._conversations.two_way_allowed(sms.recipient):
                log.info("kite_sms.claim_refused", sms_id=sms_id,
                         reason="no two-way SMS on DID")
                return None
            eligible = [m for m in dict.fromkeys(members)
                        if self._conversations.eligible(m, sms.recipient)]
            dropped = [m for m in members if m not in eligible]
            if dropped:
                log.info("kite_sms.members_skipped", sms_id=sms_id, members=dropped,
                         reason="not UC-Business+ with the DID as office number")
            if eligible:
                conv_id = await self._conversations.on_inbound(sms, eligible)
        if conv_id is not None:
            self.routed += 1
            await self._announce(sms, conv_id, eligible, "dialplan")
        if waiter is not None and not waiter.done():
            waiter.set_result(conv_id)
        return conv_id

    # --- routing ------------------------------------------------------------------------

    async def route(self, sms_id: int) -> str:
        """Route one pending message; returns its route_state afterwards.

        While an attempt for ``sms_id`` runs, a second call returns "pending"
        at once but is remembered: typically the reconnect's ``route_pending``
        arriving while the attempt still waits on the old AMI link.  When that
        attempt then ends "pending", nobody else would try again until the next
        reconnect, so the attempt is repeated here as long as AMI is up (when
        it is down, the next login's ``route_pending`` takes over).
        """
        if sms_id in self._busy:
            self._again.add(sms_id)
            log.info("kite_sms.route_queued", sms_id=sms_id, reason="an attempt is running")
            return "pending"
        self._busy.add(sms_id)
        try:
            while True:
                self._again.discard(sms_id)
                state = await self._route(sms_id)
                if state != "pending" or sms_id not in self._again:
                    return state
                if self._ami is not None and not self._ami.connected:
                    log.info("kite_sms.waiting_for_ami", sms_id=sms_id, queued=True)
                    return state
                log.info("kite_sms.route_again", sms_id=sms_id,
                         reason="asked for again while the last attempt lost AMI")
        finally:
            self._busy.discard(sms_id)
            self._again.discard(sms_id)

    async def _route(self, sms_id: int) -> str:
        async with self._turn(sms_id, "route"):
            # A claim delivering right now (a late AGI call of an earlier
            # attempt) finishes first; its outcome is then what we read.
            loaded = await self._load(sms_id)
        if loaded is None:
            return "missing"
        if loaded.route_state != "pending":
            return loaded.route_state
        sms = loaded.sms
        if await self._store.is_blocked(sms.sender):
            await self._set_state(sms_id, "blocked")
            log.info("kite_sms.blocked", sms_id=sms_id, sender=sms.sender)
            return "blocked"
        did = sms.recipient
        if did is None:
            return await self._unrouted(sms, "no recipient DID")
        if not self._conversations.two_way_allowed(did):
            return await self._unrouted(sms, "two-way SMS is not available for this DID")
        if self._ami is not None:
            if not self._ami.connected:
                log.info("kite_sms.waiting_for_ami", sms_id=sms_id)
                return "pending"
            try:
                claimed = await self._via_dialplan(sms, did)
            except AmiNotConnected:
                log.info("kite_sms.waiting_for_ami", sms_id=sms_id)
                return "pending"
            if claimed is not None:
                return "routed"
        # Directory fallback: users whose office number is the DID.
        members = [u.extension for u in self._directory.users_with_office_number(did)]
        async with self._turn(sms_id, "directory"):
            # A claim may have arrived after the wait above gave up on it.
            current = await self._load(sms_id)
            if current is None:
                return "missing"
            if current.route_state != "pending":
                log.info("kite_sms.fallback_skipped", sms_id=sms_id,
                         route_state=current.route_state)
                return current.route_state
            try:
                conv_id = await self._conversations.on_inbound(sms, members)
            except AmiNotConnected:
                log.info("kite_sms.waiting_for_ami", sms_id=sms_id)
                return "pending"
            if conv_id is None:
                return await self._unrouted(sms, "no recipient for this DID")
        self.routed += 1
        await self._announce(sms, conv_id, members, "directory")
        return "routed"

    async def _via_dialplan(self, sms: InboundSms, did: str) -> int | None:
        assert self._ami is not None
        try:
            if not await self._ami.has_extension(CONTEXT, did):
                log.info("kite_sms.no_extension", sms_id=sms.id, did=did)
                return None
        except AmiNotConnected:
            raise
        except AmiError as exc:
            log.warning("kite_sms.dialplan_lookup_failed", sms_id=sms.id, error=str(exc))
            return None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[int | None] = loop.create_future()
        self._claims[sms.id] = waiter
        originate: asyncio.Future[bool] = asyncio.ensure_future(self._ami.originate_local(
            did, CONTEXT, {"SMS_ID": str(sms.id), "SMS_FROM": sms.sender, "SMS_TO": did}))
        try:
            pending: set[asyncio.Future[object]] = {waiter, originate}  # type: ignore[arg-type]
            done, _ = await asyncio.wait(pending, timeout=self._claim_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if originate in done and waiter not in done:
                failure = originate.exception()
                if isinstance(failure, AmiNotConnected):
                    raise failure
                if failure is not None or not originate.result():
                    log.info("kite_sms.originate_failed", sms_id=sms.id, did=did,
                             error=str(failure) if failure else "not answered")
                    # The dialplan may still claim (no Answer() there): give it the rest.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(LATE_CLAIM_GRACE_S):
                            await asyncio.shield(waiter)
                else:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._claim_timeout):
                            await asyncio.shield(waiter)
            if waiter.done():
                return waiter.result()
            log.warning("kite_sms.claim_timeout", sms_id=sms.id, did=did,
                        timeout_s=self._claim_timeout)
            return None
        finally:
            self._claims.pop(sms.id, None)
            if not originate.done():
                originate.cancel()
                with contextlib.suppress(BaseException):
                    await originate

    # --- helpers ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _turn(self, sms_id: int, who: str) -> AsyncIterator[None]:
        """Hold ``sms_id``'s delivery lock: one reader-then-deliverer at a time.

        Conversations.on_inbound reads which phones already have the message
        before sending, so two of them at once for the same message would both
        send.  The lock is never held while waiting for a claim (the claim needs
        it), only around a state read and the delivery that follows it.
        """
        turn = self._turns.get(sms_id)
        if turn is None:
            turn = self._turns[sms_id] = _Turn()
        turn.users += 1
        try:
            if turn.lock.locked():
                log.info("kite_sms.delivery_wait", sms_id=sms_id, who=who,
                         reason="another delivery of this message is running")
            async with turn.lock:
                yield
        finally:
            turn.users -= 1
            if turn.users == 0:
                del self._turns[sms_id]

    async def _load(self, sms_id: int) -> _Loaded | None:
        """The message and its routing state, in one read (both are needed every time)."""
        row = await inbound.load(self._store, sms_id)
        if row is None:
            return None
        sms = InboundSms(
            id=row.id, sender=row.sender, recipient=row.recipient,
            text=row.text, received_at=datetime.fromisoformat(row.received_at),
            gateway=row.gateway, modem=row.modem)
        return _Loaded(sms, row.route_state, row.conversation_id)

    async def _set_state(self, sms_id: int, state: str) -> None:
        await inbound.set_route_state(self._store, sms_id, state)

    async def _unrouted(self, sms: InboundSms, reason: str) -> str:
        await self._set_state(sms.id, "unrouted")
        self.unrouted += 1
        log.warning("kite_sms.unrouted", sms_id=sms.id, sender=sms.sender,
                    did=sms.recipient, reason=reason, unrouted_total=self.unrouted)
        await self._user_event(sms, {"State": "unrouted", "Reason": reason})
        return "unrouted"

    async def _announce(self, sms: InboundSms, conv_id: int, members: Sequence[str],
                        via: str) -> None:
        log.info("kite_sms.routed", sms_id=sms.id, conversation=conv_id, via=via,
                 members=list(members))
        await self._user_event(sms, {"State": "routed", "Conversation": str(conv_id),
                                     "Members": ",".join(members), "Via": via})

    async def _user_event(self, sms: InboundSms, extra: dict[str, str]) -> None:
        """UserEvent SmsReceived, so dialplan and CTI tools can follow the message."""
        if self._ami is None or not self._ami.connected:
            return
        # Id is the inbound numbering (GET /api/v1/conversations/.../messages,
        # direction "in"); InboundId says so (SmsStatus numbers outbound SMS).
        headers = {"Id": str(sms.id), "InboundId": str(sms.id), "From": sms.sender,
                   "To": sms.recipient or "", **extra}
        try:
            await self._ami.user_event("SmsReceived", headers)
        except AmiError as exc:
            log.warning("kite_sms.event_failed", sms_id=sms.id, error=str(exc))
