"""The ``ami`` transport: Asterisk sends the MESSAGE through the SIP trunk it already holds.

For a PBX whose Asterisk already registers to the carrier: smsd asks it with
AMI ``MessageSend`` to ``ami_endpoint`` (``{number}`` replaced by the
recipient, e.g. ``pjsip:classound/sip:{number}@sip.carrier.example``).
Inbound messages take the way every trunk message takes in Asterisk: the
trunk endpoint's context (``[sms-in]``) runs the ``sms-receive`` AGI script.

Asterisk's Success only means its SIP stack took the request (an unanswered
MESSAGE still answers Success), so "sent" here means handed to Asterisk.
A refused action (unknown endpoint, no route) is temporary: it is the PBX's
configuration, not the message, and the router can still try elsewhere.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import structlog

from smsd.config import ClassoundGateway as ClassoundConfig
from smsd.errors import AmiError, AmiNotConnected, GatewayError, GatewayUnavailable
from smsd.gateways.base import OutboundJob, PartHooks

log = structlog.get_logger(__name__)

NAME = "classound"


class MessageSender(Protocol):
    """What the transport needs of smsd.asterisk.ami.AmiClient."""

    @property
    def connected(self) -> bool: ...

    async def message_send(self, to: str, from_: str, body: str) -> None: ...


class AmiTrunk:
    name = NAME

    def __init__(self, config: ClassoundConfig, ami: MessageSender | None) -> None:
        self._cfg = config
        self._ami = ami

    async def start(self) -> None:
        if self._ami is None:
            log.warning("classound.ami_disabled",
                        reason="mode = 'ami' needs [ami] enabled; the trunk stays unavailable")

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def close(self) -> None:
        return None

    def available(self) -> bool:
        return self._ami is not None and self._ami.connected

    def destination(self, number: str) -> str:
        return self._cfg.ami_endpoint.replace("{number}", number)

    async def send(self, job: OutboundJob, hooks: PartHooks) -> None:
        if self._ami is None or not self._ami.connected:
            raise GatewayUnavailable("AMI is not connected", gateway=NAME)
        sender = job.sender or self._cfg.from_user or self._cfg.username or ""
        to = self.destination(job.recipient)
        for part in range(1, job.parts + 1):
            await hooks.submitting(part)
        try:
            # the configured trunk deadline bounds the AMI round trip too
            async with asyncio.timeout(self._cfg.timeout_s):
                await self._ami.message_send(to, sender, job.text)
        except TimeoutError as exc:
            raise GatewayError(f"MessageSend: no answer within {self._cfg.timeout_s:g} s",
                               temporary=True, gateway=NAME) from exc
        except AmiNotConnected as exc:
            raise GatewayError(f"MessageSend: {exc}", temporary=True, gateway=NAME) from exc
        except AmiError as exc:
            raise GatewayError(str(exc), temporary=True, gateway=NAME) from exc
        for part in range(1, job.parts + 1):
            await hooks.sent(part, modem=None, reference=None)
        log.info("classound.ami_sent", sms_id=job.message_id, to=to)
