"""Shared pieces of the trunk tests: a recording inbox, part hooks, a SipTrunk on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from smsd.config import ClassoundGateway
from smsd.gateways.classound.sip import SipTrunk
from tests.fakes.classound_http import ClassoundCarrier

USER = "smsd-user"
PASSWORD = "s3cret-Pw"
SENDER = "+15557654321"
RECIPIENT = "+15551234567"


class Hooks:
    """PartHooks that record the order of events."""

    def __init__(self) -> None:
        self.log: list[tuple[str, int]] = []

    async def submitting(self, part: int) -> None:
        self.log.append(("submitting", part))

    async def sent(self, part: int, *, modem: str | None, reference: int | None) -> None:
        self.log.append(("sent", part))


@dataclass
class Received:
    sender: str
    recipient: str | None
    text: str
    gateway: str
    dedupe_key: str | None


@dataclass
class RecordingInbox:
    """InboundSink that commits to a list; repeated dedupe keys return the first id."""

    messages: list[Received] = field(default_factory=list)
    keys: dict[str, int] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    fail: bool = False

    async def receive(self, sender: str, recipient: str | None, text: str, *, gateway: str,
                      modem: str | None = None, dedupe_key: str | None = None) -> int:
        if self.fail:
            raise OSError("disk full")
        if dedupe_key is not None and dedupe_key in self.keys:
            return self.keys[dedupe_key]
        self.messages.append(Received(sender, recipient, text, gateway, dedupe_key))
        mid = len(self.messages)
        if dedupe_key is not None:
            self.keys[dedupe_key] = mid
        self.arrived.set()
        return mid


def sip_config(port: int, **kw: Any) -> ClassoundGateway:
    base = ClassoundGateway(
        mode="sip", sip_host="127.0.0.1", sip_port=port, username=USER, secret=PASSWORD,
        from_domain="classound.test",
    )
    return replace(base, **kw)


@asynccontextmanager
async def running_trunk(cfg: ClassoundGateway, inbox: RecordingInbox | None = None
                        ) -> AsyncIterator[SipTrunk]:
    trunk = SipTrunk(cfg, inbox)
    await trunk.start()
    try:
        yield trunk
    finally:
        await trunk.close()


@pytest.fixture
async def carrier() -> AsyncIterator[ClassoundCarrier]:
    """The CLASSOUND REST API (tests/fakes/classound_http.py) on loopback."""
    c = ClassoundCarrier()
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


class LossyRelay(asyncio.DatagramProtocol):
    """A UDP path that loses the first ``lose`` datagrams from the client, then relays.

    Stands between smsd and the carrier: smsd sends to the relay's port, the
    relay forwards to ``target`` and relays answers back to the last client.
    """

    def __init__(self, target: tuple[str, int], lose: int) -> None:
        self.target = target
        self.lose = lose
        self.lost = 0
        self.client: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        assert self.transport is not None
        if (str(addr[0]), int(addr[1])) == self.target:
            if self.client is not None:
                self.transport.sendto(data, self.client)
            return
        self.client = (str(addr[0]), int(addr[1]))
        if self.lost < self.lose:
            self.lost += 1
            return
        self.transport.sendto(data, self.target)

    @classmethod
    async def start(cls, target: tuple[str, int], lose: int) -> LossyRelay:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(
            lambda: cls(target, lose), local_addr=("127.0.0.1", 0)
        )
        assert proto.transport is not None
        proto.port = int(proto.transport.get_extra_info("sockname")[1])
        return proto

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


Factory = Callable[..., Any]
