"""Messages that waited too long to be sent become 'expired' and are never sent.

A message that could not be handed to any gateway for
``policy.expire_after_hours`` after it became due (its ``send_at``, else its
creation) is moved to 'expired': an SMS about a meeting yesterday does more
harm than good.  This runs also while no gateway is up, in batches, and never
touches messages in sending/submitting/sent (the state guard in every write).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import structlog

from smsd.config import Policy
from smsd.core.events import EventBus, StatusChange
from smsd.store import Store, ts
from smsd.store.claims import StaleMessage, expire_stale

log = structlog.get_logger(__name__)


class Expiry:
    """The expiry rule for one dispatcher: which rows, what error, how published."""

    def __init__(self, store: Store, bus: EventBus, policy: Callable[[], Policy],
                 batch: int) -> None:
        # A getter, not a Policy: a reloaded config (SIGHUP) changes the rule at once.
        self._store = store
        self._bus = bus
        self._policy = policy
        self._batch = batch

    def cutoff(self, now: datetime) -> str | None:
        """Messages due at or before this time are expired; None = never expire."""
        hours = self._policy().expire_after_hours
        return None if hours <= 0 else ts(now - timedelta(hours=hours))

    async def expire(self, now: datetime) -> int:
        """Expire every waiting message due for longer than the policy allows.

        In batches of ``batch`` rows, each its own short transaction, so a
        queue of 100,000 stale messages neither loads into memory nor holds
        the writer lock long.  Returns how many messages were expired.
        """
        cutoff_s = self.cutoff(now)
        if cutoff_s is None:
            return 0
        now_s = ts(now)
        total = 0

        while True:
            batch = await self._store.write(
                lambda db: expire_stale(db, cutoff_s, now_s, self._batch, self.error))
            self.publish(batch)
            total += len(batch)
            if len(batch) < self._batch:
                return total
            await asyncio.sleep(0)  # let sends and submits in between batches

    def error(self, last_error: str | None) -> str:
        text = f"not sent within {self._policy().expire_after_hours:g} h of being due"
        return text if not last_error else f"{text}; last error: {last_error}"

    def publish(self, rows: Sequence[StaleMessage]) -> None:
        for r in rows:
            error = self.error(r.error)
            log.warning("sms.expired", sms_id=r.id, error=error)
            self._bus.publish_status(
                StatusChange(r.id, "expired", r.recipient, r.user, r.gateway, error)
            )
