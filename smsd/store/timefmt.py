"""The one timestamp format in the database.

UTC ISO 8601 text with microseconds and "+00:00": readable in the sqlite3
shell, and being fixed width it sorts and compares correctly as text, which is
what the dispatcher's due-time index relies on.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo


def ts(dt: datetime) -> str:
    tz = dt.tzinfo
    if tz is UTC:       # utcnow()'s, most of them: no conversion (issue 17, per write)
        return dt.isoformat(timespec="microseconds")
    if tz is None:
        raise ValueError(f"naive datetime {dt!r}: smsd stores aware times only")
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def from_ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def utcnow() -> datetime:
    return datetime.now(UTC)


def month_of(when: datetime, tz: tzinfo) -> tuple[datetime, datetime]:
    """Start (inclusive) and end (exclusive) of the calendar month of ``when`` in ``tz``."""
    local = when.astimezone(tz)
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end
