"""Messages left in 'sending' or 'submitting' with nobody sending them: resolved by policy.

Three moments leave such messages: a crash (resolved at the next start), a
stop whose drain deadline passed while a modem still had a part (resolved
before the daemon exits, so a clean stop leaves nothing 'submitting'), and a
state write the store refused mid-send (found by the dispatcher's watchdog).
The rule is the same each time (DESIGN.md invariant 2):

* No part was marked submitting: nothing left the daemon, so the message is
  simply queued again.
* Every part is marked sent: the last part was accepted before the
  interruption, so the message is sent.
* Otherwise some parts may have reached the network.  With
  ``policy.submitting_after_crash == "resend"`` the message is queued again
  and sent whole (a phone cannot join new parts to old ones: each send gets a
  fresh concatenation reference), which may duplicate exactly this message.
  With ``"fail"`` it fails with the error "interrupted during submit" and
  nothing is sent twice.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from smsd.config import Policy
from smsd.core.events import EventBus, StatusChange
from smsd.store import Store, ts
from smsd.store.recovery import InFlight, Outcome, resolve_in_flight

log = structlog.get_logger(__name__)

INTERRUPTED = "interrupted during submit"


@dataclass
class Resolved:
    requeued: list[int] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.requeued) + len(self.sent) + len(self.failed)


def _decider(policy: Policy) -> Callable[[InFlight], Outcome]:
    resend = policy.submitting_after_crash != "fail"

    def decide(m: InFlight) -> Outcome:
        if m.total and m.done == m.total:
            return "sent"        # the last part was accepted before the interruption
        if not m.touched or resend:
            return "queued"      # nothing left the daemon, or the policy resends
        return "failed"

    return decide


async def resolve_unfinished(
    store: Store, bus: EventBus, policy: Policy, now: datetime, *, why: str,
    ids: Collection[int] | None = None, node: str | None = None,
    dead_nodes_of: tuple[str, float] | None = None,
) -> Resolved:
    """Resolve 'sending'/'submitting' messages (all, or only ``ids``) as the module says.

    ``why`` ends up in each message's history ("recovered after a crash").
    On a shared PostgreSQL store, ``node`` limits it to that node's own
    messages (at its start: the others' belong to live nodes), and
    ``dead_nodes_of=(me, seconds)`` to the messages of other nodes whose
    heartbeat is older than ``seconds``: their leases have expired.
    """
    done = await resolve_in_flight(
        store, ts(now), _decider(policy), why=why, error=INTERRUPTED, ids=ids, node=node,
        dead_nodes_of=dead_nodes_of,
    )
    for m in done.failed:
        bus.publish_status(
            StatusChange(m.id, "failed", m.recipient, m.user, m.gateway, INTERRUPTED)
        )
    return Resolved(requeued=[m.id for m in done.queued], sent=[m.id for m in done.sent],
                    failed=[m.id for m in done.failed])
