"""Conversations and their participants as the store keeps them.

The rules (who may take part, which service a DID belongs to, who comes back
when everybody left) are smsd.core.conversations'; these are its reads and
writes.  One row per (external number, service): the UNIQUE constraint and
``ON CONFLICT DO NOTHING`` make two racing requests land in the same row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from smsd.store.store import Store


@dataclass(frozen=True)
class ServiceKey:
    """The service a conversation belongs to (smsd.core.conversations.Service)."""

    kind: str     # "group" | "did"
    name: str
    did: str


@dataclass(frozen=True)
class Participant:
    extension: str
    active: bool
    joined_at: str
    left_at: str | None


@dataclass(frozen=True)
class ConversationRecord:
    id: int
    title: str
    external: str
    service_kind: str
    service: str
    did: str
    assignee: str | None
    created_at: str
    updated_at: str
    last_message_at: str | None
    participants: list[Participant]


@dataclass(frozen=True)
class InboundItem:
    id: int
    sender: str
    recipient: str | None
    text: str
    received_at: str


@dataclass(frozen=True)
class OutboundItem:
    id: int
    user: str | None
    sender: str | None
    recipient: str
    text: str
    state: str
    created_at: str


class _NobodyThere(Exception):
    """Internal: no participant at all; the transaction is rolled back."""


# Pick who joins: (extensions, how) from the extensions active now.
Picker = Callable[[list[str]], tuple[list[str], str]]


async def join_inbound(store: Store, external: str, service: ServiceKey, now: str,
                       received_at: str, pick: Picker
                       ) -> tuple[int, list[str], list[str]] | None:
    """Find or create the conversation of ``external`` on ``service`` and let those
    ``pick`` names join; (id, active extensions, joined).

    None, with nothing written, when nobody is active afterwards (a
    conversation just created is not kept empty).
    """
    try:
        async with store.transaction() as db:
            conv_id = await _find_or_create(db, external, service, now)
            active = await _active(db, conv_id)
            joining, how = pick(active)
            for ext in joining:
                await _join(db, conv_id, ext, now, how)
            active = await _active(db, conv_id)
            if not active:
                raise _NobodyThere()   # rolls back the empty conversation just created
            await db.execute(
                "UPDATE conversations SET updated_at = ?, last_message_at = ? WHERE id = ?",
                (now, received_at, conv_id),
            )
    except _NobodyThere:
        return None
    return conv_id, active, joining


async def open_conversation(store: Store, external: str, service: ServiceKey, extension: str,
                            now: str) -> tuple[int, bool]:
    """Find or create the conversation and let ``extension`` join it; (id, created)."""
    async with store.transaction() as db:
        async with db.execute(
            "SELECT id FROM conversations WHERE external = ? AND service_kind = ?"
            " AND service = ?", (external, service.kind, service.name)) as cur:
            existed = await cur.fetchone() is not None
        conv_id = await _find_or_create(db, external, service, now)
        await _join(db, conv_id, extension, now, extension)
    return conv_id, not existed


async def _select(store: Store, where: str, params: list[Any],
                  order: str) -> list[ConversationRecord]:
    """The conversations matching ``where``, each with its participants.

    Two queries whatever the number of conversations (a listing used to
    cost two per conversation); ``where`` is our own SQL, never input.
    """
    rows = await store.fetchall(
        f"SELECT * FROM conversations WHERE {where} ORDER BY {order}", params)
    if not rows:
        return []
    parts = await store.fetchall(
        "SELECT conversation_id, extension, active, joined_at, left_at"
        " FROM conversation_participants WHERE conversation_id IN"
        f" (SELECT id FROM conversations WHERE {where}) ORDER BY joined_at, extension",
        params)
    by_conv: dict[int, list[Participant]] = {int(r["id"]): [] for r in rows}
    for p in parts:
        listed = by_conv.get(int(p["conversation_id"]))
        if listed is not None:  # a conversation created between the two reads
            listed.append(Participant(p["extension"], bool(p["active"]), p["joined_at"],
                                      p["left_at"]))
    return [
        ConversationRecord(
            id=row["id"], title=row["title"], external=row["external"],
            service_kind=row["service_kind"], service=row["service"], did=row["did"],
            assignee=row["assignee"], created_at=row["created_at"],
            updated_at=row["updated_at"], last_message_at=row["last_message_at"],
            participants=by_conv[int(row["id"])],
        )
        for row in rows
    ]


_NEWEST_FIRST = "COALESCE(last_message_at, updated_at) DESC, id DESC"


async def get(store: Store, conv_id: int) -> ConversationRecord | None:
    found = await _select(store, "id = ?", [conv_id], "id")
    return found[0] if found else None


async def list_for(store: Store, extension: str,
                   services: Sequence[ServiceKey]) -> list[ConversationRecord]:
    """Conversations ``extension`` is active in, or on one of ``services``; newest first."""
    clauses = ["id IN (SELECT conversation_id FROM conversation_participants"
               " WHERE extension = ? AND active = TRUE)"]
    params: list[Any] = [extension]
    for s in services:
        clauses.append("(service_kind = ? AND service = ?)")
        params += [s.kind, s.name]
    return await _select(store, " OR ".join(clauses), params, _NEWEST_FIRST)


async def list_all(store: Store) -> list[ConversationRecord]:
    """Every conversation, newest first."""
    return await _select(store, "1 = 1", [], _NEWEST_FIRST)


async def add_participant(store: Store, conv_id: int, extension: str, now: str,
                          by: str) -> None:
    async with store.transaction() as db:
        await _join(db, conv_id, extension, now, by)


async def remove_participant(store: Store, conv_id: int, extension: str, now: str) -> bool:
    """``extension`` leaves; False when it was not an active participant."""
    async with store.transaction() as db:
        cur = await db.execute(
            "UPDATE conversation_participants SET active = FALSE, left_at = ?"
            " WHERE conversation_id = ? AND extension = ? AND active = TRUE",
            (now, conv_id, extension))
        return bool(cur.rowcount)


async def assign(store: Store, conv_id: int, extension: str, now: str, by: str) -> None:
    """``extension`` is responsible for the conversation (and takes part in it)."""
    async with store.transaction() as db:
        await db.execute("UPDATE conversations SET assignee = ?, updated_at = ? WHERE id = ?",
                         (extension, now, conv_id))
        await _join(db, conv_id, extension, now, by)


async def rename(store: Store, conv_id: int, title: str, now: str) -> None:
    async with store.transaction() as db:
        await db.execute("UPDATE conversations SET title = ?, updated_at = ? WHERE id = ?",
                         (title, now, conv_id))


async def replied(store: Store, conv_id: int, extension: str, now: str) -> None:
    """``extension`` replied: the conversation's last message is now, and it takes part."""
    async with store.transaction() as db:
        await db.execute(
            "UPDATE conversations SET updated_at = ?, last_message_at = ? WHERE id = ?",
            (now, now, conv_id))
        await _join(db, conv_id, extension, now, extension)


async def messages(store: Store, conv_id: int) -> tuple[list[InboundItem], list[OutboundItem]]:
    """The conversation's inbound and outbound messages (unsorted)."""
    inbound = await store.fetchall(
        "SELECT id, sender, recipient, text, received_at FROM inbound"
        " WHERE conversation_id = ?", (conv_id,))
    outbound = await store.fetchall(
        "SELECT id, user, sender, recipient, text, state, created_at FROM messages"
        " WHERE conversation_id = ?", (conv_id,))
    return (
        [InboundItem(int(r["id"]), r["sender"], r["recipient"], r["text"], r["received_at"])
         for r in inbound],
        [OutboundItem(int(r["id"]), r["user"], r["sender"], r["recipient"], r["text"],
                      r["state"], r["created_at"]) for r in outbound],
    )


async def reply_context(store: Store, external: str, extension: str) -> tuple[int, str] | None:
    """(id, DID) of the latest conversation with ``external`` that ``extension`` is active in."""
    row = await store.fetchone(
        "SELECT c.id, c.did FROM conversations c JOIN conversation_participants p"
        " ON p.conversation_id = c.id WHERE c.external = ? AND p.extension = ?"
        " AND p.active = TRUE ORDER BY c.last_message_at DESC, c.id DESC LIMIT 1",
        (external, extension))
    return None if row is None else (int(row["id"]), str(row["did"]))


async def _find_or_create(db: Any, external: str, service: ServiceKey, now: str) -> int:
    await db.execute(
        "INSERT INTO conversations (external, service_kind, service, did, title, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (external, service_kind, service) DO NOTHING",
        (external, service.kind, service.name, service.did, external, now, now),
    )
    async with db.execute(
        "SELECT id FROM conversations WHERE external = ? AND service_kind = ? AND service = ?",
        (external, service.kind, service.name),
    ) as cur:
        row = await cur.fetchone()
    return int(row[0])


async def _active(db: Any, conv_id: int) -> list[str]:
    async with db.execute(
        "SELECT extension FROM conversation_participants WHERE conversation_id = ?"
        " AND active = TRUE ORDER BY joined_at, extension", (conv_id,)) as cur:
        return [str(r[0]) for r in await cur.fetchall()]


async def _join(db: Any, conv_id: int, extension: str, now: str, by: str) -> None:
    await db.execute(
        "INSERT INTO conversation_participants (conversation_id, extension, active, joined_at,"
        " added_by) VALUES (?, ?, TRUE, ?, ?) ON CONFLICT (conversation_id, extension) DO UPDATE"
        " SET active = TRUE, left_at = NULL, joined_at = CASE WHEN conversation_participants.active"
        " THEN conversation_participants.joined_at"
        " ELSE excluded.joined_at END",
        (conv_id, extension, now, by))
