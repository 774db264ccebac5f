"""Each phone's copy of an inbound SMS: delivered (inbound_deliveries), or waiting
and given up (inbound_delivery_waits).

smsd.core.deliveries decides when to try and when to give up; these are its
reads and writes, one short query or transaction each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from smsd.store.store import Store


@dataclass(frozen=True)
class WaitingCopy:
    """A copy not yet taken by its phone, with the message it carries."""

    inbound_id: int
    extension: str
    endpoint: str
    next_attempt_at: str
    sender: str
    text: str
    received_at: str


@dataclass(frozen=True)
class DeliveredCopy:
    inbound_id: int
    extension: str
    delivered_at: str


@dataclass(frozen=True)
class WaitState:
    inbound_id: int
    extension: str
    attempts: int
    last_error: str | None
    next_attempt_at: str
    gave_up: bool


async def delivered_to(store: Store, sms_id: int) -> set[str]:
    """The extensions whose phone took message ``sms_id``."""
    rows = await store.fetchall(
        "SELECT extension FROM inbound_deliveries WHERE inbound_id = ?", (sms_id,))
    return {str(r["extension"]) for r in rows}


async def record_delivered(store: Store, sms_id: int, extension: str, at_s: str) -> None:
    """``extension``'s phone took the message: delivered, and no longer waiting."""
    async with store.transaction() as db:
        await db.execute(
            "INSERT INTO inbound_deliveries (inbound_id, extension, delivered_at)"
            " VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (sms_id, extension, at_s))
        await db.execute(
            "DELETE FROM inbound_delivery_waits WHERE inbound_id = ? AND extension = ?",
            (sms_id, extension))


async def attempts_of(store: Store, sms_id: int, extension: str) -> int:
    """Failed attempts so far of ``extension``'s copy (0 when it never failed)."""
    row = await store.fetchone(
        "SELECT attempts FROM inbound_delivery_waits WHERE inbound_id = ? AND extension = ?",
        (sms_id, extension))
    return int(row["attempts"]) if row is not None else 0


async def record_waiting(store: Store, sms_id: int, extension: str, endpoint: str, *,
                         attempts: int, error: str, now_s: str, due_s: str) -> None:
    """The copy waits for its phone: tried ``attempts`` times, next at ``due_s``."""
    async with store.transaction() as db:
        await db.execute(
            "INSERT INTO inbound_delivery_waits (inbound_id, extension, endpoint, attempts,"
            " last_error, last_attempt_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (inbound_id, extension) DO UPDATE SET endpoint = excluded.endpoint,"
            " attempts = excluded.attempts, last_error = excluded.last_error,"
            " last_attempt_at = excluded.last_attempt_at,"
            " next_attempt_at = excluded.next_attempt_at",
            (sms_id, extension, endpoint, attempts, error, now_s, due_s))


async def next_retry_at(store: Store) -> str | None:
    """When the next waiting copy is due (store text), None when none waits."""
    row = await store.fetchone(
        "SELECT MIN(next_attempt_at) AS due FROM inbound_delivery_waits WHERE gave_up = FALSE")
    return None if row is None or row["due"] is None else str(row["due"])


async def waiting(store: Store) -> list[WaitingCopy]:
    """Every copy still waiting, oldest message first."""
    rows = await store.fetchall(
        "SELECT w.inbound_id, w.extension, w.endpoint, w.next_attempt_at, i.sender, i.text,"
        " i.received_at FROM inbound_delivery_waits w JOIN inbound i ON i.id = w.inbound_id"
        " WHERE w.gave_up = FALSE ORDER BY w.inbound_id")
    return [
        WaitingCopy(inbound_id=int(r["inbound_id"]), extension=str(r["extension"]),
                    endpoint=str(r["endpoint"]), next_attempt_at=str(r["next_attempt_at"]),
                    sender=str(r["sender"]), text=str(r["text"]),
                    received_at=str(r["received_at"]))
        for r in rows
    ]


async def give_up(store: Store, sms_id: int, extension: str) -> None:
    async with store.transaction() as db:
        await db.execute(
            "UPDATE inbound_delivery_waits SET gave_up = TRUE WHERE inbound_id = ?"
            " AND extension = ?", (sms_id, extension))


async def copies(store: Store, sms_ids: Sequence[int]
                 ) -> tuple[list[DeliveredCopy], list[WaitState]]:
    """The copies of ``sms_ids``: delivered ones, and waiting or given-up ones, by extension."""
    if not sms_ids:
        return [], []
    marks = ",".join("?" * len(sms_ids))
    done = [
        DeliveredCopy(int(r["inbound_id"]), r["extension"], r["delivered_at"])
        for r in await store.fetchall(
            "SELECT inbound_id, extension, delivered_at FROM inbound_deliveries"
            f" WHERE inbound_id IN ({marks}) ORDER BY extension", list(sms_ids))
    ]
    waits = [
        WaitState(int(r["inbound_id"]), r["extension"], int(r["attempts"]), r["last_error"],
                  r["next_attempt_at"], bool(r["gave_up"]))
        for r in await store.fetchall(
            "SELECT inbound_id, extension, attempts, last_error, next_attempt_at, gave_up"
            f" FROM inbound_delivery_waits WHERE inbound_id IN ({marks}) ORDER BY extension",
            list(sms_ids))
    ]
    return done, waits
