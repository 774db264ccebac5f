"""How one send attempt ends: queued again with back-off, failed, or sent.

The dispatcher classifies what the gateway answered; this module turns the
answer into the message's next state (smsd.store.attempts writes it), logs
it and publishes the status change once the write returned.  The outcome is
known only here (a part really left, or really did not), so a write the store
refuses is tried again until it is taken, never left to the watchdog's guess.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

import structlog

from smsd.config import Policy
from smsd.core.events import EventBus, StatusChange
from smsd.core.recovery import INTERRUPTED
from smsd.store import Store, StoreError, ts
from smsd.store.attempts import write_failed, write_queued, write_sent
from smsd.store.claims import DueMessage

log = structlog.get_logger(__name__)

# Pause between tries of an attempt's outcome (sent, back to the queue,
# failed) that the store refused (disk full, the PostgreSQL server
# unreachable): the outcome is kept in memory and written once the store
# answers again.
STORE_RETRY_S = 5.0

T = TypeVar("T")


class AttemptOutcomes:
    """Writes and announces the end of each attempt of one dispatcher."""

    def __init__(self, store: Store, bus: EventBus, policy: Callable[[], Policy],
                 clock: Callable[[], datetime], wake: Callable[[], None]) -> None:
        self._store = store
        self._bus = bus
        self._policy = policy
        self._clock = clock
        self._wake = wake

    def backoff(self, attempts: int) -> float:
        """Seconds before attempt ``attempts + 1``: base * 2^(attempts-1), capped."""
        p = self._policy()
        return float(min(p.retry_max_s, p.retry_base_s * 2 ** max(0, attempts - 1)))

    async def withdraw(self, msg: DueMessage) -> None:
        """Not started: back to 'queued', due now, no attempt spent."""
        await self.retry(msg, "not started: the daemon was stopping", count_attempt=False,
                         delay_s=0.0)

    async def interrupted(self, msg: DueMessage, why: str) -> None:
        """A part may have reached the network: policy.submitting_after_crash decides."""
        policy = self._policy().submitting_after_crash
        log.warning("sms.interrupted", sms_id=msg.id, policy=policy, reason=why)
        if policy == "fail":
            await self.fail(msg, f"{INTERRUPTED} ({why})", gateway=None)
        else:
            await self.retry(msg, f"{INTERRUPTED} ({why})", count_attempt=True, delay_s=0.0)

    async def retry(
        self, msg: DueMessage, error: str, *, count_attempt: bool, delay_s: float | None = None
    ) -> None:
        message_id = msg.id
        attempts = msg.attempts + (1 if count_attempt else 0)
        policy = self._policy()
        if count_attempt and attempts >= policy.max_attempts:
            await self.fail(msg, f"{error} (after {attempts} attempts)", gateway=None,
                            attempts=attempts)
            return
        now = self._clock()
        if delay_s is not None:
            delay = delay_s
        elif count_attempt:
            delay = self.backoff(attempts)
        else:
            delay = policy.retry_base_s
        due_s = ts(now + timedelta(seconds=delay))
        now_s = ts(now)

        await self._write(message_id,
                          lambda db: write_queued(db, message_id, attempts, due_s, error, now_s))
        log.info("sms.retry", sms_id=message_id, attempts=attempts, delay_s=delay, error=error)
        self._wake()

    async def fail(
        self, msg: DueMessage, error: str, *, gateway: str | None, attempts: int | None = None
    ) -> None:
        message_id = msg.id
        now_s = ts(self._clock())

        await self._write(
            message_id, lambda db: write_failed(db, message_id, error, gateway, attempts, now_s))
        log.warning("sms.failed", sms_id=message_id, gateway=gateway, error=error)
        self._bus.publish_status(
            StatusChange(message_id, "failed", msg.recipient, msg.user, gateway, error)
        )

    async def sent(self, msg: DueMessage, gateway: str, modem: str | None) -> None:
        """Sent; and if status reports beat us here, the final state they imply.

        The inbox only moves 'sent' messages on, so a report that arrives
        while the message is still 'submitting' is kept on its part and
        applied here, in order: sent, then delivered/failed.
        """
        message_id = msg.id
        now_s = ts(self._clock())
        changes = await self._write(
            message_id, lambda db: write_sent(db, message_id, gateway, modem, now_s))
        log.info("sms.sent", sms_id=message_id, gateway=gateway, modem=modem)
        for state, err in changes:
            self._bus.publish_status(
                StatusChange(message_id, state, msg.recipient, msg.user, gateway, err,
                             due_since=msg.due_since)
            )

    async def _write(self, message_id: int, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Write an attempt's outcome, trying again while the store refuses it.

        The outcome is known only here (a part really left, or really did
        not): leaving the row in flight for the watchdog would make the
        submitting_after_crash policy guess it, a duplicate or a false
        failure.  So the task keeps it and writes it once the store is back
        (a PostgreSQL outage, a full disk freed).  The task stays in flight
        meanwhile; a stop cancels it and recovery resolves the row as after
        a crash.
        """
        tries = 0
        while True:
            try:
                # Lingering: the gateway is already free, so the next send's
                # 'submitting' starts a group within moments and this rides on
                # it (issue 17: one commit per message, not two); alone, it
                # waits at most the store's linger.  Still durable before the
                # status change is published.
                return await self._store.write(fn, linger=True)
            except StoreError as e:
                tries += 1
                if tries == 1:
                    log.warning("dispatcher.outcome_deferred", sms_id=message_id,
                                error=str(e), retry_s=STORE_RETRY_S)
            await asyncio.sleep(STORE_RETRY_S)
