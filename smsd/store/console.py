"""Read queries the web console needs beyond the API's views.

Kept here because the store owns every SQL statement; all of them only read,
so none takes the writer lock.  Filters are our own SQL with ``?`` parameters,
never input spliced into the text.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from smsd.store.timefmt import ts
from smsd.store.views import _COLUMNS, MAX_PAGE, MessageView, Reader, _details, _view


@dataclass(frozen=True)
class MessageFilter:
    """What the Messages page filters on; None means "any"."""

    state: str | None = None
    user: str | None = None
    gateway: str | None = None
    number: str | None = None      # part of the recipient's number
    since: datetime | None = None  # inclusive, on created_at
    until: datetime | None = None  # exclusive


def _where(f: MessageFilter) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if f.state is not None:
        where.append("state = ?")
        params.append(f.state)
    if f.user is not None:
        where.append("user = ?")
        params.append(f.user)
    if f.gateway is not None:
        where.append("gateway = ?")
        params.append(f.gateway)
    if f.number is not None:
        where.append("instr(recipient, ?) > 0")
        params.append(f.number)
    if f.since is not None:
        where.append("created_at >= ?")
        params.append(ts(f.since))
    if f.until is not None:
        where.append("created_at < ?")
        params.append(ts(f.until))
    return (" WHERE " + " AND ".join(where)) if where else "", params


async def filter_messages(
    store: Reader, f: MessageFilter, *, limit: int = 100, offset: int = 0
) -> list[MessageView]:
    """Newest first, at most MAX_PAGE per call."""
    where, params = _where(f)
    rows = await store.fetchall(
        f"SELECT {_COLUMNS} FROM messages{where} ORDER BY id DESC LIMIT ? OFFSET ?",
        [*params, max(0, min(limit, MAX_PAGE)), max(0, offset)])
    parts, history = await _details(store, rows)
    return [_view(r, parts[r["id"]], history[r["id"]]) for r in rows]


async def last_messages(store: Reader, conv_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The newest message (either direction) of each conversation."""
    if not conv_ids:
        return {}
    marks = ",".join("?" * len(conv_ids))
    rows = await store.fetchall(
        "SELECT conversation_id, direction, text, at FROM ("
        " SELECT conversation_id, 'in' AS direction, text, received_at AS at FROM inbound"
        f"  WHERE conversation_id IN ({marks})"
        " UNION ALL"
        " SELECT conversation_id, 'out', text, created_at FROM messages"
        f"  WHERE conversation_id IN ({marks})"
        ") AS latest ORDER BY at", [*conv_ids, *conv_ids])
    out: dict[int, dict[str, Any]] = {}
    for r in rows:  # ascending: the last row per conversation wins
        out[int(r["conversation_id"])] = {
            "direction": r["direction"], "text": r["text"], "at": r["at"]}
    return out


async def per_day(
    store: Reader, start: datetime, end: datetime, utc_offset_s: int
) -> list[sqlite3.Row]:
    """Outgoing by local day and state, incoming by local day (raw rows for the caller).

    ``utc_offset_s`` shifts UTC times to the zone's day; a month with a
    daylight-saving change is off by an hour around midnight at most, which a
    chart does not show.
    """
    shift = f"{int(utc_offset_s):+d} seconds"
    if getattr(store, "dialect", "sqlite") == "postgresql":
        # The shift is sent as text (asyncpg would want a timedelta for an interval).
        day = "to_char({c} + CAST(CAST(? AS text) AS interval), 'YYYY-MM-DD')"
    else:
        day = "substr(datetime({c}, ?), 1, 10)"
    return await store.fetchall(
        f"SELECT {day.format(c='created_at')} AS day, state, gateway, COUNT(*) AS n"
        " FROM messages WHERE created_at >= ? AND created_at < ? GROUP BY day, state, gateway"
        " UNION ALL"
        f" SELECT {day.format(c='received_at')}, 'received', gateway, COUNT(*)"
        " FROM inbound WHERE received_at >= ? AND received_at < ? GROUP BY 1, 3",
        [shift, ts(start), ts(end), shift, ts(start), ts(end)])
