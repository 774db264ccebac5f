"""Messages that waited too long to be sent become 'expired' and are never sent.

A message that could not be handed to any gateway for
``policy.expire_after_hours`` after it became due (its ``send_at``, else its
creation) is moved to 'expired': an SMS about a meeting yesterday does more
harm than good.  This runs also while no gateway is up, in batches, and never
touches messages in sending/submitting/sent (the state guard in every write).
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime, timedelta

import structlog

from smsd.config import Policy
from smsd.core.events import EventBus, StatusChange
from smsd.store import Store, ts

log = structlog.get_logger(__name__)

# When a message became due: its requested time, or its creation when it was
# submitted for "now" (or for a time already past).  ISO text compares as time.
DUE_SINCE = ("CASE WHEN send_at IS NOT NULL AND send_at > created_at THEN send_at "
             "ELSE created_at END")


class Expiry:
    """The expiry rule for one dispatcher: which rows, what error, how published."""

    def __init__(self, store: Store, bus: EventBus, policy: Policy, batch: int) -> None:
        self._store = store
        self._bus = bus
        self._policy = policy
        self._batch = batch

    def cutoff(self, now: datetime) -> str | None:
        """Messages due at or before this time are expired; None = never expire."""
        hours = self._policy.expire_after_hours
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

        def write(db: sqlite3.Connection) -> list[sqlite3.Row]:
            rows = db.execute(
                "SELECT id, user, recipient, gateway, error FROM messages "
                f"WHERE state IN ('queued', 'scheduled') AND {DUE_SINCE} <= ? LIMIT ?",
                (cutoff_s, self._batch),
            ).fetchall()
            self.write_expired(db, rows, now_s)
            return rows

        while True:
            batch = await self._store.write(write)
            self.publish(batch)
            total += len(batch)
            if len(batch) < self._batch:
                return total
            await asyncio.sleep(0)  # let sends and submits in between batches

    def error(self, last_error: str | None) -> str:
        text = f"not sent within {self._policy.expire_after_hours:g} h of being due"
        return text if not last_error else f"{text}; last error: {last_error}"

    def write_expired(self, db: sqlite3.Connection, rows: list[sqlite3.Row], now_s: str) -> None:
        """Runs inside the caller's write; the state guard keeps in-flight messages safe."""
        if not rows:
            return
        errors = [(r["id"], self.error(r["error"])) for r in rows]
        db.executemany(
            "UPDATE messages SET state = 'expired', error = ?, updated_at = ? "
            "WHERE id = ? AND state IN ('queued', 'scheduled')",
            [(error, now_s, mid) for mid, error in errors],
        )
        db.executemany(
            "UPDATE message_parts SET state = 'expired' WHERE message_id = ? "
            "AND state IN ('pending', 'submitting')",
            [(r["id"],) for r in rows],
        )
        db.executemany(
            "INSERT INTO message_history (message_id, at, state, detail) "
            "VALUES (?, ?, 'expired', ?)",
            [(mid, now_s, error) for mid, error in errors],
        )

    def publish(self, rows: list[sqlite3.Row]) -> None:
        for r in rows:
            error = self.error(r["error"])
            log.warning("sms.expired", sms_id=r["id"], error=error)
            self._bus.publish_status(
                StatusChange(r["id"], "expired", r["recipient"], r["user"], r["gateway"], error)
            )
