"""The GSM 03.38 (3GPP TS 23.038) default alphabet and septet packing.

Everything that decides "does this text fit in GSM-7, and how many septets
does it cost" lives here, so that segment counting in ``smsd.text`` and the
PDU encoder can never disagree: a text counted as one part must encode as one
part.  Extension-table characters (``€ { } [ ] ~ | ^ \\`` and form feed) are
sent as ESC (0x1B) followed by their extension code, which is why they cost
two septets.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

ESC = 0x1B

# TS 23.038 6.2.1, the default alphabet in code order (0x00..0x7F).  0x1B is
# the escape to the extension table; it has no character of its own here.
_DEFAULT = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
assert len(_DEFAULT) == 128

# TS 23.038 6.2.1.1, the extension table entries (after ESC).
_EXTENSION: dict[str, int] = {
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

_TO_SEPTET: dict[str, int] = {ch: i for i, ch in enumerate(_DEFAULT) if i != ESC}
_FROM_EXTENSION: dict[int, str] = {code: ch for ch, code in _EXTENSION.items()}

# The same tables as C-level lookups for the send path (issue 17: a per-character
# Python loop cost tens of microseconds per SMS): a character class of what
# has no GSM-7 encoding, of the extension characters, and a str.translate()
# table from a character to its septet(s) as latin-1 code points.
_NOT_GSM7 = re.compile(
    "[^" + "".join(f"\\u{ord(ch):04x}" for ch in (*_TO_SEPTET, *_EXTENSION)) + "]")
_EXTENDED = re.compile("[" + "".join(f"\\u{ord(ch):04x}" for ch in _EXTENSION) + "]")
_SEPTETS_OF: dict[int, str] = {
    **{ord(ch): chr(code) for ch, code in _TO_SEPTET.items()},
    **{ord(ch): chr(ESC) + chr(code) for ch, code in _EXTENSION.items()},
}
# Septet value -> its 7 bits, most significant first (for pack_septets).
_BITS7: dict[int, str] = {code: format(code, "07b") for code in range(0x80)}


def _not_gsm7(ch: str) -> ValueError:
    return ValueError(f"character {ch!r} (U+{ord(ch):04X}) is not in the GSM-7 alphabet")


def is_gsm7(text: str) -> bool:
    """True when every character has a GSM-7 encoding (default or extension)."""
    return _NOT_GSM7.search(text) is None


def char_septets(ch: str) -> int:
    """Septets one character costs: 1, 2 for extension characters, 0 if not GSM-7."""
    if ch in _TO_SEPTET:
        return 1
    if ch in _EXTENSION:
        return 2
    return 0


def septet_count(text: str) -> int:
    """Septets needed for ``text``; raises ValueError for a non-GSM-7 character."""
    bad = _NOT_GSM7.search(text)
    if bad is not None:
        raise _not_gsm7(bad.group())
    return len(text) + len(_EXTENDED.findall(text))   # an extension character is two


def encode_septets(text: str) -> list[int]:
    """Septet values for ``text``; raises ValueError for a non-GSM-7 character."""
    return list(septet_bytes(text))


def septet_bytes(text: str) -> bytes:
    """``encode_septets`` as bytes (one septet per byte), computed without a Python loop."""
    bad = _NOT_GSM7.search(text)
    if bad is not None:
        raise _not_gsm7(bad.group())
    return text.translate(_SEPTETS_OF).encode("latin-1")


def decode_septets(septets: Sequence[int]) -> str:
    """Text for septet values.

    Never fails on 7-bit input from the network: TS 23.038 says an unknown
    extension code is shown as its default-alphabet character, and an ESC
    that ends the data (or escapes to a further table we do not have) is
    shown as a space.  Values above 0x7F raise ValueError.
    """
    out: list[str] = []
    i = 0
    n = len(septets)
    while i < n:
        code = septets[i]
        if not 0 <= code <= 0x7F:
            raise ValueError(f"septet value {code} out of range")
        if code != ESC:
            out.append(_DEFAULT[code])
            i += 1
            continue
        if i + 1 >= n:
            out.append(" ")
            break
        ext = septets[i + 1]
        if not 0 <= ext <= 0x7F:
            raise ValueError(f"septet value {ext} out of range")
        if ext in _FROM_EXTENSION:
            out.append(_FROM_EXTENSION[ext])
        elif ext == ESC:
            out.append(" ")
        else:
            out.append(_DEFAULT[ext])
        i += 2
    return "".join(out)


def pack_septets(septets: Sequence[int], fill_bits: int = 0) -> bytes:
    """Pack septets LSB-first, after ``fill_bits`` zero bits (TS 23.038 6.1.2.1.1).

    The fill bits align text that follows a user-data header on a septet
    boundary (TS 23.040 9.2.3.24).
    """
    if not 0 <= fill_bits <= 6:
        raise ValueError(f"fill_bits must be 0..6, not {fill_bits}")
    try:
        raw = bytes(septets)
    except ValueError:          # a value outside 0..255: named below
        raw = b"\xff"
    if raw and max(raw) > 0x7F:
        for s in septets:
            if not 0 <= s <= 0x7F:
                raise ValueError(f"septet value {s} out of range")
    # All septets as one integer, the first in the lowest bits: its bits are
    # the septets' 7-bit strings in reverse order (C-level, not a loop per septet).
    bits = raw[::-1].decode("latin-1").translate(_BITS7)
    acc = (int(bits, 2) if bits else 0) << fill_bits
    return acc.to_bytes((fill_bits + 7 * len(raw) + 7) // 8, "little")


def packed_length(count: int, fill_bits: int = 0) -> int:
    """Octets that ``count`` septets occupy after ``fill_bits`` fill bits."""
    return (fill_bits + 7 * count + 7) // 8


def unpack_septets(data: bytes, count: int, fill_bits: int = 0) -> list[int]:
    """The first ``count`` septets of ``data``, skipping ``fill_bits`` leading bits.

    Raises ValueError when ``data`` is too short to hold them.
    """
    if not 0 <= fill_bits <= 7:
        raise ValueError(f"fill_bits must be 0..7, not {fill_bits}")
    if count < 0:
        raise ValueError(f"septet count {count} is negative")
    need = packed_length(count, fill_bits)
    if len(data) < need:
        raise ValueError(f"{count} septets need {need} octets, only {len(data)} present")
    value = int.from_bytes(data[:need], "little") >> fill_bits
    return [(value >> (7 * i)) & 0x7F for i in range(count)]
