"""AtChannel over a real pty: one command in flight, URCs routed, resync, death."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from smsd.errors import AtError, AtTimeout, CmeError, CmsError, PortGone, SubmitUnconfirmed
from smsd.modem.channel import AtChannel
from tests.fakes.scripted_modem import ScriptedModem
from tests.modem.conftest import Opened, eventually

pytestmark = pytest.mark.timeout(20)


class TestCommands:
    async def test_information_lines_returned(self, fake: ScriptedModem, opened: Opened) -> None:
        """The caller gets the information lines without echo or final code."""
        fake.reply_to(r"AT\+CSQ", ["+CSQ: 17,99", "OK"])
        assert await opened.channel.command("AT+CSQ") == ["+CSQ: 17,99"]

    async def test_fragmented_reply(self, fake: ScriptedModem, opened: Opened) -> None:
        """A reply arriving one byte at a time is assembled identically."""
        fake.fragmented = True
        fake.reply_to(r"AT\+CGMI", ["huawei", "OK"])
        assert await opened.channel.command("AT+CGMI") == ["huawei"]

    async def test_error_kinds(self, fake: ScriptedModem, opened: Opened) -> None:
        """ERROR, +CME ERROR and +CMS ERROR raise typed errors carrying code and raw line."""
        fake.reply_to("AT1", ["ERROR"])
        fake.reply_to("AT2", ["+CME ERROR: 10"])
        fake.reply_to("AT3", ["+CMS ERROR: 42"])
        fake.reply_to("AT4", ["+CMS ERROR: 1"])
        with pytest.raises(AtError) as e1:
            await opened.channel.command("AT1")
        assert type(e1.value) is AtError and e1.value.raw == "ERROR"
        with pytest.raises(CmeError) as e2:
            await opened.channel.command("AT2")
        assert e2.value.code == 10
        with pytest.raises(CmsError) as e3:
            await opened.channel.command("AT3")
        assert e3.value.code == 42 and e3.value.temporary
        with pytest.raises(CmsError) as e4:
            await opened.channel.command("AT4")
        assert not e4.value.temporary

    async def test_error_inside_text_is_not_final(self, fake: ScriptedModem,
                                                  opened: Opened) -> None:
        """A line merely containing ERROR (operator name) does not end the command."""
        fake.reply_to(r"AT\+COPS\?", ['+COPS: 0,0,"NO ERROR MOBILE",2', "OK"])
        assert await opened.channel.command("AT+COPS?") == ['+COPS: 0,0,"NO ERROR MOBILE",2']


class TestUrcRouting:
    async def test_urc_inside_response(self, fake: ScriptedModem, opened: Opened) -> None:
        """+CMTI between +CPMS: and OK goes to the URC handler, not to the caller."""
        fake.reply_to(r"AT\+CPMS\?", ['+CPMS: "SM",1,30,"SM",1,30,"SM",1,30',
                                      '+CMTI: "SM",2', "OK"])
        lines = await opened.channel.command("AT+CPMS?")
        assert lines == ['+CPMS: "SM",1,30,"SM",1,30,"SM",1,30']
        assert [(u.name, u.line) for u in opened.urcs] == [("+CMTI", '+CMTI: "SM",2')]

    async def test_two_line_cmt(self, fake: ScriptedModem, opened: Opened) -> None:
        """+CMT: header and its PDU line form one URC, even in the middle of a reply."""
        pdu = "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07"
        fake.reply_to(r"AT\+CSQ", ["+CSQ: 20,99", "+CMT: ,38", pdu, "OK"])
        assert await opened.channel.command("AT+CSQ") == ["+CSQ: 20,99"]
        assert opened.urcs[0].name == "+CMT" and opened.urcs[0].pdu == pdu

    async def test_solicited_creg_is_answer(self, fake: ScriptedModem, opened: Opened) -> None:
        """+CREG: in answer to AT+CREG? is the answer; the same prefix otherwise is a URC."""
        fake.reply_to(r"AT\+CREG\?", ["+CREG: 2,1,\"00C3\",\"0010AB2F\",7", "OK"])
        assert await opened.channel.command("AT+CREG?") == ['+CREG: 2,1,"00C3","0010AB2F",7']
        assert opened.urcs == []
        fake.reply_to(r"AT\+CSQ", ["+CREG: 5", "+CSQ: 9,99", "OK"])
        assert await opened.channel.command("AT+CSQ") == ["+CSQ: 9,99"]
        assert opened.urcs[0].line == "+CREG: 5"

    async def test_urc_between_commands(self, fake: ScriptedModem, opened: Opened) -> None:
        """URCs with nothing in flight (RING, Quectel SMS DONE, Huawei ^RSSI) are delivered."""
        fake.inject("RING", "SMS DONE", "^RSSI:14", '+CDSI: "SR",3')
        fake.reply_to("AT", ["OK"])
        await opened.channel.command("AT")
        assert [u.name for u in opened.urcs] == ["RING", "SMS DONE", "^RSSI", "+CDSI"]


class TestPrompt:
    async def test_send_with_prompt(self, fake: ScriptedModem, opened: Opened) -> None:
        """AT+CMGS waits for ``> ``, then the PDU and Ctrl-Z; +CMGS: <mr> comes back."""
        fake.next_mr = 42
        lines = await opened.channel.command_with_pdu("AT+CMGS=13", "0001000B914477009001F30000"
                                                      "0141", prompt_s=5, wait_s=5)
        assert lines == ["+CMGS: 42"]
        assert fake.submitted == ["0001000B914477009001F300000141"]

    async def test_error_instead_of_prompt(self, fake: ScriptedModem, opened: Opened) -> None:
        """A +CMS ERROR where the prompt was expected raises at once; no PDU is sent."""
        fake.reply_to(r"AT\+CMGS=.*", ["+CMS ERROR: 331"])
        original = fake._command

        def no_prompt(line: str) -> None:
            fake.received.append(line)
            fake._answer(["+CMS ERROR: 331"])
        fake._command = no_prompt  # type: ignore[method-assign]
        with pytest.raises(CmsError) as err:
            await opened.channel.command_with_pdu("AT+CMGS=13", "00", prompt_s=5, wait_s=5)
        fake._command = original  # type: ignore[method-assign]
        assert err.value.code == 331 and err.value.temporary
        assert fake.submitted == []


    async def test_send_cancelled_before_the_prompt_writes_no_pdu(
            self, fake: ScriptedModem, opened: Opened) -> None:
        """A send cancelled while it waits for ``> `` (a stop, a deadline) writes no
        PDU when the prompt comes late: the late prompt is stray, and the next
        command finds the line clean."""
        fake.reply_to(r"AT\+CMEE\?", ["+CMEE: 1", "OK"])
        fake.reply_to(r"AT\+CSQ", ["+CSQ: 17,99", "OK"])
        original = fake._command

        def hold_prompt(line: str) -> None:
            fake.received.append(line)
        fake._command = hold_prompt  # type: ignore[method-assign]
        sending = asyncio.create_task(opened.channel.command_with_pdu(
            "AT+CMGS=13", PDU, prompt_s=5, wait_s=5))
        await eventually(lambda: "AT+CMGS=13" in fake.received)
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending
        fake._command = original  # type: ignore[method-assign]
        stray = opened.channel.stats.stray
        fake.send_raw(b"\r\n> ")
        await eventually(lambda: opened.channel.stats.stray > stray)
        assert await opened.channel.command("AT+CSQ") == ["+CSQ: 17,99"]
        assert fake.received == ["AT+CMGS=13", "AT+CMEE?", "AT+CSQ"]
        assert fake.submitted == []

    async def test_pdu_leaves_from_the_read_that_sees_the_prompt(self) -> None:
        """The PDU is written by the read callback that sees ``> ``, before the
        sending task runs again (issue 17: one loop hand-off less per SMS)."""
        port = RecordingPort()
        channel = AtChannel(port, lambda urc: None)
        channel.start()
        sending = asyncio.create_task(channel.command_with_pdu(
            "AT+CMGS=13", PDU, prompt_s=5, wait_s=5, answer_prefix="+CMGS:"))
        await eventually(lambda: port.written)
        assert port.written == [b"AT+CMGS=13\r"]
        port.feed(b"\r\n> ")
        assert port.written[-1] == PDU.encode() + b"\x1a"
        port.feed(b"\r\n+CMGS: 7\r\n\r\nOK\r\n")
        assert await sending == ["+CMGS: 7"]

    async def test_pdu_write_failing_at_the_prompt_is_unconfirmed(self) -> None:
        """The port fails as the PDU is written from the prompt's read: the part may
        have left (SubmitUnconfirmed), and the port is dead."""
        port = RecordingPort(fail_now=True)
        channel = AtChannel(port, lambda urc: None)
        channel.start()
        sending = asyncio.create_task(channel.command_with_pdu(
            "AT+CMGS=13", PDU, prompt_s=5, wait_s=5))
        await eventually(lambda: port.written)
        port.feed(b"\r\n> ")
        with pytest.raises(SubmitUnconfirmed, match="PDU written"):
            await sending
        assert channel.dead is not None


PDU = "0001000B914477009001F300000141"


class RecordingPort:
    """A ByteStream that records what the channel writes; the test feeds the reads."""

    path = "/dev/recording"

    def __init__(self, *, fail_now: bool = False) -> None:
        self.written: list[bytes] = []
        self.fail_now = fail_now
        self._on_data: Callable[[bytes], None] | None = None

    def start_reading(self, on_data: Callable[[bytes], None],
                      on_lost: Callable[[PortGone], None]) -> None:
        self._on_data = on_data

    def feed(self, data: bytes) -> None:
        assert self._on_data is not None
        self._on_data(data)

    async def write(self, data: bytes) -> None:
        self.written.append(data)

    def write_now(self, data: bytes) -> None:
        if self.fail_now:
            raise PortGone(f"{self.path}: input/output error")
        self.written.append(data)

    async def close(self) -> None:
        return None


class TestTimeouts:
    async def test_late_reply_not_taken_by_next_command(self, fake: ScriptedModem,
                                                        opened: Opened) -> None:
        """After a timeout the late answer is drained by the resync, never misattributed."""
        fake.reply_to(r"AT\+CMEE\?", ["+CMEE: 1", "OK"])
        fake.reply_to(r"AT\+CSQ", [])          # no answer in time
        with pytest.raises(AtTimeout):
            await opened.channel.command("AT+CSQ", 0.2)
        fake.inject("+CSQ: 31,99", "OK")        # the late reply
        fake.reply_to(r"AT\+CGMI", ["QUECTEL", "OK"])
        assert await opened.channel.command("AT+CGMI") == ["QUECTEL"]
        assert "AT+CMEE?" in fake.received
        assert opened.channel.stats.resyncs == 1

    async def test_late_reply_arriving_during_resync(self, fake: ScriptedModem,
                                                     opened: Opened) -> None:
        """A stale OK arriving just before the resync's answer is skipped."""
        fake.reply_to(r"AT\+CSQ", [])
        fake.reply_to(r"AT\+CMEE\?", ["+CSQ: 31,99", "OK", "+CMEE: 1", "OK"])
        with pytest.raises(AtTimeout):
            await opened.channel.command("AT+CSQ", 0.2)
        fake.reply_to(r"AT\+CGMR", ["EC25EFAR06A01M4G", "OK"])
        assert await opened.channel.command("AT+CGMR") == ["EC25EFAR06A01M4G"]

    async def test_silent_modem_declared_dead(self, fake: ScriptedModem, opened: Opened) -> None:
        """Consecutive timeouts end in PortGone, and later commands fail at once."""
        fake.silent = True
        with pytest.raises(AtTimeout):
            await opened.channel.command("AT", 0.1)
        with pytest.raises(PortGone):
            for _ in range(5):
                with pytest.raises(AtTimeout):
                    await opened.channel.command("AT", 0.1)
        assert opened.channel.dead is not None
        with pytest.raises(PortGone):
            await opened.channel.command("AT")

    async def test_pty_cut_mid_command(self, fake: ScriptedModem, opened: Opened) -> None:
        """Closing the pty while a command waits raises PortGone promptly, not a timeout."""
        fake.reply_to(r"AT\+COPS=\?", [])
        task = asyncio.create_task(opened.channel.command("AT+COPS=?", 60))
        await eventually(lambda: "AT+COPS=?" in fake.received)    # the command is waiting
        await fake.unplug()
        with pytest.raises(PortGone):
            await task
        assert isinstance(await opened.channel.wait_closed(), PortGone)

    async def test_overlong_line_then_normal(self, fake: ScriptedModem, opened: Opened) -> None:
        """An overlong line in a reply is dropped and the command still completes."""
        fake.reply_to(r"AT\+CSQ", ["X" * 10000, "+CSQ: 5,99", "OK"])
        assert await opened.channel.command("AT+CSQ") == ["+CSQ: 5,99"]
        assert opened.channel.framer.stats.overlong == 1

    async def test_line_noise_inside_reply(self, fake: ScriptedModem, opened: Opened) -> None:
        """Noise bytes on the line are dropped and counted; the command still completes."""
        def noisy(line: str) -> list[str]:
            fake.send_raw(b"\r\n\xff\xfe\x00\x81\x90junk\r\n")
            return ["+CSQ: 12,99", "OK"]
        fake.reply_to(r"AT\+CSQ", noisy)
        assert await opened.channel.command("AT+CSQ") == ["+CSQ: 12,99"]
        assert opened.channel.framer.stats.garbage == 1

    async def test_pin_never_logged(self, fake: ScriptedModem, opened: Opened) -> None:
        """A failed AT+CPIN reports the command with the PIN masked."""
        fake.reply_to(r'AT\+CPIN="1234"', ["+CME ERROR: 16"])
        with pytest.raises(CmeError) as err:
            await opened.channel.command('AT+CPIN="1234"')
        assert "1234" not in str(err.value) and err.value.code == 16
