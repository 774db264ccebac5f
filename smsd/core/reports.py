"""The list of SMS reports (SEED-NOTES: per message time, user, from, to, gateway, parts,
status, cost), filtered, paged by id, as table, CSV or JSON.

``smsd report`` and ``GET /api/v1/reports`` share it.  Rows are read in pages
of smsd.core.stats.EXPORT_PAGE by id, so an export of a whole year holds one
page in memory.  Cost follows smsd.core.stats: the billable parts fixed at
submit time times today's fee; failed and expired messages cost nothing.
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO
from zoneinfo import ZoneInfo

from smsd.config import Policy
from smsd.core.stats import CSV_COLUMNS, EXPORT_PAGE, NOT_USED, ReportRow
from smsd.store import Store
from smsd.store.stats import report_page


@dataclass(frozen=True)
class ReportFilter:
    since: datetime | None = None
    until: datetime | None = None
    user: str | None = None
    recipient: str | None = None
    state: str | None = None
    gateway: str | None = None


async def report_rows(
    store: Store, policy: Policy, flt: ReportFilter, *, limit: int | None = None
) -> AsyncIterator[ReportRow]:
    """Every message matching ``flt``, by id; at most ``limit`` rows when given."""
    tz = ZoneInfo(policy.timezone)
    fee = policy.fee_per_sms
    after, left = 0, limit
    while True:
        page = EXPORT_PAGE if left is None else min(EXPORT_PAGE, left)
        if page <= 0:
            return
        rows = await report_page(
            store, after_id=after, limit=page, since=flt.since, until=flt.until,
            user=flt.user, recipient=flt.recipient, state=flt.state, gateway=flt.gateway)
        for r in rows:
            yield ReportRow(
                id=r.id, time=r.created_at.astimezone(tz), user=r.user, sender=r.sender,
                recipient=r.recipient, gateway=r.gateway, parts=r.parts, status=r.state,
                cost=0.0 if r.state in NOT_USED else round(r.cost_billable * fee, 6),
            )
        if left is not None:
            left -= len(rows)
        if len(rows) < page:
            return
        after = rows[-1].id


async def write_report(
    store: Store, policy: Policy, flt: ReportFilter, out: TextIO, fmt: str
) -> int:
    """Write the rows as ``table``, ``csv`` or ``json`` (a list); return how many."""
    count = 0
    if fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        async for row in report_rows(store, policy, flt):
            w.writerow(row.csv_row())
            count += 1
        return count
    if fmt == "json":
        out.write("[")
        async for row in report_rows(store, policy, flt):
            out.write(("," if count else "") + "\n  " + json.dumps(row.to_json()))
            count += 1
        out.write("\n]\n")
        return count
    widths = (25, 12, 16, 16, 10, 6, 11, 9)
    out.write("".join(f"{c:<{w}}" for c, w in zip(CSV_COLUMNS, widths, strict=True)).rstrip()
              + "\n")
    async for row in report_rows(store, policy, flt):
        cells = row.csv_row()
        cells[0] = row.time.strftime("%Y-%m-%d %H:%M:%S%z")
        out.write("".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True)).rstrip()
                  + "\n")
        count += 1
    return count
