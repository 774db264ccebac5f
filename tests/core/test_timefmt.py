"""The database's one timestamp format: the UTC shortcut of ``ts`` (issue 17) writes
exactly what the general conversion writes, so stored times still sort as text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsd.store.timefmt import ts

OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m)))


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)), OFFSETS)
def test_same_text_whatever_the_zone(naive: datetime, tz: timezone) -> None:
    """One instant gives one text, whether it comes in UTC or in another offset."""
    in_utc = naive.replace(tzinfo=UTC)
    assert ts(in_utc) == ts(in_utc.astimezone(tz))
    assert ts(in_utc) == in_utc.astimezone(timezone(timedelta(0))).isoformat(
        timespec="microseconds")
    assert len(ts(in_utc)) == len("2026-11-25T12:00:00.000000+00:00")


def test_naive_time_refused() -> None:
    """A time without a zone is refused, not stored as if it were UTC."""
    with pytest.raises(ValueError, match="naive"):
        ts(datetime(2026, 11, 25, 12, 0))
