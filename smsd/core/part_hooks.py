"""PartHooks for one message: 'submitting' is committed before it returns.

(A part's 'sent' is committed with the message's next write: Store.write_soon.)

The dispatcher hands one of these to the router with every message.  Besides
the store writes it keeps what the dispatcher's drain and watchdog need to
know about the send in memory: whether any part is talking to a modem now
(``submitted_any``; ``talking`` also counts a first 'submitting' still being
committed), since when (``submitting_since``), and whether new sends may still
start (``may_start``: false once a graceful stop began).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from smsd.store import Store, ts
from smsd.store.attempts import mark_not_sent, mark_part_sent, mark_submitting


class Withdrawn(Exception):
    """The daemon is stopping: this message was not started and goes back to the queue."""


class MessageHooks:
    def __init__(self, store: Store, message_id: int, clock: Callable[[], datetime],
                 may_start: Callable[[], bool], *, submit_ahead: bool = False) -> None:
        self._store = store
        self._id = message_id
        self.message_id = message_id
        self._clock = clock
        self._may_start = may_start
        # the dispatcher's policy is 'resend': a part may be marked submitting
        # while it waits for its modem (smsd.gateways.gsm: the next in line)
        self.submit_ahead = submit_ahead
        self.submitted_any = False
        # the first 'submitting' write is on its way to the disk: the database
        # may say 'submitting' already, and the PDU follows once it returns
        self._committing = False
        self.modem: str | None = None
        # monotonic time the part now in flight was marked submitting
        self.submitting_since: float | None = None
        # set by the dispatcher when it gives up on the send (watchdog, stop):
        # why the part's fate is unknown, for the policy and the history
        self.interrupted: str | None = None

    async def submitting(self, part: int, *, ahead: bool = False) -> None:
        """Commit the part's 'submitting'.  ``ahead``: it still waits for its
        modem and is not talking until :meth:`talk_now`: a stop withdraws it
        (back to 'queued'), and the watchdog's clock starts only then."""
        first = not self.submitted_any
        if first and not self._may_start():
            raise Withdrawn(f"message {self._id}: not started, the daemon is stopping")
        now = ts(self._clock())
        mid = self._id
        if not ahead:
            self.submitting_since = time.monotonic()
        self._committing = True
        try:
            await self._store.write(lambda db: mark_submitting(db, mid, part, now, first=first))
        except BaseException:
            self.submitting_since = None   # not committed: the part is not sent
            raise
        finally:
            self._committing = False
        if not ahead:
            self.submitted_any = True

    def talk_now(self) -> None:
        if not self._may_start():
            raise Withdrawn(f"message {self._id}: not started, the daemon is stopping")
        self.submitting_since = time.monotonic()
        self.submitted_any = True

    @property
    def talking(self) -> bool:
        """A part is talking to a modem, or is being marked 'submitting' to start talking.

        A stop that began during that commit must not withdraw the message:
        the database (and anyone reading it) already sees it 'submitting'.
        Cancelled during the commit after all, nothing has left the daemon
        (``submitted_any`` is still false), so it is put back, not resolved
        by the policy.
        """
        return self.submitted_any or self._committing

    async def not_sent(self, part: int) -> None:
        """The part never left (the modem failed before the PDU): no longer submitting.

        Only for a message none of whose parts left, which the gateway hands
        to another modem: until then it is not talking to any modem, so a
        stop withdraws it and a crash requeues it under either policy.
        """
        mid = self._id
        now = ts(self._clock())
        await self._store.write(lambda db: mark_not_sent(db, mid, part, now))
        self.submitted_any = False
        self.submitting_since = None

    async def sent(self, part: int, *, modem: str | None, reference: int | None) -> None:
        # Committed with this message's next write (the next part's
        # 'submitting', or the dispatcher's 'sent'), not on its own: one commit
        # fewer per part (issue 17).  A crash before it leaves the part
        # 'submitting', which recovery resolves by policy (invariant 2).
        mid, now = self._id, ts(self._clock())
        self._store.write_soon(
            lambda db: mark_part_sent(db, mid, part, modem=modem, reference=reference, now_s=now))
        self.submitting_since = None
        if modem is not None:
            self.modem = modem
