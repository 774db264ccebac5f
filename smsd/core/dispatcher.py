"""Takes due messages from the store and hands them to the router.

Why it is built this way:

* The database is the queue.  Due work is claimed in small batches through the
  ``messages_due`` index (state queued/scheduled, ``next_attempt_at`` passed),
  so 100,000 queued messages cost no memory here and postponed messages go out
  at their minute also after a restart.
* One task per message, at most ``max_in_flight`` at once; the router limits
  each gateway further.  A message that keeps failing is put back with an
  exponentially growing ``next_attempt_at`` and never holds a slot while it
  waits, so it cannot block the others; after ``policy.max_attempts`` it fails.
* "No gateway is up" is not the message's fault: it is retried later without
  spending an attempt, and the dispatcher stops claiming work until a gateway
  is available again instead of churning the whole queue.
* A part that may or may not have reached the network (the port vanished or
  the modem fell silent after the PDU, SubmitInterrupted) is the ambiguity of
  a crash mid-submit and follows ``policy.submitting_after_crash`` at once:
  "resend" queues it again now, "fail" fails it as "interrupted during submit".
* A watchdog: no part stays 'submitting' longer than the gateways' send
  deadline plus SUBMIT_MARGIN_S; a stuck send is cancelled and resolved by the
  same policy, and a message some failed write left in sending/submitting
  with nobody sending it is resolved as after a crash.
* A graceful stop (``drain``) hands nothing new to a gateway: every message
  not yet talking to a modem goes back to 'queued' at once; the parts already
  talking to one finish within the deadline, or are resolved by the policy,
  so a clean stop leaves nothing 'submitting'.
* Expiry (expiry.py), crash recovery (recovery.py) and the end of each
  attempt (outcomes.py) live beside this; the SQL is in smsd.store.claims,
  smsd.store.attempts and smsd.store.recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from smsd.config import Policy
from smsd.core.events import EventBus
from smsd.core.expiry import Expiry
from smsd.core.outcomes import STORE_RETRY_S, AttemptOutcomes
from smsd.core.part_hooks import MessageHooks, Withdrawn
from smsd.core.recovery import INTERRUPTED, resolve_unfinished
from smsd.core.router import Router
from smsd.errors import GatewayError, GatewayUnavailable, SubmitInterrupted
from smsd.gateways.base import OutboundJob
from smsd.store import Store, StoreError, ts, utcnow
from smsd.store.claims import DueMessage, claim_due, in_flight_since, next_due

log = structlog.get_logger(__name__)

# Messages claimed per query: big enough to amortise one transaction over many
# messages, small enough that a claim never holds the writer lock for long.
BATCH = 200
# Messages being sent at once, all gateways together (memory bound: one task
# and one job each).  Dozens of modems at a few seconds per SMS need far fewer.
MAX_IN_FLIGHT = 256
# Claim again only once this share of the in-flight slots is free (at least
# one): with a backlog, every finished message frees one slot, and claiming
# each time was one claim (a commit, a query) per message (issue 17); an
# eighth of MAX_IN_FLIGHT is 32 messages per claim, while 224 others still
# wait for a gateway, so no modem waits for the claim.
REFILL_SHARE = 8
# Longest sleep with nothing due: a safety net in case a wake-up is missed
# (e.g. a row written by another process such as `sqlite3`).
IDLE_POLL_S = 60.0
# How often to look again while no gateway is available (modem replugged,
# provider back): short enough that an admin sees the queue move at once.
NO_GATEWAY_POLL_S = 5.0

# Pause after the store refused a claim (disk full, file locked by a backup,
# the PostgreSQL server unreachable): STORE_RETRY_S, shared with the outcomes'
# writes (smsd.core.outcomes).

# How often waiting messages are checked against policy.expire_after_hours:
# the policy counts in hours, so a minute of lateness is invisible, and each
# check reads every waiting message once.
EXPIRY_CHECK_S = 60.0

# The longest one part may take once marked submitting, when the caller does
# not say: the modems' default AT+CMGS deadline (ModemSpec.send_timeout_s).
DEFAULT_SUBMIT_DEADLINE_S = 120.0
# Beyond a gateway's own deadline: the modem layer's "> " prompt (5 s), its
# resync after a timeout (3 x 2 s) and a store commit under load.  A part
# submitting longer than deadline + margin is stuck: the watchdog resolves it.
SUBMIT_MARGIN_S = 30.0
# The watchdog looks this often (or twice per deadline when that is shorter).
WATCHDOG_CHECK_S = 5.0

__all__ = ["INTERRUPTED", "STORE_RETRY_S", "Dispatcher"]


class Dispatcher:
    def __init__(
        self,
        store: Store,
        router: Router,
        bus: EventBus,
        policy: Policy,
        *,
        clock: Callable[[], datetime] = utcnow,
        max_in_flight: int = MAX_IN_FLIGHT,
        batch: int = BATCH,
        submit_deadline_s: float = DEFAULT_SUBMIT_DEADLINE_S,
        submit_margin_s: float = SUBMIT_MARGIN_S,
        node: str | None = None,
        node_dead_after_s: float = 15.0,
    ) -> None:
        """``node``: this daemon's name on a shared PostgreSQL store (None on SQLite,
        where one daemon owns every row)."""
        self._store = store
        self._node = node
        self._node_dead_after_s = node_dead_after_s
        self._router = router
        self._bus = bus
        self._policy = policy
        self._clock = clock
        self._max_in_flight = max_in_flight
        self._batch = batch
        self._refill = max(1, max_in_flight // REFILL_SHARE)
        self._expiry = Expiry(store, bus, lambda: self._policy, batch)
        self._outcomes = AttemptOutcomes(store, bus, lambda: self._policy, clock, self.wake)
        self._stuck_after = submit_deadline_s + submit_margin_s
        self._wake = asyncio.Event()
        # The loop time the current idle sleep (_sleep) ends; None while awake.
        self._asleep_until: float | None = None
        self._slot_free = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._in_flight = 0
        self._sends: dict[asyncio.Task[None], MessageHooks] = {}
        self._draining = False
        self._claiming = asyncio.Event()     # set while run() is between claims
        self._claiming.set()
        self._recovered = False
        self._next_expiry_check: datetime | None = None

    def set_policy(self, policy: Policy) -> None:
        """A reloaded config's policy (SIGHUP): retries and expiry decided from now on use it."""
        self._policy = policy

    # ------------------------------------------------------------ control

    def wake(self) -> None:
        self._wake.set()

    def wake_for(self, due: datetime) -> None:
        """New messages first due at ``due`` (a later ``send_at``): wake only when
        the current sleep would outlast it.

        A sleep that ends first finds them anyway (the next-due read after its
        claim); waking for them would only cost a claim and a read that find
        nothing, for every postponed originate (issue 17).
        """
        until = self._asleep_until
        if until is not None:
            left = until - asyncio.get_running_loop().time()
            if (due - self._clock()).total_seconds() > left:
                return
        self._wake.set()

    @property
    def asleep(self) -> bool:
        """Waiting for a wake or its next due message, with nothing to claim now."""
        return self._asleep_until is not None

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def drain(self, deadline: float) -> None:
        """Graceful stop: hand nothing new to a gateway, finish what talks to a modem.

        1. no more claims, and no message not yet marked submitting may start
           (MessageHooks.may_start); those waiting for a modem are withdrawn
           now and go back to 'queued' at once (a part whose 'submitting' is
           being committed is talking already: MessageHooks.talking);
        2. the sends already talking to a modem get up to ``deadline`` seconds;
        3. any still unanswered then are cancelled and resolved by
           ``policy.submitting_after_crash``, as are rows nobody is sending,
           so nothing is left 'submitting' after a clean stop.
        """
        self._draining = True
        self._wake.set()
        self._slot_free.set()
        withdrawn = [t for t, h in self._sends.items() if not h.talking]
        for task in withdrawn:
            task.cancel()
        log.info("dispatcher.draining", talking=len(self._sends) - len(withdrawn),
                 withdrawn=len(withdrawn))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(deadline):
                await self._idle.wait()
                await self._claiming.wait()
        late = list(self._sends.items())
        for task, hooks in late:
            hooks.interrupted = f"no answer before the stop ({deadline:g} s drain)"
            task.cancel()
        if late:
            await asyncio.wait([t for t, _ in late])
        await self._claiming.wait()
        left = await resolve_unfinished(self._store, self._bus, self._policy, self._clock(),
                                        why="stopped while sending", node=self._node)
        log.info("dispatcher.drained", interrupted=len(late), resolved=len(left))

    async def run(self) -> None:
        if not self._recovered:
            await self.recover()
        async with asyncio.TaskGroup() as tg:
            watchdog = tg.create_task(self._watchdog(), name="submit watchdog")
            while not self._draining:
                if self._in_flight > self._max_in_flight - self._refill:
                    self._slot_free.clear()
                    await self._slot_free.wait()
                    continue
                self._wake.clear()
                now = self._clock()
                if self._next_expiry_check is None or now >= self._next_expiry_check:
                    try:
                        await self.expire(now)
                    except StoreError as e:
                        log.warning("dispatcher.expire_failed", error=str(e))
                    self._next_expiry_check = now + timedelta(seconds=EXPIRY_CHECK_S)
                if not self._router.available():
                    await self._sleep(NO_GATEWAY_POLL_S)
                    continue
                self._claiming.clear()
                try:
                    claimed = await self._claim(
                        now, min(self._batch, self._max_in_flight - self._in_flight)
                    )
                except StoreError as e:
                    # Disk full, a locked file, the server away: the messages
                    # stay queued in the database; try again shortly rather
                    # than stop sending.
                    log.warning("dispatcher.claim_failed", error=str(e))
                    self._claiming.set()
                    await self._sleep(STORE_RETRY_S)
                    continue
                # Under 'resend' a part may be marked submitting while it waits
                # for its modem: after a crash it is sent again, and it never left.
                ahead = self._policy.submitting_after_crash == "resend"
                for row in claimed:
                    self._in_flight += 1
                    self._idle.clear()
                    hooks = MessageHooks(self._store, row.id, self._clock,
                                         self._may_start, submit_ahead=ahead)
                    self._sends[tg.create_task(self._send(row, hooks))] = hooks
                self._claiming.set()
                if claimed:
                    await asyncio.sleep(0)  # let the new tasks start before the next claim
                    continue
                try:
                    wait = await self._until_next_due(now)
                except StoreError as e:
                    log.warning("dispatcher.next_due_unknown", error=str(e))
                    wait = STORE_RETRY_S
                await self._sleep(wait)
            watchdog.cancel()
        log.info("dispatcher.stopped")

    def _may_start(self) -> bool:
        return not self._draining

    # ------------------------------------------------------------ watchdog

    async def _watchdog(self) -> None:
        """No part stays 'submitting' past the deadline; no row stays in flight unowned."""
        every = min(WATCHDOG_CHECK_S, self._stuck_after / 2)
        while True:
            await asyncio.sleep(every)
            now = time.monotonic()
            for task, hooks in list(self._sends.items()):
                since = hooks.submitting_since
                if since is not None and hooks.interrupted is None \
                        and now - since > self._stuck_after:
                    hooks.interrupted = f"no answer within {self._stuck_after:g} s"
                    log.error("dispatcher.submit_stuck", sms_id=self._id_of(task),
                              seconds=round(now - since, 1), modem=hooks.modem)
                    task.cancel()
            try:
                await self._resolve_orphans()
            except StoreError as e:
                log.warning("dispatcher.watchdog_failed", error=str(e))

    def _id_of(self, task: asyncio.Task[None]) -> int | None:
        hooks = self._sends.get(task)
        return None if hooks is None else hooks.message_id

    async def _resolve_orphans(self) -> None:
        """Rows in sending/submitting that no task of ours is sending (a failed write)."""
        cutoff = ts(self._clock() - timedelta(seconds=self._stuck_after))
        # only this node's own rows: the others' are theirs while they live
        in_flight = await in_flight_since(self._store, cutoff, self._node)
        owned = {h.message_id for h in self._sends.values()}
        orphans = [i for i in in_flight if i not in owned]
        if self._node is not None:
            await self._take_over_dead_nodes()
        if not orphans:
            return
        done = await resolve_unfinished(self._store, self._bus, self._policy, self._clock(),
                                        why="left in flight", ids=orphans)
        log.error("dispatcher.orphans_resolved", ids=orphans[:20], count=len(done),
                  policy=self._policy.submitting_after_crash)
        self._wake.set()

    async def _take_over_dead_nodes(self) -> None:
        """Messages in flight on a node whose heartbeat stopped: its leases have expired.

        They are resolved as after a crash of that node (submitting_after_crash),
        by whichever live node gets there first (recovery.py serialises them).
        """
        done = await resolve_unfinished(
            self._store, self._bus, self._policy, self._clock(), why="its node stopped",
            dead_nodes_of=(self._node or "", self._node_dead_after_s),
        )
        if done:
            log.warning("dispatcher.took_over", node=self._node, requeued=len(done.requeued),
                        sent=len(done.sent), failed=len(done.failed),
                        policy=self._policy.submitting_after_crash)
            self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        self._asleep_until = asyncio.get_running_loop().time() + seconds
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._wake.wait()
        finally:
            self._asleep_until = None

    async def _until_next_due(self, now: datetime) -> float:
        """Seconds until our next due message; due ones left to another node
        (served_here) are looked at again every WATCHDOG_CHECK_S, in case that
        node stops or its modem goes down."""
        ours, any_due = await next_due(self._store, self._node, self._node_dead_after_s)
        wait = IDLE_POLL_S if ours is None else (ours - now).total_seconds()
        if any_due is not None and any_due != ours:  # the next due one is another node's
            wait = min(wait, max(WATCHDOG_CHECK_S, (any_due - now).total_seconds()))
        return max(0.0, min(IDLE_POLL_S, wait))

    # ------------------------------------------------------------ claiming

    async def _claim(self, now: datetime, limit: int) -> list[DueMessage]:
        """Move due messages to 'sending'; any too old to send are expired instead."""
        now_s = ts(now)
        cutoff_s = self._expiry.cutoff(now)
        claimed, expired = await self._store.write(
            lambda db: claim_due(db, now_s, limit, node=self._node,
                                 dead_after_s=self._node_dead_after_s, cutoff_s=cutoff_s,
                                 expired_error=self._expiry.error))
        self._expiry.publish(expired)
        return claimed

    # ------------------------------------------------------------- sending

    async def _send(self, row: DueMessage, hooks: MessageHooks) -> None:
        message_id = row.id
        out = self._outcomes
        job = OutboundJob(
            message_id=message_id,
            recipient=row.recipient,
            text=row.text,
            sender=row.sender,
            did=row.did,
            parts=row.parts,
            encoding=row.encoding,
        )
        try:
            try:
                if self._draining:
                    raise Withdrawn(f"message {message_id}: claimed as the stop began")
                try:
                    gateway = await self._router.send(job, hooks)
                finally:
                    # The gateway is done with it: from here on only the
                    # outcome's write remains, which the watchdog leaves alone.
                    hooks.submitting_since = None
            except Withdrawn:
                await out.withdraw(row)
            except StoreError as e:
                # A part's 'submitting' could not be committed, so that part
                # never went to the gateway: back to the queue, due at once
                # and no attempt spent (the store, not the message, failed).
                log.warning("sms.store_refused", sms_id=message_id, error=str(e))
                await out.retry(row, f"not sent: {e}", count_attempt=False, delay_s=0.0)
            except SubmitInterrupted as e:
                await out.interrupted(row, str(e))
            except GatewayUnavailable as e:
                await out.retry(row, str(e), count_attempt=False)
            except GatewayError as e:
                if e.temporary:
                    await out.retry(row, str(e), count_attempt=True)
                else:
                    await out.fail(row, str(e), gateway=e.gateway)
            except asyncio.CancelledError:
                # Shielded: the state write finishes even if we are cancelled again.
                if not hooks.submitted_any:
                    # Nothing left the daemon (a stop withdrew it): straight back.
                    await asyncio.shield(out.withdraw(row))
                elif hooks.interrupted is not None:
                    # The watchdog or the stop gave up on a part mid-submit.
                    await asyncio.shield(out.interrupted(row, hooks.interrupted))
                raise
            except Exception as e:
                log.exception("dispatcher.gateway_bug", sms_id=message_id)
                await out.retry(row, f"internal error: {e!r}", count_attempt=True)
            else:
                await out.sent(row, gateway, hooks.modem)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug in writing the outcome (a refusal of the store is retried
            # by the outcomes' writes): the row stays in 'sending'/'submitting'; the
            # watchdog (or recover() at the next start) resolves it.
            log.exception("dispatcher.state_update_failed", sms_id=message_id)
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._sends.pop(task, None)
            self._in_flight -= 1
            self._slot_free.set()
            if self._in_flight == 0:
                self._idle.set()

    def backoff(self, attempts: int) -> float:
        """Seconds before attempt ``attempts + 1``: base * 2^(attempts-1), capped."""
        return self._outcomes.backoff(attempts)

    # ------------------------------------------------------------ expiry, recovery

    async def expire(self, now: datetime) -> int:
        """See smsd/core/expiry.py; returns how many messages were expired."""
        return await self._expiry.expire(now)

    async def recover(self) -> None:
        """At start-up: resolve what a crash left in sending/submitting (recovery.py)."""
        done = await resolve_unfinished(self._store, self._bus, self._policy, self._clock(),
                                        why="recovered after a crash", node=self._node)
        self._recovered = True
        if done:
            log.warning(
                "dispatcher.recovered",
                requeued=len(done.requeued),
                sent=len(done.sent),
                failed=len(done.failed),
                policy=self._policy.submitting_after_crash,
            )
