"""smsd/turns.py: Turns (the AT channel's lock, the router's per-gateway
limit, the GSM gateway's seat and talk), first come first served with a free
take that never waits; Mailbox (a modem's URCs for its worker)."""

from __future__ import annotations

import asyncio

import pytest

from smsd.turns import Mailbox, Turns

pytestmark = pytest.mark.timeout(10)


async def settle() -> None:
    """Let every task that can run, run (each step below depends on the one before)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_free_turns_are_taken_without_waiting_then_refused() -> None:
    """A Turns of 2 gives two turns at once and refuses the third until one is given back."""
    turns = Turns(2)
    assert turns.try_take() and turns.try_take()
    assert turns.taken() and not turns.try_take()
    turns.give()
    assert not turns.taken() and turns.try_take()


async def test_waiters_get_turns_in_arrival_order_and_newcomers_wait_behind() -> None:
    """Given back, a turn goes to the longest waiter; a newcomer's try_take fails
    while anyone waits, even at the moment a turn is handed over."""
    lock = Turns(1)
    assert lock.try_take()
    order: list[int] = []

    async def taker(n: int) -> None:
        await lock.take()
        order.append(n)

    tasks = []
    for n in range(3):
        tasks.append(asyncio.create_task(taker(n)))
        await settle()
    lock.give()                     # handed to 0, not freed
    assert lock.taken() and not lock.try_take()
    await settle()
    assert order == [0]
    lock.give()
    lock.give()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2]
    assert lock.taken()             # 2 still holds it
    lock.give()
    assert not lock.taken()


async def test_a_cancelled_waiter_leaves_the_line() -> None:
    """A waiter cancelled before its turn leaves: the turn goes to the next one, and
    once nobody waits a free turn is taken at once again."""
    lock = Turns(1)
    assert lock.try_take()
    first = asyncio.create_task(lock.take())
    await settle()
    second = asyncio.create_task(lock.take())
    await settle()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    lock.give()
    await second                    # it, not the cancelled one, has the turn
    assert lock.taken()
    lock.give()
    assert lock.try_take()


async def test_a_turn_handed_to_a_waiter_cancelled_meanwhile_is_passed_on() -> None:
    """Handed a turn and cancelled before it could run, a waiter passes the turn on
    to the next waiter instead of losing it (or the lock would stay held for ever)."""
    lock = Turns(1)
    assert lock.try_take()
    first = asyncio.create_task(lock.take())
    await settle()
    second = asyncio.create_task(lock.take())
    await settle()
    lock.give()                     # first's future now has its turn...
    first.cancel()                  # ...but it is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await first
    await second
    assert lock.taken()
    lock.give()
    assert not lock.taken() and lock.try_take()


async def test_mailbox_hands_items_in_order_and_wakes_a_waiting_consumer() -> None:
    """Items come out in the order put; a consumer waiting on an empty mailbox gets
    the next item put, without polling."""
    box: Mailbox[str] = Mailbox()
    box.put("a")
    box.put("b")
    assert [await box.get(), await box.get()] == ["a", "b"]
    waiting = asyncio.create_task(box.get())
    await settle()
    assert not waiting.done()
    box.put("c")
    assert await waiting == "c"
    assert len(box) == 0


async def test_mailbox_keep_drops_only_the_refused_items() -> None:
    """keep() drops what the test refuses and leaves the rest, in order, for get()."""
    box: Mailbox[str] = Mailbox()
    for item in ("RDY", "+CMTI: 1", "START", "+CDS: 25"):
        box.put(item)
    box.keep(lambda item: item not in ("RDY", "START"))
    assert len(box) == 2
    assert [await box.get(), await box.get()] == ["+CMTI: 1", "+CDS: 25"]


async def test_a_cancelled_consumer_loses_nothing() -> None:
    """A consumer cancelled while it waits takes nothing: the next item put goes to
    the next get()."""
    box: Mailbox[int] = Mailbox()
    waiting = asyncio.create_task(box.get())
    await settle()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    box.put(7)
    assert await box.get() == 7


async def test_callbacks_and_awaiting_takers_share_one_line_in_arrival_order() -> None:
    """A callback queued with when_free() gets the turn in its place among awaiting
    takers (the store's group commits and transactions share the writer's turn)."""
    turn = Turns(1)
    order: list[str] = []
    await turn.take()

    async def waiter(name: str) -> None:
        async with turn:
            order.append(name)

    a = asyncio.create_task(waiter("a"))
    await settle()
    turn.when_free(lambda: (order.append("cb"), turn.give()))
    b = asyncio.create_task(waiter("b"))
    await settle()
    turn.give()
    await asyncio.gather(a, b)
    assert order == ["a", "cb", "b"]
    assert not turn.taken()


async def test_a_free_turn_starts_a_callback_at_once() -> None:
    """when_free() on a free turn calls back now, holding it, until it is given back."""
    turn = Turns(1)
    started: list[bool] = []
    turn.when_free(lambda: started.append(turn.taken()))
    assert started == [True]
    turn.give()
    assert not turn.taken()


async def test_a_failing_callback_does_not_keep_the_turn() -> None:
    """A callback that raises when given the turn is logged and the turn moves on."""
    turn = Turns(1)

    def broken() -> None:
        raise RuntimeError("bug")

    turn.when_free(broken)
    assert not turn.taken()
    assert turn.try_take()
