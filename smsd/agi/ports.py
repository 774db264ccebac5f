"""What the AGI scripts share: the services they call, bad-input refusals and
the result variables.

The Protocols name exactly what the handlers use, so the handlers can be
tested against small fakes and import nothing above them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from smsd.agi.session import AgiSession
from smsd.config import User
from smsd.core.outbox import SubmitRequest, SubmitResult
from smsd.gateways.base import InboundSink

if TYPE_CHECKING:
    from smsd.services import Services

Handler = Callable[[AgiSession], Awaitable[None]]

# Longest SMS_ERROR we set: enough for a few refusal reasons, far below
# Asterisk's 2048-byte command buffer.
MAX_ERROR_CHARS = 400


# --- what the handlers call (the real classes satisfy these) -----------------


class OutboxPort(Protocol):
    async def submit(self, req: SubmitRequest) -> SubmitResult: ...


class DirectoryPort(Protocol):
    def user_by_extension(self, ext: str) -> User | None: ...
    def user_by_username(self, name: str) -> User | None: ...
    def user_by_endpoint(self, endpoint: str) -> User | None: ...


class ConversationsPort(Protocol):
    async def reply_context(self, user: User, external: str) -> tuple[int, str] | None: ...
    async def participant_stop(self, user: User, external: str, text: str) -> bool: ...


class ProcedurePort(Protocol):
    async def claim(self, sms_id: int, members: Sequence[str]) -> int | None: ...


class PhoneNoticePort(Protocol):
    """Sends a text to a PBX endpoint (the AMI client's MessageSend)."""

    async def message_send(self, to: str, from_: str, body: str) -> None: ...


@dataclass(frozen=True)
class AgiServices:
    """The services the AGI handlers use, and nothing else."""

    outbox: OutboxPort
    inbox: InboundSink  # a whole inbound message in, committed before it returns
    directory: DirectoryPort
    conversations: ConversationsPort | None = None
    procedure: ProcedurePort | None = None
    # policy.country: a phone's national number is completed with it (sms-send).
    country: str | None = None
    # Tells a phone why its SMS was refused (AMI MessageSend), when AMI is there.
    notices: PhoneNoticePort | None = None

    @classmethod
    def from_services(cls, services: Services) -> AgiServices:
        return cls(
            outbox=services.outbox,
            inbox=services.inbox,
            directory=services.directory,
            conversations=services.conversations,
            procedure=services.procedure,
            country=services.config.policy.country,
            notices=services.ami,
        )


# --- shared helpers ------------------------------------------------------------


class Refuse(Exception):
    """Bad input for a script: report REFUSED with this reason, store nothing."""


def split_list(value: str) -> list[str]:
    """``"+1555, +1666,,"`` -> ``["+1555", "+1666"]``."""
    return [item.strip() for item in value.split(",") if item.strip()]


def user_from_name(directory: DirectoryPort, name: str) -> User | None:
    """A ``from`` given by the dialplan: an extension, a user name or an endpoint."""
    return (
        directory.user_by_extension(name)
        or directory.user_by_username(name)
        or directory.user_by_endpoint(name)
    )


async def report(session: AgiSession, **values: str) -> None:
    """Set the result variables (SET VARIABLE still works after a hangup)."""
    for name, value in values.items():
        await session.set_variable(name, value[:MAX_ERROR_CHARS])
