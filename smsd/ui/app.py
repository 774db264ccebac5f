"""Adds the console and the API description to the daemon's aiohttp application.

Same listener, same users as the API: the console is a set of routes, a
middleware (session, CSRF, strict headers) and static files from the package.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from aiohttp import web

from smsd.services import Services
from smsd.ui import (
    apidoc,
    blocklist,
    conversations,
    live,
    messages,
    modems,
    search,
    send,
    session,
    stats,
)
from smsd.ui.render import redirect

STATIC = Path(str(resources.files("smsd.ui").joinpath("static")))


async def root(request: web.Request) -> web.StreamResponse:
    return redirect("/ui/conversations")


def add_console(app: web.Application, services: Services) -> None:
    """Register the console on ``app`` (before it is frozen)."""
    app.middlewares.append(session.console_guard)
    app[session.SESSIONS] = session.Sessions()
    hub = live.Hub()
    hub.attach(services)
    app[live.HUB] = hub

    async def end_streams(_: web.Application) -> None:
        hub.close_all()

    app.on_shutdown.append(end_streams)
    app.add_routes([web.get("/ui", root, allow_head=False),
                    web.get("/ui/", root, allow_head=False)])
    app.add_routes(session.routes())
    app.add_routes(live.routes())
    for module in (apidoc, conversations, send, messages, modems, stats, blocklist, search):
        app.add_routes(module.routes())
    app.router.add_static("/ui/static/", STATIC, append_version=False)
