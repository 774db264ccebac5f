"""Inbound SMS and delivery reports: store first, then tell anyone.

The order is the point.  A modem part is committed before ``sms_received``
returns (only then does the device delete it from the SIM); a whole message is
committed before it is published on the EventBus; a part read twice (crash
between commit and SIM delete) is recognised and not stored or published
again.  Blocked senders are stored with route_state 'blocked' and never
published.  STOP-type keywords record an opt-out that the outbox honours.

Delivery reports (TS 23.040 9.2.2.3) carry only the TP-MR of the SUBMIT they
report on, which is one octet and wraps every 256 messages per modem, so a
report is matched on (modem, recipient, TP-MR) to the most recently sent part
within REPORT_MATCH_WINDOW.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal

import structlog

from smsd.codec.pdu import DeliverPdu, StatusReportPdu
from smsd.codec.reassembly import CompleteSms, PartKey, Reassembler, join_parts
from smsd.core.events import EventBus, InboundSms, StatusChange
from smsd.errors import ValidationError
from smsd.store import Store, ts, utcnow
from smsd.store.inbound import (
    MessageChange,
    NewInbound,
    PartReport,
    apply_gateway_report,
    apply_part_report,
    insert_inbound,
)
from smsd.store.parts import SqlitePartStore

log = structlog.get_logger(__name__)

# Opt-out and opt-in keywords (CTIA messaging principles; the ones the issue
# names), matched on the whole trimmed text, case-insensitively.
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "UNSTOP"})

# A status report older than this cannot be about a part: SMSCs keep trying
# for at most a few days (the default validity period is commonly 1-7 days).
REPORT_MATCH_WINDOW = timedelta(days=7)
# Concatenated parts waiting for their siblings are released with a gap marker
# after this long (TS 23.040 leaves it to the receiver).
REASSEMBLY_TIMEOUT = timedelta(hours=24)
# How often run() releases overdue partial messages and purges old done parts.
HOUSEKEEPING_INTERVAL_S = 600.0
# Done parts are kept this long to recognise a part read again from a SIM.
DONE_PARTS_KEEP = timedelta(days=7)

# TP-ST (TS 23.040 9.2.3.15) "SM Validity Period Expired".
TP_ST_VALIDITY_EXPIRED = 0x46


def _status(change: MessageChange) -> StatusChange:
    return StatusChange(change.id, change.state, change.recipient, change.user, change.gateway,
                        change.error)


def _keyword(text: str) -> str:
    return text.strip().upper()


def _dedupe_key(modem: str, sender: str, timestamp: datetime, text: str) -> str:
    h = hashlib.sha256()
    for piece in (modem, sender, timestamp.isoformat(), text):
        h.update(piece.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


def _whole_key(gateway: str, key: str) -> str:
    """A caller's key in its own namespace: it can never equal a modem key (bare hex)."""
    h = hashlib.sha256()
    for piece in (gateway, key):
        h.update(piece.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return "whole:" + h.hexdigest()


class Inbox:
    """ModemEvents for the pool, plus ``receive`` for trunk and AGI messages."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        *,
        own_number: Callable[[str], str | None] | None = None,
        reassembly_timeout: timedelta = REASSEMBLY_TIMEOUT,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._bus = bus
        self._own_number = own_number or (lambda modem: None)
        self._clock = clock
        self._parts = SqlitePartStore(store)
        self._timeout = reassembly_timeout
        self._reassembler = Reassembler(self._parts, timeout=reassembly_timeout)
        # One modem message at a time: reassembly, its deferred drops and the
        # commit of the whole message must not interleave.
        self._lock = asyncio.Lock()
        self.modem_states: dict[str, tuple[str, str | None]] = {}

    def set_own_number(self, lookup: Callable[[str], str | None]) -> None:
        """The modem -> DID lookup (the pool is built after the inbox)."""
        self._own_number = lookup

    # ------------------------------------------------------ whole messages

    async def receive(
        self,
        sender: str,
        recipient: str | None,
        text: str,
        *,
        gateway: str,
        modem: str | None = None,
        dedupe_key: str | None = None,
    ) -> int:
        """Commit one whole message (trunk, AGI), then publish it unless blocked.

        ``dedupe_key`` names the message as its source knows it (the SIP
        Call-ID, a key the dialplan made): the dialplan calls sms-receive a
        second time when it did not hear the first answer, and a repeated key
        returns the id committed the first time without storing or
        publishing again.  None = no key, every call is a new message.
        """
        sender = sender.strip()
        if not sender:
            raise ValidationError("inbound message without a sender")
        key = None if dedupe_key is None else _whole_key(gateway, dedupe_key)
        msg_id, _ = await self._store_inbound(
            sender, recipient, text, gateway=gateway, modem=modem, sent_at=None,
            dedupe_key=key,
        )
        return msg_id

    async def _store_inbound(
        self,
        sender: str,
        recipient: str | None,
        text: str,
        *,
        gateway: str,
        modem: str | None,
        sent_at: datetime | None,
        parts: int = 1,
        complete: bool = True,
        dedupe_key: str | None = None,
        drops: list[PartKey] | None = None,
    ) -> tuple[int, bool]:
        """(id, new): new is False when the same message was stored before."""
        now = self._clock()
        now_s = ts(now)
        blocked = await self._store.is_blocked(sender)
        route_state = "blocked" if blocked else "pending"
        word = _keyword(text)
        keys = [(k.modem, k.sender, k.reference, k.parts) for k in drops or []]

        new_msg = NewInbound(
            sender=sender, recipient=recipient, text=text, received_at=now_s,
            sent_at=ts(sent_at) if sent_at else None, gateway=gateway, modem=modem,
            parts=parts, complete=bool(complete), route_state=route_state,
            dedupe_key=dedupe_key,
        )
        # The opt-out is per company number: '' = DID unknown, which holds for
        # every sender; a START to an unknown DID clears all.
        opt: tuple[Literal["out", "in"], str] | None = (
            ("out", word) if word in STOP_WORDS else ("in", word) if word in START_WORDS
            else None)
        msg_id, new = await self._store.write(
            lambda db: insert_inbound(db, new_msg, done_parts=keys, opt=opt))
        if not new:
            log.info("sms.inbound_duplicate", sms_id=msg_id, modem=modem)
            return msg_id, False
        log.info(
            "sms.received",
            sms_id=msg_id,
            gateway=gateway,
            modem=modem,
            parts=parts,
            complete=complete,
            blocked=blocked,
        )
        if word in STOP_WORDS or word in START_WORDS:
            log.info("sms.opt_out" if word in STOP_WORDS else "sms.opt_in", keyword=word)
        if not blocked:
            self._bus.publish_inbound(
                InboundSms(msg_id, sender, recipient, text, now, gateway, modem)
            )
        return msg_id, True

    # ------------------------------------------------------- modem events

    async def sms_received(self, modem: str, sms: DeliverPdu) -> None:
        async with self._lock:
            done = await self._reassembler.add(modem, sms, self._clock())
            drops = self._parts.take_drops()
            if done is not None:
                await self._store_complete(done, drops)

    async def _store_complete(self, done: CompleteSms, drops: list[PartKey]) -> int:
        msg_id, _ = await self._store_inbound(
            done.sender,
            self._own_number(done.modem),
            done.text,
            gateway="gsm",
            modem=done.modem,
            sent_at=done.timestamp,
            parts=done.parts,
            complete=done.complete,
            dedupe_key=_dedupe_key(done.modem, done.sender, done.timestamp, done.text),
            drops=drops,
        )
        return msg_id

    def modem_state(self, modem: str, state: str, detail: str | None) -> None:
        # Not logged here: the modem driver logs each change once, with its path.
        self.modem_states[modem] = (state, detail)

    async def status_report(self, modem: str, report: StatusReportPdu) -> None:
        now = self._clock()
        now_s = ts(now)
        window_s = ts(now - REPORT_MATCH_WINDOW)
        digits = report.recipient.lstrip("+").lstrip("0") or report.recipient

        if not report.final:
            part_state: str | None = None
        elif report.delivered:
            part_state = "delivered"
        elif report.status == TP_ST_VALIDITY_EXPIRED:
            part_state = "expired"
        else:
            part_state = "failed"
        part_report = PartReport(
            modem=modem, recipient=report.recipient, digits=digits,
            reference=report.message_reference, status=report.status, scts=ts(report.scts),
            discharge=ts(report.discharge), part_state=part_state,
        )
        # Lingering (issue 17): it rides on the next group commit (a send's
        # 'submitting' on a busy modem) instead of one of its own; the caller
        # sends +CNMA only once it returned, so the report is durable first.
        result = await self._store.write(
            lambda db: apply_part_report(db, part_report, now_s, window_s), linger=True)
        if result is False:
            log.info(
                "sms.report_unmatched", modem=modem, mr=report.message_reference,
                status=report.status,
            )
        elif isinstance(result, MessageChange):
            log.info("sms." + result.state, sms_id=result.id, modem=modem)
            self._bus.publish_status(_status(result))

    async def gateway_report(self, message_id: int, *, gateway: str, state: str,
                             detail: str) -> bool:
        """A whole-message delivery report from a trunk (no TP-MR: the carrier names our id).

        ``state`` is delivered, failed or expired.  Applied only to a message
        that ``gateway`` sent and that is still ``sent``, so a forged or late
        report cannot touch another gateway's message or undo a final state.
        Returns whether it changed anything.
        """
        if state not in ("delivered", "failed", "expired"):
            raise ValidationError(f"unknown delivery state {state!r}")
        now_s = ts(self._clock())

        change = await self._store.write(
            lambda db: apply_gateway_report(db, message_id, gateway, state, detail, now_s),
            linger=True)    # rides on the next group, as a modem's report does
        if change is None:
            log.info("sms.report_unmatched", sms_id=message_id, gateway=gateway, state=state)
            return False
        log.info("sms." + state, sms_id=message_id, gateway=gateway)
        self._bus.publish_status(_status(change))
        return True

    # ------------------------------------------------------ housekeeping

    async def recover(self) -> int:
        """Store messages whose parts were all committed before a crash; return how many."""
        count = 0
        async with self._lock:
            for key in await self._parts.complete_keys():
                held = await self._parts.parts(key)
                if len(held) >= key.parts:
                    await self._store_complete(join_parts(key, held), [key])
                    count += 1
        if count:
            log.warning("inbox.recovered", messages=count)
        return count

    async def expire(self) -> int:
        """Release partial messages past the reassembly timeout, with gap markers.

        Done key by key (not through Reassembler.expire, whose results do not
        name their key) so that each message and the closing of its parts are
        one commit.
        """
        released = 0
        async with self._lock:
            for key in await self._parts.older_than(self._clock() - self._timeout):
                held = await self._parts.parts(key)
                if held:
                    await self._store_complete(join_parts(key, held), [key])
                    released += 1
        if released:
            log.warning("inbox.released_incomplete", messages=released)
        return released

    async def run(self) -> None:
        """Recover, then release overdue partial messages and purge, until cancelled."""
        await self.recover()
        while True:
            try:
                await self.expire()
                await self._parts.purge(self._clock() - DONE_PARTS_KEEP)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("inbox.housekeeping_failed")
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)
