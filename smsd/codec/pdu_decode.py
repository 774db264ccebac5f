"""Decoding a PDU a modem reports, with a bounds check on every field."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from smsd.codec import gsm7
from smsd.codec.pdu_encode import (
    _VP_MINUTES,
)
from smsd.codec.tpdu import (
    _ADDRESS_MAX_DIGITS,
    _SEMI_OCTET,
    _SMSC_MAX_OCTETS,
    HIGH_SURROGATES,
    IEI_CONCAT_8,
    IEI_CONCAT_16,
    LOW_SURROGATES,
    MAX_GSM7_SEPTETS,
    MAX_UD_OCTETS,
    TON_ALPHANUMERIC,
    TON_INTERNATIONAL,
    DeliverPdu,
    Encoding,
    StatusReportPdu,
    SubmitPdu,
    is_hex_pdu,
)
from smsd.errors import PduError

# --------------------------------------------------------------- decoding


class _Reader:
    """Bounds-checked cursor over the PDU octets; every overrun is a PduError."""

    def __init__(self, data: bytes, hex_pdu: str) -> None:
        self.data = data
        self.pos = 0
        self.hex = hex_pdu

    def fail(self, why: str) -> PduError:
        return PduError(f"malformed PDU at octet {self.pos}: {why}", pdu=self.hex)

    def octet(self, what: str) -> int:
        if self.pos >= len(self.data):
            raise self.fail(f"ends before {what}")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail(f"{what} needs {n} octets, {len(self.data) - self.pos} left")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk


# Nibble swap (BCD digits come low nibble first) and, after bytes.hex(), the
# semi-octet characters that are not hex digits' own (TS 23.040 9.1.2.3):
# C-level lookups instead of a loop per nibble (issue 17).
_SWAP_NIBBLES = bytes(((b & 0x0F) << 4) | (b >> 4) for b in range(256))
_HEX_TO_SEMI = str.maketrans({"abcde"[i]: _SEMI_OCTET[10 + i] for i in range(5)})


def _digits(data: bytes, count: int | None, r: _Reader, what: str) -> str:
    """Swapped-nibble digits; without ``count`` only the very last nibble may be the filler."""
    nibbles = data.translate(_SWAP_NIBBLES).hex()     # one hex digit per nibble, in order
    if count is None:
        count = len(nibbles) - 1 if nibbles.endswith("f") else len(nibbles)
    digits = nibbles[:count]
    if "f" in digits:
        raise r.fail(f"{what} has a filler nibble inside its digits")
    return digits if digits.isdigit() else digits.translate(_HEX_TO_SEMI)


def _read_smsc(r: _Reader) -> str | None:
    length = r.octet("the SMSC length")
    if length == 0:
        return None
    if length > _SMSC_MAX_OCTETS:
        raise r.fail(f"SMSC length {length} exceeds {_SMSC_MAX_OCTETS} octets")
    body = r.take(length, "the SMSC address")
    toa = body[0]
    digits = _digits(body[1:], None, r, "the SMSC address")
    if (toa >> 4) & 0x07 == TON_INTERNATIONAL and digits:
        return "+" + digits
    return digits


def _read_address(r: _Reader, what: str) -> str:
    data, pos = r.data, r.pos
    if pos + 2 > len(data):      # the messages are only formatted for an error
        r.octet(f"the {what} length")
        r.octet(f"the {what} type")
    length, toa = data[pos], data[pos + 1]
    r.pos = pos + 2
    if length > _ADDRESS_MAX_DIGITS:
        raise r.fail(f"{what} length {length} exceeds {_ADDRESS_MAX_DIGITS} semi-octets")
    body = r.take((length + 1) // 2, f"the {what}")
    ton = (toa >> 4) & 0x07
    if ton == TON_ALPHANUMERIC:
        count = length * 4 // 7
        try:
            return gsm7.decode_septets(gsm7.unpack_septets(body, count))
        except ValueError as exc:
            raise r.fail(f"alphanumeric {what}: {exc}") from None
    digits = _digits(body, length, r, what)
    if ton == TON_INTERNATIONAL and digits:
        return "+" + digits
    return digits


# TP-SCTS time zone octets seen so far -> their tzinfo (a handful in practice).
_ZONES: dict[int, timezone] = {}


def _read_scts(r: _Reader, what: str) -> datetime:
    raw = r.take(7, what)
    digits = raw[:6].translate(_SWAP_NIBBLES).hex()
    if not digits.isdigit():
        for octet in raw[:6]:
            if octet & 0x0F > 9 or octet >> 4 > 9:
                raise r.fail(f"{what} has a non-decimal digit ({octet:02X})")
    tz = raw[6]
    zone = _ZONES.get(tz)
    if zone is None:
        tens, units = tz & 0x07, tz >> 4
        if units > 9:
            raise r.fail(f"{what} time zone has a non-decimal digit ({tz:02X})")
        offset = timedelta(minutes=15 * (tens * 10 + units))
        zone = _ZONES[tz] = timezone(-offset if tz & 0x08 else offset)
    yy = int(digits[0:2])
    year = 2000 + yy if yy < 90 else 1900 + yy
    try:
        return datetime(year, int(digits[2:4]), int(digits[4:6]), int(digits[6:8]),
                        int(digits[8:10]), int(digits[10:12]), tzinfo=zone)
    except ValueError as exc:
        raise r.fail(f"{what} is not a valid time: {exc}") from None


def _dcs_encoding(dcs: int) -> Encoding:
    """TS 23.038 4: the alphabet of the data coding scheme; reserved means GSM-7."""
    group = dcs >> 4
    if group <= 0x7:  # general data coding (bit 6 = automatic deletion)
        if dcs & 0x20:
            return "8bit"  # compressed: we cannot decompress, keep the octets
        alphabet = (dcs >> 2) & 0x03
        if alphabet == 1:
            return "8bit"
        if alphabet == 2:
            return "ucs2"
        return "gsm7"  # 0 is GSM-7; 3 is reserved, read as GSM-7
    if group in (0xC, 0xD):
        return "gsm7"  # message waiting indication
    if group == 0xE:
        return "ucs2"
    if group == 0xF:
        return "8bit" if dcs & 0x04 else "gsm7"
    return "gsm7"


@dataclass(frozen=True)
class _UserData:
    text: str
    reference: int | None
    part: int
    parts: int
    ref_bits: int
    split_high: int | None = None
    split_low: int | None = None




def _decode_ucs2(body: bytes) -> tuple[str, int | None, int | None]:
    """Text of a UCS-2 body, and the lone surrogate halves at its two ends.

    Every lone surrogate becomes U+FFFD in the text, wherever it is, so the
    text is always encodable.  Only a half at an edge of the body can be the
    rest of a pair cut by the sender at a part boundary: a high surrogate in
    the last unit, a low surrogate in the first.  Those units are returned so
    that reassembly can join them; one inside the body is simply broken.
    """
    text = body.decode("utf-16-be", errors="replace")
    if not body:
        return text, None, None
    first = int.from_bytes(body[:2], "big")
    last = int.from_bytes(body[-2:], "big")
    split_low = first if first in LOW_SURROGATES else None
    split_high = last if last in HIGH_SURROGATES else None
    return text, split_high, split_low


def _read_user_data(r: _Reader, udhi: bool, encoding: Encoding) -> _UserData:
    udl = r.octet("TP-UDL")
    ud = r.rest()
    if encoding == "gsm7":
        if udl > MAX_GSM7_SEPTETS:
            raise r.fail(f"TP-UDL {udl} exceeds {MAX_GSM7_SEPTETS} septets")
        needed = gsm7.packed_length(udl)
    else:
        if udl > MAX_UD_OCTETS:
            raise r.fail(f"TP-UDL {udl} exceeds {MAX_UD_OCTETS} octets")
        needed = udl
    if len(ud) < needed:
        raise r.fail(f"TP-UDL {udl} needs {needed} octets of user data, {len(ud)} present")
    ud = ud[:needed]
    reference: int | None = None
    part, parts, ref_bits = 1, 1, 0
    split_high: int | None = None
    split_low: int | None = None
    header_len = 0
    if udhi:
        if not ud:
            raise r.fail("TP-UDHI set but there is no user data header")
        header_len = ud[0] + 1
        if header_len > len(ud):
            raise r.fail(f"user data header of {header_len} octets exceeds the user data")
        header = ud[1:header_len]
        i = 0
        while i < len(header):
            if i + 2 > len(header):
                raise r.fail("truncated information element in the user data header")
            iei, ie_len = header[i], header[i + 1]
            data = header[i + 2 : i + 2 + ie_len]
            if len(data) != ie_len:
                raise r.fail(f"information element {iei:02X} overruns the user data header")
            i += 2 + ie_len
            # TS 23.040 9.2.3.24.1/.8: a zero count/number or a number beyond the
            # count means the receiver ignores the element.
            if iei == IEI_CONCAT_8 and ie_len == 3 and 0 < data[2] <= data[1]:
                reference, parts, part, ref_bits = data[0], data[1], data[2], 8
            elif iei == IEI_CONCAT_16 and ie_len == 4 and 0 < data[3] <= data[2]:
                reference, parts, part, ref_bits = (data[0] << 8) | data[1], data[2], data[3], 16
    if encoding == "gsm7":
        header_bits = header_len * 8
        header_septets = (header_bits + 6) // 7
        if header_septets > udl:
            raise r.fail(f"user data header is longer than TP-UDL {udl} septets")
        fill = header_septets * 7 - header_bits
        body = ud[header_len:]
        count = udl - header_septets
        try:
            text = gsm7.decode_septets(gsm7.unpack_septets(body, count, fill))
        except ValueError as exc:
            raise r.fail(f"GSM-7 user data: {exc}") from None
    elif encoding == "ucs2":
        body = ud[header_len:]
        if len(body) % 2:
            raise r.fail(f"UCS-2 user data has an odd length ({len(body)} octets)")
        text, split_high, split_low = _decode_ucs2(body)
    else:
        text = ud[header_len:].decode("latin-1")
    return _UserData(text, reference, part, parts, ref_bits, split_high, split_low)


def _decode_deliver(r: _Reader, first: int, smsc: str | None) -> DeliverPdu:
    sender = _read_address(r, "originating address")
    r.octet("TP-PID")
    encoding = _dcs_encoding(r.octet("TP-DCS"))
    timestamp = _read_scts(r, "TP-SCTS")
    ud = _read_user_data(r, bool(first & 0x40), encoding)
    return DeliverPdu(
        sender=sender,
        text=ud.text,
        timestamp=timestamp,
        smsc=smsc,
        reference=ud.reference,
        part=ud.part,
        parts=ud.parts,
        ref_bits=ud.ref_bits,
        encoding=encoding,
        status_report_indication=bool(first & 0x20),
        split_high=ud.split_high,
        split_low=ud.split_low,
    )


def _decode_submit(r: _Reader, first: int, smsc_octets: int) -> SubmitPdu:
    mr = r.octet("TP-MR")
    number = _read_address(r, "destination address")
    r.octet("TP-PID")
    encoding = _dcs_encoding(r.octet("TP-DCS"))
    vpf = (first >> 3) & 0x03
    validity: int | None = None
    if vpf == 0b10:
        validity = _VP_MINUTES[r.octet("TP-VP")]
    elif vpf in (0b01, 0b11):
        r.take(7, "TP-VP")  # enhanced or absolute format: not used by smsd
    ud = _read_user_data(r, bool(first & 0x40), encoding)
    return SubmitPdu(
        hex=r.hex,
        tpdu_length=len(r.data) - smsc_octets,
        part=ud.part,
        parts=ud.parts,
        reference=ud.reference,
        encoding=encoding,
        text=ud.text,
        number=number,
        request_report=bool(first & 0x20),
        ref_bits=ud.ref_bits,
        message_reference=mr,
        validity_minutes=validity,
    )


def _decode_status_report(r: _Reader) -> StatusReportPdu:
    mr = r.octet("TP-MR")
    recipient = _read_address(r, "recipient address")
    scts = _read_scts(r, "TP-SCTS")
    discharge = _read_scts(r, "TP-DT")
    status = r.octet("TP-ST")
    # TP-PI and the optional parameters after it carry nothing smsd uses.
    return StatusReportPdu(
        message_reference=mr, recipient=recipient, status=status, scts=scts, discharge=discharge
    )


def decode(hex_pdu: str, *, smsc_included: bool = True) -> DeliverPdu | StatusReportPdu | SubmitPdu:
    """Decode a PDU as a modem reports it (``+CMGL``/``+CMGR``/``+CMT``/``+CDS``).

    Raises ``PduError`` (with ``.pdu``) for anything malformed, and nothing else.
    """
    if not isinstance(hex_pdu, str):
        raise PduError(f"PDU must be a hex string, not {type(hex_pdu).__name__}")
    cleaned = hex_pdu.strip()
    if not is_hex_pdu(cleaned):
        raise PduError("PDU is not an even-length, non-empty hex string", pdu=hex_pdu)
    normalised = cleaned.upper()
    if not smsc_included:
        normalised = "00" + normalised
    r = _Reader(bytes.fromhex(normalised), normalised)
    smsc = _read_smsc(r)
    smsc_octets = r.pos
    first = r.octet("the first TPDU octet")
    mti = first & 0x03
    if mti == 0b00:
        return _decode_deliver(r, first, smsc)
    if mti == 0b01:
        return _decode_submit(r, first, smsc_octets)
    if mti == 0b10:
        return _decode_status_report(r)
    raise r.fail(f"reserved message type indicator in first octet {first:02X}")
