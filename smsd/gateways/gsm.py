"""The GSM gateway: one outbound message -> SMS-SUBMIT PDUs on a pooled modem.

The pool owns the modems; this adapter only decides which modem (the one
that owns the sender's DID, so replies come back to the same number, else the
least busy), builds the PDUs with a fresh concatenation reference from that
modem, and marks each part ``submitting`` (committed) before the modem is asked
to send it.  Modem errors are translated into the router's language: a
temporary TS 24.011 cause (congestion, network out of order) lets the router
fail over or retry, a permanent one (unassigned number, barred) fails the
message at once.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import structlog

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
from smsd.modem.pdu import SubmitPdu, encode_submit

log = structlog.get_logger(__name__)

NAME = "gsm"

# Outer bound on one part's AT+CMGS exchange, covering the pool's queueing
# for the modem too.  TS 27.005 sets no limit; the modem layer's own +CMGS
# deadline is about two minutes (networks answer within 60 s, some modems
# retry internally), so this only catches a pool that never answers.
SEND_PART_DEADLINE_S = 300.0


class _SentPart(Protocol):
    @property
    def modem(self) -> str: ...

    @property
    def message_reference(self) -> int: ...


class ModemPoolLike(Protocol):
    """The part of smsd.modem.pool.ModemPool this gateway uses."""

    def healthy(self) -> bool: ...

    def choose(self, did: str | None = None) -> str | None: ...

    async def send_pdu(self, pdu: SubmitPdu, *, modem: str) -> _SentPart: ...

    def next_reference(self, modem: str) -> int: ...


class GsmGateway:
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

    def available(self) -> bool:
        return self._pool.healthy()

    async def send(self, job: OutboundJob, hooks: PartHooks) -> None:
        modem = self._pool.choose(job.did)
        if modem is None:
            raise GatewayUnavailable("no ready modem", gateway=NAME)
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
