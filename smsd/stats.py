"""Statistics and SMS reports, read from the store (SEED-NOTES "quota, statistics").

Each user has ``policy.monthly_package`` SMS included per calendar month in
the daemon's time zone; the outbox marks the parts beyond it as billable when
it commits them (``messages.cost_billable``), so reports only add up what was
decided then.  Failed and expired messages are not counted as used.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from smsd.config import Policy
from smsd.store import Store, ts

NOT_USED = ("failed", "expired")
REPORT_COLUMNS = ("time", "user", "from", "to", "gateway", "parts", "status", "cost")


@dataclass(frozen=True)
class UserUsage:
    user: str
    messages: int
    parts: int
    included: int
    billable: int
    fee: float


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
        local = now.astimezone(tz)
        year, mon = local.year, local.month
    else:
        try:
            year_s, mon_s = month.split("-")
            year, mon = int(year_s), int(mon_s)
            if not 1 <= mon <= 12:
                raise ValueError
        except ValueError:
            raise ValueError(f"month {month!r} is not YYYY-MM") from None
    start = datetime(year, mon, 1, tzinfo=tz)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=tz)
    return start, end


async def monthly_usage(
    store: Store, start: datetime, end: datetime, policy: Policy
) -> list[UserUsage]:
    rows = await store.fetchall(
        "SELECT user, COUNT(*) AS n, SUM(parts) AS parts, SUM(cost_billable) AS billable "
        "FROM messages WHERE user IS NOT NULL AND created_at >= ? AND created_at < ? "
        f"AND state NOT IN {NOT_USED!r} GROUP BY user ORDER BY user",
        (ts(start), ts(end)),
    )
    out = []
    for r in rows:
        parts, billable = int(r["parts"] or 0), int(r["billable"] or 0)
        out.append(
            UserUsage(
                user=r["user"],
                messages=int(r["n"]),
                parts=parts,
                included=min(parts - billable, policy.monthly_package),
                billable=billable,
                fee=round(billable * policy.fee_per_sms, 4),
            )
        )
    return out


async def totals(store: Store, start: datetime, end: datetime) -> Totals:
    out = await store.fetchone(
        "SELECT COUNT(*) AS n, COALESCE(SUM(parts), 0) AS parts, "
        "COALESCE(SUM(state = 'delivered'), 0) AS delivered, "
        "COALESCE(SUM(state IN ('failed', 'expired')), 0) AS failed "
        "FROM messages WHERE created_at >= ? AND created_at < ?",
        (ts(start), ts(end)),
    )
    inc = await store.fetchone(
        "SELECT COUNT(*) AS n FROM inbound WHERE received_at >= ? AND received_at < ?",
        (ts(start), ts(end)),
    )
    assert out is not None and inc is not None  # aggregate queries always return a row
    return Totals(
        int(out["n"]), int(out["parts"]), int(out["delivered"]), int(out["failed"]), int(inc["n"])
    )


async def report_csv(store: Store, start: datetime, end: datetime, policy: Policy) -> str:
    """Per message: time, user, from, to, gateway, parts, status, cost (CSV, exportable)."""
    rows = await store.fetchall(
        "SELECT created_at, user, sender, recipient, gateway, parts, state, cost_billable "
        "FROM messages WHERE created_at >= ? AND created_at < ? ORDER BY id",
        (ts(start), ts(end)),
    )
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(REPORT_COLUMNS)
    for r in rows:
        cost = int(r["cost_billable"] or 0) * policy.fee_per_sms
        w.writerow(
            [
                r["created_at"],
                r["user"] or "",
                r["sender"] or "",
                r["recipient"],
                r["gateway"] or "",
                r["parts"],
                r["state"],
                f"{cost:.4f}",
            ]
        )
    return buf.getvalue()
