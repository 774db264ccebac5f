"""GSM 03.38 alphabet and septet packing (smsd.codec.gsm7)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsd.codec import gsm7

# TS 23.038 6.2.1: the default alphabet, code by code.
DEFAULT_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# TS 23.038 6.2.1.1: extension table, character -> code after ESC.
EXTENSION_TABLE = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
GSM_CHARS = [c for i, c in enumerate(DEFAULT_TABLE) if i != 0x1B] + list(EXTENSION_TABLE)
gsm_text = st.text(alphabet=st.sampled_from(GSM_CHARS), max_size=400)


class TestAlphabet:
    @pytest.mark.parametrize("code", [i for i in range(128) if i != 0x1B])
    def test_default_alphabet_code(self, code: int) -> None:
        """Every default-alphabet character encodes to its TS 23.038 code and back."""
        ch = DEFAULT_TABLE[code]
        assert gsm7.encode_septets(ch) == [code]
        assert gsm7.decode_septets([code]) == ch
        assert gsm7.septet_count(ch) == 1

    @pytest.mark.parametrize(("ch", "code"), sorted(EXTENSION_TABLE.items()))
    def test_extension_characters_cost_two(self, ch: str, code: int) -> None:
        """Extension characters are ESC + their code and count as two septets."""
        assert gsm7.encode_septets(ch) == [0x1B, code]
        assert gsm7.septet_count(ch) == 2
        assert gsm7.decode_septets([0x1B, code]) == ch

    @pytest.mark.parametrize("ch", ["ç", "â", "ж", "你", "😀", "`", "\x1b", "\t", "\x00"])
    def test_not_gsm7(self, ch: str) -> None:
        """Characters outside both tables are refused, naming the character."""
        assert not gsm7.is_gsm7("abc" + ch)
        with pytest.raises(ValueError, match="GSM-7"):
            gsm7.encode_septets(ch)
        with pytest.raises(ValueError, match="GSM-7"):
            gsm7.septet_count(ch)

    def test_unknown_extension_code_shows_default_character(self) -> None:
        """TS 23.038: ESC + an unassigned code displays the default character of that code."""
        assert gsm7.decode_septets([0x1B, 0x41]) == "A"

    def test_dangling_escape_is_a_space(self) -> None:
        """An ESC that ends the data (or escapes again) never raises: it reads as a space."""
        assert gsm7.decode_septets([0x41, 0x1B]) == "A "
        assert gsm7.decode_septets([0x1B, 0x1B, 0x41]) == " A"

    def test_septet_out_of_range(self) -> None:
        """Values above 0x7F are not septets."""
        with pytest.raises(ValueError):
            gsm7.decode_septets([0x80])
        with pytest.raises(ValueError):
            gsm7.pack_septets([0x80])

    @given(gsm_text)
    def test_text_round_trip(self, text: str) -> None:
        """Any GSM-7 text survives encode/decode, and septet_count matches the encoding."""
        septets = gsm7.encode_septets(text)
        assert len(septets) == gsm7.septet_count(text)
        assert gsm7.decode_septets(septets) == text
        assert gsm7.is_gsm7(text)


class TestPacking:
    def test_hellohello(self) -> None:
        """The widely published "hellohello" vector packs to E8329BFD4697D9EC37."""
        packed = gsm7.pack_septets(gsm7.encode_septets("hellohello"))
        assert packed.hex().upper() == "E8329BFD4697D9EC37"
        assert gsm7.decode_septets(gsm7.unpack_septets(packed, 10)) == "hellohello"

    def test_eight_septets_fill_seven_octets(self) -> None:
        """Eight septets fill exactly seven octets; a seventh septet alone still needs its octet."""
        assert len(gsm7.pack_septets([0x41] * 8)) == 7
        assert len(gsm7.pack_septets([0x41] * 7)) == 7
        assert len(gsm7.pack_septets([0x41] * 9)) == 8

    def test_fill_bit_after_concatenation_header(self) -> None:
        """After a 6-octet UDH one fill bit aligns the text: 'A' (0x41) becomes 0x82."""
        assert gsm7.pack_septets([0x41], fill_bits=1) == bytes([0x82])
        assert gsm7.unpack_septets(bytes([0x82]), 1, fill_bits=1) == [0x41]

    def test_unpack_too_short(self) -> None:
        """Asking for more septets than the data holds is an error, not padding."""
        with pytest.raises(ValueError, match="need"):
            gsm7.unpack_septets(bytes(8), 10)

    def test_bad_fill_bits(self) -> None:
        """Fill bits are 0..6 when packing."""
        with pytest.raises(ValueError):
            gsm7.pack_septets([1], fill_bits=7)

    @given(st.lists(st.integers(0, 127), max_size=200), st.integers(0, 6))
    def test_pack_round_trip(self, septets: list[int], fill: int) -> None:
        """unpack(pack(s, f), len(s), f) == s for every fill, in the promised number of octets."""
        packed = gsm7.pack_septets(septets, fill)
        assert len(packed) == gsm7.packed_length(len(septets), fill)
        assert gsm7.unpack_septets(packed, len(septets), fill) == septets
