"""The one timestamp format in the database.

UTC ISO 8601 text with microseconds and "+00:00": readable in the sqlite3
shell, and being fixed width it sorts and compares correctly as text, which is
what the dispatcher's due-time index relies on.
"""

from __future__ import annotations

from datetime import UTC, datetime


def ts(dt: datetime) -> str:
    if dt.tzinfo is None:
        raise ValueError(f"naive datetime {dt!r}: smsd stores aware times only")
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def from_ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def utcnow() -> datetime:
    return datetime.now(UTC)
