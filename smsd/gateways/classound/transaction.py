"""Non-INVITE transactions (RFC 3261 17.1.2 client, 17.2.2 server).

Client: the request is sent, and on UDP sent again at T1, 2*T1, ... capped at
T2 (Timer E; every T2 once a provisional answer came) until a final response
or Timer F.  Responses are matched on the top Via branch and the CSeq method
(17.1.3).  A retransmitted final response after that finds no transaction and
is ignored (what Timer K would absorb).

Server: a request seen again (the carrier retransmitting because our answer
was lost or slow) is answered with the same response, or ignored while the
first copy is still being handled.  Requests are keyed on Call-ID and CSeq,
not only the branch, so a carrier that re-sends a MESSAGE as a new transaction
after a failover of its own is still recognised.  Answers are kept for
SERVER_KEEP_S, RFC 3261's Timer J (64*T1).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from smsd.gateways.classound.sipmsg import SipRequest, SipResponse

log = structlog.get_logger(__name__)

# RFC 3261 17.1.1.1 defaults: T1 is the round-trip estimate, T2 the longest
# interval between retransmissions of a non-INVITE request.
T1_S = 0.5
T2_S = 4.0
# Timer J: how long a server remembers its answer to a non-INVITE request.
SERVER_KEEP_S = 64 * T1_S
# Requests remembered at most (a flood of distinct Call-IDs must not grow memory).
SERVER_KEEP_MAX = 20_000


class TransactionTimeout(Exception):
    """Timer F fired: no final response.  ``sent`` counts the copies sent."""

    def __init__(self, seconds: float, sent: int) -> None:
        self.seconds = seconds
        self.sent = sent
        super().__init__(f"no final response within {seconds:g} s ({sent} transmissions)")


@dataclass
class _Pending:
    final: asyncio.Future[SipResponse]
    provisional: bool = False
    sent: int = 0
    timer: asyncio.TimerHandle | None = None


Send = Callable[[bytes, tuple[str, int]], Awaitable[None]]
Resend = Callable[[bytes, tuple[str, int]], None]


class ClientTransactions:
    def __init__(self, send: Send, *, reliable: bool, resend: Resend | None = None,
                 t1: float = T1_S, t2: float = T2_S, timer_f: float = 64 * T1_S) -> None:
        """``resend`` sends a datagram again from a timer callback (UDP only)."""
        assert reliable or resend is not None, "UDP needs a resend for Timer E"
        self._send = send
        self._resend = resend or (lambda data, dest: None)
        self._reliable = reliable
        self._t1 = t1
        self._t2 = t2
        self.timer_f = timer_f
        self._pending: dict[tuple[str, str], _Pending] = {}
        self.retransmissions = 0

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def request(self, req: SipRequest, dest: tuple[str, int]) -> SipResponse:
        """Send ``req`` (its Via must carry a fresh branch) and return the final response.

        Raises TransactionTimeout (Timer F) or ConnectionError from the transport.
        """
        branch = req.branch
        assert branch is not None, "a client request needs a Via branch"
        key = (branch, req.method)
        loop = asyncio.get_running_loop()
        state = _Pending(loop.create_future())
        self._pending[key] = state
        data = req.encode()
        try:
            async with asyncio.timeout(self.timer_f):
                await self._send(data, dest)
                state.sent = 1
                if not self._reliable:
                    state.timer = loop.call_later(self._t1, self._timer_e, state, data, dest,
                                                  self._t1)
                return await state.final
        except TimeoutError:
            raise TransactionTimeout(self.timer_f, state.sent) from None
        finally:
            del self._pending[key]
            if state.timer is not None:
                state.timer.cancel()
            if not state.final.done():
                state.final.cancel()

    def _timer_e(self, state: _Pending, data: bytes, dest: tuple[str, int],
                 interval: float) -> None:
        """Timer E fired: send the same bytes again, next time after twice as long (max T2)."""
        if state.final.done():
            return
        try:
            self._resend(data, dest)
        except OSError as exc:  # a full socket buffer: the next firing tries again
            log.debug("sip.retransmit_failed", error=str(exc))
        state.sent += 1
        self.retransmissions += 1
        interval = self._t2 if state.provisional else min(interval * 2, self._t2)
        loop = asyncio.get_running_loop()
        state.timer = loop.call_later(interval, self._timer_e, state, data, dest, interval)

    def on_response(self, resp: SipResponse) -> bool:
        """Hand a response to its transaction; False when none is waiting for it."""
        branch = resp.branch
        if branch is None:
            return False
        state = self._pending.get((branch, resp.cseq[1]))
        if state is None or state.final.done():
            return False
        if resp.status < 200:
            state.provisional = True
        else:
            state.final.set_result(resp)
        return True

    def fail_all(self, exc: Exception) -> None:
        """The connection they were sent on is gone (TCP): fail them now, not at Timer F."""
        for state in self._pending.values():
            if not state.final.done():
                state.final.set_exception(exc)


@dataclass
class _Seen:
    at: float
    answer: bytes | None = None  # None while the first copy is being handled


@dataclass
class ServerTransactions:
    keep_s: float = SERVER_KEEP_S
    keep_max: int = SERVER_KEEP_MAX
    _seen: OrderedDict[tuple[str, int, str], _Seen] = field(default_factory=OrderedDict)

    @staticmethod
    def key(req: SipRequest) -> tuple[str, int, str]:
        number, method = req.cseq
        return req.call_id, number, method

    def begin(self, req: SipRequest) -> tuple[bool, bytes | None]:
        """(new, cached answer).  new=False: a repeat; answer it with the cached bytes, if any."""
        self._expire()
        key = self.key(req)
        seen = self._seen.get(key)
        if seen is not None:
            return False, seen.answer
        self._seen[key] = _Seen(time.monotonic())
        return True, None

    def answered(self, req: SipRequest, answer: bytes) -> None:
        seen = self._seen.get(self.key(req))
        if seen is not None:
            seen.answer = answer

    def forget(self, req: SipRequest) -> None:
        """Handling failed before an answer: a repeat is handled afresh."""
        self._seen.pop(self.key(req), None)

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.keep_s
        while self._seen:
            key, seen = next(iter(self._seen.items()))
            if seen.at >= cutoff and len(self._seen) < self.keep_max:
                break
            del self._seen[key]
