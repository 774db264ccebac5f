"""Parts each user used per calendar month: the counter and the full sum it replaces.

Why a counter: every submit needs the user's usage of the month to fix the
new message's billable parts, inside the submit's write.  Summing the month's
rows costs O(messages this month) under the writer lock (66-72 ms at 100,000
messages), which every send's commit also waits for.  Migration 0006 keeps
``usage_months`` in the same transaction as whatever moves it (the submit
adds its parts with :func:`record_submit`, triggers follow every later
change); :func:`month_usage` reads one row.

The month is a calendar month in ``policy.timezone``; rows carry it as
``messages.usage_month``.  :func:`ensure_zone` labels the rows (after the
migration, or when the zone in the config changed) one month at a time, and
the triggers move each row's parts to its new month as it is relabelled.
:func:`full_month_usage` is the definition (the sum over the rows), kept for
the property test that proves the counter equal to it.

Everything here runs on the database thread, inside the caller's write.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from smsd.store.timefmt import from_ts, month_of, ts

# States that do not use the package and cost nothing (SEED-NOTES quota).
# The triggers of migrations 0006 and 0009 spell the same list.
NOT_USED = ("failed", "expired")


# The month last labelled per time zone: its start and end in UTC and its
# label.  A submit labels its month three times (issue 17: 2 % of the daemon's
# CPU with one POST per message); one entry per configured zone.
_MONTHS: dict[str, tuple[datetime, datetime, str]] = {}


def month_label(when: datetime, timezone: str) -> str:
    """``YYYY-MM`` of ``when`` (aware) in ``timezone``: the key of usage_months."""
    known = _MONTHS.get(timezone)
    if known is not None and known[0] <= when < known[1]:
        return known[2]
    start, end = month_of(when, ZoneInfo(timezone))
    label = start.strftime("%Y-%m")
    _MONTHS[timezone] = (start.astimezone(UTC), end.astimezone(UTC), label)
    return label


def ensure_zone(db: sqlite3.Connection, timezone: str) -> None:
    """Label every user's message with its month in ``timezone``, unless already done.

    One indexed UPDATE per month between the oldest and the newest message
    (messages_created); the triggers move each row's parts.  A no-op (one
    SELECT) when the zone is the one the labels were made in.
    """
    row = db.execute("SELECT timezone FROM usage_zone WHERE id = 1").fetchone()
    if row is not None and row[0] == timezone:
        return
    tz = ZoneInfo(timezone)
    span = db.execute(
        "SELECT MIN(created_at), MAX(created_at) FROM messages WHERE user IS NOT NULL"
    ).fetchone()
    first, last = from_ts(span[0]), from_ts(span[1])
    if first is not None and last is not None:
        start, end = month_of(first, tz)
        while start <= last:
            db.execute(
                "UPDATE messages SET usage_month = ? WHERE user IS NOT NULL "
                "AND created_at >= ? AND created_at < ? AND usage_month IS NOT ?",
                (start.strftime("%Y-%m"), ts(start), ts(end), start.strftime("%Y-%m")),
            )
            start, end = month_of(end, tz)
    db.execute(
        "INSERT INTO usage_zone (id, timezone) VALUES (1, ?) "
        "ON CONFLICT (id) DO UPDATE SET timezone = excluded.timezone",
        (timezone,),
    )


def record_submit(
    db: sqlite3.Connection, user: str, when: datetime, timezone: str, parts: int
) -> None:
    """Count ``parts`` more for ``user`` in the month of ``when``: the submit's rows.

    Called in the write that inserts them, with ``messages.usage_month`` set to
    :func:`month_label` of the same time.  (Every later change is followed by
    the triggers of migrations 0006 and 0009.)
    """
    if parts:
        db.execute(
            "INSERT INTO usage_months (user, month, parts) VALUES (?, ?, ?) "
            "ON CONFLICT (user, month) DO UPDATE SET parts = usage_months.parts + excluded.parts",
            (user, month_label(when, timezone), parts),
        )


def month_usage(db: sqlite3.Connection, user: str, when: datetime, timezone: str) -> int:
    """Parts ``user`` used in the calendar month of ``when`` (``timezone``): one row read."""
    ensure_zone(db, timezone)
    row = db.execute(
        "SELECT parts FROM usage_months WHERE user = ? AND month = ?",
        (user, month_label(when, timezone)),
    ).fetchone()
    return int(row[0]) if row else 0


def full_month_usage(db: sqlite3.Connection, user: str, when: datetime, timezone: str) -> int:
    """The definition the counter keeps: the sum over the month's rows (O(month))."""
    start, end = month_of(when, ZoneInfo(timezone))
    row = db.execute(
        "SELECT COALESCE(SUM(parts), 0) FROM messages WHERE user = ? AND created_at >= ? "
        f"AND created_at < ? AND state NOT IN {NOT_USED!r}",
        (user, ts(start), ts(end)),
    ).fetchone()
    return int(row[0]) if row else 0
