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

from smsd.codec.pdu_decode import decode
from smsd.codec.pdu_encode import (
    encode_deliver,
    encode_status_report,
    encode_submit,
    plan,
)
from smsd.codec.tpdu import (
    GSM7_PART_SEPTETS,
    HIGH_SURROGATES,
    IEI_CONCAT_8,
    IEI_CONCAT_16,
    LOW_SURROGATES,
    MAX_GSM7_SEPTETS,
    MAX_PARTS,
    MAX_UCS2_UNITS,
    MAX_UD_OCTETS,
    TOA_ALPHANUMERIC,
    TOA_INTERNATIONAL,
    TOA_NATIONAL,
    TOA_UNKNOWN,
    TON_ALPHANUMERIC,
    TON_INTERNATIONAL,
    UCS2_PART_UNITS,
    DeliverPdu,
    Encoding,
    StatusReportPdu,
    SubmitPdu,
)

__all__ = [
    "GSM7_PART_SEPTETS",
    "HIGH_SURROGATES",
    "IEI_CONCAT_8",
    "IEI_CONCAT_16",
    "LOW_SURROGATES",
    "MAX_GSM7_SEPTETS",
    "MAX_PARTS",
    "MAX_UCS2_UNITS",
    "MAX_UD_OCTETS",
    "TOA_ALPHANUMERIC",
    "TOA_INTERNATIONAL",
    "TOA_NATIONAL",
    "TOA_UNKNOWN",
    "TON_ALPHANUMERIC",
    "TON_INTERNATIONAL",
    "UCS2_PART_UNITS",
    "DeliverPdu",
    "Encoding",
    "StatusReportPdu",
    "SubmitPdu",
    "decode",
    "encode_deliver",
    "encode_status_report",
    "encode_submit",
    "plan",
]
