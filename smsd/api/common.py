"""What every API module shares: app keys, JSON answers, authentication."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

try:
    import orjson
except ImportError:  # optional: pip install 'smsd[fast]'
    orjson = None  # type: ignore[assignment,unused-ignore]

from smsd.api.auth import Authenticator, challenge_headers
from smsd.config import User
from smsd.services import Services

# 2 MiB: an originate call with 10,000 numbers is ~160 kB; anything much larger
# is not a legitimate request and is refused before it is read.
MAX_BODY_BYTES = 2 * 1024 * 1024

# SQLite's INTEGER is 64-bit signed: a larger id can name no row (and would
# make the driver raise OverflowError instead of answering "not found").
MAX_ROW_ID = 2**63 - 1

SERVICES = web.AppKey("services", Services)
AUTH = web.AppKey("auth", Authenticator)


class ApiStats:
    """Request counters for /metrics, by route and status."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.seconds_total = 0.0


STATS = web.AppKey("stats", ApiStats)


def dumps(obj: Any, default: Callable[[Any], Any] | None = None) -> str:
    # Compact separators: Wildix clients compare {"type":"result","result":"Success"} verbatim.
    # orjson (the [fast] extra) writes the same compact UTF-8 text, an answer
    # with 100,000 ids in 2 ms instead of 20 ms on the event loop (issue 17).
    if orjson is not None:
        try:
            return str(orjson.dumps(obj, default=default, option=orjson.OPT_NON_STR_KEYS).decode())
        except TypeError:
            pass  # what orjson refuses (an integer over 64 bits...): the standard encoder
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=default)


def dumps_bytes(obj: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """:func:`dumps` as the UTF-8 bytes an answer carries (orjson's own output, not
    decoded and encoded again)."""
    if orjson is not None:
        try:
            return bytes(orjson.dumps(obj, default=default, option=orjson.OPT_NON_STR_KEYS))
        except TypeError:
            pass
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False,
                      default=default).encode("utf-8")


def json_response(
    obj: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
    dumps_default: Callable[[Any], Any] | None = None,
) -> web.Response:
    # The same header as text= gives: "application/json; charset=utf-8".
    return web.Response(
        body=dumps_bytes(obj, dumps_default),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def api_error(status: int, reason: str, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": reason, **extra}
    headers = challenge_headers() if status == 401 else None
    return json_response(body, status, headers)


def parse_id(raw: str) -> int | None:
    """A row id from a URL: ASCII digits within SQLite's range, else None."""
    if not raw.isascii() or not raw.isdigit():
        return None
    value = int(raw)
    return value if value <= MAX_ROW_ID else None


async def require_user(request: web.Request) -> User | web.Response:
    """The authenticated user, or the 401/403 answer to return instead."""
    user = await request.app[AUTH].authenticate(request)
    if user is None:
        return api_error(401, "valid HTTP basic credentials are required")
    if not user.licence.can_two_way:
        return api_error(403, f"licence {user.licence.value} does not include the SMS API")
    return user


# A body this large is parsed on a worker thread: json.loads of a 100,000-number
# bulk request (about 2 MB) is tens of milliseconds of CPU that would freeze
# the event loop in one piece (issue 17: never more than 50 ms); on a thread
# the loop gets the interpreter back every switch interval (5 ms).
JSON_OFF_LOOP_BYTES = 64 * 1024


async def read_json(request: web.Request) -> Any:
    """The JSON body; raises a 400 JSON answer naming the parse error."""
    try:
        raw = await request.read()
        if len(raw) >= JSON_OFF_LOOP_BYTES:
            return await asyncio.to_thread(_loads, raw)
        return _loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise web.HTTPBadRequest(
            text=dumps({"error": f"body is not valid JSON: {exc}"}),
            content_type="application/json",
        ) from None


def _loads(raw: bytes) -> Any:
    if orjson is not None:
        # orjson (the [fast] extra) straight from the bytes: a third of the
        # parse's CPU per request.  It accepts less than json (NaN, integers
        # over 64 bits, lone surrogates, a BOM): whatever it refuses goes to
        # json, which answers as it always did (value, or its own error text).
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw.decode("utf-8"))


def is_admin(services: Services, user: User) -> bool:
    """``[[users]] admin = true``; when nobody is marked admin, every API user is one."""
    users = services.config.users
    return user.admin or not any(u.admin for u in users)


async def require_admin(request: web.Request) -> User | web.Response:
    """The authenticated admin, or the 401/403 answer to return instead."""
    user = await require_user(request)
    if isinstance(user, web.Response):
        return user
    if not is_admin(request.app[SERVICES], user):
        return api_error(403, f"user {user.username!r} is not an admin ([[users]] admin = true)")
    return user
