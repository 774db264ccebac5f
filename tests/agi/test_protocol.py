"""Pure AGI protocol parsing, checked against Asterisk 20.20.1 captures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsd.agi.protocol import (
    ReplyAssembler,
    format_command,
    parse_environment,
    parse_query,
    parse_reply_line,
    quote_arg,
    sanitize_value,
    split_script,
)
from smsd.errors import AgiProtocolError
from tests.fakes.asterisk_agi import parse_args

DATA = Path(__file__).parent / "data" / "asterisk-20"

pytestmark = pytest.mark.timeout(30)


def env_lines(name: str) -> list[str]:
    raw = (DATA / name).read_bytes().decode("utf-8")
    lines = raw.split("\n")
    end = lines.index("")
    return lines[:end]


class TestEnvironment:
    def test_local_channel_capture(self) -> None:
        """The Local-channel capture gives script, query with '+', and every variable."""
        env = parse_environment(env_lines("local-kite-sms.env"))
        assert env.script == "kite-sms"
        assert env.query == {"did": "+15551234567"}
        assert env.channel == "Local/s@agi-test-00000000;2"
        assert env.channel_type == "Local"
        assert env.uniqueid == "1795609785.1"
        assert env.get("accountcode") == ""
        assert env.get("threadid") == "140154602936000"
        assert env.args == ()
        assert not env.damaged
        assert not env.is_message_channel
        assert len(env.variables) == 22

    def test_chan_sip_message_capture(self) -> None:
        """A chan_sip MESSAGE: %2B decodes to '+', agi_arg_N in order, Message channel."""
        env = parse_environment(env_lines("chan-sip-message.env"))
        assert env.script == "kite-sms"
        assert env.query == {"did": "+15551234567"}
        assert env.is_message_channel
        assert env.extension == "+15551234567"
        assert env.args == (
            '"Test Sender" <sip:+15557654321@127.0.0.1:5061>',
            "sip:+15551234567@127.0.0.1:5060",
            "hello from sipp",
        )
        assert not env.damaged

    def test_utf8_argument_capture(self) -> None:
        """Non-ASCII text in an argument survives decoding byte for byte."""
        env = parse_environment(env_lines("chan-sip-message-utf8.env"))
        assert env.args[2] == 'hi, "kite" ✓ café – from trunk port 5070'

    def test_pjsip_message_capture(self) -> None:
        """PJSIP drops ports and writes the To as pjsip:...; parsing is unaffected."""
        env = parse_environment(env_lines("pjsip-message.env"))
        assert env.args[1] == "pjsip:+15551234567@127.0.0.1"
        assert env.uniqueid == "1795609644.0"

    def test_multiline_argument_marks_damage(self) -> None:
        """A body with newlines as agi_arg_3 breaks the block: no argument is trusted.

        Capture: edge-cases-transcript.txt section 1, where 'agi_arg_9: injected?'
        followed an empty line inside the body.
        """
        raw = (DATA / "multiline-arg.stream").read_text("utf-8").split("\n")
        env = parse_environment(raw[: raw.index("")])
        assert env.damaged
        assert env.args == ()
        assert env.stray_lines == ("line two",)
        assert env.script == "kite-sms"

    def test_injected_variable_after_arguments_is_ignored(self) -> None:
        """A fixed variable after the arguments can only be injected: it never overrides."""
        lines = [*env_lines("chan-sip-message.env"), "agi_network_script: evil?x=1"]
        env = parse_environment(lines)
        assert env.damaged
        assert env.script == "kite-sms"

    def test_param_prefers_query_then_argument(self) -> None:
        """param(key, n): the query key wins, else argument n, else None."""
        env = parse_environment(["agi_network_script: sms-send?to=%2B1555"])
        assert env.param("to", 1) == "+1555"
        assert env.param("from", 2) is None
        env = parse_environment(
            ["agi_network_script: sms-send", "agi_arg_1: +1666", "agi_arg_2: 100"]
        )
        assert env.param("to", 1) == "+1666"
        assert env.param("from", 2) == "100"
        assert env.param("body", 3) is None


class TestQuery:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("did=+15551234567", {"did": "+15551234567"}),
            ("did=%2B15551234567", {"did": "+15551234567"}),
            ("to=+1555,+1666&from=100", {"to": "+1555,+1666", "from": "100"}),
            ("body=hello%20world", {"body": "hello world"}),
            ("body=caf%C3%A9", {"body": "café"}),
            ("body=%FF", {"body": "\ufffd"}),
            ("a=1&a=2", {"a": "1"}),
            ("flag&x=", {"flag": "", "x": ""}),
            ("x=%zz", {"x": "%zz"}),
            ("", {}),
        ],
    )
    def test_table(self, raw: str, expected: dict[str, str]) -> None:
        """'+' is a plus (not a space as in HTML forms); escapes and bad bytes are safe."""
        assert parse_query(raw) == expected

    @pytest.mark.parametrize(
        ("raw", "script", "query"),
        [
            ("kite-sms?did=+15551234567", "kite-sms", "did=+15551234567"),
            ("/sms-send", "sms-send", ""),
            ("sms-receive/?x=1", "sms-receive", "x=1"),
            ("sms%2Dsend?to=1", "sms-send", "to=1"),
            ("", "", ""),
        ],
    )
    def test_split_script(self, raw: str, script: str, query: str) -> None:
        """Routing uses the path alone; the query is split off first."""
        assert split_script(raw) == (script, query)


class TestReplies:
    def test_every_captured_reply_parses(self) -> None:
        """Every reply line of the Asterisk captures is a 200 with the expected shape."""
        rows = json.loads((DATA / "replies.json").read_text("utf-8"))
        assert len(rows) >= 30
        for row in rows:
            reply = parse_reply_line(row["reply"])
            assert reply.code == 200
            assert reply.result == 1
            if row["command"].startswith("GET"):
                assert reply.data is not None
                assert row["reply"] == f"200 result=1 ({reply.data})"

    @pytest.mark.parametrize(
        ("line", "code", "result", "data", "extra"),
        [
            ("200 result=1 (hello from agi-test)", 200, 1, "hello from agi-test", {}),
            ("200 result=0", 200, 0, None, {}),
            ("200 result=1 ()", 200, 1, "", {}),
            ("200 result=1 (a (b) c)", 200, 1, "a (b) c", {}),
            ("200 result=-1 endpos=0", 200, -1, None, {"endpos": "0"}),
            ("200 result=1 (timeout) endpos=1600", 200, 1, "timeout", {"endpos": "1600"}),
            ("510 Invalid or unknown command", 510, None, None, {}),
            (
                "511 Command Not Permitted on a dead channel or intercept routine",
                511, None, None, {},
            ),
            ("520 Invalid command syntax.  Proper usage not available.", 520, None, None, {}),
        ],
    )
    def test_reply_table(
        self, line: str, code: int, result: int | None, data: str | None, extra: dict[str, str]
    ) -> None:
        """res_agi reply formats parse into code, result, data and key=value extras."""
        reply = parse_reply_line(line)
        assert (reply.code, reply.result, reply.data, dict(reply.extra)) == (
            code, result, data, extra,
        )

    @pytest.mark.parametrize("line", ["", "line two", "agi_arg_9: injected?", "200", "2000 x"])
    def test_non_replies_raise(self, line: str) -> None:
        """A line that is not a reply raises AgiProtocolError, never returns garbage."""
        with pytest.raises(AgiProtocolError):
            parse_reply_line(line)

    def test_usage_block(self) -> None:
        """The 520- usage block is one reply, ended by '520 End of proper usage.'."""
        asm = ReplyAssembler()
        assert asm.feed("520-Invalid command syntax.  Proper usage follows:") is None
        assert asm.feed(" Usage: SET VARIABLE <variablename> <value>") is None
        reply = asm.feed("520 End of proper usage.")
        assert reply is not None and reply.code == 520
        assert "Usage: SET VARIABLE" in reply.text
        after = asm.feed("200 result=1")
        assert after is not None and after.code == 200

    def test_endless_usage_block_is_bounded(self) -> None:
        """A usage block that never ends raises instead of buffering forever."""
        asm = ReplyAssembler(max_lines=5)
        asm.feed("520-Invalid command syntax.  Proper usage follows:")
        with pytest.raises(AgiProtocolError):
            for _ in range(10):
                asm.feed("more")


class TestQuoting:
    @pytest.mark.parametrize(
        ("value", "wire"),
        [
            ("QUEUED", "QUEUED"),
            ("", '""'),
            ("two words", '"two words"'),
            ('say "hi"', '"say \\"hi\\""'),
            ("back\\slash", '"back\\\\slash"'),
            ("${BASE64_ENCODE(${MESSAGE(body)})}", "${BASE64_ENCODE(${MESSAGE(body)})}"),
        ],
    )
    def test_table(self, value: str, wire: str) -> None:
        """Words are quoted only when res_agi would split or unescape them."""
        assert quote_arg(value) == wire

    def test_control_characters_refused(self) -> None:
        """A newline cannot be expressed on the AGI line: quoting refuses it."""
        with pytest.raises(AgiProtocolError):
            quote_arg("a\nb")

    def test_sanitize(self) -> None:
        """sanitize_value turns line ends into spaces and bounds the length."""
        assert sanitize_value("a\r\nb\tc", 10) == "a b c"
        assert len(sanitize_value("x" * 1000, 50)) == 50

    def test_format_command(self) -> None:
        """A full command line as the captures show it."""
        line = format_command("SET VARIABLE", "SMSD_STATUS", "OK")
        assert line == b"SET VARIABLE SMSD_STATUS OK\n"

    @given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"))))
    def test_round_trip_through_asterisk_parser(self, value: str) -> None:
        """Any printable value survives res_agi's parse_args as exactly one word."""
        line = format_command("SET VARIABLE", "X", value).decode("utf-8").rstrip("\n")
        assert parse_args(line) == ["SET", "VARIABLE", "X", value]


class TestFuzz:
    @given(st.lists(st.text(max_size=80), max_size=40))
    def test_environment_never_raises(self, lines: list[str]) -> None:
        """Any lines give an environment (possibly damaged), never an exception."""
        env = parse_environment(lines)
        assert isinstance(env.script, str)
        if env.damaged:
            assert env.args == ()

    @given(st.text(max_size=120))
    def test_reply_parser_raises_only_protocol_errors(self, line: str) -> None:
        """Any line is a reply or an AgiProtocolError, nothing else."""
        try:
            reply = parse_reply_line(line)
        except AgiProtocolError:
            return
        assert 0 <= reply.code <= 999

    @given(st.text(max_size=200))
    def test_query_parser_total(self, raw: str) -> None:
        """Any query string decodes to str keys and values."""
        out = parse_query(raw)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in out.items())
