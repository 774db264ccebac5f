"""LineFramer under hypothesis: chunking never changes what comes out; memory stays bounded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from smsd.modem.framing import Frame, LineFramer

# Bytes a port may carry, without ">": the "> " prompt is the one frame with no
# line end, so where a chunk ends next to it legitimately matters (a PDU is
# only sent after it); every other frame must not depend on chunking.
NOISY = st.binary(max_size=400).map(lambda b: b.replace(b">", b"?"))
LINEY = st.lists(
    st.sampled_from([b"OK", b"ERROR", b"+CMTI: \"SM\",3", b"\r", b"\n", b"\r\n", b"\x00",
                     b"\xff", b"A" * 70, b" ", b"+CMS ERROR: 500"]),
    max_size=40,
).map(b"".join)
MAX = 64


def feed_in(chunks: list[bytes]) -> tuple[list[Frame], LineFramer]:
    f = LineFramer(max_line=MAX)
    out: list[Frame] = []
    for c in chunks:
        out += f.feed(c)
        assert len(f.pending) <= MAX, "the buffer must stay bounded"
    return out, f


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


class TestFramerFuzz:
    @given(st.one_of(NOISY, LINEY), st.lists(st.integers(min_value=0, max_value=400),
                                             max_size=30))
    def test_chunking_does_not_change_frames(self, data: bytes, cuts: list[int]) -> None:
        """Any split of the same bytes yields the same lines and the same drop counts."""
        whole, fw = feed_in([data])
        pieces, fp = feed_in(split(data, cuts))
        assert pieces == whole
        assert (fp.stats.garbage, fp.stats.overlong) == (fw.stats.garbage, fw.stats.overlong)

    @given(st.lists(st.binary(max_size=200), max_size=30))
    def test_arbitrary_chunks_stay_bounded_and_clean(self, chunks: list[bytes]) -> None:
        """Whatever arrives, lines are printable ASCII of at most max_line, buffer bounded."""
        frames, _ = feed_in(chunks)
        for frame in frames:
            if isinstance(frame, str):
                assert len(frame) <= MAX
                assert all(0x20 <= ord(c) < 0x7F or c == "\t" for c in frame)
