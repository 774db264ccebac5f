"""Modems and gateways (admins): state, signal bars, operator, registration, storage,
sent today against the cap, last error; a probe button and USSD for the allowed users.

Live: the event stream sends ``modems`` when the pool's snapshot changes.
"""

from __future__ import annotations

from aiohttp import web

from smsd.api.common import SERVICES
from smsd.errors import AtError, AtTimeout, GatewayUnavailable, PortGone, ValidationError
from smsd.modem.pool import ModemInfo
from smsd.ui.render import EMPTY, Html, h, hidden_csrf, join, notice, page, redirect
from smsd.ui.session import current

PREFIX = "/ui/modems"

# TS 27.007 7.2 +CREG <stat>.
REGISTRATION = {0: "not registered", 1: "home network", 2: "searching", 3: "denied",
                4: "unknown", 5: "roaming", 6: "home (SMS only)", 7: "roaming (SMS only)",
                9: "home (CSFB not preferred)", 10: "roaming (CSFB not preferred)"}


def bars(n: int | None) -> Html:
    """Signal as five bars, drawn inline (no image request, nothing for the CSP to block)."""
    lit = n or 0
    rects = join(h('<rect x="$x" y="$y" width="5" height="$hh"$cls/>', x=i * 7, y=16 - 3 * (i + 1),
                   hh=3 * (i + 1), cls=Html(' class="on"') if i < lit else EMPTY)
                 for i in range(5))
    label = "no signal reading" if n is None else f"signal {lit} of 5 bars"
    return h('<svg class="bars" width="34" height="16" viewBox="0 0 34 16" role="img" '
             'aria-label="$label" data-bars="$n">$rects</svg>', label=label, n=lit, rects=rects)


def _card(m: ModemInfo, csrf: str, may_ussd: bool) -> Html:
    cap = f"{m.sent_today} / {m.daily_cap}" if m.daily_cap else f"{m.sent_today} (no cap)"
    signal = h("$bars $dbm", bars=bars(m.signal_bars),
               dbm=f"{m.signal_dbm} dBm" if m.signal_dbm is not None else "")
    facts = [("State", f"{m.state}{' (' + m.detail + ')' if m.detail else ''}"),
             ("Signal", signal), ("Operator", m.operator or "—"),
             ("Registration", REGISTRATION.get(m.registration, "—")
              if m.registration is not None else "—"),
             ("SIM storage", m.storage or "—"), ("Number", m.own_number or "—"),
             ("Model", " ".join(x for x in (m.manufacturer, m.model) if x) or "—"),
             ("Sent today", cap), ("In flight", m.in_flight), ("Last error", m.last_error or "—")]
    dl = join(h("<dt>$k</dt><dd>$v</dd>", k=k, v=v) for k, v in facts)
    probe = h('<form class="inline" method="post" action="$a">$csrf'
              '<button type="submit">Probe now</button></form>',
              a=f"{PREFIX}/{m.id}/probe", csrf=hidden_csrf(csrf))
    ussd = (h('<form class="inline" method="post" action="$a">$csrf'
              '<label for="code-$id">USSD code</label>'
              '<input id="code-$id" name="code" value="*100#" size="8" required>'
              '<button type="submit">Send USSD</button></form>',
              a=f"{PREFIX}/{m.id}/ussd", csrf=hidden_csrf(csrf), id=m.id)
            if may_ussd else EMPTY)
    return h('<article class="card modem" data-modem="$id"><h2>$id</h2><dl>$dl</dl>'
             '$probe$ussd</article>', id=m.id, dl=dl, probe=probe, ussd=ussd)


async def list_page(request: web.Request, message: Html = EMPTY,
                    status: int = 200) -> web.StreamResponse:
    user, sess = current(request)
    if not user.admin:
        return page("Modems", notice("Only admins see the modems.", "error"), user=user,
                    csrf=sess.csrf, status=403)
    services = request.app[SERVICES]
    gateways = [h("<li>$n: $s</li>", n=g.name, s="available" if g.available() else
                  "not available") for g in services.router.gateways()]
    may_ussd = services.config.gsm is not None and user.username in services.config.gsm.ussd_users
    cards = ([_card(m, sess.csrf, may_ussd) for m in services.pool.snapshot()]
             if services.pool is not None else [])
    body = h('$message<section id="modems" data-live-region><h2>Gateways</h2><ul>$gw</ul>'
             '<div class="modems">$cards</div></section>', message=message, gw=join(gateways),
             cards=join(cards) if cards else notice("No GSM modems are configured."))
    return page("Modems", body, user=user, csrf=sess.csrf, active=PREFIX, live="modems",
                status=status)


async def probe(request: web.Request) -> web.StreamResponse:
    user, _ = current(request)
    pool = request.app[SERVICES].pool
    if not user.admin or pool is None:
        return await list_page(request, notice("Nothing to probe.", "error"), 403)
    try:
        await pool.refresh(request.match_info["modem"])
    except (ValidationError, GatewayUnavailable, AtError, AtTimeout, PortGone) as exc:
        return await list_page(request, notice(str(exc), "error"), 409)
    return redirect(PREFIX)


async def ussd(request: web.Request) -> web.StreamResponse:
    user, _ = current(request)
    services = request.app[SERVICES]
    pool, gsm = services.pool, services.config.gsm
    if pool is None or gsm is None or user.username not in gsm.ussd_users:
        return await list_page(request, notice(
            "You may not send USSD: an admin lists your user name in [gateways.gsm] ussd_users.",
            "error"), 403)
    modem = request.match_info["modem"]
    code = str((await request.post()).get("code", ""))
    try:
        answer = await pool.ussd(modem, code)
    except (ValidationError, GatewayUnavailable, PortGone) as exc:
        return await list_page(request, notice(f"{exc}; nothing was sent", "error"), 400)
    except AtTimeout as exc:
        return await list_page(request, notice(f"no USSD answer within {exc.seconds:g} s",
                                               "error"), 504)
    except AtError as exc:
        return await list_page(request, notice(f"the modem refused: {exc.raw}", "error"), 502)
    return await list_page(request, notice(f"{modem} {code}: {answer.text or '(no text)'}"))


def routes() -> list[web.RouteDef]:
    return [
        web.get(PREFIX, list_page, allow_head=False),
        web.post(PREFIX + "/{modem}/probe", probe),
        web.post(PREFIX + "/{modem}/ussd", ussd),
    ]
