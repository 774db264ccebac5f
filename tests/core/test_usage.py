"""The per-user, per-month usage counter (migration 0006, smsd.store.usage).

The counter replaces a sum over the month's messages inside every submit; it
is only worth having if it always equals that sum.  Hypothesis drives the real
store through submits (the real Outbox), the state changes the dispatcher and
the inbox make (into and out of failed/expired), deletes and a change of the
policy's time zone, and compares the counter with the full sum after each.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smsd.config import Policy
from smsd.core.outbox import Outbox, SubmitRequest
from smsd.store import MESSAGE_STATES, Store
from smsd.store.usage import full_month_usage, month_label, month_usage

from .conftest import make_user
from .old_schema import migrations_before

pytestmark = pytest.mark.timeout(300)

# Zones with month ends on either side of UTC's, a 45-minute offset and DST.
ZONES = ("UTC", "Europe/London", "America/New_York", "Asia/Kolkata", "Australia/Eucla")
USERS = ("alice", "bob")
# Around the turn of two months, so that zones disagree on a row's month.
EPOCH = datetime(2026, 10, 31, 0, 0, tzinfo=UTC)

submit = st.tuples(
    st.just("submit"),
    st.sampled_from((*USERS, None)),
    st.integers(0, 48 * 60),  # minutes after EPOCH
    st.integers(1, 3),  # numbers in the submit
    st.sampled_from(("hi", "x" * 200, "y" * 400)),  # 1, 2 and 3 parts
)
change = st.tuples(st.just("state"), st.integers(0, 40), st.sampled_from(MESSAGE_STATES))
delete = st.tuples(st.just("delete"), st.integers(0, 40))
rezone = st.tuples(st.just("zone"), st.sampled_from(ZONES))
ops = st.lists(st.one_of(submit, change, delete, rezone), min_size=1, max_size=25)


def _check(db: sqlite3.Connection, zone: str) -> list[tuple[Any, ...]]:
    """(user, month, counter, full sum) wherever the two differ."""
    wrong = []
    for user in USERS:
        for day in range(0, 3):
            when = EPOCH + timedelta(days=day)
            counted = month_usage(db, user, when, zone)
            full = full_month_usage(db, user, when, zone)
            if counted != full:
                wrong.append((user, when, counted, full))
    return wrong


async def _scenario(path: Path, steps: list[tuple[Any, ...]], zone: str) -> None:
    store = await Store.open(path)
    try:
        for step in steps:
            kind = step[0]
            if kind == "submit":
                _, user, minutes, count, text = step
                outbox = Outbox(
                    store,
                    Policy(country="GB", timezone=zone),
                    clock=lambda m=minutes: EPOCH + timedelta(minutes=m),
                )
                numbers = [f"+4477009001{i:02d}" for i in range(count)]
                await outbox.submit(
                    SubmitRequest(numbers, text, user=make_user(user) if user else None)
                )
            elif kind == "state":
                _, n, state = step
                await store.write(
                    lambda db, n=n, state=state: db.execute(
                        "UPDATE messages SET state = ? WHERE id = "
                        "(SELECT id FROM messages ORDER BY id LIMIT 1 OFFSET ?)",
                        (state, n),
                    )
                )
            elif kind == "delete":
                _, n = step
                await store.write(
                    lambda db, n=n: db.execute(
                        "DELETE FROM messages WHERE id = "
                        "(SELECT id FROM messages ORDER BY id LIMIT 1 OFFSET ?)",
                        (n,),
                    )
                )
            else:
                zone = step[1]
            wrong = await store.write(lambda db, z=zone: _check(db, z))
            assert not wrong, f"after {step}: counter != full sum: {wrong}"
    finally:
        await store.close()


class TestCounterEqualsFullSum:
    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(steps=ops, zone=st.sampled_from(ZONES))
    def test_any_sequence_of_changes(self, steps: list[tuple[Any, ...]], zone: str) -> None:
        """After any submits, state changes, deletes and zone changes, in any order, the
        counter read by a submit equals the sum over the month's messages not
        failed or expired, for every user and month."""
        d = tempfile.mkdtemp(prefix="smsd-usage-")
        try:
            asyncio.run(_scenario(Path(d) / "smsd.sqlite3", steps, zone))
        finally:
            shutil.rmtree(d, ignore_errors=True)


class TestUpgrade:
    async def test_rows_from_before_the_counter_are_counted(self, tmp_path: Path) -> None:
        """A database written before migration 0006 gets its existing messages
        counted (labelled at the first read), so the first submit after the
        upgrade bills from the right usage."""
        old = migrations_before(tmp_path, 6)
        path = tmp_path / "smsd.sqlite3"
        store = await Store.open(path, migrations_dir=old)
        when = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
        await store.write(
            lambda db: db.executemany(
                "INSERT INTO messages (user, recipient, text, encoding, parts, state, "
                "created_at, updated_at, next_attempt_at, origin) "
                "VALUES ('alice', '+447700900123', 't', 'gsm7', ?, ?, ?, ?, ?, 'api')",
                [
                    (2, "delivered", when.isoformat(), when.isoformat(), when.isoformat()),
                    (3, "failed", when.isoformat(), when.isoformat(), when.isoformat()),
                ],
            )
        )
        await store.close()
        store = await Store.open(path)
        try:
            used = await store.write(lambda db: month_usage(db, "alice", when, "UTC"))
            full = await store.write(lambda db: full_month_usage(db, "alice", when, "UTC"))
        finally:
            await store.close()
        assert used == full == 2


class TestMonthLabel:
    @settings(max_examples=300, deadline=None)
    @given(
        zone=st.sampled_from(["UTC", "Europe/London", "America/New_York", "Pacific/Kiritimati",
                              "Pacific/Pago_Pago", "Asia/Kathmandu", "Australia/Lord_Howe"]),
        times=st.lists(st.datetimes(min_value=datetime(2025, 1, 1),
                                    max_value=datetime(2028, 12, 31),
                                    timezones=st.just(UTC)), min_size=1, max_size=20),
    )
    def test_the_remembered_month_is_always_the_month(
        self, zone: str, times: list[datetime]
    ) -> None:
        """month_label remembers the last month per zone; whatever order times come in
        (across month ends, DST changes, odd offsets), it answers the month of each
        time in that zone, as converting the time itself does."""
        for when in times:
            for t in (when, when.replace(day=1, hour=0, minute=0, second=0, microsecond=0)):
                for probe in (t - timedelta(microseconds=1), t, t + timedelta(hours=14)):
                    assert month_label(probe, zone) == \
                        probe.astimezone(ZoneInfo(zone)).strftime("%Y-%m")
