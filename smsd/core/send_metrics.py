"""Send latency and failures by cause, gathered from status events for ``/metrics``.

Latency is from the moment a message was due (its ``send_at``, else its
submission) to a gateway's acceptance ('sent'): what a user waits for, queue
time and retries included.  Failures are counted by a small fixed set of
causes (the label must stay low-cardinality for Prometheus), classified from
the error the dispatcher recorded.  The figures live in memory and start at
zero with the daemon, as Prometheus counters do.
"""

from __future__ import annotations

import bisect
from collections import Counter

from smsd.core.events import StatusChange
from smsd.store import Store, from_ts, utcnow
from smsd.store.stats import created_and_send_at

# Seconds.  A modem takes 2-5 s per part; a trunk well under a second; retries
# back off from 30 s; a postponed message waits in the queue no longer than
# its due time, so the top buckets catch outages, not normal traffic.
LATENCY_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)

# (substring of the error, lower case) -> cause; first match wins.
_CAUSES = (
    ("cms error", "network_refused"),
    ("+cms", "network_refused"),
    ("attempt", "attempts_exhausted"),
    ("timeout", "timeout"),
    ("timed out", "timeout"),
    ("interrupted", "interrupted"),
    ("unavailable", "no_gateway"),
    ("no gateway", "no_gateway"),
)
CAUSES = ("expired", *dict.fromkeys(c for _, c in _CAUSES), "other")


def failure_cause(state: str, error: str | None) -> str:
    """One of CAUSES for a failed or expired message."""
    if state == "expired":
        return "expired"
    text = (error or "").lower()
    for needle, cause in _CAUSES:
        if needle in text:
            return cause
    return "other"


class SendMetrics:
    """A status-event subscriber (EventBus.subscribe_status) keeping the two families."""

    # The states on_status looks at: the bus offers it only these (issue 17).
    STATES = frozenset({"sent", "failed", "expired"})

    def __init__(self, store: Store) -> None:
        self._store = store
        self.bucket_counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last is +Inf
        self.latency_sum = 0.0
        self.latency_count = 0
        self.failures: Counter[str] = Counter()

    def observe(self, seconds: float) -> None:
        self.bucket_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.latency_count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, cumulative count) per bucket, "+Inf" last, as the exposition format wants."""
        out, total = [], 0
        for bound, n in zip((*map(str, LATENCY_BUCKETS), "+Inf"), self.bucket_counts,
                            strict=True):
            total += n
            out.append((bound, total))
        return out

    async def on_status(self, ev: StatusChange) -> None:
        if ev.state in ("failed", "expired"):
            self.failures[failure_cause(ev.state, ev.error)] += 1
            return
        if ev.state != "sent":
            return
        if ev.due_since is not None:    # the dispatcher's 'sent': no read per message
            due = from_ts(ev.due_since)
        else:
            times = await created_and_send_at(self._store, ev.id)
            if times is None:
                return
            due, send_at = times
            if due is not None and send_at is not None and send_at > due:
                due = send_at
        if due is None:
            return
        self.observe(max(0.0, (utcnow() - due).total_seconds()))
