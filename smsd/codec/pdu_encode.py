"""Encoding SMS-SUBMIT, SMS-DELIVER and SMS-STATUS-REPORT, and planning the parts."""

from __future__ import annotations

import bisect
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta

from gsmmodem import pdu as _gsmmodem_pdu

from smsd.codec import gsm7
from smsd.codec.tpdu import (
    _ALPHA_MAX_CHARS,
    _LONE_SURROGATE,
    _NUMBER_RE,
    _SMSC_MAX_OCTETS,
    GSM7_PART_SEPTETS,
    IEI_CONCAT_8,
    IEI_CONCAT_16,
    MAX_GSM7_SEPTETS,
    MAX_PARTS,
    MAX_UCS2_UNITS,
    TOA_ALPHANUMERIC,
    TOA_INTERNATIONAL,
    TOA_NATIONAL,
    TOA_UNKNOWN,
    UCS2_PART_UNITS,
    Encoding,
    SubmitPdu,
)
from smsd.errors import PduError

# --------------------------------------------------------------- planning


def _ucs2_units(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


def _split(text: str, limit: int, cost: Callable[[str], int]) -> list[str]:
    """Cut ``text`` into chunks of at most ``limit`` units, never inside a character.

    Because a character's cost covers its whole ESC pair or surrogate pair,
    cutting between characters never splits one.
    """
    chunks: list[str] = []
    start = 0
    used = 0
    for i, ch in enumerate(text):
        c = cost(ch)
        if used + c > limit:
            chunks.append(text[start:i])
            start = i
            used = 0
        used += c
    chunks.append(text[start:])
    return chunks


def _chunks(text: str, ref_bits: int) -> tuple[Encoding, list[str]]:
    lone = _LONE_SURROGATE.search(text)
    if lone is not None:
        # Only reachable from broken input (JSON "\\ud83d" escapes): no
        # alphabet can send it, so refuse before anything is stored or sent.
        raise PduError(
            f"text has a lone UTF-16 surrogate U+{ord(lone.group()):04X} at {lone.start()}"
        )
    if gsm7.is_gsm7(text):
        if gsm7.septet_count(text) <= MAX_GSM7_SEPTETS:
            return "gsm7", [text]
        return "gsm7", _split(text, GSM7_PART_SEPTETS[ref_bits], gsm7.char_septets)
    units = sum(_ucs2_units(ch) for ch in text)
    if units <= MAX_UCS2_UNITS:
        return "ucs2", [text]
    return "ucs2", _split(text, UCS2_PART_UNITS[ref_bits], _ucs2_units)


def plan(text: str) -> tuple[Encoding, int]:
    """Encoding and number of parts ``encode_submit`` will use (8-bit reference).

    Raises PduError for text no SMS can carry (a lone surrogate), so that
    callers counting segments refuse it before it is stored.
    """
    encoding, chunks = _chunks(text, 8)
    return encoding, len(chunks)


# --------------------------------------------------------------- encoding


# Swaps the two nibbles of an octet: BCD digits are sent low nibble first.
_SWAP_NIBBLES = bytes(((b & 0x0F) << 4) | (b >> 4) for b in range(256))


def _semi_octets(digits: str) -> bytes:
    """Decimal digits as swapped BCD, an odd count padded with the 0xF filler."""
    if len(digits) % 2:
        digits += "F"
    return bytes.fromhex(digits).translate(_SWAP_NIBBLES)


def _check_number(number: str, what: str) -> str:
    if not _NUMBER_RE.fullmatch(number):
        raise PduError(f"{what} {number!r} is not '+' and digits or digits (1..20 digits)")
    return number


def _encode_number_address(number: str, national_toa: int) -> bytes:
    """TP-DA/TP-OA for a phone number: digit count, TOA, BCD digits."""
    _check_number(number, "address")
    if number.startswith("+"):
        digits, toa = number[1:], TOA_INTERNATIONAL
    else:
        digits, toa = number, national_toa
    return bytes([len(digits), toa]) + _semi_octets(digits)


def _encode_alpha_address(name: str) -> bytes:
    """TP-OA with TON 101: GSM-7 packed; length in useful semi-octets."""
    try:
        septets = gsm7.encode_septets(name)
    except ValueError as exc:
        raise PduError(f"alphanumeric sender {name!r}: {exc}") from None
    if not 1 <= len(septets) <= _ALPHA_MAX_CHARS:
        raise PduError(f"alphanumeric sender {name!r} must be 1..{_ALPHA_MAX_CHARS} septets")
    packed = gsm7.pack_septets(septets)
    return bytes([(len(septets) * 7 + 3) // 4, TOA_ALPHANUMERIC]) + packed


def _encode_smsc(smsc: str | None) -> bytes:
    if smsc is None or smsc == "":
        return b"\x00"
    _check_number(smsc, "SMSC")
    if smsc.startswith("+"):
        digits, toa = smsc[1:], TOA_INTERNATIONAL
    else:
        digits, toa = smsc, TOA_UNKNOWN
    body = bytes([toa]) + _semi_octets(digits)
    if len(body) > _SMSC_MAX_OCTETS:
        raise PduError(f"SMSC {smsc!r} is longer than {_SMSC_MAX_OCTETS - 1} octets of digits")
    return bytes([len(body)]) + body


def _vp_minutes(tp_vp: int) -> int:
    period: timedelta = _gsmmodem_pdu._decodeRelativeValidityPeriod(tp_vp)
    return int(period.total_seconds()) // 60


# Minutes for each TP-VP octet, increasing: 5 min steps to 12 h, 30 min to 24 h,
# days to 30 days, weeks to 63 weeks.
_VP_MINUTES = tuple(_vp_minutes(v) for v in range(256))


def _validity_octet(minutes: int) -> int:
    """TP-VP relative format: the shortest period not shorter than asked, capped."""
    if minutes <= 0:
        raise PduError(f"validity of {minutes} minutes must be positive")
    return min(bisect.bisect_left(_VP_MINUTES, minutes), 255)


def _concat_udh(reference: int, parts: int, part: int, ref_bits: int) -> bytes:
    if ref_bits == 16:
        ie = bytes([IEI_CONCAT_16, 4, reference >> 8, reference & 0xFF, parts, part])
    else:
        ie = bytes([IEI_CONCAT_8, 3, reference, parts, part])
    return bytes([len(ie)]) + ie


def _user_data(text: str, encoding: Encoding, udh: bytes) -> tuple[int, bytes]:
    """TP-UDL and TP-UD for ``text`` after the (possibly empty) header ``udh``.

    For GSM-7 the length counts septets, header and fill bits included
    (TS 23.040 9.2.3.16); extension characters are two septets each.
    """
    if encoding == "gsm7":
        septets = gsm7.septet_bytes(text)
        header_bits = len(udh) * 8
        fill = (7 - header_bits % 7) % 7
        header_septets = (header_bits + fill) // 7
        return header_septets + len(septets), udh + gsm7.pack_septets(septets, fill)
    body = text.encode("utf-16-be")
    return len(udh) + len(body), udh + body


def _scts(ts: datetime) -> bytes:
    """TP-SCTS (TS 23.040 9.2.3.11): swapped BCD, time zone in signed quarter hours."""
    offset = ts.utcoffset()
    if offset is None:
        raise PduError(f"timestamp {ts.isoformat()} has no time zone")
    quarters = int(offset.total_seconds()) // 900
    if abs(quarters) > 79:
        raise PduError(f"time zone offset {offset} cannot be encoded")
    if not 2000 <= ts.year <= 2089:
        raise PduError(f"year {ts.year} cannot be encoded (2000..2089)")
    digits = "".join(
        f"{v:02d}" for v in (ts.year % 100, ts.month, ts.day, ts.hour, ts.minute, ts.second)
    )
    out = bytearray(_semi_octets(digits))
    q = abs(quarters)
    tz = ((q % 10) << 4) | (q // 10)
    if quarters < 0:
        tz |= 0x08
    out.append(tz)
    return bytes(out)


def _references(reference: int, ref16: bool) -> int:
    bits = 16 if ref16 else 8
    if not 0 <= reference < (1 << bits):
        raise PduError(f"concatenation reference {reference} does not fit {bits} bits")
    return bits


def encode_submit(
    number: str,
    text: str,
    *,
    reference: int = 0,
    request_report: bool = True,
    smsc: str | None = None,
    validity_minutes: int | None = None,
    ref16: bool = False,
) -> list[SubmitPdu]:
    """SMS-SUBMIT PDUs for ``text`` to ``number``, one per part."""
    ref_bits = _references(reference, ref16)
    smsc_field = _encode_smsc(smsc)
    address = _encode_number_address(number, TOA_UNKNOWN)
    encoding, chunks = _chunks(text, ref_bits)
    parts = len(chunks)
    if parts > MAX_PARTS:
        raise PduError(f"text needs {parts} parts, at most {MAX_PARTS} can be concatenated")
    vp = None if validity_minutes is None else _validity_octet(validity_minutes)
    dcs = 0x00 if encoding == "gsm7" else 0x08
    out: list[SubmitPdu] = []
    for index, chunk in enumerate(chunks, start=1):
        udh = _concat_udh(reference, parts, index, ref_bits) if parts > 1 else b""
        first = 0x01  # TP-MTI SMS-SUBMIT, TP-RD 0
        if vp is not None:
            first |= 0x10  # TP-VPF relative
        if request_report:
            first |= 0x20  # TP-SRR
        if udh:
            first |= 0x40  # TP-UDHI
        udl, ud = _user_data(chunk, encoding, udh)
        tpdu = bytearray([first, 0x00])  # TP-MR 0: the modem assigns it
        tpdu += address
        tpdu += bytes([0x00, dcs])  # TP-PID, TP-DCS
        if vp is not None:
            tpdu.append(vp)
        tpdu.append(udl)
        tpdu += ud
        out.append(
            SubmitPdu(
                hex=(smsc_field + tpdu).hex().upper(),
                tpdu_length=len(tpdu),
                part=index,
                parts=parts,
                reference=reference if parts > 1 else None,
                encoding=encoding,
                text=chunk,
                number=number,
                request_report=request_report,
                ref_bits=ref_bits if parts > 1 else 0,
                message_reference=0,
                validity_minutes=None if vp is None else _VP_MINUTES[vp],
            )
        )
    return out


def encode_deliver(
    sender: str,
    text: str,
    *,
    timestamp: datetime,
    smsc: str = "+447785016005",
    reference: int | None = None,
    ref16: bool = False,
) -> list[str]:
    """SMS-DELIVER PDUs (hex, SMSC included) as a network delivers ``text``.

    ``sender`` is "+E.164", national digits, or an alphanumeric name.  Without
    a ``reference``, a multipart text gets one derived from its content so
    that two different texts from one sender do not share it.
    """
    if _NUMBER_RE.fullmatch(sender):
        address = _encode_number_address(sender, TOA_NATIONAL)
    else:
        address = _encode_alpha_address(sender)
    smsc_field = _encode_smsc(smsc)
    ts = _scts(timestamp)
    ref_bits = 16 if ref16 else 8
    encoding, chunks = _chunks(text, ref_bits)
    parts = len(chunks)
    if parts > MAX_PARTS:
        raise PduError(f"text needs {parts} parts, at most {MAX_PARTS} can be concatenated")
    if reference is None:
        seed = f"{sender}\0{text}\0{timestamp.isoformat()}".encode("utf-8", "surrogatepass")
        reference = zlib.crc32(seed) & ((1 << ref_bits) - 1)
    _references(reference, ref16)
    dcs = 0x00 if encoding == "gsm7" else 0x08
    out: list[str] = []
    for index, chunk in enumerate(chunks, start=1):
        udh = _concat_udh(reference, parts, index, ref_bits) if parts > 1 else b""
        first = 0x04  # TP-MTI SMS-DELIVER, TP-MMS: no more messages waiting
        if udh:
            first |= 0x40
        udl, ud = _user_data(chunk, encoding, udh)
        tpdu = bytes([first]) + address + bytes([0x00, dcs]) + ts + bytes([udl]) + ud
        out.append((smsc_field + tpdu).hex().upper())
    return out


def encode_status_report(
    message_reference: int,
    recipient: str,
    *,
    status: int = 0,
    scts: datetime,
    discharge: datetime,
    smsc: str = "+447785016005",
) -> str:
    """An SMS-STATUS-REPORT (hex, SMSC included) for the SUBMIT with TP-MR ``message_reference``."""
    if not 0 <= message_reference <= 0xFF:
        raise PduError(f"message reference {message_reference} is not 0..255")
    if not 0 <= status <= 0xFF:
        raise PduError(f"status {status} is not 0..255")
    tpdu = (
        bytes([0x06, message_reference])  # TP-MTI STATUS-REPORT, TP-MMS
        + _encode_number_address(recipient, TOA_UNKNOWN)
        + _scts(scts)
        + _scts(discharge)
        + bytes([status])
    )
    return (_encode_smsc(smsc) + tpdu).hex().upper()

