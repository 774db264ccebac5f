"""``/api/v1/sms``: the JSON API for sending and for following messages.

Unlike the originate call this API is all-or-nothing on numbers: when any
recipient is not E.164 the request is refused with the list of bad numbers and
nothing is stored, so a client can fix and resend without duplicates.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from aiohttp import web

from smsd.api import mms
from smsd.api.common import (
    SERVICES,
    api_error,
    json_response,
    parse_id,
    read_json,
    require_user,
)
from smsd.core.outbox import SubmitRequest, parse_numbers
from smsd.errors import MessageTooLong, NotAllowed, ValidationError

log = structlog.get_logger(__name__)

STATES = ("queued", "scheduled", "sending", "submitting", "sent", "delivered", "failed", "expired")
MAX_TEXT_CHARS = 670  # SEED-NOTES: conversation / API input at most 670 characters
MAX_LIST = 1000


def parse_time(raw: str, key: str, timezone: str = "UTC") -> datetime:
    """ISO 8601; a time without an offset is in ``timezone``.  ValueError names the key.

    ``send_at`` passes the daemon's ``policy.timezone`` (what a person typing
    "09:00" means, as for the originate call's ``postpone``); the report
    filters ``since``/``until`` stay UTC like the times the API answers with.
    """
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{key} must be an ISO 8601 time such as 2026-11-25T14:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=ZoneInfo(timezone))


async def send_sms(request: web.Request) -> web.Response:
    user = await require_user(request)
    if isinstance(user, web.Response):
        return user
    if request.content_type == "multipart/form-data":
        return await mms.send_multipart(request, user)  # MMS: files attached
    body = await read_json(request)
    if not isinstance(body, dict):
        return api_error(400, "body must be a JSON object with 'to' and 'text'")
    to: Any = body.get("to")
    if isinstance(to, str):
        to = [n for n in to.split(",") if n.strip()]
    if not isinstance(to, list) or not to or not all(isinstance(n, str) for n in to):
        return api_error(400, "'to' must be a non-empty list of E.164 numbers")
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        return api_error(400, "'text' must be a non-empty string")
    send_at = None
    if body.get("send_at") is not None:
        if not isinstance(body["send_at"], str):
            return api_error(400, "'send_at' must be an ISO 8601 string")
        try:
            send_at = parse_time(
                body["send_at"], "send_at", request.app[SERVICES].config.policy.timezone
            )
        except ValueError as exc:
            return api_error(400, str(exc))
    bulk = body.get("bulk", False)
    if not isinstance(bulk, bool):
        return api_error(400, "'bulk' must be true or false")
    # Parsed once, here, in slices that leave the event loop free; the outbox
    # takes the parsed numbers as they are.
    parsed, refused = await parse_numbers(to)
    del body, to    # a bulk request's raw numbers: not kept beside the parsed ones
    if refused:
        bad = [{"number": r.number, "reason": r.reason} for r in refused]
        return api_error(400, "some numbers are not valid E.164 numbers", invalid=bad)
    services = request.app[SERVICES]
    req = SubmitRequest(
        recipients=parsed,
        text=text,
        user=user,
        send_at=send_at,
        origin="bulk" if bulk else "api",
        max_chars=MAX_TEXT_CHARS,
    )
    try:
        result = await services.outbox.submit(req)
    except MessageTooLong as exc:
        return api_error(400, str(exc))
    except NotAllowed as exc:
        return api_error(403, str(exc))
    except ValidationError as exc:
        return api_error(400, str(exc))
    # "warnings": accepted, but a "warn" policy has something to say (a link,
    # an unregistered sender ID, an Italian given name as sender); always present.
    answer: dict[str, Any] = {"ids": result.ids, "warnings": result.warnings}
    if result.refused:
        answer["refused"] = [{"number": r.number, "reason": r.reason} for r in result.refused]
    # outbox.submitted (info) already says it; this one only for debugging.
    log.debug("api.sms_submitted", user=user.username, ids=len(result.ids))
    return json_response(answer, 201 if result.ids else 400)


async def get_sms(request: web.Request) -> web.Response:
    user = await require_user(request)
    if isinstance(user, web.Response):
        return user
    raw = request.match_info["id"]
    if not raw.isascii() or not raw.isdigit():
        return api_error(400, f"message id must be a number, got {raw!r}")
    msg_id = parse_id(raw)
    view = None if msg_id is None else await request.app[SERVICES].store.get_message(msg_id)
    if view is None:
        return api_error(404, f"no message {raw}")
    return json_response(view.to_json())


async def list_sms(request: web.Request) -> web.Response:
    user = await require_user(request)
    if isinstance(user, web.Response):
        return user
    q = request.query
    state = q.get("state") or None
    if state is not None and state not in STATES:
        return api_error(400, f"state must be one of {', '.join(STATES)}")
    try:
        since = parse_time(q["since"], "since") if q.get("since") else None
        until = parse_time(q["until"], "until") if q.get("until") else None
        limit = int(q.get("limit", "100"))
        offset = int(q.get("offset", "0"))
    except ValueError as exc:
        return api_error(400, str(exc) if "ISO" in str(exc) else "limit/offset must be integers")
    if not 1 <= limit <= MAX_LIST or offset < 0:
        return api_error(400, f"limit must be 1..{MAX_LIST} and offset at least 0")
    views = await request.app[SERVICES].store.list_messages(
        state=state,
        user=q.get("user") or None,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )
    return json_response({"messages": [v.to_json() for v in views]})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v1/sms", send_sms),
        web.get("/api/v1/sms", list_sms, allow_head=False),
        web.get("/api/v1/sms/{id}", get_sms, allow_head=False),
    ]
