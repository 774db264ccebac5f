"""One search field over users, conversations and the phonebook, as in the vendor's client.

Each number found is offered with "SMS" (the Send page with the number filled
in) and "2 Way SMS" (create or join the conversation on a service).  A typed
number that is a valid E.164 number is offered too, so an agent can text
somebody who is in no list.  The phonebook of external contacts is a CSV file
(``name,number``) in the state directory, imported and exported here.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from aiohttp import web

from smsd.api.common import SERVICES
from smsd.config import User
from smsd.errors import InvalidNumber
from smsd.numbers import parse_e164
from smsd.services import Services
from smsd.ui.render import EMPTY, Html, h, hidden_csrf, join, notice, page, redirect
from smsd.ui.session import current
from smsd.ui.widgets import select, upload_text

PREFIX = "/ui/search"
PHONEBOOK = "/ui/phonebook"
# Contacts kept at most, and results shown per list.
MAX_CONTACTS = 50_000
MAX_RESULTS = 50


def phonebook_path(services: Services) -> Path:
    return services.config.state_dir / "phonebook.csv"


def read_phonebook(path: Path) -> list[tuple[str, str]]:
    """(name, E.164 number) pairs; rows with a bad number are skipped."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return []
    return parse_contacts(text)[0]


def parse_contacts(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """Contacts and the problems found (row numbers named), header optional."""
    good: list[tuple[str, str]] = []
    bad: list[str] = []
    for i, row in enumerate(csv.reader(io.StringIO(text.lstrip("\ufeff"))), 1):
        if not row or not any(c.strip() for c in row):
            continue
        if i == 1 and row[0].strip().lower() == "name":
            continue
        if len(row) < 2:
            bad.append(f"row {i}: needs name,number")
            continue
        try:
            good.append((row[0].strip(), parse_e164(row[1].strip())))
        except InvalidNumber as exc:
            bad.append(f"row {i}: {exc}")
    return good[:MAX_CONTACTS], bad


def _offer(number: str, label: str, services: Services, user: User, csrf: str) -> Html:
    sms = h('<a class="button" href="/ui/send?to=$n">SMS</a>', n=number)
    conv = services.conversations
    offered = conv.services_for(user) if conv is not None else []
    two_way = EMPTY
    if offered:
        choice = (h('<input type="hidden" name="service" value="$s">', s=offered[0].name)
                  if len(offered) == 1 else
                  select("service", "Service", [(s.name, s.name) for s in offered]))
        two_way = h('<form class="inline" method="post" action="/ui/conversations">$csrf'
                    '<input type="hidden" name="number" value="$n">$choice'
                    '<button type="submit">2 Way SMS</button></form>',
                    csrf=hidden_csrf(csrf), n=number, choice=choice)
    return h('<li class="hit"><span>$label <strong>$n</strong></span> $sms $two</li>',
             label=label, n=number, sms=sms, two=two_way)


async def search_page(request: web.Request) -> web.StreamResponse:
    user, sess = current(request)
    services = request.app[SERVICES]
    q = request.query.get("q", "").strip()
    results: list[Html] = []
    if q:
        low = q.lower()
        try:
            typed = parse_e164(q)
            results.append(_offer(typed, "Number", services, user, sess.csrf))
        except InvalidNumber:
            pass
        people = [u for u in services.directory.users
                  if low in u.name.lower() or low in u.extension or low in u.username.lower()
                  or (u.office_number and low in u.office_number)][:MAX_RESULTS]
        for u in people:
            results.append(h('<li class="hit">User $name ($ext) $num</li>', name=u.name,
                             ext=u.extension, num=u.office_number or ""))
        if services.conversations is not None:
            convs: list[dict[str, Any]] = await (services.conversations.list_all() if user.admin
                                                 else services.conversations.list_for(user))
            for c in [c for c in convs if low in c["title"].lower() or low in c["external"]][
                    :MAX_RESULTS]:
                results.append(h('<li class="hit">Conversation <a href="$href">$title</a> '
                                 '($ext, $svc)</li>', href=f"/ui/conversations/{c['id']}",
                                 title=c["title"], ext=c["external"], svc=c["service"]["name"]))
        contacts = [(n, num) for n, num in read_phonebook(phonebook_path(services))
                    if low in n.lower() or low in num][:MAX_RESULTS]
        for name, num in contacts:
            results.append(_offer(num, f"Contact {name}", services, user, sess.csrf))
    listing = (h('<ul class="results" aria-label="Results">$r</ul>', r=join(results)) if results
               else (notice("Nothing found. Type a full number such as +447700900123 to text it.")
                     if q else EMPTY))
    form = h('<form class="card inline" method="get" action="$a" role="search">'
             '<label for="q">Search users, conversations, contacts or type a number</label>'
             '<input id="q" name="q" type="search" value="$q" autofocus>'
             '<button type="submit">Search</button></form>', a=PREFIX, q=q)
    book = h('<section class="card"><h2>Phonebook</h2>'
             '<form method="post" action="$a" enctype="multipart/form-data">$csrf'
             '<label for="contacts">Import contacts (CSV: name,number)</label>'
             '<input id="contacts" name="file" type="file" accept=".csv,text/csv" required>'
             '<button type="submit">Import</button></form>'
             '<p><a href="$a.csv" download>Export the phonebook (CSV)</a></p></section>',
             a=PHONEBOOK, csrf=hidden_csrf(sess.csrf))
    return page("Search", h("$form$listing$book", form=form, listing=listing, book=book),
                user=user, csrf=sess.csrf, active=PREFIX)


async def import_contacts(request: web.Request) -> web.StreamResponse:
    user, sess = current(request)
    services = request.app[SERVICES]
    text = upload_text((await request.post()).get("file"))
    good, bad = parse_contacts(text)
    if not good:
        return page("Search", notice("No contact in that file: " + "; ".join(bad[:10]), "error"),
                    user=user, csrf=sess.csrf, active=PREFIX, status=400)
    merged = dict((num, name) for name, num in read_phonebook(phonebook_path(services)))
    merged.update((num, name) for name, num in good)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["name", "number"])
    for num, name in sorted(merged.items(), key=lambda kv: kv[1].lower()):
        w.writerow([name, num])
    path = phonebook_path(services)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(buf.getvalue(), "utf-8")
    tmp.replace(path)  # atomic: a crash leaves the old book or the new one
    if bad:
        return page("Search", notice(f"{len(good)} contacts imported; skipped: "
                                     + "; ".join(bad[:20])), user=user, csrf=sess.csrf,
                    active=PREFIX)
    return redirect(PREFIX)


async def export_contacts(request: web.Request) -> web.StreamResponse:
    book = read_phonebook(phonebook_path(request.app[SERVICES]))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["name", "number"])
    w.writerows(book)
    return web.Response(text=buf.getvalue(), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="phonebook.csv"'})


def routes() -> list[web.RouteDef]:
    return [web.get(PREFIX, search_page, allow_head=False),
            web.post(PHONEBOOK, import_contacts),
            web.get(PHONEBOOK + ".csv", export_contacts, allow_head=False)]
