"""In-process events between the core and whoever reacts to messages.

The store is the record; events are only notifications that something was
committed.  Publishing never blocks the publisher (a slow AMI connection must
not hold up the modem that just handed us an SMS), so each subscriber gets its
own queue and its own delivery task.  A handler that raises is logged and the
next event is delivered anyway: a bug in one consumer must not stop the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)

# Events waiting for one subscriber before new ones are dropped (and logged).
# Everything an event announces is already committed in the store, so a drop
# loses a notification, never a message; the bound keeps a stuck consumer from
# growing the daemon without limit (100,000 events of a few hundred bytes each
# is tens of MB at worst).
MAX_PENDING_PER_SUBSCRIBER = 100_000


@dataclass(frozen=True)
class InboundSms:
    id: int
    sender: str
    recipient: str | None
    text: str
    received_at: datetime
    gateway: str
    modem: str | None


@dataclass(frozen=True)
class StatusChange:
    id: int
    state: str
    recipient: str
    user: str | None
    gateway: str | None
    error: str | None
    # When the message became due (store text, smsd.store.claims.DUE_SINCE) if the
    # publisher knows it: the dispatcher's 'sent' carries it, so the send
    # latency metric needs no read of the row per message (issue 17).
    due_since: str | None = None


E = TypeVar("E")


class _Subscriber(Generic[E]):
    def __init__(self, kind: str, handler: Callable[[E], Awaitable[None]], limit: int,
                 concurrency: int = 1, key: Callable[[E], object] | None = None) -> None:
        self.kind = kind
        self.handler = handler
        self.queue: asyncio.Queue[E] = asyncio.Queue(limit)
        self.dropped = 0
        self.running = False
        self.concurrency = concurrency
        self.key = key
        self.busy = 0                   # handlers running now (tests, status)
        self.peak = 0                   # most handlers that ran at once

    def offer(self, ev: E) -> None:
        try:
            self.queue.put_nowait(ev)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning(
                "events.dropped",
                kind=self.kind,
                handler=_name(self.handler),
                dropped=self.dropped,
            )

    async def pump(self) -> None:
        if self.concurrency > 1:
            await self._pump_concurrent()
            return
        while True:
            ev = await self.queue.get()
            await self._handle(ev)

    async def _handle(self, ev: E) -> None:
        self.busy += 1
        self.peak = max(self.peak, self.busy)
        try:
            await self.handler(ev)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("events.handler_failed", kind=self.kind, handler=_name(self.handler))
        finally:
            self.busy -= 1
            self.queue.task_done()

    async def _pump_concurrent(self) -> None:
        """Up to ``concurrency`` handlers at once; events with the same key in order.

        Each event's task first waits for the previous task of its key, so two
        SMS of one conversation are handled one after the other while other
        conversations go ahead.  The tasks belong to this pump's TaskGroup.
        """
        slots = asyncio.Semaphore(self.concurrency)
        tails: dict[object, asyncio.Task[None]] = {}

        async def one(ev: E, before: asyncio.Task[None] | None, key: object) -> None:
            try:
                if before is not None:
                    await asyncio.wait({before})    # its outcome is its own business
                await self._handle(ev)
            finally:
                slots.release()
                if tails.get(key) is asyncio.current_task():
                    del tails[key]

        async with asyncio.TaskGroup() as tg:
            while True:
                ev = await self.queue.get()
                await slots.acquire()
                key = self.key(ev) if self.key is not None else object()
                tails[key] = tg.create_task(one(ev, tails.get(key), key))


def _name(handler: Callable[..., Any]) -> str:
    return getattr(handler, "__qualname__", None) or repr(handler)


class EventBus:
    """Fan-out of InboundSms and StatusChange to subscribers, one queue each."""

    def __init__(self, *, max_pending: int = MAX_PENDING_PER_SUBSCRIBER) -> None:
        self._limit = max_pending
        self._inbound: list[_Subscriber[InboundSms]] = []
        self._status: list[_Subscriber[StatusChange]] = []
        # (states wanted or None for all, subscriber) in subscription order.
        self._status_wants: list[tuple[frozenset[str] | None, _Subscriber[StatusChange]]] = []
        self._status_now: list[Callable[[StatusChange], None]] = []
        self._new_subscriber = asyncio.Event()

    def subscribe_inbound(
        self,
        handler: Callable[[InboundSms], Awaitable[None]],
        *,
        concurrency: int = 1,
        key: Callable[[InboundSms], object] | None = None,
    ) -> None:
        """``handler`` for every inbound SMS; with ``concurrency`` > 1 several at once,
        those with the same ``key`` one after the other in their order."""
        self._inbound.append(
            _Subscriber("inbound", handler, self._limit, concurrency, key))
        self._new_subscriber.set()

    def subscribe_status(self, handler: Callable[[StatusChange], Awaitable[None]], *,
                         states: Collection[str] | None = None) -> None:
        """``handler`` for every status change, or only those to one of ``states``.

        Each event offered costs the subscriber's task a wake-up (several per
        message, issue 17): a subscriber that ignores most states says which
        it wants instead of being woken for each.
        """
        sub = _Subscriber("status", handler, self._limit)
        self._status.append(sub)
        self._status_wants.append((None if states is None else frozenset(states), sub))
        self._new_subscriber.set()

    def subscribe_status_now(self, handler: Callable[[StatusChange], None]) -> None:
        """A plain function called inside publish_status, for handlers that only
        hand the event on without waiting (a queue put): no task, no queue.

        It must not block; an exception it raises is logged and the other
        subscribers get the event all the same.
        """
        self._status_now.append(handler)

    def publish_inbound(self, ev: InboundSms) -> None:
        for sub in self._inbound:
            sub.offer(ev)

    def publish_status(self, ev: StatusChange) -> None:
        for wants, sub in self._status_wants:
            if wants is None or ev.state in wants:
                sub.offer(ev)
        for handler in self._status_now:
            try:
                handler(ev)
            except Exception:
                log.exception("events.handler_failed", kind="status", handler=_name(handler))

    async def join(self) -> None:
        """Wait until every event published so far has been handled (tests, drain)."""
        for sub in self._inbound:
            await sub.queue.join()
        for st in self._status:
            await st.queue.join()

    async def run(self) -> None:
        """Deliver events until cancelled; subscribers added later are picked up."""
        async with asyncio.TaskGroup() as tg:
            while True:
                self._new_subscriber.clear()
                for inb in self._inbound:
                    if not inb.running:
                        inb.running = True
                        tg.create_task(inb.pump())
                for st in self._status:
                    if not st.running:
                        st.running = True
                        tg.create_task(st.pump())
                await self._new_subscriber.wait()
