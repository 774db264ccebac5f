"""The next message in a modem's line, marked 'submitting' while the modem still
sends the one before it (issue 17): only when the hooks allow it (the 'resend'
policy), one per modem, handed on when its modem goes, put back by a stop."""

from __future__ import annotations

import asyncio

import pytest

from smsd.config import Policy
from smsd.core.outbox import SubmitRequest
from smsd.errors import GatewayError, PortGone
from smsd.gateways.gsm import GsmGateway
from smsd.store import Store

from .dispatching import Clock, running, state_of
from .polling import eventually
from .test_gsm_gateway import CommittingHooks, FakePool, Hooks, job

pytestmark = pytest.mark.timeout(20)

GSM0 = "+447700900001"   # FakePool's gsm0 owns this number
AHEAD = ("submitting_ahead", "talk_now", "sent")
TALKING = ("submitting", "sent")


def kinds(log: list[tuple[str, object]]) -> tuple[str, ...]:
    return tuple(k for k, _ in log)


async def settle() -> None:
    """Give every task that can run a few loop turns (nothing may change after)."""
    for _ in range(20):
        await asyncio.sleep(0)


def start_sends(gw: GsmGateway, n: int, *, did: str | None, submit_ahead: bool = True
                ) -> tuple[list[list[tuple[str, object]]], list[asyncio.Task[None]]]:
    """``n`` one-part sends at once, each with hooks of its own that yield like a
    commit; their logs and tasks."""
    logs: list[list[tuple[str, object]]] = [[] for _ in range(n)]
    tasks = [asyncio.create_task(gw.send(job(did=did, text="hi"),
                                         CommittingHooks(log, submit_ahead=submit_ahead)))
             for log in logs]
    return logs, tasks


class TestLine:
    async def test_next_in_line_is_marked_while_the_modem_sends(self) -> None:
        """With more messages than modems, each modem has one message talking to it
        and one marked ahead, which goes to the modem (talk_now) only after the one
        before it was sent; the rest wait unmarked for a place in a line."""
        pool = FakePool(gate=asyncio.Event())
        logs, tasks = start_sends(GsmGateway(pool), 6, did=None)
        await eventually(lambda: sum(1 for log in logs if kinds(log) == AHEAD[:1]) == 2)
        await settle()
        assert sorted(kinds(log) for log in logs) == [
            (), (), ("submitting",), ("submitting",), AHEAD[:1], AHEAD[:1]]
        assert sorted(v[0] for k, v in pool.log if k == "send_pdu") == [  # type: ignore[index]
            "gsm0", "gsm1"]
        pool.gate.set()  # type: ignore[union-attr]
        await asyncio.gather(*tasks)
        assert all(kinds(log) in (TALKING, AHEAD) for log in logs)
        assert sum(1 for log in logs if kinds(log) == AHEAD) >= 2

    async def test_one_marked_ahead_per_modem(self) -> None:
        """Messages that all need one modem (its DID): one talks, one is marked
        ahead, and the others wait unmarked: a crash leaves at most two of them
        'submitting', only one of which may have left."""
        pool = FakePool(gate=asyncio.Event())
        logs, tasks = start_sends(GsmGateway(pool), 4, did=GSM0)
        await eventually(lambda: any(kinds(log) == AHEAD[:1] for log in logs))
        await settle()
        assert sorted(kinds(log) for log in logs) == [(), (), ("submitting",), AHEAD[:1]]
        pool.gate.set()  # type: ignore[union-attr]
        await asyncio.gather(*tasks)
        assert {v[0] for k, v in pool.log if k == "send_pdu"} == {"gsm0"}  # type: ignore[index]
        assert all(kinds(log) in (TALKING, AHEAD) for log in logs)

    async def test_without_leave_nothing_is_marked_ahead(self) -> None:
        """Hooks that do not allow it (the 'fail' policy): the next in line waits for
        the modem unmarked and is marked only once it holds it."""
        pool = FakePool(gate=asyncio.Event())
        logs, tasks = start_sends(GsmGateway(pool), 2, did=GSM0, submit_ahead=False)
        await eventually(lambda: any(log for log in logs))
        await settle()
        assert sorted(kinds(log) for log in logs) == [(), ("submitting",)]
        pool.gate.set()  # type: ignore[union-attr]
        await asyncio.gather(*tasks)
        assert [kinds(log) for log in logs] == [TALKING, TALKING]

    async def test_marked_ahead_is_handed_on_when_its_modem_goes(self) -> None:
        """The modem of a message marked ahead goes (its port vanished during the send
        before): the part is released (not_sent), since none of it left, and the
        message goes to another modem in the same send."""
        pool = FakePool(gate=asyncio.Event())
        gw = GsmGateway(pool)
        first_log: list[tuple[str, object]] = []
        second_log: list[tuple[str, object]] = []
        first = asyncio.create_task(gw.send(job(did=GSM0, text="hi"), Hooks(first_log)))
        await eventually(lambda: first_log)
        second = asyncio.create_task(
            gw.send(job(did=GSM0, text="hi"), Hooks(second_log, submit_ahead=True)))
        await eventually(lambda: second_log)
        assert kinds(second_log) == AHEAD[:1]
        pool.gone.add("gsm0")
        pool.errors = [PortGone("/dev/ttyUSB0: gone")]
        pool.gate.set()  # type: ignore[union-attr]
        with pytest.raises(GatewayError):
            await first
        await second
        assert kinds(second_log) == ("submitting_ahead", "not_sent", "submitting", "sent")
        assert [v[0] for k, v in pool.log if k == "send_pdu"] == [  # type: ignore[index]
            "gsm0", "gsm1"]


POLICY = Policy(country="GB", max_attempts=3, retry_base_s=30, retry_max_s=45)


class TestDispatcher:
    async def test_stop_puts_back_the_message_marked_ahead(self, store: Store) -> None:
        """Invariant 7 with a line: on a graceful stop, the message marked ahead (its
        part committed 'submitting', its PDU never written) goes back to 'queued' at
        once, no attempt spent; the one talking to the modem finishes 'sent'."""
        pool = FakePool(gate=asyncio.Event(), numbers={"gsm0": GSM0})
        async with running(store, [GsmGateway(pool)], POLICY, Clock()) as (disp, outbox, _):
            res = await outbox.submit(SubmitRequest(["+447700900123", "+447700900124"], "hi"))

            async def both_submitting() -> bool:
                return [await state_of(store, i) for i in res.ids] == ["submitting"] * 2

            await eventually(both_submitting)
            await eventually(lambda: any(k == "send_pdu" for k, _ in pool.log))
            drain = asyncio.create_task(disp.drain(10))

            async def one_back() -> bool:
                return "queued" in [await state_of(store, i) for i in res.ids]

            await eventually(one_back)
            assert not drain.done()
            pool.gate.set()  # type: ignore[union-attr]
            await drain
        states = {i: await state_of(store, i) for i in res.ids}
        assert sorted(states.values()) == ["queued", "sent"]
        back = next(i for i, s in states.items() if s == "queued")
        row = await store.fetchone("SELECT attempts FROM messages WHERE id = ?", (back,))
        assert row is not None and row[0] == 0
        parts = await store.fetchone(
            "SELECT state FROM message_parts WHERE message_id = ?", (back,))
        assert parts is not None and parts[0] == "pending"
        assert sum(1 for k, _ in pool.log if k == "send_pdu") == 1

    async def test_fail_policy_marks_only_the_one_talking(self, store: Store) -> None:
        """Under submitting_after_crash = "fail" nothing is marked ahead: with two
        messages for one busy modem, only the one talking to it is 'submitting'."""
        pool = FakePool(gate=asyncio.Event(), numbers={"gsm0": GSM0})
        policy = Policy(country="GB", max_attempts=3, retry_base_s=30, retry_max_s=45,
                        submitting_after_crash="fail")
        async with running(store, [GsmGateway(pool)], policy, Clock()) as (_, outbox, _):
            res = await outbox.submit(SubmitRequest(["+447700900123", "+447700900124"], "hi"))
            await eventually(lambda: any(k == "send_pdu" for k, _ in pool.log))
            await settle()
            assert sorted([await state_of(store, i) for i in res.ids]) == [
                "sending", "submitting"]
            pool.gate.set()  # type: ignore[union-attr]

            async def both_sent() -> bool:
                return [await state_of(store, i) for i in res.ids] == ["sent"] * 2

            await eventually(both_sent)
