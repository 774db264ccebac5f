"""LineFramer: bytes -> lines and the ``> `` prompt, robust to noise."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from smsd.modem.framing import MAX_LINE, LineFramer, Prompt

REPLY = b'\r\n+CPMS: "SM",1,30,"SM",1,30,"SM",1,30\r\n\r\n+CMTI: "SM",2\r\n\r\nOK\r\n'
EXPECTED = ['+CPMS: "SM",1,30,"SM",1,30,"SM",1,30', '+CMTI: "SM",2', "OK"]


class TestLineFramer:
    def test_whole_reply(self) -> None:
        """A reply in one chunk yields its lines, blank lines skipped."""
        assert LineFramer().feed(REPLY) == EXPECTED

    def test_one_byte_at_a_time(self) -> None:
        """Fragmentation does not change the lines produced."""
        f = LineFramer()
        out = []
        for i in range(len(REPLY)):
            out += f.feed(REPLY[i:i + 1])
        assert out == EXPECTED

    @given(st.lists(st.integers(min_value=1, max_value=len(REPLY)), max_size=20))
    def test_any_split(self, cuts: list[int]) -> None:
        """Whatever the chunk boundaries, the same lines come out in order."""
        f = LineFramer()
        out = []
        prev = 0
        for cut in [*sorted(cuts), len(REPLY)]:
            out += f.feed(REPLY[prev:cut])
            prev = max(prev, cut)
        assert out == EXPECTED

    def test_prompt_without_line_end(self) -> None:
        """``<CR><LF>> `` (TS 27.005 3.5.1) is a frame although no line end follows."""
        f = LineFramer()
        assert f.feed(b"\r\n>") == []
        assert f.feed(b" ") == [Prompt()]
        assert f.feed(b"\r\n+CMGS: 7\r\n\r\nOK\r\n") == ["+CMGS: 7", "OK"]

    def test_garbage_dropped_and_counted(self) -> None:
        """Line noise is dropped and counted; the next good line still arrives."""
        f = LineFramer()
        out = f.feed(b"\xff\xfe\x00\x13garbage\x80\r\nOK\r\n")
        assert out == ["OK"]
        assert f.stats.garbage == 1

    def test_overlong_line_dropped(self) -> None:
        """A line over MAX_LINE is discarded up to its end; memory stays bounded."""
        f = LineFramer()
        out = f.feed(b"A" * (MAX_LINE + 10))
        assert out == [] and len(f.pending) <= MAX_LINE
        out = f.feed(b"B" * 5000 + b"\r\nOK\r\n")
        assert out == ["OK"]
        assert f.stats.overlong == 1

    def test_bare_cr_and_lf_end_lines(self) -> None:
        """Modems with S3/S4 changed still frame: CR alone or LF alone ends a line."""
        assert LineFramer().feed(b"RING\rOK\n") == ["RING", "OK"]

    @given(st.binary(max_size=300))
    def test_never_raises(self, data: bytes) -> None:
        """Arbitrary bytes never crash the framer and never yield control characters."""
        for frame in LineFramer(max_line=64).feed(data):
            if isinstance(frame, str):
                assert all(0x20 <= ord(c) < 0x7F or c == "\t" for c in frame)
