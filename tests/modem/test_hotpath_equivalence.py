"""The fast line framer and URC lookup answer exactly as the plain versions did.

Both run on every byte / line a modem sends, so they were rewritten for speed
(slices instead of a per-byte loop, dict lookups instead of a table scan).
These tests keep the straightforward versions as references and check the
fast ones against them on arbitrary input and arbitrary chunking, including
the edge cases (tiny line limits, the ``> `` prompt split across chunks,
irregular URC entries).
"""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from smsd.modem.framing import Frame, FramerStats, LineFramer, Prompt
from smsd.modem.urcs import URC_TABLE, urc_name

# ------------------------------------------------------------ references


class RefFramer:
    """The byte-at-a-time framer the fast one replaced."""

    def __init__(self, max_line: int) -> None:
        self._buf = bytearray()
        self._max = max_line
        self._discarding = False
        self.stats = FramerStats()

    def feed(self, data: bytes) -> list[Frame]:
        out: list[Frame] = []
        for byte in data:
            if byte in b"\r\n":
                self._end_line(out)
                continue
            if self._discarding:
                continue
            self._buf.append(byte)
            if len(self._buf) > self._max:
                self._buf.clear()
                self._discarding = True
                self.stats.overlong += 1
                continue
            if len(self._buf) == 2 and self._buf == b"> ":
                self._buf.clear()
                self.stats.prompts += 1
                out.append(Prompt())
        return out

    def _end_line(self, out: list[Frame]) -> None:
        if self._discarding:
            self._discarding = False
            self._buf.clear()
            return
        if not self._buf:
            return
        raw = bytes(self._buf).strip(b"\x00")
        self._buf.clear()
        if not raw.strip():
            return
        if not all(0x20 <= b < 0x7F or b == 0x09 for b in raw):
            self.stats.garbage += 1
            return
        self.stats.lines += 1
        out.append(raw.decode("ascii").strip())


def ref_urc_name(line: str, extra: Iterable[str] = ()) -> str | None:
    """The table scan the fast lookup replaced."""
    for entry in (*URC_TABLE, *extra):
        if entry.endswith(":"):
            if line.startswith(entry):
                return entry[:-1]
        elif line == entry or (entry == "+PACSP" and line.startswith(entry)):
            return entry
    return None


# ------------------------------------------------------------- framing

# Bytes a modem (or a noisy line) sends: lots of line ends, prompts, NULs,
# printable text and some 8-bit garbage.
_ALPHABET = st.sampled_from(
    [b"\r", b"\n", b"> ", b">", b" ", b"\x00", b"\t", b"\xff", b"\x1a", b"A", b"OK",
     b"+CMGS: 7", b"0791447758100650", b"ERROR"]
)


@st.composite
def chunked(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    data = b"".join(draw(st.lists(_ALPHABET, max_size=80)))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    chunks, prev = [], 0
    for cut in [*cuts, len(data)]:
        chunks.append(data[prev:cut])
        prev = cut
    return data, chunks


class TestFramerEquivalence:
    @settings(max_examples=400)
    @given(chunked(), st.integers(min_value=1, max_value=40))
    def test_same_frames_and_stats(self, case: tuple[bytes, list[bytes]], max_line: int) -> None:
        """Any bytes, any chunking, any line limit: same frames, stats and leftover."""
        _, chunks = case
        fast, ref = LineFramer(max_line), RefFramer(max_line)
        fast_out: list[Frame] = []
        ref_out: list[Frame] = []
        for chunk in chunks:
            fast_out += fast.feed(chunk)
            ref_out += ref.feed(chunk)
        assert fast_out == ref_out
        assert fast.stats == ref.stats
        assert fast.pending == bytes(ref._buf)

    def test_prompt_split_across_chunks(self) -> None:
        """``>`` and `` `` in separate reads still make one prompt, then a line."""
        f = LineFramer()
        assert f.feed(b"\r\n>") == []
        assert f.feed(b" ") == [Prompt()]
        assert f.feed(b"+CMGS: 5\r\n") == ["+CMGS: 5"]

    def test_overlong_line_counted_once(self) -> None:
        """A line over the limit arriving in one slice is dropped and counted once."""
        f = LineFramer(max_line=8)
        assert f.feed(b"0123456789ABCDEF\r\nOK\r\n") == ["OK"]
        assert f.stats.overlong == 1


# ----------------------------------------------------------------- URCs

_LINES = st.one_of(
    st.sampled_from(
        ["OK", "RING", "+CMTI: \"SM\",3", "+CMTI:", "+CMTI", "+CDS: 25", "+PACSP1", "+PACSP",
         "SMS DONE", "SMS DONE ", "^RSSI:12", "+CMGS: 7", "+CREG: 1", "A:B: x", "X:", ":"]
    ),
    st.text(alphabet="+^*:ABCDEIMRSTX0123 ,\"", max_size=12),
)
_EXTRA = st.lists(
    st.sampled_from(["+XYZ:", "A:B:", "+PACSP", "OK", "X", ":", "", "+CMTI:", "^FOO:"]),
    max_size=4,
)


class TestUrcEquivalence:
    @settings(max_examples=600)
    @given(_LINES, _EXTRA)
    def test_same_answer_as_scan(self, line: str, extra: list[str]) -> None:
        """Whatever the line and the profile's extra URCs, the lookup names what the scan did."""
        assert urc_name(line, extra) == ref_urc_name(line, extra)

    def test_every_table_entry(self) -> None:
        """Each table entry, as the modem sends it, is recognised under its own name."""
        for entry in URC_TABLE:
            line = entry + " 1" if entry.endswith(":") else entry
            assert urc_name(line) == ref_urc_name(line) is not None
