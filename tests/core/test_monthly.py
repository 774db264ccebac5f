"""smsd.core.monthly: one month per user, gateway and day, in the policy's time zone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from smsd.config import Policy
from smsd.core.monthly import month_report
from smsd.core.outbox import Outbox, SubmitRequest
from smsd.core.stats import month_bounds
from smsd.store import Store

from .conftest import make_user

pytestmark = pytest.mark.timeout(30)

POLICY = Policy(country="GB", timezone="America/New_York", monthly_package=200,
                fee_per_sms=0.1)


class TestMonthReport:
    async def test_bulk_counts_delivered_when_accepted(self, store: Store) -> None:
        """A bulk SMS a gateway accepted counts as delivered (SEED-NOTES "Routing
        outbound"); an ordinary one only when its delivery report says so."""
        outbox = Outbox(store, POLICY, clock=lambda: datetime(2026, 11, 10, tzinfo=UTC))
        user = make_user()
        bulk = await outbox.submit(SubmitRequest(["+447700900001", "+447700900002"], "x",
                                                 user=user, origin="bulk"))
        single = await outbox.submit(SubmitRequest(["+447700900003"], "x", user=user))
        async with store.transaction() as db:
            await db.execute("UPDATE messages SET state = 'sent', gateway = 'gsm'")
        start, end = month_bounds("2026-11", POLICY.timezone, datetime.now(UTC))
        report = await month_report(store, start, end, POLICY)
        assert (report.total.sent, report.total.delivered) == (3, 2)
        async with store.transaction() as db:
            await db.execute("UPDATE messages SET state = 'delivered' WHERE id = ?",
                             (single.ids[0],))
        report = await month_report(store, start, end, POLICY)
        assert (report.total.sent, report.total.delivered) == (3, 3)
        assert len(bulk.ids) == 2

    async def test_days_and_month_in_the_policy_zone(self, store: Store) -> None:
        """03:30 UTC on 1 December is still 30 November in New York: it counts there,
        on that day; inbound messages count as received on their local day."""
        when = datetime(2026, 12, 1, 3, 30, tzinfo=UTC)
        outbox = Outbox(store, POLICY, clock=lambda: when)
        await outbox.submit(SubmitRequest(["+447700900001"], "x", user=make_user()))
        async with store.transaction() as db:
            await db.execute(
                "INSERT INTO inbound (sender, recipient, text, received_at, gateway, parts, "
                "complete, route_state) VALUES ('+447700900009', '+447700900100', 'hi', "
                "'2026-11-30T12:00:00.000000+00:00', 'gsm', 1, TRUE, 'routed')"
            )
        start, end = month_bounds("2026-11", POLICY.timezone, when)
        report = await month_report(store, start, end, POLICY)
        assert report.month == "2026-11"
        assert list(report.by_day) == ["2026-11-30"]
        assert (report.by_day["2026-11-30"].messages, report.by_day["2026-11-30"].received) == (
            1, 1)
        mine = await month_report(store, start, end, POLICY, user="alice",
                                  user_did="+447700900100")
        assert mine.by_user["alice"].received == 1 and mine.total.received == 1
        dec = await month_report(store, *month_bounds("2026-12", POLICY.timezone, when), POLICY)
        assert dec.total.messages == 0
