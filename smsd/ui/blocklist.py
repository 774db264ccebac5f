"""Blocklist and opt-outs (admins): list, add and remove blocked numbers; list, add
and lift opt-outs.

A number opts out by texting STOP and back in with START; an admin may lift
an opt-out by hand (the customer asked by phone), after a confirmation that
says so.  The same store call as ``DELETE /api/v1/opt-outs/{number}``.  An
admin may also add one (the customer asked by phone not to be texted), from
one company number (DID) or, with the DID left blank, from all of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from smsd.api.common import SERVICES
from smsd.errors import InvalidNumber
from smsd.numbers import parse_e164
from smsd.store.optouts import ADMIN_KEYWORD, add_opt_out, remove_opt_out
from smsd.ui.render import EMPTY, Html, h, hidden_csrf, join, notice, page, redirect
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
    opt_rows = [h('<tr><td>$n</td><td>$did</td><td>$k</td><td>$at</td><td>'
                  '<form method="post" action="$a" data-confirm="$ask">$csrf'
                  '<input type="hidden" name="number" value="$n">'
                  '<input type="hidden" name="did" value="$did">'
                  '<button type="submit" class="small" aria-label="Lift the opt-out of $n">'
                  'Remove</button></form></td></tr>', n=o["number"], did=o["did"] or "",
                  k=o["keyword"], at=when(o["created_at"], tz), a=PREFIX + "/opt-outs/remove",
                  ask=_lift_question(o["number"], o["keyword"]), csrf=hidden_csrf(sess.csrf))
                for o in await store.opt_outs()]
    opt = (h('<table id="opted-out"><thead><tr><th scope="col">Number</th>'
             '<th scope="col">DID</th><th scope="col">Keyword</th><th scope="col">Since</th>'
             '<th scope="col">Action</th></tr></thead><tbody>$rows</tbody></table>',
             rows=join(opt_rows)) if opt_rows else notice("Nobody has opted out."))
    form = h('<form class="card inline" method="post" action="$a">$csrf'
             '<label for="number">Number to block</label>'
             '<input id="number" name="number" required inputmode="tel" '
             'placeholder="+447700900123">'
             '<label for="reason">Reason</label>'
             '<input id="reason" name="reason" maxlength="$max" value="blocked by admin">'
             '<button type="submit">Block</button></form>',
             a=PREFIX, csrf=hidden_csrf(sess.csrf), max=MAX_REASON_CHARS)
    opt_form = h('<form class="card inline" id="add-opt-out" method="post" action="$a">$csrf'
                 '<label for="opt-number">Number to opt out</label>'
                 '<input id="opt-number" name="number" required inputmode="tel" '
                 'placeholder="+447700900123">'
                 '<label for="opt-did">From company number (DID)</label>'
                 '<input id="opt-did" name="did" inputmode="tel" '
                 'placeholder="blank: all DIDs">'
                 '<button type="submit">Opt out</button></form>',
                 a=PREFIX + "/opt-outs", csrf=hidden_csrf(sess.csrf))
    body = h("$message$form<h2>Blocked (inbound dropped)</h2>$blocked"
             "<h2>Opted out (outbound refused until START)</h2>$opt_form$opt",
             message=message, form=form, blocked=blocked, opt_form=opt_form, opt=opt)
    return page("Blocklist", body, user=user, csrf=sess.csrf, active=PREFIX, status=status)


def _lift_question(number: str, keyword: str) -> str:
    if keyword == ADMIN_KEYWORD:
        return (f"{number} was opted out by an admin. Send to it again? Only with the "
                "customer's consent.")
    return f"{number} texted {keyword}. Send to it again? Only with the customer's consent."


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


async def _opt_out_form(request: web.Request) -> tuple[str, str] | str:
    """An opt-out form's (number, DID; '' = every company number), or why it is refused."""
    form = await request.post()
    try:
        number = parse_e164(str(form.get("number", "")))
        did = str(form.get("did", "")).strip()
        return number, parse_e164(did) if did else ""
    except InvalidNumber as exc:
        return str(exc)


async def _change_opt_out(
    request: web.Request, change: Callable[..., Awaitable[object]]
) -> web.StreamResponse:
    """An admin's opt-out form applied with ``change`` (add or lift), then the list again."""
    user, _ = current(request)
    if not user.admin:
        return await list_page(request)
    got = await _opt_out_form(request)
    if isinstance(got, str):
        return await list_page(request, notice(got, "error"), 400)
    await change(request.app[SERVICES].store, *got, by=user.username)
    return redirect(PREFIX)


async def lift_opt_out(request: web.Request) -> web.StreamResponse:
    return await _change_opt_out(request, remove_opt_out)


async def opt_out(request: web.Request) -> web.StreamResponse:
    """Add an opt-out by hand; the customer's START lifts it as it lifts a STOP."""
    return await _change_opt_out(request, add_opt_out)


def routes() -> list[web.RouteDef]:
    return [web.get(PREFIX, list_page, allow_head=False), web.post(PREFIX, add),
            web.post(PREFIX + "/remove", remove),
            web.post(PREFIX + "/opt-outs", opt_out),
            web.post(PREFIX + "/opt-outs/remove", lift_opt_out)]
