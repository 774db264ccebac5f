"""One month's statistics: per user, per gateway and per day (``smsd stats``, ``/api/v1/stats``).

Counts, in the daemon's time zone (``policy.timezone``):

- ``messages``: outbound messages submitted in the month;
- ``sent``: those a gateway accepted (state sent or delivered);
- ``delivered``: a delivery report said so, or -- SEED-NOTES "Routing
  outbound" -- a bulk message (origin ``bulk``) a gateway accepted;
- ``failed``: failed or expired (they do not use the package, cost nothing);
- ``parts``: the parts that count towards the package (failed/expired left
  out), so that ``parts == included + billable`` for every user;
- ``included`` / ``billable`` / ``cost``: the split fixed at submit time
  (``messages.cost_billable``, smsd.core.stats.monthly_usage), never
  recomputed from today's package;
- ``received``: inbound messages (per user: those sent to the user's DID).

The grouping is done in SQL on quarter-hour buckets of the stored UTC time
(every time zone's offset is a whole number of quarter hours), so a month of
millions of messages costs one query of a few thousand rows, and each bucket
is then placed on its local day in Python.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from smsd.config import Policy
from smsd.core.stats import NOT_USED
from smsd.store import Store
from smsd.store.stats import incoming_buckets, outgoing_buckets


@dataclass
class Counts:
    messages: int = 0
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    received: int = 0
    parts: int = 0
    included: int = 0
    billable: int = 0
    cost: float = 0.0

    def add(self, other: Counts) -> None:
        for k in ("messages", "sent", "delivered", "failed", "received", "parts",
                  "included", "billable"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.cost = round(self.cost + other.cost, 6)


@dataclass
class MonthReport:
    month: str
    timezone: str
    monthly_package: int
    fee_per_sms: float
    user: str | None
    total: Counts = field(default_factory=Counts)
    by_user: dict[str, Counts] = field(default_factory=dict)
    by_gateway: dict[str, Counts] = field(default_factory=dict)
    by_day: dict[str, Counts] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "month": self.month,
            "timezone": self.timezone,
            "monthly_package": self.monthly_package,
            "fee_per_sms": self.fee_per_sms,
            "user": self.user,
            "total": asdict(self.total),
            "by_user": [{"user": k, **asdict(v)} for k, v in sorted(self.by_user.items())],
            "by_gateway": [
                {"gateway": k, **asdict(v)} for k, v in sorted(self.by_gateway.items())
            ],
            "by_day": [{"day": k, **asdict(v)} for k, v in sorted(self.by_day.items())],
        }


def _local_day(bucket: str, tz: ZoneInfo) -> str:
    when = datetime.fromisoformat(bucket[:13] + ":" + bucket[14:16]).replace(tzinfo=UTC)
    return date.isoformat(when.astimezone(tz).date())


async def month_report(
    store: Store,
    start: datetime,
    end: datetime,
    policy: Policy,
    *,
    user: str | None = None,
    user_did: str | None = None,
) -> MonthReport:
    """The statistics of [start, end) (one calendar month), optionally of one user.

    ``user_did`` (the user's office number) selects the inbound messages
    counted as the user's ``received``.
    """
    tz = ZoneInfo(policy.timezone)
    fee = policy.fee_per_sms
    report = MonthReport(
        month=start.astimezone(tz).strftime("%Y-%m"), timezone=policy.timezone,
        monthly_package=policy.monthly_package, fee_per_sms=fee, user=user,
    )
    users: dict[str, Counts] = defaultdict(Counts)
    gateways: dict[str, Counts] = defaultdict(Counts)
    days: dict[str, Counts] = defaultdict(Counts)
    for r in await outgoing_buckets(store, start, end, user=user):
        n, state = r.messages, r.state
        c = Counts(messages=n)
        if state in ("sent", "delivered"):
            c.sent = n
        if state == "delivered" or (state == "sent" and r.bulk):
            c.delivered = n
        if state in NOT_USED:
            c.failed = n
        else:
            c.parts, c.billable = r.parts, r.billable
            c.included = r.parts - r.billable
            c.cost = round(r.billable * fee, 6)
        users[r.user or ""].add(c)
        gateways[r.gateway or ""].add(c)
        days[_local_day(r.bucket, tz)].add(c)

    recipient = None if user is None else (user_did or "")
    for bucket, n in await incoming_buckets(store, start, end, recipient=recipient):
        days[_local_day(bucket, tz)].received += n
        report.total.received += n
        if user is not None:
            users[user].received += n
    for c in users.values():
        report.total.add(Counts(**{**asdict(c), "received": 0}))
    report.by_user = dict(users)
    report.by_gateway = dict(gateways)
    report.by_day = dict(days)
    return report
