"""Statistics, per-message reports, monthly quota and CSV export.

Quota (SEED-NOTES "Users, licences, quota, statistics"): every user has
``policy.monthly_package`` SMS included per calendar month (in the PBX's time
zone, ``policy.timezone``); an SMS here is one part (segment), the unit
carriers bill.  The parts beyond the package are counted at submit time into
``messages.cost_billable`` so that a report's cost never changes afterwards
(a later price or package change does not rewrite history's part counts; cost
is ``cost_billable * policy.fee_per_sms``).  Failed and expired messages do
not count as used and cost nothing in reports (the outbox leaves them out of
the month's usage when it decides the next message's billable parts).

Everything here only reads, so it works on a store opened read-only (the CLI
reading the daemon's database).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from smsd.config import Policy
from smsd.store import Store, utcnow
from smsd.store import stats as counts
from smsd.store.timefmt import month_of
from smsd.store.usage import NOT_USED as NOT_USED  # re-exported: defined with the counter

# Rows fetched per query while exporting: bounded memory however long the period.
EXPORT_PAGE = 1000

CSV_COLUMNS = ("time", "user", "from", "to", "gateway", "parts", "status", "cost")
REPORT_COLUMNS = CSV_COLUMNS


@dataclass(frozen=True)
class QuotaUsage:
    user: str
    month: str  # "2026-11"
    used: int  # parts submitted this month
    included: int
    billable: int
    fee_per_sms: float
    cost: float

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ReportRow:
    id: int
    time: datetime
    user: str | None
    sender: str | None
    recipient: str
    gateway: str | None
    parts: int
    status: str
    cost: float

    def csv_row(self) -> list[str]:
        return [
            self.time.isoformat(),
            self.user or "",
            self.sender or "",
            self.recipient,
            self.gateway or "",
            str(self.parts),
            self.status,
            f"{self.cost:.4f}",
        ]

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "time": self.time.isoformat()}


@dataclass(frozen=True)
class Summary:
    since: datetime | None
    until: datetime | None
    outgoing: dict[str, int]  # state -> messages
    outgoing_total: int
    outgoing_parts: int
    incoming: dict[str, int]  # route_state -> messages
    incoming_total: int
    by_gateway: dict[str, int]  # gateway ("" = not sent yet) -> messages
    by_user: dict[str, int]  # user ("" = system) -> messages
    billable_parts: int
    cost: float

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["since"] = self.since.isoformat() if self.since else None
        d["until"] = self.until.isoformat() if self.until else None
        return d


class Stats:
    def __init__(self, store: Store, policy: Policy) -> None:
        self._store = store
        self._policy = policy
        self._tz = ZoneInfo(policy.timezone)

    async def quota(self, user: str, when: datetime | None = None) -> QuotaUsage:
        """How much of ``user``'s monthly package the month of ``when`` (default now) used."""
        usages = await self.quotas(when, user=user)
        if usages:
            return usages[0]
        start, _ = month_of(when or utcnow(), self._tz)
        return self._usage(user, start, 0)

    async def quotas(self, when: datetime | None = None, *, user: str | None = None
                     ) -> list[QuotaUsage]:
        """Every user with SMS in the month of ``when``, by username."""
        start, end = month_of(when or utcnow(), self._tz)
        fee = self._policy.fee_per_sms
        return [
            QuotaUsage(user=u.user, month=start.strftime("%Y-%m"), used=u.parts,
                       included=u.included, billable=u.billable, fee_per_sms=fee,
                       cost=round(u.billable * fee, 6))
            for u in await monthly_usage(self._store, start, end, self._policy, user=user)
        ]

    def _usage(self, user: str, start: datetime, used: int) -> QuotaUsage:
        """A month with ``used`` parts and none billable (a user with no SMS yet)."""
        return QuotaUsage(user=user, month=start.strftime("%Y-%m"), used=used,
                          included=used, billable=0, fee_per_sms=self._policy.fee_per_sms,
                          cost=0.0)

    async def summary(self, since: datetime | None = None, until: datetime | None = None
                      ) -> Summary:
        """Outgoing (by state, gateway, user) and incoming (by route state) in a period."""
        outgoing: dict[str, int] = {}
        by_gateway: dict[str, int] = {}
        by_user: dict[str, int] = {}
        total = parts = billable = 0
        for c in await counts.outgoing_counts(self._store, since, until):
            n = c.messages
            outgoing[c.state] = outgoing.get(c.state, 0) + n
            by_gateway[c.gateway or ""] = by_gateway.get(c.gateway or "", 0) + n
            by_user[c.user or ""] = by_user.get(c.user or "", 0) + n
            total += n
            parts += c.parts
            if c.state not in NOT_USED:
                billable += c.billable
        incoming = await counts.incoming_counts(self._store, since, until)
        return Summary(
            since=since,
            until=until,
            outgoing=outgoing,
            outgoing_total=total,
            outgoing_parts=parts,
            incoming=incoming,
            incoming_total=sum(incoming.values()),
            by_gateway=by_gateway,
            by_user=by_user,
            billable_parts=billable,
            cost=round(billable * self._policy.fee_per_sms, 6),
        )

    async def report(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        user: str | None = None,
        limit: int = 1000,
        after_id: int = 0,
    ) -> list[ReportRow]:
        """Per-message rows (time, user, from, to, gateway, parts, status, cost) by id."""
        rows = await counts.report_page(self._store, after_id=after_id, limit=limit,
                                        since=since, until=until, user=user)
        fee = self._policy.fee_per_sms
        return [
            ReportRow(
                id=r.id,
                time=r.created_at.astimezone(self._tz),
                user=r.user,
                sender=r.sender,
                recipient=r.recipient,
                gateway=r.gateway,
                parts=r.parts,
                status=r.state,
                cost=0.0 if r.state in NOT_USED else round(r.cost_billable * fee, 6),
            )
            for r in rows
        ]

    async def export_csv(
        self,
        out: TextIO,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        user: str | None = None,
    ) -> int:
        """Write the report as CSV (header + one row per message); return the row count."""
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        count = 0
        after = 0
        while True:
            page = await self.report(
                since=since, until=until, user=user, limit=EXPORT_PAGE, after_id=after
            )
            for row in page:
                writer.writerow(row.csv_row())
            count += len(page)
            if len(page) < EXPORT_PAGE:
                return count
            after = page[-1].id


# --- the functions `smsd stats` (cli.py) calls ------------------------------


@dataclass(frozen=True)
class UserUsage:
    user: str
    messages: int
    parts: int
    included: int
    billable: int
    fee: float  # what the billable parts cost


@dataclass(frozen=True)
class Totals:
    outgoing: int
    outgoing_parts: int
    delivered: int
    failed: int
    incoming: int


def month_bounds(month: str | None, timezone: str, now: datetime) -> tuple[datetime, datetime]:
    """``YYYY-MM`` (default: the month of ``now``) -> [start, end) in the daemon's zone."""
    tz = ZoneInfo(timezone)
    if month is None:
        return month_of(now, tz)
    try:
        year_s, mon_s = month.split("-")
        year, mon = int(year_s), int(mon_s)
        if not 1 <= mon <= 12:
            raise ValueError
    except ValueError:
        raise ValueError(f"month {month!r} is not YYYY-MM") from None
    return month_of(datetime(year, mon, 15, tzinfo=tz), tz)


async def monthly_usage(
    store: Store, start: datetime, end: datetime, policy: Policy, *, user: str | None = None
) -> list[UserUsage]:
    """Per user: messages, parts, and the billable parts fixed when each was submitted.

    The one place usage is computed (the quota API, the CLI and the reports
    agree): billable parts are the stored ``cost_billable``, never recomputed
    from today's package, so a bill never changes after the fact.
    """
    return [
        UserUsage(
            user=u.user,
            messages=u.messages,
            parts=u.parts,
            included=min(u.parts - u.billable, policy.monthly_package),
            billable=u.billable,
            fee=round(u.billable * policy.fee_per_sms, 4),
        )
        for u in await counts.usage_by_user(store, start, end, user=user)
    ]


async def totals(store: Store, start: datetime, end: datetime) -> Totals:
    s = await Stats(store, Policy()).summary(start, end)
    return Totals(
        outgoing=s.outgoing_total,
        outgoing_parts=s.outgoing_parts,
        delivered=s.outgoing.get("delivered", 0),
        failed=s.outgoing.get("failed", 0) + s.outgoing.get("expired", 0),
        incoming=s.incoming_total,
    )


async def report_csv(store: Store, start: datetime, end: datetime, policy: Policy) -> str:
    """Per message: time, user, from, to, gateway, parts, status, cost (CSV, exportable)."""
    buf = io.StringIO()
    await Stats(store, policy).export_csv(buf, since=start, until=end)
    return buf.getvalue()
