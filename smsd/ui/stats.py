"""Statistics per month: the numbers of ``smsd stats`` with charts, and the CSV report.

Totals, per-user usage and the CSV come from smsd.core.stats (the functions
the CLI calls), so the console and ``smsd stats`` always agree.  Charts are
SVG drawn here, on the server: no chart library, nothing for the CSP to allow.
Admins see every user; other users their own line.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from aiohttp import web

from smsd.api.common import SERVICES
from smsd.core.stats import month_bounds, monthly_usage, report_csv, totals
from smsd.store import console as queries
from smsd.ui.render import EMPTY, Html, h, join, notice, page
from smsd.ui.session import current

PREFIX = "/ui/stats"
SERIES = ("sent", "delivered", "failed", "received")
CHART_H = 160
BAR_W = 4


def _bounds(request: web.Request) -> tuple[datetime, datetime]:
    tz = request.app[SERVICES].config.policy.timezone
    return month_bounds(request.query.get("month") or None, tz, datetime.now(ZoneInfo("UTC")))


def chart(days: list[str], values: dict[str, dict[str, int]]) -> Html:
    """Grouped bars per day: sent, delivered, failed, received."""
    top = max([1, *(v.get(s, 0) for v in values.values() for s in SERIES)])
    group = BAR_W * len(SERIES) + 4
    width = max(group * len(days) + 30, 200)
    bars = []
    for i, day in enumerate(days):
        for j, series in enumerate(SERIES):
            n = values.get(day, {}).get(series, 0)
            hh = round(CHART_H * n / top)
            bars.append(h('<rect class="$s" x="$x" y="$y" width="$w" height="$hh">'
                          '<title>$day $s: $n</title></rect>', s=series,
                          x=30 + i * group + j * BAR_W, y=CHART_H - hh + 5, w=BAR_W, hh=hh,
                          day=day, n=n))
        if i % 5 == 0:
            bars.append(h('<text x="$x" y="$y">$d</text>', x=30 + i * group,
                          y=CHART_H + 18, d=day[8:]))
    axis = h('<text x="0" y="12">$top</text><text x="0" y="$y">0</text>', top=top,
             y=CHART_H + 5)
    legend = join(h('<span><i class="$s"></i>$s</span>', s=s) for s in SERIES)
    return h('<figure><svg class="chart" viewBox="0 0 $w $hh" width="$w" height="$hh" role="img" '
             'aria-label="Messages per day">$axis$bars</svg><figcaption class="legend">$legend'
             '</figcaption></figure>', w=width, hh=CHART_H + 25, axis=axis, bars=join(bars),
             legend=legend)


def gateway_bar(n: int, top: int, width: int = 200) -> Html:
    w = round(width * n / top) if top else 0
    return h('<svg class="chart gw" width="$width" height="12" viewBox="0 0 $width 12" '
             'role="img" aria-label="$n messages"><rect class="sent" x="0" y="1" width="$w" '
             'height="10"/></svg>', width=width, n=n, w=w)


async def stats_page(request: web.Request) -> web.StreamResponse:
    user, sess = current(request)
    services = request.app[SERVICES]
    policy = services.config.policy
    try:
        start, end = _bounds(request)
    except ValueError as exc:
        return page("Statistics", notice(str(exc), "error"), user=user, csrf=sess.csrf,
                    active=PREFIX, status=400)
    month = f"{start:%Y-%m}"
    usage = await monthly_usage(services.store, start, end, policy,
                                user=None if user.admin else user.username)
    rows = join(h("<tr><td>$u</td><td>$m</td><td>$p</td><td>$i</td><td>$b</td><td>$f</td></tr>",
                  u=u.user, m=u.messages, p=u.parts, i=u.included, b=u.billable,
                  f=f"{u.fee:.2f}") for u in usage)
    per_user = h('<h2>Per user</h2><div class="table-wrap"><table id="usage"><thead><tr>'
                 '<th scope="col">User</th><th scope="col">Messages</th>'
                 '<th scope="col">Parts</th><th scope="col">Included</th>'
                 '<th scope="col">Billable</th><th scope="col">Fee</th></tr></thead>'
                 '<tbody>$rows</tbody></table></div>'
                 '<p class="sub">$pkg SMS parts included per user and month; '
                 '$fee per billable part.</p>',
                 rows=rows, pkg=policy.monthly_package, fee=f"{policy.fee_per_sms:.4f}")
    overview = EMPTY
    if user.admin:
        t = await totals(services.store, start, end)
        tz = ZoneInfo(policy.timezone)
        offset = int((start.utcoffset() or timedelta()).total_seconds())
        raw = await queries.per_day(services.store, start, end, offset)
        per_day: dict[str, dict[str, int]] = {}
        per_gw: dict[str, int] = {}
        for r in raw:
            d = per_day.setdefault(str(r["day"]), {})
            state, n = str(r["state"]), int(r["n"])
            if state == "received":
                d["received"] = d.get("received", 0) + n
                continue
            d["sent"] = d.get("sent", 0) + n
            if state == "delivered":
                d["delivered"] = d.get("delivered", 0) + n
            elif state in ("failed", "expired"):
                d["failed"] = d.get("failed", 0) + n
            per_gw[r["gateway"] or "(none yet)"] = per_gw.get(r["gateway"] or "(none yet)", 0) + n
        days = []
        d0 = start.astimezone(tz)
        while d0 < end:
            days.append(f"{d0:%Y-%m-%d}")
            d0 = (d0 + timedelta(days=1)).replace(hour=0)
        gw_rows = join(h("<tr><td>$g</td><td>$n</td><td>$bar</td></tr>", g=g, n=n,
                         bar=gateway_bar(n, max(per_gw.values())))
                       for g, n in sorted(per_gw.items()))
        overview = h(
            '<p id="totals">Outgoing $out messages ($parts parts, $dl delivered, $fl failed), '
            'incoming $inc.</p><h2>Per day</h2>$chart<h2>Per gateway</h2><table><thead><tr>'
            '<th scope="col">Gateway</th><th scope="col">Outgoing</th>'
            '<th scope="col">Share</th></tr></thead>'
            '<tbody>$gw</tbody></table>', out=t.outgoing, parts=t.outgoing_parts,
            dl=t.delivered, fl=t.failed, inc=t.incoming, chart=chart(days, per_day), gw=gw_rows)
    form = h('<form class="card inline" method="get" action="$a"><label for="month">Month</label>'
             '<input id="month" name="month" type="month" value="$m">'
             '<button type="submit">Show</button> <a href="$csv" download>Export CSV</a></form>',
             a=PREFIX, m=month, csv=f"{PREFIX}.csv?month={month}")
    body = h("$form$overview$per_user", form=form, overview=overview, per_user=per_user)
    return page(f"Statistics {month} ({policy.timezone})", body, user=user, csrf=sess.csrf,
                active=PREFIX)


async def export(request: web.Request) -> web.StreamResponse:
    user, _ = current(request)
    services = request.app[SERVICES]
    try:
        start, end = _bounds(request)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    if not user.admin:
        return web.json_response({"error": "only admins export the report"}, status=403)
    text = await report_csv(services.store, start, end, services.config.policy)
    return web.Response(text=text, content_type="text/csv", charset="utf-8", headers={
        "Content-Disposition": f'attachment; filename="smsd-{start:%Y-%m}.csv"'})


def routes() -> list[web.RouteDef]:
    return [web.get(PREFIX, stats_page, allow_head=False),
            web.get(PREFIX + ".csv", export, allow_head=False)]
