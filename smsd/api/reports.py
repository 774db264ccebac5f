"""``GET /api/v1/stats`` and ``GET /api/v1/reports``: statistics and the SMS report list.

JSON by default; CSV with ``?format=csv`` or ``Accept: text/csv`` (for a
spreadsheet export).  An admin sees everyone (``?user=`` narrows it); any
other user sees only their own messages.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from aiohttp import web

from smsd.api.common import SERVICES, api_error, is_admin, json_response, require_user
from smsd.config import User
from smsd.core.monthly import month_report
from smsd.core.reports import ReportFilter, report_rows, write_report
from smsd.core.stats import month_bounds
from smsd.services import Services

STAT_COLUMNS = ("messages", "sent", "delivered", "failed", "received", "parts", "included",
                "billable", "cost")
MAX_REPORT_ROWS = 10_000


def _wants_csv(request: web.Request) -> bool:
    fmt = request.query.get("format")
    if fmt is not None:
        return fmt == "csv"
    return "text/csv" in request.headers.get("Accept", "")


def _subject(services: Services, user: User, asked: str | None) -> str | web.Response | None:
    """Whose data: the asked user (admins), else the caller; a Response when refused."""
    if not is_admin(services, user):
        if asked not in (None, user.username, user.extension):
            return api_error(403, "only an admin may read another user's statistics")
        return user.username
    if asked is None:
        return None
    found = services.directory.user_by_extension(asked) or services.directory.user_by_username(
        asked
    )
    if found is None:
        return api_error(400, f"user {asked!r}: no such extension or username")
    return found.username


def _csv_response(text: str, name: str) -> web.Response:
    return web.Response(
        text=text, content_type="text/csv", charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


async def stats(request: web.Request) -> web.Response:
    user = await require_user(request)
    if isinstance(user, web.Response):
        return user
    services = request.app[SERVICES]
    policy = services.config.policy
    subject = _subject(services, user, request.query.get("user"))
    if isinstance(subject, web.Response):
        return subject
    try:
        start, end = month_bounds(request.query.get("month"), policy.timezone, datetime.now(UTC))
    except ValueError as exc:
        return api_error(400, str(exc))
    did = None
    if subject is not None:
        found = services.directory.user_by_username(subject)
        did = found.office_number if found else None
    report = await month_report(services.store, start, end, policy, user=subject, user_did=did)
    data = report.to_json()
    if not _wants_csv(request):
        return json_response(data)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(("group", "key", *STAT_COLUMNS))
    w.writerow(("total", data["month"], *(data["total"][c] for c in STAT_COLUMNS)))
    for group in ("user", "gateway", "day"):
        for row in data[f"by_{group}"]:
            w.writerow((group, row[group], *(row[c] for c in STAT_COLUMNS)))
    return _csv_response(out.getvalue(), f"smsd-stats-{data['month']}")


async def reports(request: web.Request) -> web.Response:
    user = await require_user(request)
    if isinstance(user, web.Response):
        return user
    services = request.app[SERVICES]
    policy = services.config.policy
    q = request.query
    subject = _subject(services, user, q.get("user"))
    if isinstance(subject, web.Response):
        return subject
    tz = ZoneInfo(policy.timezone)
    try:
        if q.get("since") or q.get("until"):
            since = _time(q.get("since"), "since", tz)
            until = _time(q.get("until"), "until", tz)
        else:
            since, until = month_bounds(q.get("month"), policy.timezone, datetime.now(UTC))
        limit = int(q.get("limit", str(MAX_REPORT_ROWS)))
    except ValueError as exc:
        return api_error(400, str(exc) if "limit" not in str(exc) else "limit must be a number")
    if not 1 <= limit <= MAX_REPORT_ROWS:
        return api_error(400, f"limit must be 1..{MAX_REPORT_ROWS}")
    flt = ReportFilter(since=since, until=until, user=subject, recipient=q.get("to") or None,
                       state=q.get("state") or None, gateway=q.get("gateway") or None)
    if _wants_csv(request):
        out = io.StringIO()
        await write_report(services.store, policy, flt, out, "csv")
        return _csv_response(out.getvalue(), "smsd-report")
    rows = [r.to_json() async for r in report_rows(services.store, policy, flt, limit=limit)]
    return json_response({"reports": rows}, dumps_default=str)


def _time(raw: str | None, key: str, tz: ZoneInfo) -> datetime | None:
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{key} must be an ISO 8601 time such as 2026-11-25T14:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=tz)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/stats", stats, allow_head=False),
        web.get("/api/v1/reports", reports, allow_head=False),
    ]
