"""The gsm gateway: modem choice, PDUs, hook ordering, error translation."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import pytest

from smsd.codec.pdu import SubmitPdu, decode
from smsd.errors import (
    AtTimeout,
    CmsError,
    GatewayError,
    GatewayUnavailable,
    PartNotSent,
    PortGone,
    SubmitInterrupted,
    SubmitUnconfirmed,
)
from smsd.gateways.base import OutboundJob
from smsd.gateways.gsm import GsmGateway

from .polling import eventually

pytestmark = pytest.mark.timeout(20)

LONG = "x" * 200  # two GSM-7 parts


@dataclass(frozen=True)
class SentPart:
    modem: str
    message_reference: int


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
    gone: set[str] = field(default_factory=set)
    no_reports: set[str] = field(default_factory=set)   # modems with request_reports = false

    def healthy(self) -> bool:
        return self.ready and self.ready_count() > 0

    def ready_count(self) -> int:
        return sum(1 for m in self.numbers if self.is_ready(m))

    def is_ready(self, modem: str) -> bool:
        return self.ready and modem not in self.gone

    def choose(self, did: str | None = None, *, exclude: Collection[str] = (),
               busy: Mapping[str, int] | None = None) -> str | None:
        busy = busy or {}
        usable = [m for m in self.numbers if self.is_ready(m) and m not in exclude]
        for modem in usable:
            if self.numbers[modem] == did:
                return modem
        if not usable:
            return None
        # as the real pool: fewest of the caller's sends, fewest sends in progress, then by name
        return min(usable, key=lambda m: (busy.get(m, 0), self.busy.get(m, 0), m != "gsm1", m))

    def unavailable_reason(self) -> str:
        return "no ready modem"

    def requests_reports(self, modem: str) -> bool:
        return modem not in self.no_reports

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
    """PartHooks that record the order of events; ``submit_ahead`` as the
    dispatcher sets it under the 'resend' policy."""

    def __init__(self, log: list[tuple[str, object]], *, submit_ahead: bool = False) -> None:
        self.log = log
        self.submit_ahead = submit_ahead

    async def submitting(self, part: int, *, ahead: bool = False) -> None:
        self.log.append(("submitting_ahead" if ahead else "submitting", part))

    def talk_now(self) -> None:
        self.log.append(("talk_now", 0))

    async def not_sent(self, part: int) -> None:
        self.log.append(("not_sent", part))

    async def sent(self, part: int, *, modem: str | None, reference: int | None) -> None:
        self.log.append(("sent", (part, modem, reference)))


class CommittingHooks(Hooks):
    """Hooks that yield to the loop like a real store commit does."""

    async def submitting(self, part: int, *, ahead: bool = False) -> None:
        await asyncio.sleep(0)
        await super().submitting(part, ahead=ahead)


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
        """With more messages than modems and hooks that do not allow marking ahead
        (the 'fail' policy), parts wait for a free modem *before* being marked
        submitting: at most one message per modem is ever 'submitting'."""
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

    async def test_refused_first_part_goes_to_another_modem_at_once(self) -> None:
        """A modem that fails before the PDU left (PartNotSent, or not ready) hands the
        message to another ready modem in the same send: the part is released
        (not_sent), then submitted again there, with that modem's reference."""
        for error in (PartNotSent("no prompt"), GatewayUnavailable("modem gsm0 is gone")):
            pool = FakePool(errors=[error])
            await GsmGateway(pool).send(job(text="hi"), Hooks(pool.log))
            assert [(k, v if k != "send_pdu" else v[0]) for k, v in pool.log] == [  # type: ignore[index]
                ("submitting", 1), ("send_pdu", "gsm0"), ("not_sent", 1),
                ("submitting", 1), ("send_pdu", "gsm1"), ("sent", (1, "gsm1", 255)),
            ]

    async def test_gone_modem_is_never_chosen(self) -> None:
        """A modem whose port vanished is not chosen even when it owns the DID."""
        pool = FakePool(gone={"gsm0"})
        await GsmGateway(pool).send(job(text="hi"), Hooks(pool.log))
        assert [v[0] for k, v in pool.log if k == "send_pdu"] == ["gsm1"]  # type: ignore[index]

    async def test_every_modem_refusing_is_unavailable(self) -> None:
        """When every ready modem refused before sending, GatewayUnavailable names them."""
        pool = FakePool(errors=[PartNotSent("x"), PartNotSent("y")])
        with pytest.raises(GatewayUnavailable, match="gsm0, gsm1"):
            await GsmGateway(pool).send(job(text="hi"), Hooks(pool.log))

    async def test_refusal_after_a_sent_part_is_not_handed_on(self) -> None:
        """Once part 1 left from one SIM, part 2 cannot come from another (the phone
        would not join them): a refusal of part 2 is a temporary error, not a hand-off."""
        pool = FakePool(errors=[None, PartNotSent("no prompt")])
        with pytest.raises(GatewayError) as exc:
            await GsmGateway(pool).send(job(), Hooks(pool.log))
        assert exc.value.temporary and not isinstance(exc.value, GatewayUnavailable)
        assert {v[0] for k, v in pool.log if k == "send_pdu"} == {"gsm0"}  # type: ignore[index]

    async def test_unconfirmed_submit_is_interrupted(self) -> None:
        """A PDU written with no answer after it (port lost, silence) is SubmitInterrupted
        for the dispatcher's policy, never a plain temporary error to retry elsewhere."""
        pool = FakePool(errors=[SubmitUnconfirmed("PDU written, then port gone")])
        with pytest.raises(SubmitInterrupted):
            await GsmGateway(pool).send(job(text="hi"), Hooks(pool.log))
        assert [k for k, _ in pool.log] == ["submitting", "send_pdu"]


class TestGsmGatewayDeadlines:
    async def test_pool_that_never_answers_is_interrupted_at_the_part_deadline(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A part the pool never answers ends as SubmitInterrupted naming the deadline
        (the gateway's safety net behind the modem layer), and the gateway goes on
        sending: the next message is answered normally."""
        import smsd.gateways.gsm as gsm

        monkeypatch.setattr(gsm, "SEND_PART_DEADLINE_S", 0.2)
        pool = FakePool(gate=asyncio.Event())
        gw = GsmGateway(pool)
        with pytest.raises(SubmitInterrupted, match=r"no answer within 0\.2 s"):
            await gw.send(job(text="hi"), Hooks(pool.log))
        pool.gate.set()  # type: ignore[union-attr]
        await gw.send(job(text="hi"), Hooks(pool.log))
        assert pool.log[-1][0] == "sent"

    async def test_cancel_from_outside_is_not_a_deadline(self) -> None:
        """A send cancelled from outside (the dispatcher's stop or watchdog) is
        cancelled, not turned into the gateway's timeout."""
        pool = FakePool(gate=asyncio.Event())
        sending = asyncio.create_task(GsmGateway(pool).send(job(text="hi"), Hooks(pool.log)))
        await eventually(lambda: any(k == "send_pdu" for k, _ in pool.log))
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending

    async def test_waiters_get_room_a_modem_added(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Sends waiting for a free modem are given the room a modem that became
        ready adds, without any send ending (the periodic recheck)."""
        import smsd.gateways.gsm as gsm

        monkeypatch.setattr(gsm, "READY_RECHECK_S", 0.05)
        pool = FakePool(gate=asyncio.Event(), gone={"gsm1"})
        gw = GsmGateway(pool)
        logs: list[list[tuple[str, object]]] = [[] for _ in range(3)]
        tasks = [asyncio.create_task(gw.send(job(did=None, text="hi"), Hooks(log)))
                 for log in logs]
        await eventually(lambda: sum(1 for log in logs if log) == 1)
        pool.gone.clear()                       # gsm1 became ready
        await eventually(lambda: sum(1 for log in logs if log) == 2)
        pool.gate.set()  # type: ignore[union-attr]
        await asyncio.gather(*tasks)
        assert all([k for k, _ in log] == ["submitting", "sent"] for log in logs)
