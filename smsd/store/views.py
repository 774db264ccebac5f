"""Read side of the store: what the API, CLI and reports show about a message.

Kept apart from the write path so that the shapes callers depend on
(``MessageView.to_json``) live in one place and reads never take the writer lock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from smsd.store.history import history_of
from smsd.store.timefmt import from_ts, ts


class Reader(Protocol):
    """The read half of the store that the views need (the Store is one)."""

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]: ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None: ...

# A page of messages is at most this long, whatever the caller asks: the API
# builds the whole page in memory.
MAX_PAGE = 1000

_COLUMNS = (
    "id, state, user, sender, recipient, text, encoding, parts, gateway, modem, origin, "
    "created_at, send_at, updated_at, error, conversation_id, attempts, hist_queued, "
    "hist_sending_at, hist_submitting_at, hist_sent_at, hist_delivered_at, hist_delivered_detail"
)


@dataclass(frozen=True)
class MessageView:
    id: int
    state: str
    user: str | None
    sender: str | None
    recipient: str
    text: str
    encoding: str
    parts: int
    gateway: str | None
    modem: str | None
    origin: str
    created_at: datetime
    send_at: datetime | None
    updated_at: datetime
    error: str | None
    conversation_id: int | None
    part_states: list[dict[str, Any]]
    history: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "user": self.user,
            "sender": self.sender,
            "recipient": self.recipient,
            "text": self.text,
            "encoding": self.encoding,
            "parts": self.parts,
            "gateway": self.gateway,
            "modem": self.modem,
            "origin": self.origin,
            "created_at": self.created_at.isoformat(),
            "send_at": self.send_at.isoformat() if self.send_at else None,
            "updated_at": self.updated_at.isoformat(),
            "error": self.error,
            "conversation_id": self.conversation_id,
            "part_states": self.part_states,
            "history": self.history,
        }


def _view(
    row: sqlite3.Row, parts: list[dict[str, Any]], history: list[dict[str, Any]]
) -> MessageView:
    created = from_ts(row["created_at"])
    updated = from_ts(row["updated_at"])
    assert created is not None and updated is not None  # NOT NULL columns
    return MessageView(
        id=row["id"],
        state=row["state"],
        user=row["user"],
        sender=row["sender"],
        recipient=row["recipient"],
        text=row["text"],
        encoding=row["encoding"],
        parts=row["parts"],
        gateway=row["gateway"],
        modem=row["modem"],
        origin=row["origin"],
        created_at=created,
        send_at=from_ts(row["send_at"]),
        updated_at=updated,
        error=row["error"],
        conversation_id=row["conversation_id"],
        part_states=parts,
        history=history,
    )


async def _details(
    store: Reader, messages: Sequence[sqlite3.Row]
) -> tuple[dict[int, list[dict[str, Any]]], dict[int, list[dict[str, Any]]]]:
    """Each message's parts and history (its explicit rows between the ones its
    row keeps: smsd.store.history.history_of)."""
    ids = [int(m["id"]) for m in messages]
    parts: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    rows: dict[int, list[sqlite3.Row]] = {i: [] for i in ids}
    if not ids:
        return parts, {}
    marks = ",".join("?" * len(ids))
    for r in await store.fetchall(
        f"SELECT message_id, part, state, reference, modem, sent_at, report_status "
        f"FROM message_parts WHERE message_id IN ({marks}) ORDER BY message_id, part",
        ids,
    ):
        parts[r["message_id"]].append(
            {
                "part": r["part"],
                "state": r["state"],
                "reference": r["reference"],
                "modem": r["modem"],
                "sent_at": r["sent_at"],
                "report_status": r["report_status"],
            }
        )
    for r in await store.fetchall(
        f"SELECT message_id, at, state, detail FROM message_history "
        f"WHERE message_id IN ({marks}) ORDER BY message_id, id",
        ids,
    ):
        rows[r["message_id"]].append(r)
    return parts, {int(m["id"]): history_of(m, rows[int(m["id"])]) for m in messages}


async def get_message(store: Reader, id: int) -> MessageView | None:
    row = await store.fetchone(f"SELECT {_COLUMNS} FROM messages WHERE id = ?", (id,))
    if row is None:
        return None
    parts, history = await _details(store, [row])
    return _view(row, parts[id], history[id])


async def list_messages(
    store: Reader,
    *,
    state: str | None = None,
    user: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[MessageView]:
    """Newest first; ``since`` inclusive and ``until`` exclusive on created_at."""
    where: list[str] = []
    params: list[Any] = []
    if state is not None:
        where.append("state = ?")
        params.append(state)
    if user is not None:
        where.append("user = ?")
        params.append(user)
    if since is not None:
        where.append("created_at >= ?")
        params.append(ts(since))
    if until is not None:
        where.append("created_at < ?")
        params.append(ts(until))
    sql = f"SELECT {_COLUMNS} FROM messages"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ? OFFSET ?"
    params += [max(0, min(limit, MAX_PAGE)), max(0, offset)]
    rows = await store.fetchall(sql, params)
    parts, history = await _details(store, rows)
    return [_view(r, parts[r["id"]], history[r["id"]]) for r in rows]
