"""How many outbound messages wait and how many are in flight, for /healthz and systemd.

Counting them reads the partial indexes of the waiting and in-flight rows:
cheap while the queue is short, but 30-50 ms of the reader thread at 100,000
queued, and a monitor may probe /healthz every 50 ms (issue 17).  So the
count is taken at most every REFRESH_S, one count for all the probes that
arrive while it runs, and in between the messages this daemon's outbox
commits are added to the waiting figure as they are acknowledged: a probe
right after a submit shows it.  What other changes (sends claimed, finished,
another node's submits) does to the figures shows within REFRESH_S.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from smsd.errors import CountInterrupted

# Longest age of the counts /healthz and the status line answer with (see the
# module docstring): a monitor's view of the queue, not an account.
REFRESH_S = 1.0


class _CountingStore(Protocol):
    async def outbound_pending(self) -> tuple[int, int]: ...


class QueueCounts:
    """(waiting, in flight), counted at most every ``refresh_s``; submits added as they commit."""

    def __init__(self, store: _CountingStore, *, refresh_s: float = REFRESH_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._clock = clock
        self._counted: tuple[int, int] | None = None
        self._counted_at = 0.0
        self._added = 0            # waiting messages committed by the outbox, ever
        self._added_at_count = 0   # ... of which the last count had seen
        self._counting: asyncio.Future[tuple[int, int]] | None = None

    def added(self, waiting: int) -> None:
        """The outbox committed ``waiting`` more queued or scheduled messages."""
        self._added += waiting

    async def get(self) -> tuple[int, int]:
        """(waiting, in flight); a database failure raises (StoreError), as the count does."""
        counted = self._counted
        if counted is None or self._clock() - self._counted_at >= self._refresh_s:
            counted = await self._count()
        return counted[0] + self._added - self._added_at_count, counted[1]

    async def _count(self) -> tuple[int, int]:
        """One count for every caller that asks while it runs.

        The first caller counts itself (no task: as prompt as the bare read);
        the others wait for its answer, shielded from each other's cancellation.
        """
        if self._counting is not None:
            return await asyncio.shield(self._counting)
        fut: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_retrieve)
        self._counting = fut
        try:
            started = self._clock()
            counted = await self._store.outbound_pending()
        except BaseException as e:
            # The others get the error; a cancelled first caller's count is
            # one they may ask for again.
            fut.set_exception(e if isinstance(e, Exception)
                              else CountInterrupted("the count was interrupted"))
            raise
        finally:
            self._counting = None
        # Submits acknowledged while the count ran may or may not be in it: the
        # ones acknowledged before it returned are taken as counted (an
        # undercount of a concurrent submit, for one refresh at most).
        self._counted, self._counted_at, self._added_at_count = counted, started, self._added
        fut.set_result(counted)
        return counted


def _retrieve(fut: asyncio.Future[tuple[int, int]]) -> None:
    """Nobody else waited: the exception is seen here, not logged as never retrieved."""
    if not fut.cancelled():
        fut.exception()
