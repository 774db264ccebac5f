"""Conversations for agents: the list, the thread, reply, create, rename, people, assign.

Every rule lives in smsd.core.conversations (the same calls as the JSON API);
this module renders and maps ConversationError to a message on the page.
Unread counts come from the time a user last opened each thread, kept in the
store (smsd.store.reads), so they survive a restart.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from smsd.api.common import SERVICES, parse_id
from smsd.config import User
from smsd.core.conversations import ConversationError, Conversations
from smsd.errors import MessageTooLong, NotAllowed, ValidationError
from smsd.services import Services
from smsd.store import console as queries
from smsd.store import reads, utcnow
from smsd.ui.calls import call_box
from smsd.ui.render import EMPTY, Html, h, hidden_csrf, join, notice, page, redirect
from smsd.ui.session import current
from smsd.ui.widgets import select, short, text_box, tick, when

PREFIX = "/ui/conversations"


def _conv(services: Services) -> Conversations:
    if services.conversations is None:
        raise ConversationError("conversations are not enabled in this daemon", 503)
    return services.conversations


async def _visible(conv: Conversations, user: User) -> list[dict[str, Any]]:
    return await (conv.list_all() if user.admin else conv.list_for(user))


def _service_options(conv: Conversations, user: User) -> list[tuple[str, str]]:
    return [(s.name, f"{s.name} ({s.did})" if s.name != s.did else s.did)
            for s in conv.services_for(user)]


def create_form(conv: Conversations, user: User, csrf: str, number: str = "") -> Html:
    """ "Create SMS conversation": a number and a service with an SMS number."""
    options = _service_options(conv, user)
    if not options:
        return notice("You are not a member of any service with an SMS number, so you cannot "
                      "open conversations.")
    return h(
        '<form class="card inline" method="post" action="$action">$csrf'
        '<label for="number">Customer number</label>'
        '<input id="number" name="number" value="$number" placeholder="+447700900123" required '
        'inputmode="tel" autocomplete="off">$service'
        '<button type="submit">Create SMS conversation</button></form>',
        action=PREFIX, csrf=hidden_csrf(csrf), number=number,
        service=select("service", "Service", options))


async def list_page(request: web.Request) -> web.StreamResponse:
    user, sess = current(request)
    services = request.app[SERVICES]
    conv = _conv(services)
    convs = await _visible(conv, user)
    ids = [int(c["id"]) for c in convs]
    last = await queries.last_messages(services.store, ids)
    unread_of = await reads.unread_counts(services.store, user.extension, ids)
    tz = services.config.policy.timezone
    rows = []
    for c in convs:
        cid = int(c["id"])
        lm = last.get(cid)
        unread = unread_of.get(cid, 0)
        badge = (h('<span class="badge" aria-label="$n unread">$n</span>', n=unread)
                 if unread else Html(""))
        lm_html = (h('<span class="dir-$d">$t</span> $at', d=lm["direction"],
                     t=short(lm["text"]), at=when(lm["at"], tz)) if lm else Html(""))
        rows.append(h(
            '<tr data-conversation="$id"><td><a href="$href">$title</a></td>'
            '<td data-label="Service">$service</td><td data-label="Customer">$external</td>'
            '<td class="last" data-label="Last">$last</td><td data-label="Unread">$badge</td>'
            '<td data-label="Assigned">$assignee</td></tr>',
            id=cid, href=f"{PREFIX}/{cid}", title=c["title"], service=c["service"]["name"],
            external=c["external"], last=lm_html, badge=badge,
            assignee=c["assignee"] or "—"))
    table = (h('<table><caption>Your conversations</caption><thead><tr>'
               '<th scope="col">Title</th><th scope="col">Service</th>'
               '<th scope="col">Customer</th><th scope="col">Last message</th>'
               '<th scope="col">Unread</th><th scope="col">Assigned</th></tr></thead>'
               '<tbody>$rows</tbody></table>', rows=join(rows))
             if rows else notice("No conversations yet."))
    body = h('$call$create<section id="conversations" data-live-region>$table</section>',
             call=call_box(services, user, sess.csrf),
             create=create_form(conv, user, sess.csrf), table=table)
    return page("Conversations", body, user=user, csrf=sess.csrf, active=PREFIX,
                live="conversation call")


async def create(request: web.Request) -> web.StreamResponse:
    user, sess = current(request)
    conv = _conv(request.app[SERVICES])
    form = await request.post()
    number = str(form.get("number", "")).strip()
    service = str(form.get("service", "")) or None
    try:
        conv_id, _ = await conv.create(user, number, service)
    except ConversationError as exc:
        body = h("$n$form", n=notice(str(exc), "error"),
                 form=create_form(conv, user, sess.csrf, number))
        return page("Conversations", body, user=user, csrf=sess.csrf, active=PREFIX,
                    status=exc.status)
    return redirect(f"{PREFIX}/{conv_id}")


def _conv_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    conv_id = parse_id(raw)
    if conv_id is None:
        raise ConversationError(f"no conversation {raw!r}", 404)
    return conv_id


async def _open(request: web.Request, conv: Conversations, user: User) -> dict[str, Any]:
    conv_id = _conv_id(request)
    return await (conv.get(conv_id) if user.admin else conv.require_access(conv_id, user))


def _bubble(item: dict[str, Any], errors: dict[int, str | None], tz: str) -> Html:
    if item["direction"] == "in":
        return h('<li class="msg in"><p class="text">$text</p>'
                 '<p class="meta">$from · $at</p></li>',
                 text=item["text"], at=when(item["at"], tz), **{"from": item["from"]})
    return h('<li class="msg out" data-message="$id"><p class="text">$text</p>'
             '<p class="meta">$user · $at · $tick</p></li>',
             id=item["id"], text=item["text"], user=item.get("user") or "",
             at=when(item["at"], tz), tick=tick(item["state"], errors.get(int(item["id"]))))


def _people(c: dict[str, Any], conv: Conversations, csrf: str) -> Html:
    service = conv.service_for_did(c["did"])
    active = [p["extension"] for p in c["participants"] if p["active"]]
    items = [h('<li>$ext <form class="inline" method="post" action="$action">$csrf'
               '<input type="hidden" name="extension" value="$ext">'
               '<button type="submit" class="small" aria-label="Remove $ext">Remove</button>'
               '</form></li>', ext=e, action=f"{PREFIX}/{c['id']}/participants/remove",
               csrf=hidden_csrf(csrf)) for e in active]
    addable = [(m, m) for m in service.members if m not in active]
    add = (h('<form class="inline" method="post" action="$action">$csrf$sel'
             '<button type="submit">Add</button></form>',
             action=f"{PREFIX}/{c['id']}/participants", csrf=hidden_csrf(csrf),
             sel=select("extension", "Add participant", addable)) if addable else Html(""))
    assign = h('<form class="inline" method="post" action="$action">$csrf$sel'
               '<button type="submit">Assign</button></form>',
               action=f"{PREFIX}/{c['id']}/assign", csrf=hidden_csrf(csrf),
               sel=select("assignee", "Assigned agent", [(m, m) for m in service.members],
                          c["assignee"] or ""))
    rename = h('<form class="inline" method="post" action="$action">$csrf'
               '<label for="title">Title</label>'
               '<input id="title" name="title" value="$title" maxlength="100" required>'
               '<button type="submit">Rename</button></form>',
               action=f"{PREFIX}/{c['id']}/rename", csrf=hidden_csrf(csrf), title=c["title"])
    return h('<aside class="card people" aria-label="Conversation settings">$rename'
             '<h2>Participants</h2><ul>$items</ul>$add$assign</aside>',
             rename=rename, items=join(items), add=add, assign=assign)


async def thread(request: web.Request, message: Html = EMPTY, status: int = 200,
                 draft: str = "") -> web.StreamResponse:
    user, sess = current(request)
    services = request.app[SERVICES]
    conv = _conv(services)
    try:
        c = await _open(request, conv, user)
    except ConversationError as exc:
        return page("Conversation", notice(str(exc), "error"), user=user, csrf=sess.csrf,
                    status=exc.status)
    cid = int(c["id"])
    items = await conv.history(cid)
    errors: dict[int, str | None] = {}
    for it in items:
        if it["direction"] == "out" and it["state"] in ("failed", "expired"):
            view = await services.store.get_message(int(it["id"]))
            errors[int(it["id"])] = view.error if view else None
    await reads.mark_read(services.store, cid, user.extension, utcnow())
    tz = services.config.policy.timezone
    bubbles = join(_bubble(it, errors, tz) for it in items)
    head = h('<p class="sub">$external on $service ($did) · assigned to $assignee</p>',
             external=c["external"], service=c["service"]["name"], did=c["did"],
             assignee=c["assignee"] or "nobody")
    reply = h('<form class="card reply" method="post" action="$action">$csrf$box'
              '<button type="submit">Send reply</button></form>',
              action=f"{PREFIX}/{cid}/reply", csrf=hidden_csrf(sess.csrf),
              box=text_box("text", "Reply", draft))
    body = h('$message$head<div class="thread-layout"><div>'
             '<section id="thread" data-live-region aria-label="Messages">'
             '<ol class="thread">$bubbles</ol></section>$reply</div>'
             '<section id="people" data-live-region>$people</section></div>',
             message=message, head=head, bubbles=bubbles, reply=reply,
             people=_people(c, conv, sess.csrf))
    return page(c["title"], body, user=user, csrf=sess.csrf, active=PREFIX,
                live=f"conversation:{cid} status", status=status)


async def _act(request: web.Request, action: str) -> web.StreamResponse:
    user, _ = current(request)
    conv = _conv(request.app[SERVICES])
    form = await request.post()
    text = str(form.get("text", ""))
    try:
        cid = _conv_id(request)
        if action == "reply":
            if await conv.reply(cid, user, text) is None:
                return await thread(request, notice(
                    "STOP: the customer's number is now blocked; nothing was sent."))
        elif action == "rename":
            await conv.rename(cid, str(form.get("title", "")), user)
        elif action == "add":
            await conv.add_participant(cid, str(form.get("extension", "")), user)
        elif action == "remove":
            await conv.remove_participant(cid, str(form.get("extension", "")), user)
        else:
            await conv.assign(cid, str(form.get("assignee", "")), user)
    except ConversationError as exc:
        return await thread(request, notice(str(exc), "error"), exc.status, text)
    except (MessageTooLong, NotAllowed, ValidationError) as exc:
        return await thread(request, notice(str(exc), "error"), 400, text)
    return redirect(f"{PREFIX}/{cid}")


async def reply(request: web.Request) -> web.StreamResponse:
    return await _act(request, "reply")


async def rename(request: web.Request) -> web.StreamResponse:
    return await _act(request, "rename")


async def add_participant(request: web.Request) -> web.StreamResponse:
    return await _act(request, "add")


async def remove_participant(request: web.Request) -> web.StreamResponse:
    return await _act(request, "remove")


async def assign(request: web.Request) -> web.StreamResponse:
    return await _act(request, "assign")


def routes() -> list[web.RouteDef]:
    return [
        web.get(PREFIX, list_page, allow_head=False),
        web.post(PREFIX, create),
        web.get(PREFIX + "/{id}", thread, allow_head=False),
        web.post(PREFIX + "/{id}/reply", reply),
        web.post(PREFIX + "/{id}/rename", rename),
        web.post(PREFIX + "/{id}/participants", add_participant),
        web.post(PREFIX + "/{id}/participants/remove", remove_participant),
        web.post(PREFIX + "/{id}/assign", assign),
    ]
