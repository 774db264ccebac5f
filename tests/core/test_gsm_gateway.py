"""The gsm gateway: modem choice, PDUs, hook ordering, error translation."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from smsd.codec.pdu import SubmitPdu, decode
from smsd.errors import AtTimeout, CmsError, GatewayError, GatewayUnavailable, PortGone
from smsd.gateways.base import OutboundJob
from smsd.gateways.gsm import GsmGateway

from .polling import eventually

pytestmark = pytest.mark.timeout(20)

LONG = "x" * 200  # two GSM-7 parts


@dataclass(frozen=True)
class SentPart:
    modem: str
    message_reference: int


@dataclass(frozen=True)
class Info:
    id: str
    state: str
    own_number: str | None
    in_flight: int


@dataclass
class FakePool:
    """ModemPool as docs/internals.md describes it, with scripted send results."""

    numbers: dict[str, str] = field(default_factory=lambda: {"gsm0": "+447700900001",
                                                             "gsm1": "+447700900002"})
    ready: bool = True
    errors: list[Exception | None] = field(default_factory=list)
    log: list[tuple[str, object]] = field(default_factory=list)
    mr: int = 254
    refs: int = 41
    gate: asyncio.Event | None = None
    busy: dict[str, int] = field(default_factory=dict)

    def healthy(self) -> bool:
        return self.ready

    def snapshot(self) -> list[Info]:
        return [
            Info(m, "ready" if self.ready else "gone", n, self.busy.get(m, 0))
            for m, n in self.numbers.items()
        ]

    def choose(self, did: str | None = None) -> str | None:
        if not self.ready:
            return None
        for modem, number in self.numbers.items():
            if number == did:
                return modem
        # least busy, as the real pool: fewest sends in progress, then by name
        return min(self.numbers, key=lambda m: (self.busy.get(m, 0), m != "gsm1", m))

    def unavailable_reason(self) -> str:
        return "no ready modem"

    def next_reference(self, modem: str) -> int:
        self.refs += 1
        return self.refs

    async def send_pdu(self, pdu: SubmitPdu, *, modem: str) -> SentPart:
        self.log.append(("send_pdu", (modem, pdu.part, pdu.hex)))
        self.busy[modem] = self.busy.get(modem, 0) + 1
        try:
            if self.gate is not None:
                await self.gate.wait()
        finally:
            self.busy[modem] -= 1
        err = self.errors.pop(0) if self.errors else None
        if err is not None:
            raise err
        self.mr = (self.mr + 1) % 256
        return SentPart(modem, self.mr)


class Hooks:
    def __init__(self, log: list[tuple[str, object]]) -> None:
        self.log = log

    async def submitting(self, part: int) -> None:
        self.log.append(("submitting", part))

    async def sent(self, part: int, *, modem: str | None, reference: int | None) -> None:
        self.log.append(("sent", (part, modem, reference)))


class CommittingHooks(Hooks):
    """Hooks that yield to the loop like a real store commit does."""

    async def submitting(self, part: int) -> None:
        await asyncio.sleep(0)
        await super().submitting(part)


def job(did: str | None = "+447700900001", text: str = LONG) -> OutboundJob:
    return OutboundJob(3, "+447700900123", text, did, did, 2, "gsm7")


class TestGsmGateway:
    async def test_parts_go_to_the_did_modem_in_order(self) -> None:
        """The modem owning the DID sends; each part is 'submitting' before send_pdu and
        'sent' with the TP-MR after; the PDUs carry the number, text and one concat ref."""
        pool = FakePool()
        await GsmGateway(pool).send(job(), Hooks(pool.log))
        kinds = [(k, v if k != "send_pdu" else v[:2]) for k, v in pool.log]  # type: ignore[index]
        assert kinds == [
            ("submitting", 1), ("send_pdu", ("gsm0", 1)), ("sent", (1, "gsm0", 255)),
            ("submitting", 2), ("send_pdu", ("gsm0", 2)), ("sent", (2, "gsm0", 0)),
        ]
        decoded = [decode(v[2]) for k, v in pool.log if k == "send_pdu"]  # type: ignore[index]
        assert all(isinstance(d, SubmitPdu) for d in decoded)
        subs = [d for d in decoded if isinstance(d, SubmitPdu)]
        assert "".join(d.text for d in subs) == LONG
        assert {d.reference for d in subs} == {42}

    async def test_unknown_did_uses_least_busy(self) -> None:
        """Without a modem owning the DID the pool's least busy modem is used."""
        pool = FakePool()
        await GsmGateway(pool).send(job(did=None, text="hi"), Hooks(pool.log))
        assert pool.log[1][0] == "send_pdu" and pool.log[1][1][0] == "gsm1"  # type: ignore[index]

    async def test_no_modem_is_unavailable(self) -> None:
        """No ready modem: GatewayUnavailable, and nothing marked submitting."""
        pool = FakePool(ready=False)
        gw = GsmGateway(pool)
        assert not gw.available()
        with pytest.raises(GatewayUnavailable):
            await gw.send(job(), Hooks(pool.log))
        assert pool.log == []

    @pytest.mark.parametrize(
        ("error", "temporary"),
        [
            (CmsError("AT+CMGS=23", "+CMS ERROR: 42", 42, temporary=True), True),
            (CmsError("AT+CMGS=23", "+CMS ERROR: 1", 1, temporary=False), False),
            (AtTimeout("AT+CMGS=23", 60), True),
            (PortGone("/dev/ttyUSB2 closed"), True),
        ],
    )
    async def test_errors_are_translated(self, error: Exception, temporary: bool) -> None:
        """CMS errors keep their temporary/permanent class; timeouts and unplugs are
        temporary; the failing part stays 'submitting' (never 'sent')."""
        pool = FakePool(errors=[None, error])
        with pytest.raises(GatewayError) as exc:
            await GsmGateway(pool).send(job(), Hooks(pool.log))
        assert exc.value.temporary is temporary and exc.value.gateway == "gsm"
        assert [k for k, _ in pool.log] == [
            "submitting", "send_pdu", "sent", "submitting", "send_pdu"
        ]

    async def test_unencodable_number_is_permanent(self) -> None:
        """A recipient the PDU encoder refuses fails permanently before any part."""
        pool = FakePool()
        bad = OutboundJob(3, "+12AB", "hi", None, None, 1, "gsm7")
        with pytest.raises(GatewayError) as exc:
            await GsmGateway(pool).send(bad, Hooks(pool.log))
        assert not exc.value.temporary and pool.log == []

    async def test_one_submitting_part_per_modem(self) -> None:
        """With more messages than modems, parts wait for a free modem *before* being
        marked submitting: at most one message per modem is ever 'submitting'."""
        pool = FakePool(gate=asyncio.Event())
        gw = GsmGateway(pool)
        logs: list[list[tuple[str, object]]] = [[] for _ in range(6)]
        tasks = [
            asyncio.create_task(gw.send(job(did=None, text="hi"), CommittingHooks(log)))
            for log in logs
        ]
        await eventually(lambda: sum(1 for log in logs if log) == 2)
        for _ in range(20):
            await asyncio.sleep(0)
        assert sum(1 for log in logs if log) == 2
        pending = [v[0] for k, v in pool.log if k == "send_pdu"]  # type: ignore[index]
        assert sorted(pending) == ["gsm0", "gsm1"]
        pool.gate.set()  # type: ignore[union-attr]
        await asyncio.gather(*tasks)
        assert all([k for k, _ in log] == ["submitting", "sent"] for log in logs)
