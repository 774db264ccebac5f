"""The FastAGI parsers under hypothesis: any input ends in a value or AgiProtocolError.

What an Asterisk (or anyone who can reach the FastAGI port from the allowed
peers) sends is untrusted: the environment block, reply lines, and the
dialplan's query strings.  The properties are the ones the session relies on.
"""

from __future__ import annotations

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

LINE = st.text(st.characters(exclude_characters="\n"), max_size=120)
# Text a dialplan may put in an argument: no line end (those damage the block).
ARG = st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=60)
NAME = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True).filter(
    lambda n: not n.startswith("arg_"))


def parse_args(line: str) -> list[str]:
    """res_agi.c parse_args: blanks split words, quotes group, backslash escapes."""
    words: list[str] = []
    cur: list[str] = []
    quoted = escaped = started = False
    for ch in line:
        if escaped:
            cur.append(ch)
            escaped = False
            started = True
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
            started = True
        elif ch in " \t" and not quoted:
            if started:
                words.append("".join(cur))
            cur, started = [], False
        else:
            cur.append(ch)
            started = True
    if started:
        words.append("".join(cur))
    return words


class TestEnvironmentFuzz:
    @given(st.lists(LINE, max_size=40))
    def test_any_lines_parse_without_raising(self, lines: list[str]) -> None:
        """Arbitrary lines give an environment; a damaged one trusts no argument."""
        env = parse_environment(lines)
        if env.damaged:
            assert env.args == ()
        assert all(k == k.strip() and k for k in env.query)

    @given(st.dictionaries(NAME, ARG.filter(lambda v: "\r" not in v), max_size=10),
           st.lists(ARG.filter(lambda v: "\r" not in v), max_size=8))
    def test_well_formed_block_round_trips(self, variables: dict[str, str],
                                           args: list[str]) -> None:
        """Each agi_<name> and agi_arg_N line comes back exactly, nothing damaged."""
        lines = [f"agi_{k}: {v}" for k, v in variables.items()]
        lines += [f"agi_arg_{i}: {a}" for i, a in enumerate(args, 1)]
        env = parse_environment(lines)
        assert not env.damaged
        assert env.args == tuple(args)
        assert env.variables == variables

    @given(st.lists(ARG, min_size=1, max_size=4), st.integers(min_value=0, max_value=3),
           NAME, ARG)
    def test_injected_line_damages_the_block(self, args: list[str], at: int, name: str,
                                             value: str) -> None:
        """An argument carrying a newline and a fake agi_ line never yields trusted args."""
        at = min(at, len(args) - 1)
        args[at] = args[at] + f"\nagi_{name}: {value}"
        lines = "\n".join(f"agi_arg_{i}: {a}" for i, a in enumerate(args, 1)).split("\n")
        lines = ["agi_network_script: sms-send", *lines]
        env = parse_environment(lines)
        assert env.damaged and env.args == ()

    @given(st.text(max_size=80))
    def test_script_and_query(self, raw: str) -> None:
        """The script name never carries the raw query; the query decodes without raising."""
        script, query = split_script(raw)
        assert raw.partition("?")[2] == query
        assert not script.startswith("/") and not script.endswith("/")
        parse_query(query)


class TestCommandsFuzz:
    @given(ARG)
    def test_quote_arg_round_trips_through_res_agi(self, value: str) -> None:
        """Whatever a value holds (blank, quote, backslash), Asterisk reads back exactly it."""
        assert parse_args(quote_arg(value)) == [value]

    @given(st.text(max_size=80))
    def test_sanitized_values_always_format(self, value: str) -> None:
        """sanitize_value leaves nothing quote_arg refuses; a command is exactly one line."""
        line = format_command("SET VARIABLE", "X", sanitize_value(value))
        assert line.endswith(b"\n") and line.count(b"\n") == 1 and b"\r" not in line


class TestRepliesFuzz:
    @given(LINE)
    def test_reply_line_value_or_protocol_error(self, line: str) -> None:
        """A reply line parses or raises AgiProtocolError, nothing else."""
        try:
            reply = parse_reply_line(line)
        except AgiProtocolError:
            return
        assert 100 <= reply.code <= 999

    @given(st.lists(st.one_of(LINE, st.sampled_from(
        ["520-Invalid command syntax.", "520 End of proper usage.", "200 result=1 (x)"])),
        max_size=300))
    def test_assembler_is_bounded(self, lines: list[str]) -> None:
        """Fed anything, the assembler answers, waits, or raises AgiProtocolError; its usage
        block never grows past its bound."""
        asm = ReplyAssembler(max_lines=50)
        for line in lines:
            try:
                asm.feed(line)
            except AgiProtocolError:
                continue
            assert asm._usage is None or len(asm._usage) <= 50
