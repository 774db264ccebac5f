"""The TPDU shapes and limits (3GPP TS 23.040) that encoder and decoder share."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

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
# Hex digits only; the even length is checked apart (is_hex_pdu): a class is
# matched in C, a repeated group ``(?:..{2})+`` was three times slower per PDU.
_HEX_RE = re.compile(r"[0-9A-Fa-f]+")


def is_hex_pdu(text: str) -> bool:
    """A non-empty, even-length string of hex digits and nothing else."""
    return len(text) % 2 == 0 and _HEX_RE.fullmatch(text) is not None
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


HIGH_SURROGATES = range(0xD800, 0xDC00)
LOW_SURROGATES = range(0xDC00, 0xE000)
