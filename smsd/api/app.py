"""The aiohttp application: routes, limits, error containment, request metrics.

Every answer is JSON (Prometheus text for /metrics).  A bug in a handler is
contained here: it is logged with the request's path and answered with a
JSON 500, and the server carries on.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from smsd.api import (
    blocklist,
    calls,
    classound,
    conversations,
    health,
    mail2sms,
    messages,
    metrics,
    mms,
    modems,
    nodes,
    originate,
    reports,
)
from smsd.api.auth import Authenticator
from smsd.api.common import AUTH, MAX_BODY_BYTES, SERVICES, STATS, ApiStats, api_error
from smsd.services import Services
from smsd.store import StoreError

log = structlog.get_logger(__name__)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def contain_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    stats = request.app[STATS]
    route = request.match_info.route.resource
    name = route.canonical if route is not None else "unmatched"
    started = time.perf_counter()
    status = 500
    # The originate call's clients (dialplan CURL, Wildix integrations) parse
    # only its own {"type":"error",...} shape, whatever went wrong.
    originate_call = request.path == originate.PATH

    def error(reason: str, code: int) -> web.Response:
        return originate.error(reason, code) if originate_call else api_error(code, reason)

    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPRequestEntityTooLarge as exc:
        status = exc.status
        return error(f"request body larger than {MAX_BODY_BYTES} bytes", 413)
    except web.HTTPException as exc:
        status = exc.status
        if exc.content_type == "application/json":
            raise
        return error(exc.reason, exc.status)
    except StoreError as exc:
        # The database refused or is unreachable (disk full; PostgreSQL down):
        # nothing was acknowledged, the client may try again later.
        status = 503
        log.error("api.store_unavailable", path=request.path, method=request.method,
                  error=str(exc))
        # A read stored nothing anyway; the originate call's GET is a write.
        read = request.method in ("GET", "HEAD", "OPTIONS") and not originate_call
        told = ("the database is unavailable; try again later" if read
                else "the database is unavailable, nothing was stored")
        return error(f"{told}: {exc.reason}", 503)
    except Exception:
        log.exception("api.handler_failed", path=request.path, method=request.method)
        return error("internal error; see the daemon log", 500)
    finally:
        stats.requests[(name, status)] += 1
        stats.seconds_total += time.perf_counter() - started


def build_app(services: Services) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[contain_errors])
    app[SERVICES] = services
    app[AUTH] = Authenticator(services.directory)
    app[STATS] = ApiStats()
    app.add_routes(originate.routes())
    app.add_routes(messages.routes())
    app.add_routes(blocklist.routes())
    app.add_routes(mail2sms.routes())
    app.add_routes(reports.routes())
    app.add_routes(modems.routes())
    app.add_routes(nodes.routes())
    app.add_routes(health.routes())
    app.add_routes(metrics.routes())
    app.add_routes(conversations.routes(services))
    app.add_routes(classound.routes())
    app.add_routes(mms.routes())
    app.add_routes(calls.routes())
    return app

