"""Live updates for open console pages: Server-Sent Events.

One hub per daemon listens to the core once (message state changes from the
EventBus, conversation changes from Conversations) and fans each event out to
the open event streams, each with its own bounded queue.  The browser's
script answers an event by fetching the page again and swapping its live
regions, so the page is rendered by the same code with or without JS and an
event carries only ids, never message text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import asdict, dataclass

import structlog
from aiohttp import web

from smsd.api.calls import user_endpoint
from smsd.api.common import SERVICES
from smsd.asterisk.calls import normalise_endpoint
from smsd.config import User
from smsd.core.conversations import ConversationError
from smsd.core.events import StatusChange
from smsd.services import Services
from smsd.ui.session import current

log = structlog.get_logger(__name__)

# Events queued for one browser before it is considered stuck and dropped
# (it reconnects by itself and re-renders, so nothing is lost).
MAX_QUEUED = 1000
# A comment line this often keeps proxies from closing an idle stream and lets
# the modems page see signal changes (the pool has no change events).
HEARTBEAT_S = 5.0
# Open event streams at most; each holds a connection and a queue.
MAX_STREAMS = 500


@dataclass(frozen=True)
class LiveEvent:
    kind: str                 # "status" | "conversation" | "modems" | "call"
    id: int | None = None
    user: str | None = None   # status: the message's owner; call: the phone's endpoint


class Hub:
    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[LiveEvent | None]] = set()  # one per open stream

    def attach(self, services: Services) -> None:
        services.bus.subscribe_status_now(self._on_status)
        if services.conversations is not None:
            services.conversations.on_change(self._on_conversation)
        if services.calls is not None:
            services.calls.on_change(self._on_call)

    def _on_status(self, ev: StatusChange) -> None:
        self.publish(LiveEvent("status", ev.id, ev.user))

    def _on_conversation(self, conv_id: int) -> None:
        self.publish(LiveEvent("conversation", conv_id))

    def _on_call(self, endpoint: str) -> None:
        self.publish(LiveEvent("call", user=endpoint))

    def publish(self, ev: LiveEvent) -> None:
        for q in list(self._queues):
            try:
                q.put_nowait(ev)
            except asyncio.QueueFull:
                self._queues.discard(q)
                log.warning("ui.stream_dropped", reason="browser not reading")

    def open(self) -> asyncio.Queue[LiveEvent | None] | None:
        if len(self._queues) >= MAX_STREAMS:
            return None
        q: asyncio.Queue[LiveEvent | None] = asyncio.Queue(MAX_QUEUED)
        self._queues.add(q)
        return q

    def close(self, q: asyncio.Queue[LiveEvent | None]) -> None:
        self._queues.discard(q)

    def is_open(self, q: asyncio.Queue[LiveEvent | None]) -> bool:
        return q in self._queues

    def close_all(self) -> None:
        """End every open stream (daemon stopping): each handler wakes up and returns,
        so the server's drain does not wait for browsers that never hang up."""
        for q in list(self._queues):
            self._queues.discard(q)
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)


HUB = web.AppKey("ui_hub", Hub)


async def _visible(services: Services, user: User, ev: LiveEvent) -> bool:
    if ev.kind == "call":  # only one's own phone, admins included
        return ev.user == normalise_endpoint(user_endpoint(user))
    if user.admin:
        return True
    if ev.kind == "status":
        return ev.user == user.username
    if ev.kind == "conversation" and ev.id is not None and services.conversations is not None:
        try:
            await services.conversations.require_access(ev.id, user)
        except ConversationError:
            return False
        return True
    return False


def _modem_signature(services: Services) -> str:
    if services.pool is None:
        return ""
    return json.dumps([asdict(m) for m in services.pool.snapshot()], default=str)


async def events(request: web.Request) -> web.StreamResponse:
    """``GET /ui/events``: text/event-stream of ``status``, ``conversation``, ``modems``."""
    user, _ = current(request)
    services = request.app[SERVICES]
    hub = request.app[HUB]
    q = hub.open()
    if q is None:
        return web.json_response({"error": "too many open event streams"}, status=503)
    resp = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-store",
        "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    modems = _modem_signature(services) if user.admin else ""
    try:
        await resp.write(b"retry: 2000\n\n")
        while hub.is_open(q):
            try:
                async with asyncio.timeout(HEARTBEAT_S):
                    ev = await q.get()
            except TimeoutError:
                if user.admin and (now := _modem_signature(services)) != modems:
                    modems = now
                    ev = LiveEvent("modems")
                else:
                    await resp.write(b": keep-alive\n\n")
                    continue
            if ev is None:
                break
            if not await _visible(services, user, ev):
                continue
            data = json.dumps({"kind": ev.kind, "id": ev.id})
            await resp.write(f"event: {ev.kind}\ndata: {data}\n\n".encode())
    except ConnectionResetError:
        pass  # the browser went away (page closed or navigated)
    finally:
        hub.close(q)
    return resp


def routes() -> list[web.RouteDef]:
    return [web.get("/ui/events", events, allow_head=False)]
