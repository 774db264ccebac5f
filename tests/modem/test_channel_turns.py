"""A send waiting for its turn on the channel starts from the read callback that
sees the previous command's final result (issue 17: no loop turn between a
modem's ``OK`` and the next ``AT+CMGS``), and only when that is safe."""

from __future__ import annotations

import asyncio

import pytest

from smsd.errors import AtTimeout, PartNotSent
from smsd.modem.channel import AtChannel
from smsd.modem.turns import Turn, Turns
from tests.modem.conftest import eventually
from tests.modem.test_channel import PDU, RecordingPort

pytestmark = pytest.mark.timeout(20)

SUBMITTED = b"\r\n+CMGS: 7\r\n\r\nOK\r\n"


class Stopping(Exception):
    """What on_start raises once a stop began (the dispatcher's Withdrawn)."""


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def started_channel() -> tuple[RecordingPort, AtChannel]:
    port = RecordingPort()
    channel = AtChannel(port, lambda urc: None)
    channel.start()
    return port, channel


def send(channel: AtChannel, on_start: list[str] | None = None,
         refuse: BaseException | None = None, *, prompt_s: float = 5
         ) -> asyncio.Task[list[str]]:
    def started() -> None:
        if refuse is not None:
            raise refuse
        if on_start is not None:
            on_start.append("started")
    return asyncio.create_task(channel.command_with_pdu(
        "AT+CMGS=13", PDU, prompt_s=prompt_s, wait_s=5, answer_prefix="+CMGS:",
        on_start=started))


class TestHandOn:
    async def test_waiting_send_is_written_inside_the_final_results_read(self) -> None:
        """The queued AT+CMGS leaves in the very read that delivers the previous
        command's OK, with its on_start called there; the rest of its exchange
        then runs as usual."""
        port, channel = started_channel()
        first = asyncio.create_task(channel.command("AT+CSQ"))
        await eventually(lambda: port.written)
        calls: list[str] = []
        second = send(channel, calls)
        await settle()
        assert port.written == [b"AT+CSQ\r"] and calls == []
        port.feed(b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
        # no await in between: written by the read callback itself
        assert port.written == [b"AT+CSQ\r", b"AT+CMGS=13\r"] and calls == ["started"]
        assert await first == ["+CSQ: 20,99"]
        port.feed(b"\r\n> ")
        assert port.written[-1] == PDU.encode() + b"\x1a"
        port.feed(SUBMITTED)
        assert await second == ["+CMGS: 7"]

    async def test_sends_follow_one_another_from_the_callbacks(self) -> None:
        """Three sends: each next one leaves on the OK of the one before."""
        port, channel = started_channel()
        sends = [send(channel) for _ in range(3)]
        await eventually(lambda: port.written)
        await settle()
        for n in range(3):
            assert port.written.count(b"AT+CMGS=13\r") == n + 1
            port.feed(b"\r\n> ")
            port.feed(SUBMITTED)
        assert [await s for s in sends] == [["+CMGS: 7"]] * 3

    async def test_an_error_final_hands_on_as_well(self) -> None:
        """A refused send (+CMS ERROR instead of the prompt) leaves the modem idle:
        the next send starts from that read too."""
        port, channel = started_channel()
        first, second = send(channel), send(channel)
        await eventually(lambda: port.written)
        await settle()
        port.feed(b"\r\n+CMS ERROR: 304\r\n")
        assert port.written == [b"AT+CMGS=13\r", b"AT+CMGS=13\r"]
        with pytest.raises(Exception, match="304"):
            await first
        port.feed(b"\r\n> ")
        port.feed(SUBMITTED)
        assert await second == ["+CMGS: 7"]

    async def test_plain_command_first_in_line_is_not_overtaken(self) -> None:
        """A plain command (AT+CNMA, say) waiting ahead of a send keeps its place:
        nothing is started from the callback, and the send follows it."""
        port, channel = started_channel()
        first = send(channel)
        await eventually(lambda: port.written)
        ack = asyncio.create_task(channel.command("AT+CNMA"))
        await settle()
        second = send(channel)
        await settle()
        port.feed(b"\r\n> ")
        port.feed(SUBMITTED)
        assert port.written[-1] == PDU.encode() + b"\x1a"     # nothing started here
        assert await first == ["+CMGS: 7"]
        await eventually(lambda: port.written[-1] == b"AT+CNMA\r")
        port.feed(b"\r\nOK\r\n")
        assert port.written[-1] == b"AT+CMGS=13\r"           # started by the OK's read
        assert await ack == []
        port.feed(b"\r\n> ")
        port.feed(SUBMITTED)
        assert await second == ["+CMGS: 7"]


class TestNotHandedOn:
    async def test_refused_on_start_writes_nothing_and_its_task_says_why(self) -> None:
        """on_start refusing (a stop began) in the callback: nothing is written
        there, and the send's own task ends with the refusal, still nothing written."""
        port, channel = started_channel()
        first = send(channel)
        await eventually(lambda: port.written)
        second = send(channel, refuse=Stopping("stopping"))
        await settle()
        port.feed(b"\r\n> ")
        port.feed(SUBMITTED)
        assert await first == ["+CMGS: 7"]
        with pytest.raises(Stopping):
            await second
        assert port.written.count(b"AT+CMGS=13\r") == 1
        nxt = asyncio.create_task(channel.command("AT"))    # the channel is free
        await eventually(lambda: port.written[-1] == b"AT\r")
        port.feed(b"\r\nOK\r\n")
        assert await nxt == []

    async def test_cancelled_while_waiting_is_never_written(self) -> None:
        """A waiting send cancelled before the OK leaves the line: the OK starts
        nothing, and the channel serves the next command normally."""
        port, channel = started_channel()
        first = send(channel)
        await eventually(lambda: port.written)
        second = send(channel)
        await settle()
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        port.feed(b"\r\n> ")
        port.feed(SUBMITTED)
        assert await first == ["+CMGS: 7"]
        assert port.written.count(b"AT+CMGS=13\r") == 1

    async def test_cancelled_after_it_was_started_makes_its_answer_stale(self) -> None:
        """Started by the callback, then cancelled before its task ran: its late
        answer must not reach the next command, so the channel resyncs first."""
        port, channel = started_channel()
        first = send(channel)
        await eventually(lambda: port.written)
        second = send(channel)
        await settle()
        port.feed(b"\r\n> ")
        port.feed(SUBMITTED)                  # starts the second send
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        assert await first == ["+CMGS: 7"]
        nxt = asyncio.create_task(channel.command("AT+CSQ"))
        await eventually(lambda: port.written[-1] == b"AT+CMEE?\r")
        port.feed(b"\r\n+CMEE: 1\r\n\r\nOK\r\n")
        await eventually(lambda: port.written[-1] == b"AT+CSQ\r")
        port.feed(b"\r\n+CSQ: 9,99\r\n\r\nOK\r\n")
        assert await nxt == ["+CSQ: 9,99"]

    async def test_after_a_timeout_the_resync_comes_before_the_waiting_send(self) -> None:
        """No final result (the prompt never came): nothing is started from a
        callback; the timed-out send resyncs the channel, and only then does
        the waiting send's own task write its command."""
        port, channel = started_channel()
        first = send(channel, prompt_s=0.05)
        await eventually(lambda: port.written)
        second = send(channel)
        await eventually(lambda: port.written[-1] == b"AT+CMEE?\r")
        assert port.written.count(b"AT+CMGS=13\r") == 1
        port.feed(b"\r\n+CMEE: 1\r\n\r\nOK\r\n")      # the resync's answer
        with pytest.raises((AtTimeout, PartNotSent)):
            await first
        await eventually(lambda: port.written[-1] == b"AT+CMGS=13\r")
        port.feed(b"\r\n> ")
        port.feed(SUBMITTED)
        assert await second == ["+CMGS: 7"]


class TestTurns:
    async def test_first_come_first_served_and_cancelled_waiters_skipped(self) -> None:
        """Turns are granted in order; a waiter cancelled while waiting is skipped."""
        turns: Turns[str] = Turns()
        order: list[str] = []

        async def take(name: str) -> None:
            turn: Turn[str] = Turn()
            await turns.acquire(turn)
            order.append(name)
            await asyncio.sleep(0)
            turns.release(turn)

        first: Turn[str] = Turn()
        await turns.acquire(first)
        tasks = {n: asyncio.create_task(take(n)) for n in "abc"}
        await settle()
        tasks["b"].cancel()
        await settle()
        turns.release(first)
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        assert order == ["a", "c"] and turns.holder is None
