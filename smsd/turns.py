"""asyncio primitives for the hot path whose uncontended use is a plain call.

Turns: a FIFO counting semaphore (and lock).  Mailbox: a queue for one
consumer without a bound.

Every message passes the router's per-gateway limit and the GSM gateway's two
locks per modem (its seat, then its turn to talk).  ``asyncio.Semaphore`` and
``asyncio.Lock`` cost a coroutine (``async with`` makes two or three) and a
scan of their waiters even when nobody waits; here taking a free turn is
``try_take()``, a method call that only counts, and only a turn that must wait
creates a future (issue 17).

Turns are handed over directly: ``give()`` passes a turn to the longest
waiter, so a newcomer never takes it ahead of those already waiting (as
asyncio's lock, which is also first come, first served).  A waiter may also
be a plain callback (``when_free``), started holding the turn: the store's
group commits take the writer's turn that way, each starting from the
callback that ends the one before it, with no task per commit, while
transactions ``async with`` the same turn in arrival order with them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)

_T = TypeVar("_T")


class Turns:
    """``free`` turns (1: a lock); take one with try_take(), await take(), ``async
    with`` or when_free(), and give() it back."""

    __slots__ = ("_waiters", "free")

    def __init__(self, free: int) -> None:
        self.free = free
        # Who waits, first come first: the futures of awaiting takers (a
        # cancelled one leaves, take's handler, or is skipped by give()) and
        # the callbacks of when_free().
        self._waiters: deque[asyncio.Future[None] | Callable[[], None]] = deque()

    def taken(self) -> bool:
        """No turn free now (for a lock: it is held)."""
        return self.free <= 0

    def try_take(self) -> bool:
        """Take a turn if one is free; never waits.  (A turn is never free while
        anyone waits: give() hands it over instead.)"""
        if self.free > 0:
            self.free -= 1
            return True
        return False

    async def take(self) -> None:
        """A turn, waiting behind those already waiting (cancellable)."""
        if self.try_take():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.give()            # handed a turn as we were cancelled: pass it on
            elif fut in self._waiters:
                self._waiters.remove(fut)
            raise

    def when_free(self, start: Callable[[], None]) -> None:
        """Call ``start`` holding a turn: now if one is free, else when it comes.

        ``start`` must see to it that give() is called once its work is over
        (or at once); if it raises, the error is logged and the turn given back.
        """
        if self.try_take():
            self._start(start)
        else:
            self._waiters.append(start)

    def give(self) -> None:
        """Give a turn back: to the longest waiter if any, else free."""
        waiters = self._waiters
        while waiters:
            nxt = waiters.popleft()
            if isinstance(nxt, asyncio.Future):
                if not nxt.done():
                    nxt.set_result(None)   # the turn goes to it directly: ``free`` unchanged
                    return
            else:
                self._start(nxt)
                return
        self.free += 1

    def _start(self, start: Callable[[], None]) -> None:
        try:
            start()
        except Exception:
            # A bug in the starter must not keep the turn taken forever.
            log.exception("turns.start_failed")
            self.give()

    async def __aenter__(self) -> None:
        if not self.try_take():
            await self.take()

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.give()


class Mailbox(Generic[_T]):
    """Items for one consumer, in order, without a bound (a modem's URCs).

    asyncio.Queue's put and get cost some ten Python calls per item (its
    bound, its lists of getters and putters), and a status report arrives as
    a URC for every message sent (issue 17); one consumer and no bound need
    neither: put() appends and wakes the consumer if it waits.
    """

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[_T] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: _T) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> _T:
        """The oldest item, waiting for one if there is none (one consumer at a time)."""
        items = self._items
        while not items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return items.popleft()

    def keep(self, wanted: Callable[[_T], bool]) -> None:
        """Drop the items ``wanted`` refuses; the others stay, in order."""
        self._items = deque(item for item in self._items if wanted(item))

    def __len__(self) -> int:
        return len(self._items)


__all__ = ["Mailbox", "Turns"]
