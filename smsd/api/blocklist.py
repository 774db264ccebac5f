"""``/api/v1/blocklist``: numbers whose inbound SMS are dropped (``smsd block``);
``/api/v1/opt-outs/{number}``: lifting a STOP by hand.

For non-US/Canadian DIDs an admin blocks numbers (SEED-NOTES "Inbound"); the
CLI does it through here because the daemon is the only database writer.
An opt-out normally ends when the customer texts START; an admin may lift
it too (the customer asked by phone), and the daemon logs who did.
"""

from __future__ import annotations

from aiohttp import web

from smsd.api.common import SERVICES, api_error, json_response, read_json, require_admin
from smsd.errors import InvalidNumber
from smsd.numbers import parse_e164
from smsd.store.optouts import remove_opt_out

MAX_REASON_CHARS = 200


async def list_blocked(request: web.Request) -> web.Response:
    user = await require_admin(request)
    if isinstance(user, web.Response):
        return user
    store = request.app[SERVICES].store
    rows = await store.blocked()
    # Numbers that texted STOP (per company number, '' = any): listed beside
    # the blocklist so an admin sees every number smsd will not send to.
    stopped = await store.opt_outs()
    return json_response({"blocked": rows, "opted_out": stopped}, dumps_default=str)


async def block(request: web.Request) -> web.Response:
    user = await require_admin(request)
    if isinstance(user, web.Response):
        return user
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("number"), str):
        return api_error(400, "body must be a JSON object with 'number'")
    # No reason: a new entry says "blocked by admin", an existing one keeps its own.
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS):
        return api_error(400, f"'reason' must be a string of at most {MAX_REASON_CHARS} characters")
    try:
        number = parse_e164(body["number"])
    except InvalidNumber as exc:
        return api_error(400, str(exc), invalid=[{"number": exc.number, "reason": exc.reason}])
    await request.app[SERVICES].store.block(number, by=user.username, reason=reason)
    return json_response({"blocked": number}, 201)


async def unblock(request: web.Request) -> web.Response:
    user = await require_admin(request)
    if isinstance(user, web.Response):
        return user
    try:
        number = parse_e164(request.match_info["number"])
    except InvalidNumber as exc:
        return api_error(400, str(exc), invalid=[{"number": exc.number, "reason": exc.reason}])
    removed = await request.app[SERVICES].store.unblock(number)
    return json_response({"unblocked": number, "was_blocked": removed})


async def remove_opted_out(request: web.Request) -> web.Response:
    """``DELETE /api/v1/opt-outs/{number}[?did=+E164]``: the number may be sent to again
    (from that company number only, when ``did`` is given)."""
    user = await require_admin(request)
    if isinstance(user, web.Response):
        return user
    try:
        number = parse_e164(request.match_info["number"])
        did = request.query.get("did")
        if did is not None and did != "":
            did = parse_e164(did)
    except InvalidNumber as exc:
        return api_error(400, str(exc), invalid=[{"number": exc.number, "reason": exc.reason}])
    removed = await remove_opt_out(request.app[SERVICES].store, number, did, by=user.username)
    return json_response({"opted_in": number, "did": did, "removed": removed})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/blocklist", list_blocked, allow_head=False),
        web.post("/api/v1/blocklist", block),
        web.delete("/api/v1/blocklist/{number}", unblock),
        web.delete("/api/v1/opt-outs/{number}", remove_opted_out),
    ]
