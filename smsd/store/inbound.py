"""Inbound SMS and delivery reports as the store keeps them.

smsd.core.inbox decides (blocked or not, STOP or START, what a TP-ST means)
and publishes; the functions here are its writes, each run inside the
caller's ``Store.write`` so that a message, the closing of its parts and its
opt-out are one commit.  The kite-sms procedure (smsd.dialplan) reads a
message and moves its ``route_state`` through the async functions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from smsd.store.history import CLEAR_ATTEMPT, flush
from smsd.store.parts import MARK_DONE_SQL
from smsd.store.store import Store


@dataclass(frozen=True)
class NewInbound:
    """One whole inbound message to store."""

    sender: str
    recipient: str | None
    text: str
    received_at: str          # store text (timefmt.ts)
    sent_at: str | None       # the SMSC time stamp, when a modem gave one
    gateway: str
    modem: str | None
    parts: int
    complete: bool
    route_state: str          # 'pending', or 'blocked' for a blocked sender
    dedupe_key: str | None


@dataclass(frozen=True)
class MessageChange:
    """An outbound message that a delivery report moved on, for the caller to publish."""

    id: int
    state: str
    recipient: str
    user: str | None
    gateway: str | None
    error: str | None


@dataclass(frozen=True)
class InboundRecord:
    """A stored inbound message with its routing state."""

    id: int
    sender: str
    recipient: str | None
    text: str
    received_at: str
    gateway: str
    modem: str | None
    route_state: str
    conversation_id: int | None


def insert_inbound(
    db: sqlite3.Connection, msg: NewInbound, *,
    done_parts: Sequence[tuple[str, str, int, int]] = (),
    opt: tuple[Literal["out", "in"], str] | None = None,
) -> tuple[int, bool]:
    """Store ``msg`` unless its ``dedupe_key`` is there already; (id, new).

    ``done_parts`` (modem, sender, reference, parts) are the multipart keys it
    was joined from, closed in the same commit.  ``opt`` = ("out", keyword)
    records an opt-out of the sender from the DID ('' when unknown, which
    holds for every DID); ("in", keyword) lifts it (every one of the sender's
    when the DID is unknown).  Both only for a new message.
    """
    inserted = db.execute(
        "INSERT INTO inbound (sender, recipient, text, received_at, sent_at, "
        "gateway, modem, parts, complete, route_state, dedupe_key) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
        (
            msg.sender, msg.recipient, msg.text, msg.received_at, msg.sent_at,
            msg.gateway, msg.modem, msg.parts, bool(msg.complete), msg.route_state,
            msg.dedupe_key,
        ),
    ).fetchone()
    new = inserted is not None
    if inserted is not None:
        msg_id = int(inserted[0])
    else:
        msg_id = int(db.execute(
            "SELECT id FROM inbound WHERE dedupe_key = ?", (msg.dedupe_key,)
        ).fetchone()[0])
    if done_parts:
        db.executemany(MARK_DONE_SQL, done_parts)
    # The opt-out is per company number (migration 0004).
    if new and opt is not None and opt[0] == "out":
        db.execute(
            "INSERT INTO opt_outs (number, did, keyword, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (number, did) DO UPDATE SET "
            "keyword = excluded.keyword, created_at = excluded.created_at",
            (msg.sender, msg.recipient or "", opt[1], msg.received_at),
        )
    elif new and opt is not None:
        if msg.recipient:
            db.execute("DELETE FROM opt_outs WHERE number = ? AND did IN (?, '')",
                       (msg.sender, msg.recipient))
        else:
            db.execute("DELETE FROM opt_outs WHERE number = ?", (msg.sender,))
    return msg_id, new


@dataclass(frozen=True)
class PartReport:
    """A status report (TS 23.040 9.2.2.3) as the modem gave it."""

    modem: str
    recipient: str
    digits: str                # the recipient without '+' and leading zeros: a suffix to match
    reference: int             # TP-MR of the SUBMIT it reports on
    status: int                # TP-ST
    scts: str
    discharge: str
    part_state: str | None     # delivered / expired / failed; None while the SMSC still tries


def apply_part_report(db: sqlite3.Connection, report: PartReport, now_s: str,
                      window_s: str) -> MessageChange | bool | None:
    """Record ``report`` against the most recently sent part it matches (since ``window_s``).

    False: no part matched (the report is kept, unmatched).  None: the part
    took it and the message did not change (not final, parts still out, or
    the message still 'sending'/'submitting': the dispatcher applies the
    part's news when it marks it sent).  Otherwise the message's change.
    """
    row = db.execute(
        "SELECT p.message_id, p.part, m.recipient, m.user, m.gateway "
        "FROM message_parts p JOIN messages m ON m.id = p.message_id "
        "WHERE p.modem = ? AND p.reference = ? AND p.sent_at >= ? "
        "AND (m.recipient = ? OR substr(m.recipient, "
        "length(m.recipient) - length(CAST(? AS TEXT)) + 1) = ?) "
        "ORDER BY p.sent_at DESC LIMIT 1",
        (report.modem, report.reference, window_s, report.recipient, report.digits,
         report.digits),
    ).fetchone()
    db.execute(
        "INSERT INTO delivery_reports (modem, recipient, reference, status, scts, "
        "discharge, received_at, message_id, part) VALUES (?,?,?,?,?,?,?,?,?)",
        (
            report.modem, report.recipient, report.reference, report.status,
            report.scts, report.discharge, now_s,
            row["message_id"] if row else None, row["part"] if row else None,
        ),
    )
    if row is None:
        return False
    mid, part = int(row["message_id"]), int(row["part"])
    part_state = report.part_state
    if part_state is None:
        db.execute(
            "UPDATE message_parts SET report_status = ?, report_at = ? "
            "WHERE message_id = ? AND part = ?",
            (report.status, now_s, mid, part),
        )
        return None
    db.execute(
        "UPDATE message_parts SET state = ?, report_status = ?, report_at = ? "
        "WHERE message_id = ? AND part = ?",
        (part_state, report.status, now_s, mid, part),
    )
    # A message still 'sending'/'submitting' keeps the part's news for
    # the dispatcher, which applies it right after marking it sent.
    if part_state == "delivered":
        # Delivered once no part is left undelivered: checked in the UPDATE
        # itself, one statement fewer per report (issue 17).  Its history row
        # stays in the message (smsd.store.history).
        new_state, error = "delivered", None
        cur = db.execute(
            "UPDATE messages SET state = 'delivered', updated_at = ?, hist_delivered_at = ?, "
            "hist_delivered_detail = ? "
            "WHERE id = ? AND state = 'sent' AND NOT EXISTS (SELECT 1 FROM message_parts "
            "WHERE message_id = ? AND state != 'delivered')",
            (now_s, now_s, f"report on {report.modem} mr {report.reference}", mid, mid),
        )
        if cur.rowcount != 1:
            return None
        return MessageChange(mid, new_state, row["recipient"], row["user"], row["gateway"],
                             error)
    new_state = part_state
    error = f"delivery report for part {part}: TP-ST 0x{report.status:02X}"
    # An explicit row: the attempt's rows kept in the message go before it.
    flush(db, mid, " AND m.state = 'sent'")
    cur = db.execute(
        f"UPDATE messages SET state = ?, error = ?, updated_at = ?, {CLEAR_ATTEMPT} "
        "WHERE id = ? AND state = 'sent'",
        (new_state, error, now_s, mid),
    )
    if cur.rowcount != 1:
        return None
    db.execute(
        "INSERT INTO message_history (message_id, at, state, detail) VALUES (?, ?, ?, ?)",
        (mid, now_s, new_state, error),
    )
    return MessageChange(mid, new_state, row["recipient"], row["user"], row["gateway"], error)


def apply_gateway_report(db: sqlite3.Connection, message_id: int, gateway: str, state: str,
                         detail: str, now_s: str) -> MessageChange | None:
    """A whole-message report: only for a message ``gateway`` sent that is still 'sent'."""
    row = db.execute(
        "SELECT recipient, user FROM messages WHERE id = ? AND gateway = ? "
        "AND state = 'sent'", (message_id, gateway),
    ).fetchone()
    if row is None:
        return None
    db.execute("UPDATE message_parts SET state = ?, report_at = ? WHERE message_id = ?",
               (state, now_s, message_id))
    error = None if state == "delivered" else detail
    # An explicit row: the attempt's rows kept in the message go before it.
    flush(db, message_id)
    db.execute(
        "UPDATE messages SET state = ?, error = COALESCE(?, error), updated_at = ?, "
        f"{CLEAR_ATTEMPT} WHERE id = ?", (state, error, now_s, message_id),
    )
    db.execute(
        "INSERT INTO message_history (message_id, at, state, detail) VALUES (?, ?, ?, ?)",
        (message_id, now_s, state, detail),
    )
    return MessageChange(message_id, state, row["recipient"], row["user"], gateway, error)


# --- routing (the kite-sms procedure, conversations) ----------------------------------


async def pending_ids(store: Store) -> list[int]:
    """Inbound messages not routed yet, oldest first."""
    rows = await store.fetchall(
        "SELECT id FROM inbound WHERE route_state = 'pending' ORDER BY id")
    return [int(r["id"]) for r in rows]


async def load(store: Store, sms_id: int) -> InboundRecord | None:
    """The message and its routing state, in one read."""
    row = await store.fetchone(
        "SELECT id, sender, recipient, text, received_at, gateway, modem, route_state,"
        " conversation_id FROM inbound WHERE id = ?", (sms_id,))
    if row is None:
        return None
    conv = row["conversation_id"]
    return InboundRecord(
        id=int(row["id"]), sender=row["sender"], recipient=row["recipient"], text=row["text"],
        received_at=row["received_at"], gateway=row["gateway"], modem=row["modem"],
        route_state=str(row["route_state"]),
        conversation_id=None if conv is None else int(conv))


async def set_route_state(store: Store, sms_id: int, state: str) -> None:
    async with store.transaction() as db:
        await db.execute("UPDATE inbound SET route_state = ? WHERE id = ?", (state, sms_id))


async def mark_routed(store: Store, sms_id: int, conv_id: int) -> None:
    """The message is in conversation ``conv_id`` (delivered to its participants)."""
    async with store.transaction() as db:
        await db.execute(
            "UPDATE inbound SET route_state = 'routed', conversation_id = ? WHERE id = ?",
            (conv_id, sms_id),
        )
