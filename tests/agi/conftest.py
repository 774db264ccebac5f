"""Fixtures for the AGI tests: in-test fakes of the services the handlers
call (written from the contracts in docs/internals.md) and a running server
on an unused loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest

from smsd.agi.handlers import build_handlers
from smsd.agi.ports import AgiServices
from smsd.agi.server import AgiServer
from smsd.config import Licence, User
from smsd.core.outbox import Refusal, SubmitRequest, SubmitResult
from smsd.errors import InvalidNumber, ValidationError
from smsd.numbers import parse_e164


def make_user(ext: str, name: str, username: str, office: str | None = None) -> User:
    return User(
        extension=ext,
        name=name,
        username=username,
        office_number=office,
        licence=Licence.UC_BUSINESS,
        endpoint=f"pjsip:{ext}",
    )


ALICE = make_user("100", "Alice Example", "alice", "+15551234567")
BOB = make_user("201", "Bob Example", "bob", "+15551234567")


class FakeOutbox:
    """Outbox contract: whole-request problems raise, per-number ones are refusals."""

    def __init__(self) -> None:
        self.requests: list[SubmitRequest] = []
        self.next_id = 1
        self.fail: Exception | None = None
        self.fail_on_call: int | None = None  # 1-based call number that raises `fail`
        self.calls = 0

    async def submit(self, req: SubmitRequest) -> SubmitResult:
        self.calls += 1
        if self.fail is not None and self.fail_on_call in (None, self.calls):
            raise self.fail
        if not req.text.strip():
            raise ValidationError("message should not be empty")
        self.requests.append(req)
        ids: list[int] = []
        refused: list[Refusal] = []
        for number in req.recipients:
            try:
                parse_e164(number)
            except InvalidNumber as exc:
                refused.append(Refusal(number, exc.reason))
                continue
            ids.append(self.next_id)
            self.next_id += 1
        return SubmitResult(ids=ids, refused=refused)


@dataclass
class Received:
    sender: str
    recipient: str | None
    text: str
    gateway: str
    modem: str | None


class FakeInbox:
    """Inbox contract: a repeated dedupe_key returns the first id and stores nothing."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.keys: list[str | None] = []  # the dedupe_key of every call, in order
        self._by_key: dict[str, int] = {}

    async def receive(
        self, sender: str, recipient: str | None, text: str, *, gateway: str,
        modem: str | None = None, dedupe_key: str | None = None,
    ) -> int:
        self.keys.append(dedupe_key)
        if dedupe_key is not None and dedupe_key in self._by_key:
            return self._by_key[dedupe_key]
        self.received.append(Received(sender, recipient, text, gateway, modem))
        msg_id = 500 + len(self.received)
        if dedupe_key is not None:
            self._by_key[dedupe_key] = msg_id
        return msg_id


class FakeDirectory:
    def __init__(self, users: Sequence[User]) -> None:
        self.users = list(users)

    def user_by_extension(self, ext: str) -> User | None:
        return next((u for u in self.users if u.extension == ext), None)

    def user_by_username(self, name: str) -> User | None:
        return next((u for u in self.users if u.username == name), None)

    def user_by_endpoint(self, endpoint: str) -> User | None:
        return next(
            (u for u in self.users if u.endpoint and u.endpoint.lower() == endpoint.lower()), None
        )


@dataclass
class FakeConversations:
    contexts: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)
    asked: list[tuple[str, str]] = field(default_factory=list)

    async def reply_context(self, user: User, external: str) -> tuple[int, str] | None:
        self.asked.append((user.username, external))
        return self.contexts.get((user.username, external))

    stops: list[tuple[str, str]] = field(default_factory=list)

    async def participant_stop(self, user: User, external: str, text: str) -> bool:
        """Like Conversations: STOP to a NANP customer inside a conversation blocks it."""
        if text.strip().upper() != "STOP" or (user.username, external) not in self.contexts:
            return False
        if not self.contexts[(user.username, external)][1].startswith("+1"):
            return False
        self.stops.append((user.username, external))
        return True


@dataclass
class FakeProcedure:
    claims: list[tuple[int, list[str]]] = field(default_factory=list)
    conversation: int | None = 77

    async def claim(self, sms_id: int, members: Sequence[str]) -> int | None:
        self.claims.append((sms_id, list(members)))
        return self.conversation


@dataclass
class Fakes:
    outbox: FakeOutbox
    inbox: FakeInbox
    directory: FakeDirectory
    conversations: FakeConversations
    procedure: FakeProcedure

    def services(self) -> AgiServices:
        return AgiServices(
            outbox=self.outbox, inbox=self.inbox, directory=self.directory,
            conversations=self.conversations, procedure=self.procedure,
        )


@pytest.fixture
def fakes() -> Fakes:
    return Fakes(
        FakeOutbox(), FakeInbox(), FakeDirectory([ALICE, BOB]), FakeConversations(),
        FakeProcedure(),
    )


@pytest.fixture
async def server(fakes: Fakes) -> AsyncIterator[AgiServer]:
    srv = AgiServer(build_handlers(fakes.services()), "127.0.0.1", 0)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()
