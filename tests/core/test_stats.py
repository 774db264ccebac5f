"""Statistics: monthly quota (200 included, the rest billable), summaries, reports, CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from smsd.config import Policy
from smsd.core.outbox import Outbox, SubmitRequest
from smsd.core.stats import CSV_COLUMNS, EXPORT_PAGE, Stats, month_bounds, monthly_usage
from smsd.store import Store

from .conftest import make_user

pytestmark = pytest.mark.timeout(30)

NOW = datetime(2026, 11, 25, 13, 0, tzinfo=UTC)
POLICY = Policy(country="GB", monthly_package=200, fee_per_sms=0.05)


def numbers(n: int, base: int = 0) -> list[str]:
    return [f"+4477009{base + i:05d}" for i in range(n)]


async def submit(store: Store, n: int, *, user: str = "alice", at: datetime = NOW,
                 policy: Policy = POLICY, base: int = 0) -> list[int]:
    res = await Outbox(store, policy, clock=lambda: at).submit(
        SubmitRequest(numbers(n, base), "hello", user=make_user(user))
    )
    return res.ids


class TestQuota:
    async def test_200_included_then_billable(self, store: Store) -> None:
        """201 one-part SMS in a month: 200 included, 1 billable at the fee."""
        ids = await submit(store, 201)
        q = await Stats(store, POLICY).quota("alice", NOW)
        assert (q.used, q.included, q.billable, q.month) == (201, 200, 1, "2026-11")
        assert q.cost == pytest.approx(0.05)
        rows = await Stats(store, POLICY).report()
        assert [r.cost for r in rows if r.cost] == [pytest.approx(0.05)]
        assert rows[-1].id == ids[-1] and rows[-1].cost == pytest.approx(0.05)

    async def test_other_users_and_months_are_separate(self, store: Store) -> None:
        """Each user has their own package, and a new calendar month starts from zero."""
        await submit(store, 150)
        await submit(store, 150, user="bob", base=500)
        await submit(store, 100, at=datetime(2026, 12, 1, 9, 0, tzinfo=UTC), base=1000)
        stats = Stats(store, POLICY)
        assert (await stats.quota("alice", NOW)).billable == 0
        assert (await stats.quota("bob", NOW)).used == 150
        assert (await stats.quota("alice", datetime(2026, 12, 2, tzinfo=UTC))).used == 100
        assert (await stats.quota("carol", NOW)).used == 0

    async def test_failed_messages_do_not_count(self, store: Store) -> None:
        """A failed message uses no package and costs nothing; the next SMS is then free."""
        ids = await submit(store, 200)
        async with store.transaction() as db:
            await db.execute("UPDATE messages SET state = 'failed' WHERE id = ?", (ids[0],))
        more = await submit(store, 1, base=900)
        q = await Stats(store, POLICY).quota("alice", NOW)
        assert (q.used, q.billable) == (200, 0)
        row = await store.fetchone("SELECT cost_billable FROM messages WHERE id = ?", more)
        assert row is not None and row[0] == 0

    async def test_quota_cli_and_report_agree_after_a_late_failure(self, store: Store) -> None:
        """Billed parts are fixed at submit time: the quota, the CLI usage and the report agree.

        The 201st SMS was billed; the 1st failing afterwards does not rewrite
        that bill in any of the three views.
        """
        ids = await submit(store, 201)
        async with store.transaction() as db:
            await db.execute("UPDATE messages SET state = 'failed' WHERE id = ?", (ids[0],))
        q = await Stats(store, POLICY).quota("alice", NOW)
        [usage] = await monthly_usage(store, *month_bounds(None, "UTC", NOW), POLICY)
        report_cost = sum(r.cost for r in await Stats(store, POLICY).report())
        assert (q.used, q.billable, q.included) == (200, 1, 199)
        assert (usage.parts, usage.billable, usage.included) == (200, 1, 199)
        assert q.cost == pytest.approx(report_cost) == pytest.approx(usage.fee) \
            == pytest.approx(0.05)

    async def test_month_follows_the_pbx_time_zone(self, store: Store) -> None:
        """23:30 UTC on 30 November is already December in Rome."""
        rome = Policy(country="IT", timezone="Europe/Rome", monthly_package=1)
        await submit(store, 1, at=datetime(2026, 11, 30, 23, 30, tzinfo=UTC), policy=rome)
        stats = Stats(store, rome)
        assert (await stats.quota("alice", datetime(2026, 12, 5, tzinfo=UTC))).used == 1
        assert (await stats.quota("alice", datetime(2026, 11, 5, tzinfo=UTC))).used == 0
        start, end = month_bounds("2026-12", "Europe/Rome", NOW)
        assert start == datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
        assert end == datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
        with pytest.raises(ValueError, match="YYYY-MM"):
            month_bounds("2026-13", "UTC", NOW)


class TestSummaryAndReport:
    async def test_summary_counts_both_directions(self, store: Store) -> None:
        """Outgoing by state, gateway and user; incoming by route state."""
        ids = await submit(store, 3)
        async with store.transaction() as db:
            await db.execute(
                "UPDATE messages SET state = 'delivered', gateway = 'gsm' WHERE id = ?", (ids[0],)
            )
            await db.executemany(
                "INSERT INTO inbound (sender, text, received_at, gateway, route_state) "
                "VALUES ('+447700900777', 'x', ?, 'gsm', ?)",
                [("2026-11-20T10:00:00.000000+00:00", "routed"),
                 ("2026-11-20T10:00:00.000000+00:00", "blocked")],
            )
        s = await Stats(store, POLICY).summary(*month_bounds(None, "UTC", NOW))
        assert s.outgoing == {"delivered": 1, "queued": 2} and s.outgoing_total == 3
        assert s.by_gateway == {"gsm": 1, "": 2} and s.by_user == {"alice": 3}
        assert s.incoming == {"routed": 1, "blocked": 1} and s.incoming_total == 2
        outside = await Stats(store, POLICY).summary(*month_bounds("2026-10", "UTC", NOW))
        assert outside.outgoing_total == 0 and outside.incoming_total == 0

    async def test_csv_export_pages_through_everything(self, store: Store) -> None:
        """The CSV has the report columns and one row per message, across query pages."""
        n = EXPORT_PAGE * 2 + 7
        await submit(store, n)
        buf = io.StringIO()
        count = await Stats(store, POLICY).export_csv(buf)
        rows = list(csv.reader(io.StringIO(buf.getvalue())))
        assert count == n and len(rows) == n + 1
        assert tuple(rows[0]) == CSV_COLUMNS
        assert len({r[3] for r in rows[1:]}) == n  # every recipient once
        first = dict(zip(CSV_COLUMNS, rows[1], strict=True))
        assert first["user"] == "alice" and first["parts"] == "1" and first["status"] == "queued"
        assert first["from"] == "+447700900100" and first["cost"] == "0.0000"
        assert rows[-1][-1] == f"{0.05:.4f}"
