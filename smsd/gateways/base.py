"""What the dispatcher hands a gateway, and what a gateway must tell it back.

A gateway reports each part through ``PartHooks``: ``submitting`` is committed
to the store *before* the part leaves (AT+CMGS, HTTP request), ``sent`` after
the far end accepted it.  That ordering is what lets crash recovery say which
parts may have gone out (invariant 2 in DESIGN.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class OutboundJob:
    message_id: int
    recipient: str  # E.164, validated by the outbox
    text: str
    sender: str | None  # E.164 DID, alphanumeric sender ID, or None = the gateway's default
    did: str | None  # the user's DID: picks the modem that owns it
    parts: int
    encoding: str


class PartHooks(Protocol):
    # Whether a part may be marked 'submitting' while it still waits for its
    # modem (``submitting(part, ahead=True)``): true under the ``resend``
    # policy, where such a part is simply sent again after a crash.
    submit_ahead: bool

    async def submitting(self, part: int, *, ahead: bool = False) -> None:
        """Committed before the part is handed to the network.  ``ahead``: it still
        waits for its modem, and ``talk_now`` says when it goes."""
        ...

    def talk_now(self) -> None:
        """The part marked ahead goes to the modem now; raises if it may not
        start any more (a graceful stop began while it waited)."""
        ...

    async def not_sent(self, part: int) -> None:
        """The part did not leave after all (the modem failed before the PDU was written):
        no longer submitting.  Only before any part of the message left."""
        ...

    async def sent(self, part: int, *, modem: str | None, reference: int | None) -> None:
        """The network accepted the part; ``reference`` is the TP-MR for status reports
        (None when the gateway got none)."""
        ...


class Gateway(Protocol):
    name: str

    def available(self) -> bool:
        """False when sending now is pointless (no modem ready, provider tripped)."""
        ...

    async def send(self, job: OutboundJob, hooks: PartHooks) -> None:
        """Send every part or raise GatewayError(temporary=...)."""
        ...


class InboundSink(Protocol):
    """Where a trunk hands a whole inbound message: smsd.core.inbox.Inbox.receive.

    Returns only once the message is committed, so a trunk answers its peer
    (SIP 200, HTTP 2xx) after that and never before.
    """

    async def receive(
        self,
        sender: str,
        recipient: str | None,
        text: str,
        *,
        gateway: str,
        modem: str | None = None,
        dedupe_key: str | None = None,
    ) -> int: ...
