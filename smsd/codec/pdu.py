"""SMS TPDUs (3GPP TS 23.040) in PDU mode (TS 27.005): encode and decode.

This is the one place that knows the byte layout of SMS-SUBMIT, SMS-DELIVER
and SMS-STATUS-REPORT.  The modem device sends what ``encode_submit`` builds,
and hands every PDU a modem reports to ``decode``; the simulator and the test
fakes build what a network would deliver with ``encode_deliver`` and
``encode_status_report``.

Why the codec is our own rather than ``gsmmodem.pdu`` (python-gsmmodem-new):
this module still imports it for the relative validity-period table
(TS 23.040 9.2.3.12.1), which it gets right, but its encoder and decoder lose
messages (checked against python-gsmmodem-new 0.13):

* its encoder raises ``ValueError`` on any character outside the Basic
  Multilingual Plane (emoji), and cuts UCS-2 parts by code points, not by
  UTF-16 units;
* its decoder lets ``StopIteration`` escape on truncated input, does not
  check UDH, address or user-data lengths, and returns emoji as two lone
  surrogates (which SQLite and JSON then refuse).

``decode`` therefore parses with explicit bounds checks and raises only
``PduError``, which is what the modem device and the inbox rely on.

A note for whoever compares with python-gammu: for GSM-7 text with
extension characters, TP-UDL counts septets (ESC included), as TS 23.040
9.2.3.16 says; ``gammu.DecodePDU`` then returns the right text followed by a
NUL and junk up to TP-UDL characters.  That is python-gammu's buffer, not the
PDU: gammu's own ``EncodePDU`` writes the same length.
"""

from __future__ import annotations

import bisect
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

from gsmmodem import pdu as _gsmmodem_pdu

from smsd.codec import gsm7
from smsd.errors import PduError

Encoding = Literal["gsm7", "ucs2", "8bit"]

# TS 23.040 9.2.3.24: 140 octets of user data; GSM-7 packs 160 septets in it.
MAX_UD_OCTETS = 140
MAX_GSM7_SEPTETS = 160
MAX_UCS2_UNITS = 70
# A concatenation header (UDHL + IE 0x00 of 3 octets = 6 octets) leaves 153
# septets / 67 UCS-2 units; the 16-bit reference IE 0x08 costs one more octet.
GSM7_PART_SEPTETS = {8: 153, 16: 152}
UCS2_PART_UNITS = {8: 67, 16: 66}
MAX_PARTS = 255  # the concatenation IE counts parts in one octet

IEI_CONCAT_8 = 0x00
IEI_CONCAT_16 = 0x08

# TS 23.040 9.1.2.5: type-of-address octets.
TOA_INTERNATIONAL = 0x91
TOA_UNKNOWN = 0x81
TOA_NATIONAL = 0xA1
TOA_ALPHANUMERIC = 0xD0
TON_INTERNATIONAL = 0b001
TON_ALPHANUMERIC = 0b101

_ADDRESS_MAX_DIGITS = 20  # TP-DA/OA: 2..12 octets (TS 23.040 9.1.2.5)
_SMSC_MAX_OCTETS = 11  # RP address: TOA + 10 octets of digits
_ALPHA_MAX_CHARS = 11  # 11 septets fill the 20 semi-octets an address may hold

_NUMBER_RE = re.compile(r"\+?[0-9]{1,20}")
_SEMI_OCTET = "0123456789*#abc"  # TS 23.040 9.1.2.3; 0xF is the filler
_HEX_RE = re.compile(r"(?:[0-9A-Fa-f]{2})+")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class SubmitPdu:
    """One SMS-SUBMIT as handed to ``AT+CMGS``.

    The fields after ``text`` are extra to docs/internals.md; they let the
    simulator and tests read back what a modem was asked to send.
    """

    hex: str
    tpdu_length: int
    part: int
    parts: int
    reference: int | None
    encoding: Encoding
    text: str
    number: str = ""
    request_report: bool = False
    ref_bits: int = 0
    message_reference: int = 0
    validity_minutes: int | None = None


@dataclass(frozen=True)
class DeliverPdu:
    """One SMS-DELIVER as a modem reported it.

    ``split_high`` / ``split_low`` exist because some senders cut UCS-2 parts
    at a fixed 67 (or 66) UTF-16 units and so can cut an emoji's surrogate
    pair in two.  A part's ``text`` must stay valid on its own (it is stored
    as UTF-8 and JSON), so each lone half is U+FFFD there, and the raw code
    unit is kept here: ``split_high`` is a high surrogate that ended this
    part's UCS-2 body, ``split_low`` a low surrogate that began it.
    Reassembly joins them into the real character when the neighbour holds
    the other half.
    """

    sender: str
    text: str
    timestamp: datetime
    smsc: str | None
    reference: int | None
    part: int
    parts: int
    ref_bits: int
    encoding: Encoding
    status_report_indication: bool
    split_high: int | None = None
    split_low: int | None = None


@dataclass(frozen=True)
class StatusReportPdu:
    message_reference: int
    recipient: str
    status: int
    scts: datetime
    discharge: datetime

    @property
    def delivered(self) -> bool:
        """TS 23.040 9.2.3.15: 0x00..0x02 mean the SME received it."""
        return 0x00 <= self.status <= 0x02

    @property
    def final(self) -> bool:
        """False while the SC is still trying (0x20..0x3F, temporary errors)."""
        return not 0x20 <= self.status <= 0x3F


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


def _semi_octets(digits: str) -> bytes:
    if len(digits) % 2:
        digits += "F"
    return bytes(int(digits[i + 1] + digits[i], 16) for i in range(0, len(digits), 2))


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
        septets = gsm7.encode_septets(text)
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


def _digits(data: bytes, count: int | None, r: _Reader, what: str) -> str:
    """Swapped-nibble digits; without ``count`` only the very last nibble may be the filler."""
    nibbles = [n for octet in data for n in (octet & 0x0F, octet >> 4)]
    if count is None:
        count = len(nibbles) - 1 if nibbles and nibbles[-1] == 0x0F else len(nibbles)
    out: list[str] = []
    for nibble in nibbles[:count]:
        if nibble == 0x0F:
            raise r.fail(f"{what} has a filler nibble inside its digits")
        out.append(_SEMI_OCTET[nibble])
    return "".join(out)


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
    length = r.octet(f"the {what} length")
    toa = r.octet(f"the {what} type")
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


def _read_scts(r: _Reader, what: str) -> datetime:
    raw = r.take(7, what)
    values: list[int] = []
    for octet in raw[:6]:
        lo, hi = octet & 0x0F, octet >> 4
        if lo > 9 or hi > 9:
            raise r.fail(f"{what} has a non-decimal digit ({octet:02X})")
        values.append(lo * 10 + hi)
    tz = raw[6]
    tens, units = tz & 0x07, tz >> 4
    if units > 9:
        raise r.fail(f"{what} time zone has a non-decimal digit ({tz:02X})")
    quarters = tens * 10 + units
    offset = timedelta(minutes=15 * quarters)
    if tz & 0x08:
        offset = -offset
    yy, month, day, hour, minute, second = values
    year = 2000 + yy if yy < 90 else 1900 + yy
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
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


HIGH_SURROGATES = range(0xD800, 0xDC00)
LOW_SURROGATES = range(0xDC00, 0xE000)


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
    if not _HEX_RE.fullmatch(cleaned):
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
