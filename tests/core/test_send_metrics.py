"""Send latency from status events (smsd/core/send_metrics.py)."""

from __future__ import annotations

from datetime import timedelta

from smsd.core.events import StatusChange
from smsd.core.send_metrics import LATENCY_BUCKETS, SendMetrics
from smsd.store import Store, ts, utcnow


class TestSendLatency:
    async def test_due_time_carried_by_the_event_needs_no_row(self, store: Store) -> None:
        """A 'sent' that carries when its message became due is measured from that alone.

        The dispatcher's events carry it so that the metric costs no read of
        the message per send; the message need not even be in the store.
        """
        metrics = SendMetrics(store)
        due = ts(utcnow() - timedelta(seconds=3))
        await metrics.on_status(StatusChange(4242, "sent", "+447700900123", "alice", "gsm",
                                             None, due_since=due))
        assert metrics.latency_count == 1
        assert 3.0 <= metrics.latency_sum < 60.0
        # 3 s falls in the (2, 5] bucket
        assert metrics.bucket_counts[LATENCY_BUCKETS.index(5.0)] == 1

    async def test_event_without_due_time_reads_the_message(self, store: Store) -> None:
        """A 'sent' from elsewhere (no due time) is measured from the stored row, if any."""
        metrics = SendMetrics(store)
        await metrics.on_status(StatusChange(4242, "sent", "+447700900123", "alice", "gsm", None))
        assert metrics.latency_count == 0       # no such message: nothing to measure
