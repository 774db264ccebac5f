"""``GET|POST /api/v1/originate/sms``: the Wildix-compatible originate call.

Dialplan CURL() and existing Wildix integrations call this, so parameters,
answers and even the JSON spacing follow that contract exactly (DESIGN.md,
"The originate API").  Nothing is answered before the accepted messages are
committed: the outbox returns only after its transaction.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from aiohttp import web
from multidict import MultiDict, MultiMapping

from smsd.api.auth import LoginThrottled, challenge_headers
from smsd.api.common import AUTH, SERVICES, json_response
from smsd.core.outbox import SubmitRequest
from smsd.errors import BadTime, InvalidNumber, MessageTooLong, NotAllowed, ValidationError
from smsd.text import parse_postpone, sanitize_originate_text

log = structlog.get_logger(__name__)

MAX_MESSAGE_CHARS = 300  # SEED-NOTES "Message limits": HTTP API message at most 300 characters

SUCCESS = {"type": "result", "result": "Success"}
WARNING_REASON = "Unable to add a SMS to the queue"


PATH = "/api/v1/originate/sms"


def error(reason: str, status: int = 400, headers: dict[str, str] | None = None) -> web.Response:
    """The contract's error shape; also used by the app for 413/500 on this path."""
    return json_response({"type": "error", "reason": reason, "result": None}, status, headers)


def _warning(numbers: list[str]) -> web.Response:
    return json_response({"type": "warning", "reason": WARNING_REASON, "result": numbers})


def split_numbers(raw: str) -> list[str]:
    """Comma-separated numbers; a plus that form decoding turned into a space comes back.

    ``curl -d number=+447700900123`` sends the plus unencoded, and form
    decoding makes it a space.  A number never starts with a space, so an item
    that is a space (or more) followed by digits gets its plus back.
    """
    out = []
    for item in raw.split(","):
        stripped = item.strip()
        if not stripped:
            continue
        if stripped.isdigit() and item[:1].isspace():
            stripped = "+" + stripped
        out.append(stripped)
    return out


async def _params(request: web.Request) -> dict[str, str]:
    """Query parameters, overridden by a form or JSON body (first value of a repeated key)."""
    merged: dict[str, str] = {}
    sources: list[MultiMapping[Any]] = [request.query]
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            raw = await request.read()
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise _BadRequest(f"Body is not valid JSON: {exc}") from None
            if not isinstance(body, dict):
                raise _BadRequest("JSON body must be an object")
            form: MultiDict[Any] = MultiDict()
            for k, v in body.items():
                form[k] = ",".join(map(str, v)) if isinstance(v, list) else v
            sources.append(form)
        else:
            try:
                sources.append(await request.post())
            except ValueError as exc:  # e.g. multipart/form-data without a boundary
                raise _BadRequest(f"Body is not a valid form: {exc}") from None
    for src in sources:
        for key in ("message", "number", "postpone"):
            if key in src:
                value = src.getone(key)
                if not isinstance(value, str | int | float) or isinstance(value, bool):
                    raise _BadRequest(f"Parameter {key} must be text")
                merged[key] = str(value)
    return merged


class _BadRequest(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


async def originate_sms(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    try:
        user = await request.app[AUTH].authenticate(request)
    except LoginThrottled as exc:
        return error(f"Too many failed logins, retry in {exc.retry_after} s", 429,
                      {"Retry-After": str(exc.retry_after)})
    if user is None:
        return error("Authorization required", 401, challenge_headers())
    if not user.licence.can_two_way:
        return error(f"User licence {user.licence.value} does not allow sending SMS by API", 403)
    try:
        params = await _params(request)
    except _BadRequest as exc:
        return error(exc.reason)

    numbers = split_numbers(params.get("number", ""))
    message = params.get("message", "")
    if not numbers:
        return error("Number should not be empty")
    if not message.strip():
        return error("Message should not be empty")
    if len(message) > MAX_MESSAGE_CHARS:
        return error(
            f"Message is too long: {len(message)} characters, at most {MAX_MESSAGE_CHARS}"
        )
    send_at = None
    if params.get("postpone", "").strip():
        try:
            send_at = parse_postpone(params["postpone"], services.config.policy.timezone)
        except BadTime as exc:
            if exc.kind == "date":
                return error(f"Postpone is not a valid date: {exc.reason}")
            return error("Postpone should be in format dd/mm/yyyy HH:MM")

    req = SubmitRequest(
        recipients=numbers,
        text=sanitize_originate_text(message),
        user=user,
        send_at=send_at,
        origin="originate",
        max_chars=MAX_MESSAGE_CHARS,
    )
    try:
        result = await services.outbox.submit(req)
    except InvalidNumber as exc:
        return error(f"Invalid number {exc.number}: {exc.reason}")
    except MessageTooLong as exc:
        return error(f"Message is too long: {exc.length} characters, at most {exc.limit}")
    except NotAllowed as exc:
        return error(str(exc), 403)
    except ValidationError as exc:
        return error(str(exc))
    log.debug(
        "api.originate",
        user=user.username,
        accepted=len(result.ids),
        refused=len(result.refused),
        postponed=send_at is not None,
    )
    if result.refused and not result.ids:
        # Nothing was queued: the call failed, so it is an error (naming each
        # number and why), not the "some recipients refused" warning.
        return error("; ".join(f"Invalid number {r.number}: {r.reason}" for r in result.refused))
    if result.refused:
        return _warning([r.number for r in result.refused])
    return json_response(SUCCESS)


def routes() -> list[web.RouteDef]:
    return [
        web.get(PATH, originate_sms, allow_head=False),
        web.post(PATH, originate_sms),
    ]
