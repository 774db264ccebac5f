"""The GSM gateway: one outbound message -> SMS-SUBMIT PDUs on a pooled modem.

The pool owns the modems; this adapter only decides which modem (the one
that owns the sender's DID, so replies come back to the same number, else the
least busy), waits until that modem is free, builds the PDUs with a fresh
concatenation reference from that modem, and marks each part ``submitting``
(committed) before the modem is asked to send it.  Modem errors are translated
into the router's language: a temporary TS 24.011 cause (congestion, network
out of order) lets the router fail over or retry, a permanent one (unassigned
number, barred) fails the message at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Protocol

import structlog

from smsd.codec.pdu import SubmitPdu, encode_submit
from smsd.errors import (
    AtError,
    AtTimeout,
    CmsError,
    GatewayError,
    GatewayUnavailable,
    PduError,
    PortGone,
)
from smsd.gateways.base import OutboundJob, PartHooks

log = structlog.get_logger(__name__)

NAME = "gsm"

# Outer bound on one part's AT+CMGS exchange, covering the pool's queueing
# for the modem too.  TS 27.005 sets no limit; the modem layer's own +CMGS
# deadline is about two minutes (networks answer within 60 s, some modems
# retry internally), so this only catches a pool that never answers.
SEND_PART_DEADLINE_S = 300.0
# How often the number of ready modems (our concurrency) is looked up again;
# modems come and go on the scale of seconds (plug-in, registration).
READY_REFRESH_S = 1.0


class _SentPart(Protocol):
    @property
    def modem(self) -> str: ...

    @property
    def message_reference(self) -> int: ...


class _ModemInfo(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def own_number(self) -> str | None: ...

    @property
    def in_flight(self) -> int: ...


class ModemPoolLike(Protocol):
    """The part of smsd.modem.pool.ModemPool this gateway uses."""

    def healthy(self) -> bool: ...

    def snapshot(self) -> Sequence[_ModemInfo]: ...

    def choose(self, did: str | None = None) -> str | None: ...

    def unavailable_reason(self) -> str: ...

    async def send_pdu(self, pdu: SubmitPdu, *, modem: str) -> _SentPart: ...

    def next_reference(self, modem: str) -> int: ...


class GsmGateway:
    """Sends through the pool, marking a part submitting only when a modem is free.

    A modem sends one SMS at a time, so a part marked ``submitting`` while it
    waits in a modem's queue would widen what a crash can duplicate (or, with
    ``submitting_after_crash = "fail"``, fail messages that never left).  So at
    most one of our sends runs per ready modem, and each waits for its modem's
    lock before the part is marked: at any moment, at most one message per modem
    is ``submitting``.
    """

    name = NAME

    def __init__(
        self,
        pool: ModemPoolLike,
        *,
        request_reports: bool = True,
        validity_minutes: int | None = None,
    ) -> None:
        self._pool = pool
        self._request_reports = request_reports
        self._validity = validity_minutes
        self._locks: dict[str, asyncio.Lock] = {}
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._infos: list[_ModemInfo] = []
        self._ready = 1
        self._infos_at = float("-inf")

    def available(self) -> bool:
        return self._pool.healthy()

    def _modems(self) -> list[_ModemInfo]:
        """The pool's snapshot, refreshed at most every READY_REFRESH_S (it is O(modems))."""
        now = time.monotonic()
        if now - self._infos_at >= READY_REFRESH_S:
            self._infos = list(self._pool.snapshot())
            self._ready = max(1, sum(m.state == "ready" for m in self._infos))
            self._infos_at = now
        return self._infos

    def _ready_modems(self) -> int:
        self._modems()
        return self._ready

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """At most one of our sends per ready modem; waiters are woken one at a time."""
        loop = asyncio.get_running_loop()
        while self._active >= self._ready_modems():
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            try:
                # Re-check now and then: a modem that becomes ready adds room.
                async with asyncio.timeout(READY_REFRESH_S):
                    await fut
            except TimeoutError:
                pass
            finally:
                if not fut.done():
                    fut.cancel()
        self._active += 1
        try:
            yield
        finally:
            self._active -= 1
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    break

    async def send(self, job: OutboundJob, hooks: PartHooks) -> None:
        async with self._slot():
            modem = self._pool.choose(job.did)
            if modem is None:
                # "daily cap reached (3)" rather than a vague "no ready modem".
                raise GatewayUnavailable(self._pool.unavailable_reason(), gateway=NAME)
            if self._lock(modem).locked():
                modem = self._instead_of_busy(modem, job.did)
            async with self._lock(modem):
                await self._send_on(modem, job, hooks)

    def _lock(self, modem: str) -> asyncio.Lock:
        return self._locks.setdefault(modem, asyncio.Lock())

    def _instead_of_busy(self, chosen: str, did: str | None) -> str:
        """The pool counts a send only once it reaches the modem, so it may pick a modem
        one of our sends is about to use.  Take an idle ready modem instead, unless the
        pool chose the modem owning the sender's DID (then wait for it)."""
        infos = self._modems()
        if did is not None and any(i.id == chosen and i.own_number == did for i in infos):
            return chosen
        idle = [i for i in infos if i.state == "ready" and not self._lock(i.id).locked()]
        if not idle:
            return chosen
        return min(idle, key=lambda i: (i.in_flight, i.id)).id

    async def _send_on(self, modem: str, job: OutboundJob, hooks: PartHooks) -> None:
        try:
            pdus = encode_submit(
                job.recipient,
                job.text,
                reference=self._pool.next_reference(modem),
                request_report=self._request_reports,
                validity_minutes=self._validity,
            )
        except PduError as e:
            raise GatewayError(f"cannot encode: {e}", temporary=False, gateway=NAME) from e
        for pdu in pdus:
            await hooks.submitting(pdu.part)
            try:
                async with asyncio.timeout(SEND_PART_DEADLINE_S):
                    sent = await self._pool.send_pdu(pdu, modem=modem)
            except CmsError as e:
                raise GatewayError(
                    f"{modem}: {e.raw}", temporary=e.temporary, gateway=NAME
                ) from e
            except GatewayUnavailable:
                raise
            except TimeoutError as e:
                raise GatewayError(
                    f"{modem}: no answer to part {pdu.part} within {SEND_PART_DEADLINE_S:g} s",
                    temporary=True,
                    gateway=NAME,
                ) from e
            except (AtTimeout, PortGone, AtError) as e:
                # Plain ERROR, +CME ERROR, a timeout or an unplugged port say
                # nothing about the number: worth another try elsewhere.
                raise GatewayError(f"{modem}: {e}", temporary=True, gateway=NAME) from e
            await hooks.sent(pdu.part, modem=sent.modem, reference=sent.message_reference)
            log.debug(
                "gsm.part_sent",
                sms_id=job.message_id,
                modem=sent.modem,
                part=pdu.part,
                parts=pdu.parts,
                mr=sent.message_reference,
            )
