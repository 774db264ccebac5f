"""Blocklist and opt-outs (admins): list, add and remove blocked numbers; see opt-outs.

Opt-outs are listed only: a number leaves that list when its owner texts
START, never because an agent clicked (SEED-NOTES, carrier rules).
"""

from __future__ import annotations

from aiohttp import web

from smsd.api.common import SERVICES
from smsd.errors import InvalidNumber
from smsd.numbers import parse_e164
from smsd.ui.render import EMPTY, Html, h, hidden_csrf, join, notice, page, redirect, table
from smsd.ui.session import current
from smsd.ui.widgets import when

PREFIX = "/ui/blocklist"
MAX_REASON_CHARS = 200


async def list_page(request: web.Request, message: Html = EMPTY,
                    status: int = 200) -> web.StreamResponse:
    user, sess = current(request)
    if not user.admin:
        return page("Blocklist", notice("Only admins manage the blocklist.", "error"),
                    user=user, csrf=sess.csrf, status=403)
    store = request.app[SERVICES].store
    tz = request.app[SERVICES].config.policy.timezone
    rows = [h('<tr><td>$n</td><td>$r</td><td>$by</td><td>$at</td><td>'
              '<form method="post" action="$a" data-confirm="Unblock $n?">$csrf'
              '<input type="hidden" name="number" value="$n">'
              '<button type="submit" class="small" aria-label="Unblock $n">Remove</button>'
              '</form></td></tr>', n=b["number"], r=b["reason"], by=b["by"] or "",
              at=when(b["created_at"], tz), a=PREFIX + "/remove", csrf=hidden_csrf(sess.csrf))
            for b in await store.blocked()]
    blocked = (h('<table id="blocked"><thead><tr><th scope="col">Number</th>'
                 '<th scope="col">Reason</th><th scope="col">By</th><th scope="col">Since</th>'
                 '<th scope="col">Action</th></tr></thead><tbody>$rows</tbody></table>',
                 rows=join(rows)) if rows else notice("No number is blocked."))
    opt = table(["Number", "DID", "Keyword", "Since"],
                ([o["number"], o["did"] or "", o["keyword"], when(o["created_at"], tz)]
                 for o in await store.opt_outs()), empty="Nobody has opted out.")
    form = h('<form class="card inline" method="post" action="$a">$csrf'
             '<label for="number">Number to block</label>'
             '<input id="number" name="number" required inputmode="tel" '
             'placeholder="+447700900123">'
             '<label for="reason">Reason</label>'
             '<input id="reason" name="reason" maxlength="$max" value="blocked by admin">'
             '<button type="submit">Block</button></form>',
             a=PREFIX, csrf=hidden_csrf(sess.csrf), max=MAX_REASON_CHARS)
    body = h("$message$form<h2>Blocked (inbound dropped)</h2>$blocked"
             "<h2>Opted out (outbound refused until START)</h2>$opt",
             message=message, form=form, blocked=blocked, opt=opt)
    return page("Blocklist", body, user=user, csrf=sess.csrf, active=PREFIX, status=status)


async def _number(request: web.Request) -> tuple[str | None, str]:
    form = await request.post()
    try:
        return parse_e164(str(form.get("number", ""))), str(form.get("reason", ""))
    except InvalidNumber as exc:
        return None, str(exc)


async def add(request: web.Request) -> web.StreamResponse:
    user, _ = current(request)
    if not user.admin:
        return await list_page(request)
    number, reason = await _number(request)
    if number is None:
        return await list_page(request, notice(reason, "error"), 400)
    reason = reason.strip()[:MAX_REASON_CHARS] or "blocked by admin"
    await request.app[SERVICES].store.block(number, by=user.username, reason=reason)
    return redirect(PREFIX)


async def remove(request: web.Request) -> web.StreamResponse:
    user, _ = current(request)
    if not user.admin:
        return await list_page(request)
    number, reason = await _number(request)
    if number is None:
        return await list_page(request, notice(reason, "error"), 400)
    await request.app[SERVICES].store.unblock(number)
    return redirect(PREFIX)


def routes() -> list[web.RouteDef]:
    return [web.get(PREFIX, list_page, allow_head=False), web.post(PREFIX, add),
            web.post(PREFIX + "/remove", remove)]
