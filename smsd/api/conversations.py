"""``/api/v1/conversations``: two-way conversations over HTTP (basic auth).

Thin: every rule lives in :mod:`smsd.core.conversations`; this module maps JSON to
calls and ``ConversationError`` to the status it names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from smsd.api.common import api_error, json_response, parse_id, read_json, require_user
from smsd.config import User
from smsd.core.conversations import MAX_REPLY_CHARS, ConversationError, Conversations
from smsd.errors import MessageTooLong, ValidationError
from smsd.services import Services

PREFIX = "/api/v1/conversations"

Op = Callable[[web.Request, Conversations, User], Awaitable[web.Response]]


def _conv_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    conv_id = parse_id(raw)
    if conv_id is None:
        raise ConversationError(f"no conversation {raw!r}", 404)
    return conv_id


def _wrap(services: Services, op: Op) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        user = await require_user(request)
        if isinstance(user, web.Response):
            return user
        conversations = services.conversations
        if conversations is None:
            return api_error(503, "conversations are not enabled in this daemon")
        try:
            return await op(request, conversations, user)
        except ConversationError as exc:
            return api_error(exc.status, str(exc))
        except MessageTooLong as exc:
            return api_error(400, str(exc), limit=MAX_REPLY_CHARS)
        except ValidationError as exc:
            return api_error(400, str(exc))

    return handler


async def _body(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ConversationError("body must be a JSON object")
    return body


def _text_field(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConversationError(f"{key!r} must be a non-empty string")
    return value.strip()


async def list_conversations(request: web.Request, conv: Conversations, user: User) -> web.Response:
    return json_response({"conversations": await conv.list_for(user)})


async def create(request: web.Request, conv: Conversations, user: User) -> web.Response:
    body = await _body(request)
    number = _text_field(body, "number")
    service = body.get("service")
    if service is not None and not isinstance(service, str):
        raise ConversationError("'service' must be a call group name or a DID")
    conv_id, created = await conv.create(user, number, service)
    return json_response(
        {"conversation": await conv.get(conv_id), "created": created},
        201 if created else 200,
    )


async def show(request: web.Request, conv: Conversations, user: User) -> web.Response:
    conv_id = _conv_id(request)
    data = await conv.require_access(conv_id, user)
    data["messages"] = await conv.history(conv_id)
    return json_response(data)


async def messages(request: web.Request, conv: Conversations, user: User) -> web.Response:
    conv_id = _conv_id(request)
    await conv.require_access(conv_id, user)
    return json_response({"messages": await conv.history(conv_id)})


async def reply(request: web.Request, conv: Conversations, user: User) -> web.Response:
    conv_id = _conv_id(request)
    body = await _body(request)
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ConversationError("'text' must be a non-empty string")
    if len(text) > MAX_REPLY_CHARS:
        raise MessageTooLong(len(text), MAX_REPLY_CHARS)
    msg_id = await conv.reply(conv_id, user, text)
    if msg_id is None:
        return json_response({"blocked": True, "id": None})
    return json_response({"id": msg_id}, 202)


async def add_participant(request: web.Request, conv: Conversations, user: User) -> web.Response:
    conv_id = _conv_id(request)
    ext = _text_field(await _body(request), "extension")
    await conv.add_participant(conv_id, ext, user)
    return json_response(await conv.get(conv_id))


async def remove_participant(
    request: web.Request, conv: Conversations, user: User
) -> web.Response:
    conv_id = _conv_id(request)
    await conv.remove_participant(conv_id, request.match_info["ext"], user)
    return json_response(await conv.get(conv_id))


async def assign(request: web.Request, conv: Conversations, user: User) -> web.Response:
    conv_id = _conv_id(request)
    ext = _text_field(await _body(request), "extension")
    await conv.assign(conv_id, ext, user)
    return json_response(await conv.get(conv_id))


def routes(services: Services) -> list[web.RouteDef]:
    return [
        web.get(PREFIX, _wrap(services, list_conversations)),
        web.post(PREFIX, _wrap(services, create)),
        web.get(PREFIX + "/{id}", _wrap(services, show)),
        web.get(PREFIX + "/{id}/messages", _wrap(services, messages)),
        web.post(PREFIX + "/{id}/messages", _wrap(services, reply)),
        web.post(PREFIX + "/{id}/participants", _wrap(services, add_participant)),
        web.delete(PREFIX + "/{id}/participants/{ext}", _wrap(services, remove_participant)),
        web.post(PREFIX + "/{id}/assign", _wrap(services, assign)),
        web.put(PREFIX + "/{id}/assign", _wrap(services, assign)),
    ]
