"""AtChannel's waits for the ``> `` prompt and for the final result, edge cases.

The prompt and the final result are awaited as plain futures with a deadline
(no asyncio.wait, no shield: fewer callbacks per SMS).  What must hold: a
modem that never prompts gets ESC (TS 27.005 3.5.1) and PartNotSent, a port
cut while waiting for the prompt fails at once, and a cancelled
command leaves the channel able to run the next one.
"""

from __future__ import annotations

import asyncio

import pytest

from smsd.errors import AtTimeout, PartNotSent, PortGone, SubmitUnconfirmed
from tests.fakes.scripted_modem import ScriptedModem
from tests.modem.conftest import Opened, eventually

pytestmark = pytest.mark.timeout(20)

PDU = "0001000B914477009001F300000141"


def never_prompt(fake: ScriptedModem) -> None:
    """Make the fake swallow AT+CMGS: no prompt, no answer, and no PDU mode."""
    original = fake._command

    def command(line: str) -> None:
        if line.startswith("AT+CMGS="):
            fake.received.append(line)
            return
        original(line)
    fake._command = command  # type: ignore[method-assign]


class TestPromptWait:
    async def test_no_prompt_sends_esc_and_times_out(self, fake: ScriptedModem,
                                                     opened: Opened) -> None:
        """No ``> `` within prompt_s: ESC goes out, PartNotSent (caused by the AtTimeout)
        is raised, no PDU is sent."""
        never_prompt(fake)
        with pytest.raises(PartNotSent) as exc:
            await opened.channel.command_with_pdu("AT+CMGS=13", PDU, prompt_s=0.2, wait_s=5)
        assert isinstance(exc.value.__cause__, AtTimeout)
        # Outside PDU mode the fake takes ESC as the start of a next line: the
        # resync that follows at once (AT+CMEE?) ends that line.
        await eventually(lambda: b"\x1b" in fake._buf
                         or any("\x1b" in line for line in fake.received))
        assert fake.submitted == [] and PDU.encode() not in fake._buf
        assert opened.channel.stats.timeouts == 1 and opened.channel.stats.resyncs == 1

    async def test_port_cut_while_waiting_for_prompt(self, fake: ScriptedModem,
                                                     opened: Opened) -> None:
        """The pty vanishing during the prompt wait fails at once (PartNotSent caused by
        PortGone: the PDU never left), not after a timeout."""
        never_prompt(fake)
        task = asyncio.create_task(
            opened.channel.command_with_pdu("AT+CMGS=13", PDU, prompt_s=60, wait_s=60))
        await eventually(lambda: "AT+CMGS=13" in fake.received)
        await fake.unplug()
        with pytest.raises(PartNotSent) as exc:
            await asyncio.wait_for(task, 10)
        assert isinstance(exc.value.__cause__, PortGone)


class TestFinalWait:
    async def test_cancelled_command_then_next_command(self, fake: ScriptedModem,
                                                       opened: Opened) -> None:
        """A command cancelled while waiting for its answer frees the channel for the next."""
        fake.reply_to(r"AT\+COPS=\?", [])                 # never answered
        task = asyncio.create_task(opened.channel.command("AT+COPS=?", 60))
        await eventually(lambda: "AT+COPS=?" in fake.received)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        fake.reply_to(r"AT\+CGMI", ["ACME", "OK"])
        assert await opened.channel.command("AT+CGMI") == ["ACME"]

    async def test_final_after_timeout_is_stray(self, fake: ScriptedModem,
                                                opened: Opened) -> None:
        """An answer arriving after its command timed out is not taken by anyone else."""
        fake.reply_to(r"AT\+CSQ", [])
        fake.reply_to(r"AT\+CMEE\?", ["+CMEE: 1", "OK"])
        with pytest.raises(AtTimeout):
            await opened.channel.command("AT+CSQ", 0.2)
        fake.inject("+CSQ: 20,99", "OK")
        await eventually(lambda: opened.channel.stats.stray >= 2)
        fake.reply_to(r"AT\+CGMM", ["M1", "OK"])
        assert await opened.channel.command("AT+CGMM") == ["M1"]


class TestSubmitOutcome:
    async def test_lost_final_after_cmgs_line_is_accepted(self, fake: ScriptedModem,
                                                          opened: Opened) -> None:
        """``+CMGS: <mr>`` arrives but noise eats the ``OK``: the answer is taken after
        FINAL_GRACE_S (not the send timeout), and the next command resyncs first."""
        fake.on_pdu = lambda cmd, pdu: ["+CMGS: 7"]          # no final result
        fake.reply_to(r"AT\+CMEE\?", ["+CMEE: 1", "OK"])
        lines = await opened.channel.command_with_pdu(
            "AT+CMGS=13", PDU, prompt_s=5, wait_s=60, answer_prefix="+CMGS:")
        assert lines == ["+CMGS: 7"]
        fake.reply_to(r"AT\+CGMI", ["ACME", "OK"])
        assert await opened.channel.command("AT+CGMI") == ["ACME"]
        assert "AT+CMEE?" in fake.received and opened.channel.stats.resyncs == 1

    async def test_no_answer_after_the_pdu_is_unconfirmed(self, fake: ScriptedModem,
                                                          opened: Opened) -> None:
        """The PDU went out and nothing came back: SubmitUnconfirmed (the network may have
        it), after a resync; a modem that does not answer the resync either is dead."""
        fake.on_pdu = lambda cmd, pdu: []
        fake.reply_to(r"AT\+CMEE\?", [])                      # silent from here on
        with pytest.raises(SubmitUnconfirmed):
            await opened.channel.command_with_pdu("AT+CMGS=13", PDU, prompt_s=5, wait_s=0.2)
        assert fake.submitted == [PDU]
        assert opened.channel.dead is not None       # the resync got no answer either

    async def test_port_lost_after_the_pdu_is_unconfirmed(self, fake: ScriptedModem,
                                                          opened: Opened) -> None:
        """The port vanishes between the PDU and ``+CMGS``: SubmitUnconfirmed, at once."""
        fake.on_pdu = lambda cmd, pdu: []
        task = asyncio.create_task(
            opened.channel.command_with_pdu("AT+CMGS=13", PDU, prompt_s=5, wait_s=60))
        await eventually(lambda: fake.submitted)
        await fake.unplug()
        with pytest.raises(SubmitUnconfirmed) as exc:
            await asyncio.wait_for(task, 10)
        assert isinstance(exc.value.__cause__, PortGone)

    async def test_dead_port_is_not_sent(self, fake: ScriptedModem, opened: Opened) -> None:
        """A port already dead sends nothing: PartNotSent, so the part may go elsewhere."""
        await fake.unplug()
        await eventually(lambda: opened.channel.dead is not None)
        with pytest.raises(PartNotSent):
            await opened.channel.command_with_pdu("AT+CMGS=13", PDU, prompt_s=5, wait_s=5)

    async def test_late_answer_of_a_cancelled_send_is_not_the_next_ones(
            self, fake: ScriptedModem, opened: Opened) -> None:
        """A send cancelled after its PDU left (a deadline, a stop) must not lend its late
        ``+CMGS``/``OK`` to the next send: that one would be marked sent without ever
        reaching the network (a lost message).  The next command resyncs first."""
        fake.on_pdu = lambda cmd, pdu: []                      # the answer comes late
        fake.reply_to(r"AT\+CMEE\?", ["+CMEE: 1", "OK"])
        first = asyncio.create_task(
            opened.channel.command_with_pdu("AT+CMGS=13", PDU, prompt_s=5, wait_s=60))
        await eventually(lambda: fake.submitted)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        fake.silent = True                                     # hold the next prompt back
        second = asyncio.create_task(
            opened.channel.command_with_pdu("AT+CMGS=13", PDU, prompt_s=1, wait_s=5))
        await eventually(lambda: fake.received[-1] in ("AT+CMEE?", "AT+CMGS=13"))
        fake.inject("+CMGS: 9", "OK")                          # the first send's answer
        with pytest.raises(PartNotSent):
            await second
        assert fake.submitted == [PDU]                         # only the first ever left


class TestOneDeadlineTimer:
    async def test_earlier_exchanges_deadline_does_not_end_a_later_one(
            self, fake: ScriptedModem, opened: Opened) -> None:
        """The channel's one deadline timer, still set for an answered command's
        short deadline, fires and is set again for the next command's later one:
        that command is answered normally, not failed at the earlier time."""
        fake.reply_to(r"AT\+CGMI", ["ACME", "OK"])
        assert await opened.channel.command("AT+CGMI", 0.05) == ["ACME"]
        fake.reply_to(r"AT\+CSQ", [])                  # held: answered below
        waiting = asyncio.create_task(opened.channel.command("AT+CSQ", 60))
        first_due = opened.channel._timer_at
        # The timer ran at the first deadline and now waits for the second.
        await eventually(lambda: opened.channel._timer_at > first_due)
        assert not waiting.done()
        fake.inject("+CSQ: 20,99", "OK")
        assert await waiting == ["+CSQ: 20,99"]
        assert opened.channel.stats.timeouts == 0
