"""Whose turn it is on the store's writer connection: a group commit or a transaction.

An ``asyncio.Lock`` did this before issue 17's third round, but taking a lock
is an ``await``, so every group commit of :meth:`Store.write` needed a task
of its own to hold it.  This turn can also be taken and handed on from plain
callbacks: the next group commit starts from the callback that ends the one
before it, with no task, lock or shield per write.  Transactions
(:meth:`Store.transaction`) still ``async with`` it, in arrival order with
the group commits.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from types import TracebackType

import structlog

log = structlog.get_logger(__name__)


class WriterTurn:
    """A FIFO turn, taken by awaiting it or by queueing a callback that starts work.

    Whoever holds the turn hands it on with :meth:`release`: to the oldest
    waiter still waiting, else it becomes free.  A callback queued with
    :meth:`when_free` is called with the turn held and must see to it that
    :meth:`release` is called once its work is over (or at once).
    """

    def __init__(self) -> None:
        self._held = False
        self._queue: deque[asyncio.Future[None] | Callable[[], None]] = deque()

    def locked(self) -> bool:
        return self._held

    def when_free(self, start: Callable[[], None]) -> None:
        """Call ``start`` holding the turn: now if it is free, else when it comes."""
        if self._held or self._queue:
            self._queue.append(start)
            return
        self._held = True
        self._start(start)

    async def acquire(self) -> None:
        if not self._held and not self._queue:
            self._held = True
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()      # handed to us just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        while self._queue:
            nxt = self._queue.popleft()
            if isinstance(nxt, asyncio.Future):
                if not nxt.done():      # a cancelled waiter is skipped
                    nxt.set_result(None)
                    return
            else:
                self._start(nxt)
                return
        self._held = False

    def _start(self, start: Callable[[], None]) -> None:
        try:
            start()
        except Exception:
            # A bug in the starter must not leave the writer taken forever.
            log.exception("store.turn_start_failed")
            self.release()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
