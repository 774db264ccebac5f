"""The queue's size for /healthz and systemd (smsd.core.pending): counted at most once
per refresh, however often it is asked, and exact for this daemon's own submits."""

from __future__ import annotations

import asyncio

import pytest

from smsd.config import Policy
from smsd.core.outbox import Outbox, SubmitRequest
from smsd.core.pending import REFRESH_S, QueueCounts
from smsd.errors import CountInterrupted
from smsd.store import Store
from smsd.store.claims import claim_due
from smsd.store.timefmt import ts, utcnow

pytestmark = pytest.mark.timeout(30)


class CountedStore:
    """The real store's count, noting each time it is taken (and able to hold it)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.counts = 0
        self.gate: asyncio.Event | None = None
        self.counting = asyncio.Event()

    async def outbound_pending(self) -> tuple[int, int]:
        self.counts += 1
        self.counting.set()
        if self.gate is not None:
            await self.gate.wait()
        return await self.store.outbound_pending()


def _outbox(store: Store, counted: CountedStore, now: list[float]) -> Outbox:
    return Outbox(store, Policy(country="GB"),
                  queue=QueueCounts(counted, clock=lambda: now[0]))


class TestQueueCounts:
    async def test_submits_show_at_once_without_a_count(self, store: Store) -> None:
        """After the first count, the outbox's own submits are added as they commit:
        the next answers are exact with no count of the table; a count is taken
        again only once REFRESH_S has passed."""
        counted, now = CountedStore(store), [100.0]
        outbox = _outbox(store, counted, now)
        assert await outbox.queue.get() == (0, 0)
        await outbox.submit(SubmitRequest(["+447700900123", "+447700900124"], "x"))
        assert await outbox.queue.get() == (2, 0)
        await outbox.submit(SubmitRequest(["+447700900125"], "x"))
        assert await outbox.queue.get() == (3, 0)
        assert counted.counts == 1
        now[0] += REFRESH_S
        assert await outbox.queue.get() == (3, 0)
        assert counted.counts == 2

    async def test_changes_outside_the_outbox_show_after_the_refresh(
        self, store: Store
    ) -> None:
        """A message claimed for sending (the dispatcher, not the outbox) moves from
        waiting to in flight in the answer once the counts are taken again."""
        counted, now = CountedStore(store), [100.0]
        outbox = _outbox(store, counted, now)
        await outbox.submit(SubmitRequest(["+447700900123", "+447700900124"], "x"))
        assert await outbox.queue.get() == (2, 0)
        claimed, _ = await store.write(lambda db: claim_due(
            db, ts(utcnow()), 1, node=None, dead_after_s=60.0, cutoff_s=None,
            expired_error=lambda _: "expired"))
        assert len(claimed) == 1
        assert await outbox.queue.get() == (2, 0)     # within the refresh: as counted
        now[0] += REFRESH_S
        assert await outbox.queue.get() == (1, 1)

    async def test_probes_at_once_share_one_count(self, store: Store) -> None:
        """Many probes arriving while a count runs wait for that one count."""
        counted, now = CountedStore(store), [100.0]
        counted.gate = asyncio.Event()
        outbox = _outbox(store, counted, now)
        probes = [asyncio.create_task(outbox.queue.get()) for _ in range(5)]
        await counted.counting.wait()
        counted.gate.set()
        assert await asyncio.gather(*probes) == [(0, 0)] * 5
        assert counted.counts == 1

    async def test_a_cancelled_counter_fails_the_others_clearly(self, store: Store) -> None:
        """The probe counting for the others is cancelled (its own deadline): the
        others get CountInterrupted, not a cancellation of their own, and the next
        probe counts again."""
        counted, now = CountedStore(store), [100.0]
        counted.gate = asyncio.Event()
        outbox = _outbox(store, counted, now)
        first = asyncio.create_task(outbox.queue.get())
        await counted.counting.wait()
        other = asyncio.create_task(outbox.queue.get())
        await asyncio.sleep(0)
        first.cancel()
        with pytest.raises(CountInterrupted):
            await other
        assert first.cancelled()
        counted.gate.set()
        assert await outbox.queue.get() == (0, 0)
        assert counted.counts == 2
