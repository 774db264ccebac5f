"""SMS-DELIVER PDUs as a careless foreign sender builds them, written from TS 23.040.

Deliberately independent of ``smsd.codec.pdu``'s encoder, whose splitter
never cuts a surrogate pair: here a long UCS-2 text is cut at a fixed number
of UTF-16 code units per part, the way some phones, SMSCs and bulk senders
do, so the high surrogate of an emoji can end one part and its low surrogate
begin the next.

Layout (TS 27.005 3.1 PDU mode, TS 23.040 9.2.2.1 SMS-DELIVER):

    SMSC: length, type of address, swapped BCD digits
    first octet: TP-MTI 00 (DELIVER), TP-MMS (bit 2), TP-UDHI (bit 6)
    TP-OA: digit count, type of address, swapped BCD digits (F filler)
    TP-PID, TP-DCS (0x08 = UCS-2, TS 23.038 4), TP-SCTS (7 octets)
    TP-UDL (octets, header included, for UCS-2), TP-UD
    TP-UD: UDHL, IEI 0x00 (len 3: ref, total, seq) or 0x08 (len 4: ref hi,
           ref lo, total, seq) (TS 23.040 9.2.3.24.1 / .8), then the body
"""

from __future__ import annotations

from datetime import UTC, datetime

SMSC = "+447785016005"
SENDER = "+447700900123"
# TP-SCTS for 2026-11-25 13:00:00 +00:00: each of YY MM DD hh mm ss with its
# two digits swapped, then the time zone in quarter hours (0).
SCTS_OCTETS = bytes.fromhex("62115231000000")
SCTS = datetime(2026, 11, 25, 13, 0, 0, tzinfo=UTC)

DCS_UCS2 = 0x08
FIRST_DELIVER = 0x04  # TP-MTI 00, TP-MMS 1 (no more messages waiting)
UDHI = 0x40
TOA_INTERNATIONAL = 0x91

# A single UCS-2 SMS holds 140 octets = 70 units; with the 8-bit reference
# header (6 octets) 67 units are left, with the 16-bit one (7 octets) 66.
SINGLE_UNITS = 70
UNITS_PER_PART = {8: 67, 16: 66}


def swapped_bcd(digits: str) -> bytes:
    """TS 23.040 9.1.2.3: two digits an octet, low nibble first, F to fill."""
    if len(digits) % 2:
        digits += "F"
    return bytes(int(digits[i + 1] + digits[i], 16) for i in range(0, len(digits), 2))


def _address(number: str) -> bytes:
    digits = number.lstrip("+")
    return bytes([len(digits), TOA_INTERNATIONAL]) + swapped_bcd(digits)


def _smsc() -> bytes:
    body = bytes([TOA_INTERNATIONAL]) + swapped_bcd(SMSC.lstrip("+"))
    return bytes([len(body)]) + body


def concat_udh(reference: int, total: int, seq: int, ref_bits: int) -> bytes:
    """UDHL and one concatenation information element."""
    if ref_bits == 16:
        ie = bytes([0x08, 4, reference >> 8, reference & 0xFF, total, seq])
    else:
        ie = bytes([0x00, 3, reference, total, seq])
    return bytes([len(ie)]) + ie


def deliver_hex(body: bytes, udh: bytes = b"", sender: str = SENDER) -> str:
    """One SMS-DELIVER (hex, SMSC included) with a UCS-2 ``body`` of raw UTF-16BE units."""
    first = FIRST_DELIVER | (UDHI if udh else 0)
    ud = udh + body
    assert len(ud) <= 140, "TP-UD is at most 140 octets"
    tpdu = (
        bytes([first])
        + _address(sender)
        + bytes([0x00, DCS_UCS2])
        + SCTS_OCTETS
        + bytes([len(ud)])
        + ud
    )
    return (_smsc() + tpdu).hex().upper()


def utf16_units(text: str) -> bytes:
    return text.encode("utf-16-be")


def cut_units(text: str, ref_bits: int = 8) -> list[bytes]:
    """The UCS-2 bodies of ``text`` cut every 67 (66) units, pairs or not."""
    units = utf16_units(text)
    if len(units) // 2 <= SINGLE_UNITS:
        return [units]
    step = UNITS_PER_PART[ref_bits] * 2
    return [units[i : i + step] for i in range(0, len(units), step)]


def foreign_parts(
    text: str, *, reference: int = 0x5A, ref_bits: int = 8, sender: str = SENDER
) -> list[str]:
    """The PDUs (hex) a fixed-unit splitter sends for ``text``, in part order."""
    bodies = cut_units(text, ref_bits)
    if len(bodies) == 1:
        return [deliver_hex(bodies[0], sender=sender)]
    assert len(bodies) <= 255, "the concatenation IE counts parts in one octet"
    return [
        deliver_hex(body, concat_udh(reference, len(bodies), seq, ref_bits), sender)
        for seq, body in enumerate(bodies, start=1)
    ]


def split_seams(text: str, ref_bits: int = 8) -> list[bool]:
    """For each seam between parts: does it fall inside a surrogate pair?"""
    bodies = cut_units(text, ref_bits)
    return [0xD800 <= int.from_bytes(b[-2:], "big") <= 0xDBFF for b in bodies[:-1]]
