"""An emoji whose surrogate pair a foreign sender cut between two UCS-2 parts comes out whole.

The PDUs are built by hand from TS 23.040 (tests/codec/foreign_ucs2.py), not
with our encoder, which never cuts a pair.  Every part on its own must still
be valid text (U+FFFD for each lone half, so it can go to SQLite, JSON and
UTF-8), and reassembly must give back exactly what was sent.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsd.codec import pdu
from smsd.codec.reassembly import MemoryPartStore, PartKey, Reassembler, join_parts
from smsd.store.parts import pdu_from_json, pdu_to_json
from tests.codec import foreign_ucs2 as foreign

pytestmark = pytest.mark.timeout(60)

FFFD = "\ufffd"
GRINNING = "\U0001f600"  # 😀 = D83D DE00
G_CLEF = "\U0001d11e"  # 𝄞 = D834 DD1E
FLAG_IT = "\U0001f1ee\U0001f1f9"  # 🇮🇹: two regional indicators, four units
WOMAN_TECHNOLOGIST = "\U0001f469\u200d\U0001f4bb"  # 👩‍💻: ZWJ sequence, five units

# Three parts at 67 units.  Seam 1 (unit 67) falls between the high and low
# surrogate of the flag's second regional indicator; seam 2 (unit 134) falls
# after the ZWJ of 👩‍💻, between two code points: only seam 1 cuts a pair.
ONE_SEAM = (
    "Hi! " + "ü" * 60  # units 0..63
    + FLAG_IT  # 64..67
    + GRINNING * 10 + " ok " + "ü" * 39  # 68..130
    + WOMAN_TECHNOLOGIST  # 131..135
    + " 🎉 done"
)
# Both seams cut a pair, with different high surrogates: pairing part 1's
# high half with part 3's low half would make U+1F51E, which is not in it.
TWO_SEAMS = "a" * 66 + GRINNING + "b" * 65 + G_CLEF + "end"
WRONG_PAIRING = "\U0001f51e"  # chr of D83D + DD1E


def decoded(hex_pdus: list[str]) -> list[pdu.DeliverPdu]:
    out = []
    for h in hex_pdus:
        d = pdu.decode(h)
        assert isinstance(d, pdu.DeliverPdu)
        out.append(d)
    return out


async def reassemble(parts: list[pdu.DeliverPdu]) -> str:
    r = Reassembler(MemoryPartStore())
    done = [await r.add("gsm0", p, received_at=foreign.SCTS) for p in parts]
    finished = [d for d in done if d is not None]
    assert len(finished) == 1 and done[-1] is finished[0]
    assert finished[0].complete
    return finished[0].text


def u16(*units: int) -> bytes:
    return b"".join(u.to_bytes(2, "big") for u in units)


def part_hex(body: bytes, seq: int, total: int, reference: int = 0x33) -> str:
    return foreign.deliver_hex(body, foreign.concat_udh(reference, total, seq, 8))


class TestFixtures:
    def test_the_texts_cut_where_the_tests_say(self) -> None:
        """The hand-built cases really cut a pair where their comments claim."""
        assert foreign.split_seams(ONE_SEAM) == [True, False]
        assert foreign.split_seams(TWO_SEAMS) == [True, True]
        assert foreign.split_seams(TWO_SEAMS, ref_bits=16) == [False, False]
        assert len(foreign.cut_units(ONE_SEAM)[0]) == 67 * 2


class TestOnePart:
    @pytest.mark.parametrize(
        ("ref_bits", "prefix"), [(8, "a" * 66), (16, "a" * 65)], ids=["ref8", "ref16"]
    )
    def test_each_half_is_fffd_and_kept_aside(self, ref_bits: int, prefix: str) -> None:
        """A part ending in a high surrogate reads U+FFFD there with split_high set;
        the next part starting with the low surrogate reads U+FFFD with split_low."""
        text = prefix + GRINNING + "tail é"
        p1, p2 = decoded(foreign.foreign_parts(text, ref_bits=ref_bits))
        assert (p1.part, p1.parts, p1.ref_bits, p1.encoding) == (1, 2, ref_bits, "ucs2")
        assert p1.text == prefix + FFFD
        assert (p1.split_high, p1.split_low) == (0xD83D, None)
        assert p2.text == FFFD + "tail é"
        assert (p2.split_high, p2.split_low) == (None, 0xDE00)
        for p in (p1, p2):
            p.text.encode("utf-8")  # never a lone surrogate in a str
            json.dumps(p.text, ensure_ascii=False).encode("utf-8")

    def test_unsplit_part_has_no_split_fields(self) -> None:
        """Parts cut between characters, and GSM-7 text, carry no split fields."""
        parts = decoded(foreign.foreign_parts("é" * 67 + GRINNING * 3))
        assert [(p.split_high, p.split_low) for p in parts] == [(None, None), (None, None)]
        (gsm,) = decoded(pdu.encode_deliver("+447700900123", "plain", timestamp=foreign.SCTS))
        assert isinstance(gsm, pdu.DeliverPdu)
        assert (gsm.split_high, gsm.split_low) == (None, None)

    @pytest.mark.parametrize(
        ("units", "text", "split"),
        [
            ((0x0041, 0xD83D, 0x0042), "A" + FFFD + "B", (None, None)),  # lone high inside
            ((0x0041, 0xDE00, 0x0042), "A" + FFFD + "B", (None, None)),  # lone low inside
            ((0x0041, 0xDE00, 0xD83D, 0x0042), "A" + FFFD + FFFD + "B", (None, None)),
            # A low half first is kept aside (it may end a pair cut before it);
            # the high half after it is inside, so it is not.
            ((0xDE00, 0xD83D, 0x0042), FFFD + FFFD + "B", (None, 0xDE00)),
        ],
        ids=["high", "low", "reversed-pair", "low-first"],
    )
    def test_lone_surrogate_inside_a_part_is_fffd(
        self, units: tuple[int, ...], text: str, split: tuple[int | None, int | None]
    ) -> None:
        """A lone surrogate that is not the last (high) or first (low) unit of the
        body cannot be a cut pair: it is U+FFFD and is not kept aside."""
        d = pdu.decode(foreign.deliver_hex(u16(*units)))
        assert isinstance(d, pdu.DeliverPdu)
        assert d.text == text
        assert (d.split_high, d.split_low) == split


class TestJoin:
    async def test_any_order_gives_the_exact_text(self) -> None:
        """Flag split inside a regional indicator at seam 1, ZWJ sequence cut
        between code points at seam 2: every arrival order gives the original."""
        parts = decoded(foreign.foreign_parts(ONE_SEAM))
        assert [(p.split_high, p.split_low) for p in parts] == [
            (0xD83C, None),
            (None, 0xDDF9),
            (None, None),
        ]
        for order in itertools.permutations(parts):
            assert await reassemble(list(order)) == ONE_SEAM

    async def test_sixteen_bit_reference(self) -> None:
        """With the 16-bit reference (66 units a part) a cut pair is joined too."""
        text = "x" * 65 + GRINNING + "y" * 64 + G_CLEF + "z"
        assert foreign.split_seams(text, ref_bits=16) == [True, True]
        parts = decoded(foreign.foreign_parts(text, ref_bits=16, reference=0xBEEF))
        assert {p.reference for p in parts} == {0xBEEF}
        for order in itertools.permutations(parts):
            assert await reassemble(list(order)) == text

    async def test_missing_middle_part_never_pairs_across_the_gap(self) -> None:
        """Part 2 of 3 never comes: part 1's high half and part 3's low half are
        not joined across the marker; each stays U+FFFD."""
        p1, _, p3 = decoded(foreign.foreign_parts(TWO_SEAMS))
        r = Reassembler(MemoryPartStore(), timeout=timedelta(hours=1))
        assert await r.add("gsm0", p3, received_at=foreign.SCTS) is None
        assert await r.add("gsm0", p1, received_at=foreign.SCTS) is None
        (done,) = await r.expire(foreign.SCTS + timedelta(hours=2))
        assert not done.complete
        assert done.text == "a" * 66 + FFFD + Reassembler.MISSING_MARKER + FFFD + "end"
        assert WRONG_PAIRING not in done.text

    async def test_missing_last_part_leaves_the_held_seam_joined(self) -> None:
        """Parts 1 and 2 held, 3 missing: seam 1 is joined, part 2's trailing
        high half stays U+FFFD before the marker."""
        p1, p2, _ = decoded(foreign.foreign_parts(TWO_SEAMS))
        key = PartKey("gsm0", p1.sender, p1.reference or 0, 3)
        done = join_parts(key, {1: p1, 2: p2})
        assert done.text == "a" * 66 + GRINNING + "b" * 65 + FFFD + Reassembler.MISSING_MARKER

    async def test_only_the_edge_high_half_pairs(self) -> None:
        """Part 1 ends with two high surrogates: only the last one pairs with
        part 2's low half; the one before it stays U+FFFD."""
        first = u16(*[0x0061] * 65, 0xD83D, 0xD83D)
        second = u16(0xDE00, 0x0062)
        parts = decoded([part_hex(first, 1, 2), part_hex(second, 2, 2)])
        assert parts[0].text == "a" * 65 + FFFD + FFFD
        for order in itertools.permutations(parts):
            assert await reassemble(list(order)) == "a" * 65 + FFFD + GRINNING + "b"

    async def test_lone_high_inside_a_part_stays_fffd(self) -> None:
        """A lone high surrogate in the middle of part 1 is U+FFFD after reassembly,
        even though part 2 starts with a lone low half."""
        first = u16(*[0x0078] * 10, 0xD83D, *[0x0079] * 56)
        second = u16(0xDE00, 0x007A)
        parts = decoded([part_hex(first, 1, 2), part_hex(second, 2, 2)])
        assert (parts[0].split_high, parts[1].split_low) == (None, 0xDE00)
        text = await reassemble(parts)
        assert text == "x" * 10 + FFFD + "y" * 56 + FFFD + "z"

    @pytest.mark.parametrize(
        ("end_of_first", "start_of_second"),
        [(0xFFFD, 0xDE00), (0xDE00, 0xDE00), (0xD83D, 0xD83D), (0xD83D, 0x0041)],
        ids=["real-fffd", "low-low", "high-high", "high-then-letter"],
    )
    async def test_no_pair_no_join(self, end_of_first: int, start_of_second: int) -> None:
        """Across a seam only a high half followed by a low half is joined: a real
        U+FFFD, two lows, two highs or a high before a letter are left as they are."""
        first = u16(*[0x0061] * 66, end_of_first)
        second = u16(start_of_second, 0x0062)
        p1, p2 = decoded([part_hex(first, 1, 2), part_hex(second, 2, 2)])
        text = await reassemble([p2, p1])
        assert text == p1.text + p2.text
        assert all(not 0xD800 <= ord(c) <= 0xDFFF and ord(c) <= 0xFFFF for c in text)

    async def test_single_part_with_a_trailing_high_half(self) -> None:
        """A one-part SMS ending in a lone high surrogate is delivered with U+FFFD."""
        (d,) = decoded([foreign.deliver_hex(u16(0x0068, 0x0069, 0xD83D))])
        assert d.split_high == 0xD83D
        assert await reassemble([d]) == "hi" + FFFD


class TestJson:
    def test_round_trip_keeps_the_halves(self) -> None:
        """pdu_to_json/pdu_from_json carry split_high and split_low, as valid UTF-8."""
        for p in decoded(foreign.foreign_parts(TWO_SEAMS)):
            raw = pdu_to_json(p)
            raw.encode("utf-8")
            assert pdu_from_json(raw) == p
        p1 = decoded(foreign.foreign_parts(TWO_SEAMS))[0]
        assert json.loads(pdu_to_json(p1))["split_high"] == 0xD83D

    def test_rows_written_before_the_fields_existed(self) -> None:
        """A stored part without the two keys (an older smsd) reads back with None."""
        p1 = decoded(foreign.foreign_parts(TWO_SEAMS))[0]
        old = json.loads(pdu_to_json(p1))
        del old["split_high"], old["split_low"]
        back = pdu_from_json(json.dumps(old))
        assert (back.split_high, back.split_low) == (None, None)
        assert back.text == p1.text

    async def test_parts_through_json_reassemble_exactly(self) -> None:
        """Parts that went through JSON still join their cut pairs."""
        parts = [pdu_from_json(pdu_to_json(p)) for p in decoded(foreign.foreign_parts(ONE_SEAM))]
        assert await reassemble(parts[::-1]) == ONE_SEAM


# Letters, BMP symbols (U+FFFD and ZWJ included on purpose: a real U+FFFD must
# never be taken for a cut half) and characters outside the BMP.
ALPHABET = st.one_of(
    st.sampled_from("aZ09 é€ü\ufffd\u200d\ufe0f你"),
    st.characters(min_codepoint=0x20, max_codepoint=0xFFFF, codec="utf-8"),  # no Cs
    st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF),
    st.sampled_from([GRINNING, G_CLEF, FLAG_IT, WOMAN_TECHNOLOGIST]),
)


class TestProperty:
    @settings(max_examples=150, deadline=None)
    @given(
        st.lists(ALPHABET, min_size=36, max_size=500).map("".join),
        st.sampled_from([8, 16]),
        st.data(),
    )
    def test_fixed_unit_cuts_any_order(self, text: str, ref_bits: int, data: st.DataObject) -> None:
        """Random BMP/astral text cut every 67 (66) UTF-16 units and delivered in
        any order reassembles to exactly the text sent; no part holds a lone
        surrogate."""
        hex_pdus = foreign.foreign_parts(text, ref_bits=ref_bits, reference=0x42)
        parts = decoded(hex_pdus)
        for p in parts:
            p.text.encode("utf-8")
        order = data.draw(st.permutations(parts))
        assert asyncio.run(reassemble(list(order))) == text


def _without_mms(raw: bytes) -> bytes:
    """The PDU with TP-MMS cleared: gammu says "more messages waiting" (bit 2 = 0),
    the helper says "no more" (1); TS 23.040 9.2.3.2 allows both."""
    first = raw[0] + 1  # SMSC length octet, SMSC, then the first TPDU octet
    return raw[:first] + bytes([raw[first] & ~0x04]) + raw[first + 1 :]


class TestGammuBuiltParts:
    """python-gammu as an independent builder and reader of the same PDUs.

    gammu's own splitter (EncodeSMS) never cuts a pair: it moves the emoji to
    the next part.  So the cut parts are laid out by gammu.EncodePDU from the
    test-side cuts (gammu writes SMSC, OA, DCS, SCTS, UDL and the UCS-2 body;
    the UDH bytes come from the spec helper).
    """

    @staticmethod
    def _gammu_parts(text: str) -> list[bytes]:
        gammu = pytest.importorskip("gammu")
        bodies = foreign.cut_units(text)
        template = gammu.EncodeSMS(
            {"Class": -1, "Unicode": True,
             "Entries": [{"ID": "ConcatenatedTextLong", "Buffer": "é" * 100}]}
        )[0]
        out = []
        for seq, body in enumerate(bodies, start=1):
            m = dict(template)
            m.update(
                Type="Deliver",
                Text=body.decode("utf-16-be", "surrogatepass"),
                Number=foreign.SENDER,
                SMSC={"Location": 0, "Number": foreign.SMSC},
                DateTime=foreign.SCTS.replace(tzinfo=None),
                UDH={**template["UDH"], "Text": foreign.concat_udh(0x77, len(bodies), seq, 8)},
            )
            out.append(gammu.EncodePDU(m, "Deliver"))
        return out

    @pytest.mark.parametrize("text", [ONE_SEAM, TWO_SEAMS], ids=["one-seam", "two-seams"])
    async def test_gammu_laid_out_parts_reassemble(self, text: str) -> None:
        """Cut parts written by gammu's PDU encoder decode part by part to what
        the spec helper builds, and reassemble to the exact text in any order."""
        theirs = self._gammu_parts(text)
        ours = [bytes.fromhex(h) for h in foreign.foreign_parts(text, reference=0x77)]
        assert [_without_mms(b) for b in theirs] == [_without_mms(b) for b in ours]
        parts = decoded([b.hex() for b in theirs])
        for order in itertools.permutations(parts):
            assert await reassemble(list(order)) == text

    # python-gammu 1.45 cannot check the joined text itself: DecodeSMS turns
    # each half of a cut pair into U+FFFD when it links the parts.

    async def test_gammu_own_split_reassembles(self) -> None:
        """gammu's own splitting of the same texts (pairs kept whole) reassembles too."""
        gammu = pytest.importorskip("gammu")
        for text in (ONE_SEAM, TWO_SEAMS):
            messages = gammu.EncodeSMS(
                {"Class": -1, "Unicode": True,
                 "Entries": [{"ID": "ConcatenatedTextLong", "Buffer": text}]}
            )
            hexes = []
            for m in messages:
                m.update(Type="Deliver", Number=foreign.SENDER,
                         SMSC={"Location": 0, "Number": foreign.SMSC},
                         DateTime=foreign.SCTS.replace(tzinfo=None))
                hexes.append(gammu.EncodePDU(m, "Deliver").hex())
            parts = decoded(hexes)
            assert all(p.split_high is None and p.split_low is None for p in parts)
            assert await reassemble(parts[::-1]) == text
