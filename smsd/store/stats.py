"""The reads behind statistics, reports, quotas and metrics.

smsd.core.stats, smsd.core.monthly and smsd.core.reports turn these rows into
what users see (package, billable parts, cost, local days); the API's
/metrics counts sends per gateway.  Everything here only reads, so it works on
a store opened read-only (the CLI reading the daemon's database).  Times in
and out are smsd's store text (timefmt.ts).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from smsd.store.store import Store
from smsd.store.timefmt import from_ts, ts
from smsd.store.usage import NOT_USED
from smsd.store.views import Reader

# Quarter-hour bucket "YYYY-MM-DDTHH:MM" (UTC) of a stored time: SQLite cuts
# the text ("YYYY-MM-DDTHH:MM:SS.ffffff+00:00"), PostgreSQL formats the
# timestamptz (its sessions are in UTC, smsd.store.pg.conn).
_BUCKET = {
    "sqlite": "substr({c}, 1, 14) || "
              "printf('%02d', (CAST(substr({c}, 15, 2) AS INTEGER) / 15) * 15)",
    "postgresql": "to_char(date_trunc('hour', {c}) + floor(extract(minute FROM {c}) / 15)"
                  " * interval '15 minutes', 'YYYY-MM-DD\"T\"HH24:MI')",
}


@dataclass(frozen=True)
class OutgoingCount:
    """Outbound messages of one (state, gateway, user) in a period."""

    state: str
    gateway: str | None
    user: str | None
    messages: int
    parts: int
    billable: int


@dataclass(frozen=True)
class ReportRecord:
    """One outbound message as the reports list it."""

    id: int
    created_at: datetime
    user: str | None
    sender: str | None
    recipient: str
    gateway: str | None
    parts: int
    state: str
    cost_billable: int


@dataclass(frozen=True)
class UsageCount:
    """One user's used messages in a period (failed and expired left out)."""

    user: str
    messages: int
    parts: int
    billable: int


@dataclass(frozen=True)
class BucketCount:
    """Outbound messages of one quarter hour (UTC) by user, gateway, state and bulk."""

    bucket: str
    user: str | None
    gateway: str | None
    state: str
    bulk: bool
    messages: int
    parts: int
    billable: int


def _period(since: datetime | None, until: datetime | None, col: str) -> tuple[str, list[str]]:
    where: list[str] = []
    params: list[str] = []
    if since is not None:
        where.append(f"{col} >= ?")
        params.append(ts(since))
    if until is not None:
        where.append(f"{col} < ?")
        params.append(ts(until))
    return (" WHERE " + " AND ".join(where)) if where else "", params


async def outgoing_counts(store: Reader, since: datetime | None,
                          until: datetime | None) -> list[OutgoingCount]:
    """Outbound messages created in [since, until) by state, gateway and user."""
    where, params = _period(since, until, "created_at")
    rows = await store.fetchall(
        "SELECT state, gateway, user, COUNT(*), SUM(parts), SUM(cost_billable) "
        f"FROM messages{where} GROUP BY state, gateway, user",
        params,
    )
    return [OutgoingCount(state, gateway, user, int(n), int(p or 0), int(b or 0))
            for state, gateway, user, n, p, b in rows]


async def incoming_counts(store: Reader, since: datetime | None,
                          until: datetime | None) -> dict[str, int]:
    """Inbound messages received in [since, until) by route state."""
    where, params = _period(since, until, "received_at")
    rows = await store.fetchall(
        f"SELECT route_state, COUNT(*) FROM inbound{where} GROUP BY route_state",
        params,
    )
    return {r[0]: int(r[1]) for r in rows}


async def report_page(
    store: Reader, *, after_id: int, limit: int, since: datetime | None = None,
    until: datetime | None = None, user: str | None = None, recipient: str | None = None,
    state: str | None = None, gateway: str | None = None,
) -> list[ReportRecord]:
    """Up to ``limit`` messages with an id above ``after_id`` matching the filters, by id."""
    clauses = ["id > ?"]
    args: list[Any] = [after_id]
    for col, op, value in (
        ("created_at", ">=", ts(since) if since else None),
        ("created_at", "<", ts(until) if until else None),
        ("user", "=", user),
        ("recipient", "=", recipient),
        ("state", "=", state),
        ("gateway", "=", gateway),
    ):
        if value is not None:
            clauses.append(f"{col} {op} ?")
            args.append(value)
    rows = await store.fetchall(
        "SELECT id, created_at, user, sender, recipient, gateway, parts, state, cost_billable "
        "FROM messages WHERE " + " AND ".join(clauses) + " ORDER BY id LIMIT ?",
        [*args, limit],
    )
    out: list[ReportRecord] = []
    for r in rows:
        created = from_ts(r["created_at"])
        assert created is not None
        out.append(ReportRecord(
            id=int(r["id"]), created_at=created, user=r["user"], sender=r["sender"],
            recipient=r["recipient"], gateway=r["gateway"], parts=int(r["parts"]),
            state=r["state"], cost_billable=int(r["cost_billable"] or 0)))
    return out


async def usage_by_user(store: Reader, start: datetime, end: datetime, *,
                        user: str | None = None) -> list[UsageCount]:
    """Per user (by name): messages, parts and the billable parts fixed at submit time."""
    sql = (
        "SELECT user, COUNT(*) AS n, SUM(parts) AS parts, SUM(cost_billable) AS billable "
        "FROM messages WHERE user IS NOT NULL AND created_at >= ? AND created_at < ? "
        f"AND state NOT IN {NOT_USED!r}"
    )
    params: list[Any] = [ts(start), ts(end)]
    if user is not None:
        sql += " AND user = ?"
        params.append(user)
    rows = await store.fetchall(sql + " GROUP BY user ORDER BY user", params)
    return [UsageCount(r["user"], int(r["n"]), int(r["parts"] or 0), int(r["billable"] or 0))
            for r in rows]


async def outgoing_buckets(store: Store, start: datetime, end: datetime, *,
                           user: str | None = None) -> list[BucketCount]:
    """Outbound messages created in [start, end) per quarter hour, user, gateway, state, bulk.

    A month of millions of messages is one query of a few thousand rows.
    """
    sql = (
        f"SELECT {_BUCKET[store.dialect].format(c='created_at')} AS bucket, "
        "user, gateway, state, "
        "origin = 'bulk' AS bulk, COUNT(*) AS n, SUM(parts) AS parts, "
        "SUM(cost_billable) AS billable FROM messages WHERE created_at >= ? AND created_at < ?"
    )
    params: list[Any] = [ts(start), ts(end)]
    if user is not None:
        sql += " AND user = ?"
        params.append(user)
    rows = await store.fetchall(sql + " GROUP BY bucket, user, gateway, state, bulk", params)
    return [BucketCount(r["bucket"], r["user"], r["gateway"], r["state"], bool(r["bulk"]),
                        int(r["n"]), int(r["parts"] or 0), int(r["billable"] or 0))
            for r in rows]


async def incoming_buckets(store: Store, start: datetime, end: datetime, *,
                           recipient: str | None = None) -> list[tuple[str, int]]:
    """(quarter hour, inbound messages) received in [start, end), optionally to ``recipient``."""
    in_sql = (
        f"SELECT {_BUCKET[store.dialect].format(c='received_at')} AS bucket, "
        "COUNT(*) AS n FROM inbound "
        "WHERE received_at >= ? AND received_at < ?"
    )
    in_params: list[Any] = [ts(start), ts(end)]
    if recipient is not None:
        in_sql += " AND recipient = ?"
        in_params.append(recipient)
    return [(r["bucket"], int(r["n"]))
            for r in await store.fetchall(in_sql + " GROUP BY bucket", in_params)]


async def created_and_send_at(store: Reader,
                              message_id: int) -> tuple[datetime | None, datetime | None] | None:
    """(created_at, send_at) of an outbound message; None when there is no such message."""
    row = await store.fetchone(
        "SELECT created_at, send_at FROM messages WHERE id = ?", (message_id,)
    )
    return None if row is None else (from_ts(row["created_at"]), from_ts(row["send_at"]))


async def sends_by_gateway(store: Reader) -> list[tuple[str, str, int]]:
    """(gateway, state, messages) of every message a gateway sent, delivered or failed."""
    rows = await store.fetchall(
        "SELECT gateway, state, COUNT(*) AS n FROM messages WHERE gateway IS NOT NULL "
        "AND state IN ('sent', 'delivered', 'failed') GROUP BY gateway, state"
    )
    return [(str(r["gateway"]), str(r["state"]), int(r["n"])) for r in rows]


async def ping(store: Reader) -> None:
    """One round trip to the database (the watchdog's proof that it answers)."""
    await store.fetchone("SELECT 1")
