"""HTML from string.Template with escaping by default.

Every value put into a template is escaped unless it is ``Html`` (markup this
package built itself), so a message text such as ``<script>`` always shows as
text.  No Jinja2: the pages are small, and string.Template keeps the console
free of new dependencies; the one layout lives in ``templates/`` as package
data.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from functools import cache
from importlib import resources
from string import Template
from typing import Any

from aiohttp import web


class Html(str):
    """Markup that is already safe: inserted as it is."""

    __slots__ = ()


EMPTY = Html("")


def esc(value: Any) -> Html:
    if isinstance(value, Html):
        return value
    return Html(html.escape("" if value is None else str(value), quote=True))


def h(template: str, **values: Any) -> Html:
    """``$name`` placeholders filled with escaped values (Html passes through)."""
    return Html(Template(template).substitute({k: esc(v) for k, v in values.items()}))


def join(parts: Iterable[Html]) -> Html:
    return Html("".join(esc(p) for p in parts))


@cache
def _template(name: str) -> Template:
    text = resources.files("smsd.ui").joinpath("templates", name).read_text("utf-8")
    return Template(text)


# Navigation: (path, label, admins only).
NAV = (
    ("/ui/conversations", "Conversations", False),
    ("/ui/send", "Send", False),
    ("/ui/messages", "Messages", False),
    ("/ui/search", "Search", False),
    ("/ui/modems", "Modems", True),
    ("/ui/stats", "Statistics", False),
    ("/ui/blocklist", "Blocklist", True),
    ("/api/v1/doc", "API", False),
)


def page(
    title: str,
    body: Html,
    *,
    user: Any = None,
    csrf: str = "",
    active: str = "",
    live: str = "",
    status: int = 200,
) -> web.Response:
    """The layout around ``body``; ``live`` names the SSE topics the page follows."""
    nav = Html("")
    if user is not None:
        links = [
            h('<a href="$href"$cur>$label</a>', href=href, label=label,
              cur=Html(' aria-current="page"') if href == active else Html(""))
            for href, label, admin_only in NAV
            if not admin_only or getattr(user, "admin", False)
        ]
        nav = h(
            '<nav aria-label="Main">$links</nav>'
            '<form class="logout" method="post" action="/ui/logout">'
            '<input type="hidden" name="csrf" value="$csrf">'
            '<span class="who">$name</span> <button type="submit">Sign out</button></form>',
            links=join(links), csrf=csrf, name=f"{user.name} ({user.extension})",
        )
    text = _template("layout.html").substitute(
        title=esc(title), nav=nav, body=body, csrf=esc(csrf), live=esc(live))
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def table(headers: Iterable[str], rows: Iterable[Iterable[Any]], *, caption: str = "",
          empty: str = "Nothing yet.") -> Html:
    """A table; cells are escaped unless Html."""
    head = join(h("<th scope=\"col\">$t</th>", t=t) for t in headers)
    body = [Html("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>") for row in rows]
    if not body:
        return h('<p class="empty">$empty</p>', empty=empty)
    cap = h("<caption>$c</caption>", c=caption) if caption else Html("")
    return h("<table>$cap<thead><tr>$head</tr></thead><tbody>$body</tbody></table>",
             cap=cap, head=head, body=join(body))


def redirect(location: str) -> web.Response:
    """A 303 to ``location`` (returned, not raised: the API's error middleware turns
    raised HTTP exceptions into JSON)."""
    return web.Response(status=303, headers={"Location": location})


def hidden_csrf(csrf: str) -> Html:
    return h('<input type="hidden" name="csrf" value="$csrf">', csrf=csrf)


def notice(text: str, kind: str = "info") -> Html:
    role = "alert" if kind == "error" else "status"
    return h('<p class="notice $kind" role="$role">$text</p>', kind=kind, role=role, text=text)
