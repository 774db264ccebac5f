"""``GET /api/v1/calls/current``: the signed-in user's calls now (from AMI events).

What the console's "During a call" box stands on: the number of the other
party, so that an agent can text the person they are talking to.  Empty with
``tracking: false`` when AMI is not configured or not connected (nothing can
be known then).
"""

from __future__ import annotations

from aiohttp import web

from smsd.api.common import SERVICES, json_response, require_user
from smsd.asterisk.calls import Call
from smsd.config import User
from smsd.services import Services

PATH = "/api/v1/calls/current"


def user_endpoint(user: User) -> str:
    """The endpoint whose channels are this user's calls (as MessageSend's default)."""
    return user.endpoint or f"pjsip:{user.extension}"


def current_calls(services: Services, user: User) -> tuple[bool, list[Call]]:
    """(tracking, the user's calls, oldest first)."""
    tracker = services.calls
    if tracker is None or user.api_only:
        return False, []
    return tracker.tracking, tracker.calls_of(user_endpoint(user))


async def current(request: web.Request) -> web.Response:
    user = await require_user(request)
    if isinstance(user, web.Response):
        return user
    tracking, calls = current_calls(request.app[SERVICES], user)
    return json_response({"extension": user.extension, "tracking": tracking,
                          "calls": [c.as_json() for c in calls]})


def routes() -> list[web.RouteDef]:
    return [web.get(PATH, current, allow_head=False)]
