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
* A message that could not be handed to any gateway for
  ``policy.expire_after_hours`` after it became due (its ``send_at``, else its
  creation) is moved to 'expired' and never sent: an SMS about a meeting
  yesterday does more harm than good.  This runs also while no gateway is up,
  in batches, and never touches messages in sending/submitting/sent.
* Crash recovery (``recover``) is explicit policy, see its docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from smsd.config import Policy
from smsd.core.events import EventBus, StatusChange
from smsd.core.router import Router
from smsd.errors import GatewayError, GatewayUnavailable
from smsd.gateways.base import OutboundJob
from smsd.store import Store, StoreError, from_ts, ts, utcnow

log = structlog.get_logger(__name__)

# Messages claimed per query: big enough to amortise one transaction over many
# messages, small enough that a claim never holds the writer lock for long.
BATCH = 200
# Messages being sent at once, all gateways together (memory bound: one task
# and one job each).  Dozens of modems at a few seconds per SMS need far fewer.
MAX_IN_FLIGHT = 256
# Longest sleep with nothing due: a safety net in case a wake-up is missed
# (e.g. a row written by another process such as `sqlite3`).
IDLE_POLL_S = 60.0
# How often to look again while no gateway is available (modem replugged,
# provider back): short enough that an admin sees the queue move at once.
NO_GATEWAY_POLL_S = 5.0

# Pause after the store refused a claim (disk full, file locked by a backup).
STORE_RETRY_S = 5.0

# How often waiting messages are checked against policy.expire_after_hours:
# the policy counts in hours, so a minute of lateness is invisible, and each
# check reads every waiting message once.
EXPIRY_CHECK_S = 60.0

INTERRUPTED = "interrupted during submit"

# When a message became due: its requested time, or its creation when it was
# submitted for "now" (or for a time already past).  ISO text compares as time.
_DUE_SINCE = "MAX(created_at, COALESCE(send_at, created_at))"
# A message queued again is sent whole: its parts forget the last attempt.
_RESET_PARTS_SQL = (
    "UPDATE message_parts SET state = 'pending', modem = NULL, reference = NULL, "
    "sent_at = NULL WHERE message_id = ?"
)


class _Hooks:
    """PartHooks bound to one message: each call is committed before it returns."""

    def __init__(self, store: Store, message_id: int, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._id = message_id
        self._clock = clock
        self.submitted_any = False
        self.modem: str | None = None

    async def submitting(self, part: int) -> None:
        now = ts(self._clock())
        first = not self.submitted_any
        mid = self._id

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO message_parts (message_id, part, state) VALUES (?, ?, 'submitting') "
                "ON CONFLICT (message_id, part) DO UPDATE SET state = 'submitting'",
                (mid, part),
            )
            if first:
                db.execute(
                    "UPDATE messages SET state = 'submitting', updated_at = ? "
                    "WHERE id = ? AND state = 'sending'",
                    (now, mid),
                )
                db.execute(
                    "INSERT INTO message_history (message_id, at, state, detail) "
                    "VALUES (?, ?, 'submitting', NULL)",
                    (mid, now),
                )

        await self._store.write(write)
        self.submitted_any = True

    async def sent(self, part: int, *, modem: str | None, reference: int | None) -> None:
        # Committed with this message's next write (the next part's
        # 'submitting', or the dispatcher's 'sent'), not on its own: one commit
        # fewer per part (issue 17).  A crash before it leaves the part
        # 'submitting', which recovery resolves by policy (invariant 2).
        params = (modem, reference, ts(self._clock()), self._id, part)
        self._store.write_soon(
            lambda db: db.execute(
                "UPDATE message_parts SET state = 'sent', modem = ?, reference = ?, sent_at = ? "
                "WHERE message_id = ? AND part = ?",
                params,
            )
        )
        if modem is not None:
            self.modem = modem


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
    ) -> None:
        self._store = store
        self._router = router
        self._bus = bus
        self._policy = policy
        self._clock = clock
        self._max_in_flight = max_in_flight
        self._batch = batch
        self._wake = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._in_flight = 0
        self._draining = False
        self._recovered = False
        self._next_expiry_check: datetime | None = None

    # ------------------------------------------------------------ control

    def wake(self) -> None:
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def drain(self, deadline: float) -> None:
        """Stop claiming work and wait up to ``deadline`` seconds for in-flight sends.

        Whatever is still in flight afterwards is cancelled with run(); parts
        already marked submitting are resolved by recover() at the next start.
        """
        self._draining = True
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(deadline):
                await self._idle.wait()
        log.info("dispatcher.drained", still_in_flight=self._in_flight)

    async def run(self) -> None:
        if not self._recovered:
            await self.recover()
        async with asyncio.TaskGroup() as tg:
            while not self._draining:
                if self._in_flight >= self._max_in_flight:
                    self._slot_free.clear()
                    await self._slot_free.wait()
                    continue
                self._wake.clear()
                now = self._clock()
                if self._next_expiry_check is None or now >= self._next_expiry_check:
                    try:
                        await self.expire(now)
                    except StoreError:
                        log.exception("dispatcher.expire_failed")
                    self._next_expiry_check = now + timedelta(seconds=EXPIRY_CHECK_S)
                if not self._router.available():
                    await self._sleep(NO_GATEWAY_POLL_S)
                    continue
                try:
                    claimed = await self._claim(
                        now, min(self._batch, self._max_in_flight - self._in_flight)
                    )
                except StoreError:
                    # Disk full or a locked file: the messages stay queued in
                    # the database; try again shortly rather than stop sending.
                    log.exception("dispatcher.claim_failed")
                    await self._sleep(STORE_RETRY_S)
                    continue
                for row in claimed:
                    self._in_flight += 1
                    self._idle.clear()
                    tg.create_task(self._send(row))
                if claimed:
                    await asyncio.sleep(0)  # let the new tasks start before the next claim
                    continue
                await self._sleep(await self._until_next_due(now))
        log.info("dispatcher.stopped")

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _until_next_due(self, now: datetime) -> float:
        row = await self._store.fetchone(
            "SELECT MIN(next_attempt_at) FROM messages WHERE state IN ('queued', 'scheduled')"
        )
        nxt = from_ts(row[0]) if row is not None else None
        if nxt is None:
            return IDLE_POLL_S
        return max(0.0, min(IDLE_POLL_S, (nxt - now).total_seconds()))

    # ------------------------------------------------------------ claiming

    async def _claim(self, now: datetime, limit: int) -> list[sqlite3.Row]:
        """Move due messages to 'sending'; any too old to send are expired instead."""
        now_s = ts(now)
        cutoff_s = self._expiry_cutoff(now)

        def write(db: sqlite3.Connection) -> tuple[list[sqlite3.Row], list[sqlite3.Row]]:
            due = db.execute(
                "SELECT id, user, sender, did, recipient, text, encoding, parts, attempts, "
                f"gateway, error, {_DUE_SINCE} AS due_since "
                "FROM messages WHERE state IN ('queued', 'scheduled') AND next_attempt_at <= ? "
                "ORDER BY next_attempt_at, id LIMIT ?",
                (now_s, limit),
            ).fetchall()
            rows: list[sqlite3.Row] = []
            expired: list[sqlite3.Row] = []
            for r in due:
                if cutoff_s is not None and r["due_since"] <= cutoff_s:
                    expired.append(r)
                else:
                    rows.append(r)
            self._write_expired(db, expired, now_s)
            if rows:
                db.executemany(
                    "UPDATE messages SET state = 'sending', updated_at = ? WHERE id = ?",
                    [(now_s, r["id"]) for r in rows],
                )
                db.executemany(
                    "INSERT INTO message_history (message_id, at, state, detail) "
                    "VALUES (?, ?, 'sending', ?)",
                    [(r["id"], now_s, f"attempt {r['attempts'] + 1}") for r in rows],
                )
            return rows, expired

        claimed, expired = await self._store.write(write)
        self._publish_expired(expired)
        return claimed

    # ------------------------------------------------------------- expiry

    def _expiry_cutoff(self, now: datetime) -> str | None:
        """Messages due at or before this time are expired; None = never expire."""
        hours = self._policy.expire_after_hours
        return None if hours <= 0 else ts(now - timedelta(hours=hours))

    async def expire(self, now: datetime) -> int:
        """Expire every waiting message due for longer than the policy allows.

        In batches of ``batch`` rows, each its own short transaction, so a
        queue of 100,000 stale messages neither loads into memory nor holds
        the writer lock long.  Returns how many messages were expired.
        """
        cutoff_s = self._expiry_cutoff(now)
        if cutoff_s is None:
            return 0
        now_s = ts(now)
        total = 0

        def write(db: sqlite3.Connection) -> list[sqlite3.Row]:
            rows = db.execute(
                "SELECT id, user, recipient, gateway, error FROM messages "
                f"WHERE state IN ('queued', 'scheduled') AND {_DUE_SINCE} <= ? LIMIT ?",
                (cutoff_s, self._batch),
            ).fetchall()
            self._write_expired(db, rows, now_s)
            return rows

        while True:
            batch = await self._store.write(write)
            self._publish_expired(batch)
            total += len(batch)
            if len(batch) < self._batch:
                return total
            await asyncio.sleep(0)  # let sends and submits in between batches

    def _expiry_error(self, last_error: str | None) -> str:
        text = f"not sent within {self._policy.expire_after_hours:g} h of being due"
        return text if not last_error else f"{text}; last error: {last_error}"

    def _write_expired(self, db: sqlite3.Connection, rows: list[sqlite3.Row], now_s: str) -> None:
        """Runs inside the caller's write; the state guard keeps in-flight messages safe."""
        if not rows:
            return
        errors = [(r["id"], self._expiry_error(r["error"])) for r in rows]
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

    def _publish_expired(self, rows: list[sqlite3.Row]) -> None:
        for r in rows:
            error = self._expiry_error(r["error"])
            log.warning("sms.expired", sms_id=r["id"], error=error)
            self._bus.publish_status(
                StatusChange(r["id"], "expired", r["recipient"], r["user"], r["gateway"], error)
            )

    # ------------------------------------------------------------- sending

    async def _send(self, row: sqlite3.Row) -> None:
        message_id = int(row["id"])
        hooks = _Hooks(self._store, message_id, self._clock)
        job = OutboundJob(
            message_id=message_id,
            recipient=row["recipient"],
            text=row["text"],
            sender=row["sender"],
            did=row["did"],
            parts=int(row["parts"]),
            encoding=row["encoding"],
        )
        try:
            try:
                gateway = await self._router.send(job, hooks)
            except GatewayUnavailable as e:
                await self._retry(row, str(e), count_attempt=False)
            except GatewayError as e:
                if e.temporary:
                    await self._retry(row, str(e), count_attempt=True)
                else:
                    await self._fail(row, str(e), gateway=e.gateway)
            except asyncio.CancelledError:
                if not hooks.submitted_any:
                    # Nothing left the daemon: put it straight back.
                    await asyncio.shield(
                        self._retry(row, "cancelled", count_attempt=False, delay_s=0.0)
                    )
                raise
            except Exception as e:
                log.exception("dispatcher.gateway_bug", sms_id=message_id)
                await self._retry(row, f"internal error: {e!r}", count_attempt=True)
            else:
                await self._mark_sent(row, gateway, hooks.modem)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The store refused the state update (disk full...): the row stays
            # in 'sending'/'submitting' and recover() resolves it at next start.
            log.exception("dispatcher.state_update_failed", sms_id=message_id)
        finally:
            self._in_flight -= 1
            self._slot_free.set()
            if self._in_flight == 0:
                self._idle.set()

    def backoff(self, attempts: int) -> float:
        """Seconds before attempt ``attempts + 1``: base * 2^(attempts-1), capped."""
        p = self._policy
        return float(min(p.retry_max_s, p.retry_base_s * 2 ** max(0, attempts - 1)))

    async def _retry(
        self, row: sqlite3.Row, error: str, *, count_attempt: bool, delay_s: float | None = None
    ) -> None:
        message_id = int(row["id"])
        attempts = int(row["attempts"]) + (1 if count_attempt else 0)
        if count_attempt and attempts >= self._policy.max_attempts:
            await self._fail(row, f"{error} (after {attempts} attempts)", gateway=None,
                             attempts=attempts)
            return
        now = self._clock()
        if delay_s is not None:
            delay = delay_s
        elif count_attempt:
            delay = self.backoff(attempts)
        else:
            delay = self._policy.retry_base_s
        due_s = ts(now + timedelta(seconds=delay))
        now_s = ts(now)

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE messages SET state = 'queued', attempts = ?, next_attempt_at = ?, "
                "error = ?, updated_at = ? WHERE id = ?",
                (attempts, due_s, error, now_s, message_id),
            )
            db.execute(_RESET_PARTS_SQL, (message_id,))
            db.execute(
                "INSERT INTO message_history (message_id, at, state, detail) "
                "VALUES (?, ?, 'queued', ?)",
                (message_id, now_s, f"retry at {due_s}: {error}"),
            )

        await self._store.write(write)
        log.info("sms.retry", sms_id=message_id, attempts=attempts, delay_s=delay, error=error)
        self._wake.set()

    async def _fail(
        self, row: sqlite3.Row, error: str, *, gateway: str | None, attempts: int | None = None
    ) -> None:
        message_id = int(row["id"])
        now_s = ts(self._clock())

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE messages SET state = 'failed', error = ?, gateway = COALESCE(?, gateway), "
                "attempts = COALESCE(?, attempts + 1), updated_at = ? WHERE id = ?",
                (error, gateway, attempts, now_s, message_id),
            )
            db.execute(
                "UPDATE message_parts SET state = 'failed' WHERE message_id = ? "
                "AND state IN ('pending', 'submitting')",
                (message_id,),
            )
            db.execute(
                "INSERT INTO message_history (message_id, at, state, detail) "
                "VALUES (?, ?, 'failed', ?)",
                (message_id, now_s, error),
            )

        await self._store.write(write)
        log.warning("sms.failed", sms_id=message_id, gateway=gateway, error=error)
        self._bus.publish_status(
            StatusChange(message_id, "failed", row["recipient"], row["user"], gateway, error)
        )

    async def _mark_sent(self, row: sqlite3.Row, gateway: str, modem: str | None) -> None:
        """Sent; and if status reports beat us here, the final state they imply.

        The inbox only moves 'sent' messages on, so a report that arrives
        while the message is still 'submitting' is kept on its part and
        applied here, in order: sent, then delivered/failed.
        """
        message_id = int(row["id"])
        now_s = ts(self._clock())
        detail = gateway if modem is None else f"{gateway} via {modem}"

        def write(db: sqlite3.Connection) -> list[tuple[str, str | None]]:
            current = db.execute(
                "SELECT state FROM messages WHERE id = ?", (message_id,)
            ).fetchone()
            if current is None or current[0] not in ("sending", "submitting"):
                return []
            db.execute(
                "UPDATE message_parts SET state = 'sent', sent_at = COALESCE(sent_at, ?) "
                "WHERE message_id = ? AND state IN ('pending', 'submitting')",
                (now_s, message_id),
            )
            changes: list[tuple[str, str | None]] = [("sent", None)]
            parts = db.execute(
                "SELECT part, state, report_status FROM message_parts WHERE message_id = ? "
                "ORDER BY part",
                (message_id,),
            ).fetchall()
            bad = [p for p in parts if p["state"] in ("failed", "expired")]
            if bad:
                changes.append(
                    (
                        bad[0]["state"],
                        f"delivery report for part {bad[0]['part']}: "
                        f"TP-ST 0x{(bad[0]['report_status'] or 0):02X}",
                    )
                )
            elif parts and all(p["state"] == "delivered" for p in parts):
                changes.append(("delivered", None))
            final, error = changes[-1]
            db.execute(
                "UPDATE messages SET state = ?, gateway = ?, modem = ?, error = ?, "
                "attempts = attempts + 1, updated_at = ? WHERE id = ?",
                (final, gateway, modem, error, now_s, message_id),
            )
            db.executemany(
                "INSERT INTO message_history (message_id, at, state, detail) VALUES (?,?,?,?)",
                [(message_id, now_s, state, err or detail) for state, err in changes],
            )
            return changes

        changes = await self._store.write(write)
        log.info("sms.sent", sms_id=message_id, gateway=gateway, modem=modem)
        for state, err in changes:
            self._bus.publish_status(
                StatusChange(message_id, state, row["recipient"], row["user"], gateway, err)
            )

    # ------------------------------------------------------------ recovery

    async def recover(self) -> None:
        """Resolve messages a crash left in 'sending' or 'submitting'.

        * No part was marked submitting: nothing left the daemon, so the
          message is simply queued again.
        * Every part is marked sent: the crash came after the last part was
          accepted, so the message is sent.
        * Otherwise some parts may have reached the network.  With
          ``policy.submitting_after_crash == "resend"`` the message is queued
          again and sent whole (a phone cannot join new parts to old ones:
          each send gets a fresh concatenation reference), which may duplicate
          exactly this message.  With ``"fail"`` it fails with the error
          "interrupted during submit" and nothing is sent twice.
        """
        now = self._clock()
        now_s = ts(now)
        requeued: list[int] = []
        sent: list[int] = []
        failed: list[sqlite3.Row] = []
        resend = self._policy.submitting_after_crash != "fail"
        async with self._store.transaction() as db:
            async with db.execute(
                "SELECT m.id, m.user, m.recipient, m.gateway, "
                "SUM(p.state IN ('submitting', 'sent', 'delivered')) AS touched, "
                "SUM(p.state IN ('sent', 'delivered')) AS done, COUNT(p.part) AS total "
                "FROM messages m LEFT JOIN message_parts p ON p.message_id = m.id "
                "WHERE m.state IN ('sending', 'submitting') GROUP BY m.id"
            ) as cur:
                rows = list(await cur.fetchall())
            for r in rows:
                if r["total"] and r["done"] == r["total"]:
                    sent.append(r["id"])
                elif not r["touched"] or resend:
                    requeued.append(r["id"])
                else:
                    failed.append(r)
            await db.executemany(
                "UPDATE messages SET state = 'queued', next_attempt_at = ?, updated_at = ? "
                "WHERE id = ?",
                ((now_s, now_s, i) for i in requeued),
            )
            await db.executemany(_RESET_PARTS_SQL, ((i,) for i in requeued))
            await db.executemany(
                "UPDATE messages SET state = 'sent', updated_at = ? WHERE id = ?",
                ((now_s, i) for i in sent),
            )
            await db.executemany(
                "UPDATE messages SET state = 'failed', error = ?, updated_at = ? WHERE id = ?",
                ((INTERRUPTED, now_s, r["id"]) for r in failed),
            )
            await db.executemany(
                "UPDATE message_parts SET state = 'failed' WHERE message_id = ? "
                "AND state IN ('pending', 'submitting')",
                ((r["id"],) for r in failed),
            )
            history = (
                [(i, now_s, "queued", "recovered after a crash: queued again") for i in requeued]
                + [(i, now_s, "sent", "recovered after a crash: every part was sent")
                   for i in sent]
                + [(r["id"], now_s, "failed", INTERRUPTED) for r in failed]
            )
            await db.executemany(
                "INSERT INTO message_history (message_id, at, state, detail) VALUES (?,?,?,?)",
                history,
            )
        self._recovered = True
        if rows:
            log.warning(
                "dispatcher.recovered",
                requeued=len(requeued),
                sent=len(sent),
                failed=len(failed),
                policy=self._policy.submitting_after_crash,
            )
        for r in failed:
            self._bus.publish_status(
                StatusChange(r["id"], "failed", r["recipient"], r["user"], r["gateway"],
                             INTERRUPTED)
            )
