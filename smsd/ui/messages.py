"""Messages: search and filter, a message's history timeline, CSV export.

Admins see every message; other users only their own (the filter's user is
forced to them, and a message of somebody else answers 404, not 403, so ids
do not tell who sent what).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from aiohttp import web

from smsd.api.common import SERVICES, parse_id
from smsd.config import User
from smsd.store import MESSAGE_STATES, MessageView
from smsd.store import console as queries
from smsd.ui.render import EMPTY, Html, h, join, notice, page
from smsd.ui.session import current
from smsd.ui.widgets import select, short, tick, when

PREFIX = "/ui/messages"
PAGE = 100
# Rows in one CSV export at most (the statistics export has no limit).
MAX_EXPORT = 100_000
CSV_COLUMNS = ("id", "created_at", "user", "sender", "recipient", "state", "gateway", "modem",
               "parts", "error", "text")


def _filter(request: web.Request, user: User) -> queries.MessageFilter:
    q = request.query
    tz = ZoneInfo(request.app[SERVICES].config.policy.timezone)

    def day(key: str, plus: int = 0) -> datetime | None:
        raw = q.get(key, "").strip()
        if not raw:
            return None
        try:
            d = datetime.fromisoformat(raw)
        except ValueError:
            raise ValueError(f"{key} must be a date such as 2026-12-01") from None
        d = d if d.tzinfo else d.replace(tzinfo=tz)
        return d + timedelta(days=plus)

    state = q.get("state") or None
    if state is not None and state not in MESSAGE_STATES:
        raise ValueError(f"state must be one of {', '.join(MESSAGE_STATES)}")
    return queries.MessageFilter(
        state=state,
        user=(q.get("user") or None) if user.admin else user.username,
        gateway=q.get("gateway") or None,
        number=(q.get("number") or "").strip() or None,
        since=day("since"),
        until=day("until", 1),  # the "until" day is included
    )


def _filter_form(request: web.Request, user: User) -> Html:
    q = request.query
    services = request.app[SERVICES]
    users = [(u.username, u.username) for u in services.directory.users]
    gateways = [(g.name, g.name) for g in services.router.gateways()]
    user_sel = (select("user", "User", users, q.get("user", ""), blank="any")
                if user.admin else EMPTY)
    return h(
        '<form class="card filters" method="get" action="$action" role="search">'
        '<div>$state</div><div>$user</div><div>$gateway</div>'
        '<div><label for="number">Number</label>'
        '<input id="number" name="number" value="$number" inputmode="tel"></div>'
        '<div><label for="since">From</label>'
        '<input id="since" name="since" type="date" value="$since"></div>'
        '<div><label for="until">Until</label>'
        '<input id="until" name="until" type="date" value="$until"></div>'
        '<div><button type="submit">Filter</button></div></form>',
        action=PREFIX,
        state=select("state", "State", [(s, s) for s in MESSAGE_STATES], q.get("state", ""),
                     blank="any"),
        user=user_sel, gateway=select("gateway", "Gateway", gateways, q.get("gateway", ""),
                                      blank="any"),
        number=q.get("number", ""), since=q.get("since", ""), until=q.get("until", ""))


async def list_page(request: web.Request) -> web.StreamResponse:
    user, sess = current(request)
    services = request.app[SERVICES]
    tz = services.config.policy.timezone
    try:
        f = _filter(request, user)
    except ValueError as exc:
        return page("Messages", h("$n$form", n=notice(str(exc), "error"),
                                  form=_filter_form(request, user)),
                    user=user, csrf=sess.csrf, active=PREFIX, status=400)
    views = await queries.filter_messages(services.store, f, limit=PAGE)
    rows = [h('<tr><td><a href="$href">$id</a></td><td data-label="Created">$at</td>'
              '<td data-label="User">$user</td><td data-label="To">$to</td>'
              '<td data-label="Text">$text</td><td data-label="State">$tick</td>'
              '<td data-label="Gateway">$gw</td></tr>',
              href=f"{PREFIX}/{v.id}", id=v.id, at=when(v.created_at, tz), user=v.user or "",
              to=v.recipient, text=short(v.text, 50), tick=tick(v.state, v.error),
              gw=" / ".join(x for x in (v.gateway, v.modem) if x))
            for v in views]
    table = (h('<div class="table-wrap"><table><caption>Newest first (at most $n)</caption>'
               '<thead><tr><th scope="col">#</th><th scope="col">Created</th>'
               '<th scope="col">User</th><th scope="col">To</th><th scope="col">Text</th>'
               '<th scope="col">State</th><th scope="col">Gateway</th></tr></thead>'
               '<tbody>$rows</tbody></table></div>', n=PAGE, rows=join(rows))
             if rows else notice("No message matches."))
    export = h('<p><a class="button" href="$href" download>Export CSV</a></p>',
               href=f"{PREFIX}.csv?{request.query_string}")
    body = h('$form$export<section id="messages" data-live-region>$table</section>',
             form=_filter_form(request, user), export=export, table=table)
    return page("Messages", body, user=user, csrf=sess.csrf, active=PREFIX, live="status")


def _may_see(user: User, view: MessageView) -> bool:
    return user.admin or view.user == user.username


async def detail(request: web.Request) -> web.StreamResponse:
    user, sess = current(request)
    services = request.app[SERVICES]
    tz = services.config.policy.timezone
    raw = request.match_info["id"]
    msg_id = parse_id(raw)
    view = await services.store.get_message(msg_id) if msg_id is not None else None
    if view is None or not _may_see(user, view):
        return page("Message", notice(f"No message {raw}.", "error"), user=user,
                    csrf=sess.csrf, active=PREFIX, status=404)
    facts = [("State", tick(view.state, view.error)), ("From", view.sender or "default"),
             ("To", view.recipient), ("User", view.user or "system"),
             ("Gateway", view.gateway or "—"), ("Modem", view.modem or "—"),
             ("Encoding", view.encoding), ("Parts", view.parts), ("Origin", view.origin),
             ("Created", when(view.created_at, tz)),
             ("Postponed to", when(view.send_at, tz) if view.send_at else "—"),
             ("Error", view.error or "—")]
    dl = join(h("<dt>$k</dt><dd>$v</dd>", k=k, v=v) for k, v in facts)
    steps = [h("<li>$at <strong>$state</strong> $detail</li>", at=when(e["at"], tz),
               state=e["state"], detail=e["detail"] or "") for e in view.history]
    parts = [h("<tr><td>$p</td><td>$s</td><td>$m</td><td>$r</td><td>$at</td><td>$rep</td></tr>",
               p=p["part"], s=p["state"], m=p["modem"] or "", r=p["reference"] or "",
               at=when(p["sent_at"], tz), rep="" if p["report_status"] is None
               else p["report_status"]) for p in view.part_states]
    body = h('<section id="message" data-live-region><div class="card"><p class="text">$text</p>'
             '<dl class="facts">$dl</dl></div><h2>History</h2>'
             '<ol class="timeline" aria-label="History">$steps</ol>'
             '<h2>Parts and delivery reports</h2><div class="table-wrap"><table><thead><tr>'
             '<th scope="col">Part</th><th scope="col">State</th><th scope="col">Modem</th>'
             '<th scope="col">Reference</th><th scope="col">Sent</th>'
             '<th scope="col">Report status (TP-ST)</th></tr></thead><tbody>$parts</tbody>'
             '</table></div></section>',
             text=view.text, dl=dl, steps=join(steps), parts=join(parts))
    return page(f"Message {view.id}", body, user=user, csrf=sess.csrf, active=PREFIX,
                live=f"status:{view.id}")


async def export(request: web.Request) -> web.StreamResponse:
    user, _ = current(request)
    services = request.app[SERVICES]
    try:
        f = _filter(request, user)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    offset = 0
    while offset < MAX_EXPORT:
        views = await queries.filter_messages(services.store, f, limit=1000, offset=offset)
        for v in views:
            w.writerow([v.id, v.created_at.isoformat(), v.user or "", v.sender or "",
                        v.recipient, v.state, v.gateway or "", v.modem or "", v.parts,
                        v.error or "", v.text])
        if len(views) < 1000:
            break
        offset += len(views)
    return web.Response(text=buf.getvalue(), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="messages.csv"'})


def routes() -> list[web.RouteDef]:
    return [
        web.get(PREFIX, list_page, allow_head=False),
        web.get(PREFIX + ".csv", export, allow_head=False),
        web.get(PREFIX + "/{id}", detail, allow_head=False),
    ]
