"""SMS TPDU codec (smsd.codec.pdu): published vectors, limits, malformed input.

Vectors marked "ModemManager" are real network PDUs from ModemManager's
src/tests/test-sms-part-3gpp.c; "hellohello" is the classic TS 23.040
illustration; the +CDS report is a capture published with its breakdown.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smsd.codec import gsm7, pdu
from smsd.errors import PduError

TZ_M5 = timezone(timedelta(hours=-5))
TZ_P2 = timezone(timedelta(hours=2))


def _bytes(*xs: int) -> str:
    return bytes(xs).hex().upper()


# --------------------------------------------------------------- published vectors

HELLO_DELIVER = "07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37"
HELLO_SUBMIT = "0011000B916407281553F80000AA0AE8329BFD4697D9EC37"
MM_EXTENDED = _bytes(
    0x07, 0x91, 0x21, 0x04, 0x44, 0x29, 0x61, 0xF4, 0x04, 0x0B, 0x91, 0x61, 0x71, 0x95,
    0x72, 0x91, 0xF8, 0x00, 0x00, 0x11, 0x20, 0x82, 0x11, 0x05, 0x05, 0x0A, 0x6A, 0xC8,
    0xB2, 0xBC, 0x7C, 0x9A, 0x83, 0xC2, 0x20, 0xF6, 0xDB, 0x7D, 0x2E, 0xCB, 0x41, 0xED,
    0xF2, 0x7C, 0x1E, 0x3E, 0x97, 0x41, 0x1B, 0xDE, 0x06, 0x75, 0x4F, 0xD3, 0xD1, 0xA0,
    0xF9, 0xBB, 0x5D, 0x06, 0x95, 0xF1, 0xF4, 0xB2, 0x9B, 0x5C, 0x26, 0x83, 0xC6, 0xE8,
    0xB0, 0x3C, 0x3C, 0xA6, 0x97, 0xE5, 0xF3, 0x4D, 0x6A, 0xE3, 0x03, 0xD1, 0xD1, 0xF2,
    0xF7, 0xDD, 0x0D, 0x4A, 0xBB, 0x59, 0xA0, 0x79, 0x7D, 0x8C, 0x06, 0x85, 0xE7, 0xA0,
    0x00, 0x28, 0xEC, 0x26, 0x83, 0x2A, 0x96, 0x0B, 0x28, 0xEC, 0x26, 0x83, 0xBE, 0x60,
    0x50, 0x78, 0x0E, 0xBA, 0x97, 0xD9, 0x6C, 0x17,
)  # fmt: skip
MM_ALPHANUMERIC = _bytes(
    0x07, 0x91, 0x97, 0x30, 0x07, 0x11, 0x11, 0xF1, 0x04, 0x14, 0xD0, 0x49, 0x37, 0xBD,
    0x2C, 0x77, 0x97, 0xE9, 0xD3, 0xE6, 0x14, 0x00, 0x08, 0x11, 0x30, 0x92, 0x91, 0x02,
    0x40, 0x61, 0x08, 0x04, 0x42, 0x04, 0x35, 0x04, 0x41, 0x04, 0x42,
)  # fmt: skip
MM_NATIONAL = "07912143658709F1040B818100551512F20000111010214365000AE8329BFD4697D9EC37"
MM_UDH16 = (
    "07911356131313F64004850120390011609232239180A006080400100201D7327BFD6EB340E232"
    "1BF46E83EA7790F59D1E97DBE1341B442F83C465763D3DA797E56537C81D0ECB41AB59CC1693C1"
    "6031D96C064241E5656838AF03A96230982A269BCD462917C8FA4E8FCBED709A0D7ABBE9F6B0FB"
    "5C7683D27350984D4FABC9A0B33C4C4FCF5D20EBFB2D079DCB62793DBD06D9C36E50FB2D4E97D9"
    "A0B49B5E96BBCB"
)
MM_MULTIPART_1 = (
    "07912160130320F5440B916171056429F5000021405291650569A00500034C0201A9E8F41C949E"
    "83C2207B599E07B1DFEE33885E9ED341E4F23C7D7697C920FA1B54C697E5E3F4BC0C6AD7D9F434"
    "081E96D341E3303C2C4EB3D3F4BC0B94A483E6E8779D4D06CDD1EF3BA80E0785E7A0B7BB0C6A97"
    "E7F3F0B9CC02B9DF7450780EA2DFDF2C50780EA2A3CBA0BA9B5C96B3F369F71954768FDFE4B4FB"
    "0C9297E1F2F2BCECA6CF41"
)
MM_MULTIPART_2 = (
    "07912160130320F6440B916171056429F5000021405291651569320500034C0202E9E8301D4447"
    "9741F0B09C3E0785E56590BCCC0ED3CB6410FD0D7ABBCBA0B0FB4D4797E52E10"
)
MM_SUBMIT_UCS2 = (
    "002100098136397339F70008224F60597D4F60597D4F60597D4F60597D4F60597D4F60597D4F60597D4F60597D4F60"
)
MM_STATUS_REPORT = "07914356060013F1065A098136397339F7219011700463802190117004638030"
CDS_NO_SMSC = "06000B910221815716F2709021510121807090215101718000"


class TestPublishedVectors:
    def test_hellohello_deliver(self) -> None:
        """The classic DELIVER: SMSC, subscriber-number sender, +2 h SCTS, 'hellohello'."""
        d = pdu.decode(HELLO_DELIVER)
        assert isinstance(d, pdu.DeliverPdu)
        assert d.smsc == "+27381000015"
        assert d.sender == "27838890001"
        assert d.text == "hellohello"
        assert d.timestamp == datetime(1999, 3, 29, 15, 16, 59, tzinfo=TZ_P2)
        assert (d.parts, d.part, d.reference, d.ref_bits) == (1, 1, None, 0)
        assert d.encoding == "gsm7"

    def test_hellohello_submit(self) -> None:
        """The classic SUBMIT: international destination, relative validity AA = 4 days."""
        s = pdu.decode(HELLO_SUBMIT)
        assert isinstance(s, pdu.SubmitPdu)
        assert s.number == "+46708251358"
        assert s.text == "hellohello"
        assert s.validity_minutes == 4 * 24 * 60
        assert s.tpdu_length == 23
        assert not s.request_report

    def test_extension_characters_from_a_network(self) -> None:
        """A one-part GSM-7 text full of extension characters decodes exactly (ModemManager)."""
        d = pdu.decode(MM_EXTENDED)
        assert isinstance(d, pdu.DeliverPdu)
        assert d.text == (
            "Here's a longer message [{with some extended characters}] "
            "thrown in, such as £ and ΩΠΨ and §¿ as well."
        )
        assert d.sender == "+16175927198"
        assert d.timestamp == datetime(2011, 2, 28, 11, 50, 50, tzinfo=TZ_M5)

    def test_alphanumeric_sender(self) -> None:
        """TON 101 'InternetSMS' (20 semi-octets = 11 septets), UCS-2 text (ModemManager)."""
        d = pdu.decode(MM_ALPHANUMERIC)
        assert isinstance(d, pdu.DeliverPdu)
        assert d.sender == "InternetSMS"
        assert d.text == "тест"
        assert d.encoding == "ucs2"
        assert d.smsc == "+79037011111"
        assert d.timestamp == datetime(2011, 3, 29, 19, 20, 4, tzinfo=timezone(timedelta(hours=4)))

    def test_national_sender_has_no_plus(self) -> None:
        """TOA 0x81 (unknown TON) gives the digits without '+' (ModemManager)."""
        d = pdu.decode(MM_NATIONAL)
        assert isinstance(d, pdu.DeliverPdu)
        assert d.sender == "18005551212"
        assert d.text == "hellohello"

    def test_sixteen_bit_reference_from_a_network(self) -> None:
        """KPN's welcome message uses IE 0x08: reference 0x0010, part 1 of 2 (ModemManager)."""
        d = pdu.decode(MM_UDH16)
        assert isinstance(d, pdu.DeliverPdu)
        assert (d.reference, d.part, d.parts, d.ref_bits) == (0x0010, 1, 2, 16)
        assert d.sender == "1002"
        assert d.text.startswith("Welkom, bel om uw Voicemail")
        assert d.text.endswith("Voor gebruik van mobiel interne")

    def test_eight_bit_reference_multipart(self) -> None:
        """Two real parts with IE 0x00, reference 0x4C, decode to the two halves (ModemManager)."""
        one, two = pdu.decode(MM_MULTIPART_1), pdu.decode(MM_MULTIPART_2)
        assert isinstance(one, pdu.DeliverPdu) and isinstance(two, pdu.DeliverPdu)
        assert (one.reference, one.part, one.parts, one.ref_bits) == (0x4C, 1, 2, 8)
        assert (two.reference, two.part, two.parts, two.ref_bits) == (0x4C, 2, 2, 8)
        assert one.text + two.text == (
            "This is a very long test designed to exercise multi part capability. It should "
            "show up as one message, not as two, as the underlying encoding represents "
            "that the parts are related to one another. "
        )

    def test_submit_as_stored_by_a_modem(self) -> None:
        """A stored SUBMIT (SRR set, UCS-2, national destination) decodes (ModemManager)."""
        s = pdu.decode(MM_SUBMIT_UCS2)
        assert isinstance(s, pdu.SubmitPdu)
        assert s.number == "639337937"
        assert s.request_report
        assert s.text == "你好你好你好你好你好你好你好你好你"

    def test_status_report_still_trying(self) -> None:
        """A real STATUS-REPORT with TP-ST 0x30: not delivered and not final (ModemManager)."""
        r = pdu.decode(MM_STATUS_REPORT)
        assert isinstance(r, pdu.StatusReportPdu)
        assert r.message_reference == 0x5A
        assert r.recipient == "639337937"
        assert r.status == 0x30
        assert not r.delivered
        assert not r.final
        assert r.scts == datetime(2012, 9, 11, 7, 40, 36, tzinfo=TZ_P2)

    def test_cds_without_smsc(self) -> None:
        """A +CDS report given without an SMSC part decodes with smsc_included=False."""
        r = pdu.decode(CDS_NO_SMSC, smsc_included=False)
        assert isinstance(r, pdu.StatusReportPdu)
        assert r.recipient == "+20121875612"
        assert r.status == 0
        assert r.delivered and r.final
        assert r.discharge == datetime(2007, 9, 12, 15, 10, 17, tzinfo=TZ_P2)

    def test_ucs2_submit_matches_published_bytes(self) -> None:
        """Our SUBMIT for ModemManager's UCS-2 creator case is byte-identical (SMSC, VP 5 min)."""
        expected = _bytes(
            0x07, 0x91, 0x91, 0x30, 0x07, 0x92, 0x29, 0xF0, 0x11, 0x00, 0x0B, 0x91, 0x51, 0x55,
            0x55, 0x15, 0x32, 0xF4, 0x00, 0x08, 0x00, 0x3A, 0x04, 0x14, 0x04, 0x30, 0x00, 0x20,
            0x04, 0x37, 0x04, 0x34, 0x04, 0x40, 0x04, 0x30, 0x04, 0x32, 0x04, 0x41, 0x04, 0x42,
            0x04, 0x32, 0x04, 0x43, 0x04, 0x35, 0x04, 0x42, 0x00, 0x20, 0x04, 0x3A, 0x04, 0x3E,
            0x04, 0x40, 0x04, 0x3E, 0x04, 0x3B, 0x04, 0x4C, 0x00, 0x2C, 0x00, 0x20, 0x04, 0x34,
            0x04, 0x35, 0x04, 0x42, 0x04, 0x3A, 0x04, 0x30, 0x00, 0x21,
        )  # fmt: skip
        [s] = pdu.encode_submit(
            "+15555551234",
            "Да здравствует король, детка!",
            smsc="+19037029920",
            validity_minutes=5,
            request_report=False,
        )
        assert s.hex == expected
        assert s.tpdu_length == len(expected) // 2 - 8

    def test_gsm7_submit_matches_published_bytes(self) -> None:
        """ModemManager's 25-septet case (last septet alone in its octet) is byte-identical."""
        expected = _bytes(
            0x00, 0x01, 0x00, 0x0B, 0x91, 0x51, 0x55, 0x66, 0x16, 0x32, 0xF4, 0x00, 0x00, 0x19,
            0x54, 0x74, 0x7A, 0x0E, 0x4A, 0xCF, 0x41, 0xF2, 0x72, 0x98, 0xCD, 0xCE, 0x83, 0xC6,
            0xEF, 0x37, 0x1B, 0x04, 0x81, 0x40, 0x20, 0x10,
        )  # fmt: skip
        [s] = pdu.encode_submit("+15556661234", "This is really cool ΔΔΔΔΔ", request_report=False)
        assert s.hex == expected
        assert s.tpdu_length == len(expected) // 2 - 1


# --------------------------------------------------------------- SUBMIT


class TestSubmit:
    def test_hand_built_submit(self) -> None:
        """'hi' to +447700900123 with SRR: 21 00 0C91 447700091032 00 00 02 E834."""
        [s] = pdu.encode_submit("+447700900123", "hi")
        assert s.hex == "0021000C91447700091032000002E834"
        assert s.tpdu_length == 15
        assert (s.part, s.parts, s.reference, s.encoding, s.text) == (1, 1, None, "gsm7", "hi")

    def test_report_flag_off(self) -> None:
        """request_report=False clears TP-SRR (bit 5 of the first octet)."""
        [s] = pdu.encode_submit("+447700900123", "hi", request_report=False)
        assert s.hex[2:4] == "01"
        decoded = pdu.decode(s.hex)
        assert isinstance(decoded, pdu.SubmitPdu) and not decoded.request_report

    def test_national_destination_uses_unknown_ton(self) -> None:
        """Digits without '+' go out with TOA 0x81 so the network applies its own prefixes."""
        [s] = pdu.encode_submit("07700900123", "hi")
        assert s.hex[6:10] == "0B81"
        decoded = pdu.decode(s.hex)
        assert isinstance(decoded, pdu.SubmitPdu) and decoded.number == "07700900123"

    @pytest.mark.parametrize(
        ("minutes", "octet", "granted"),
        [(1, 0x00, 5), (5, 0x00, 5), (60, 0x0B, 60), (720, 0x8F, 720), (721, 0x90, 750),
         (1440, 0xA7, 1440), (2 * 1440, 0xA8, 2880), (4 * 1440, 0xAA, 5760),
         (31 * 1440, 0xC5, 35 * 1440), (10**7, 0xFF, 63 * 7 * 1440)],
    )  # fmt: skip
    def test_validity_relative(self, minutes: int, octet: int, granted: int) -> None:
        """TP-VP (TS 23.040 9.2.3.12.1) is the shortest period not shorter than asked."""
        [s] = pdu.encode_submit("+447700900123", "hi", validity_minutes=minutes)
        raw = bytes.fromhex(s.hex)
        assert raw[1] & 0x18 == 0x10  # TP-VPF relative
        assert raw[1 + 2 + 2 + 6 + 2] == octet
        assert s.validity_minutes == granted
        decoded = pdu.decode(s.hex)
        assert isinstance(decoded, pdu.SubmitPdu) and decoded.validity_minutes == granted

    def test_bad_validity(self) -> None:
        """A non-positive validity is refused."""
        with pytest.raises(PduError):
            pdu.encode_submit("+447700900123", "hi", validity_minutes=0)

    @pytest.mark.parametrize("number", ["", "+", "+44 7700", "44a", "+" + "1" * 21, "++44"])
    def test_bad_number(self, number: str) -> None:
        """Only '+digits' or digits reach a PDU (they end up on an AT command line)."""
        with pytest.raises(PduError):
            pdu.encode_submit(number, "hi")

    def test_smsc_field(self) -> None:
        """An explicit SMSC is written as an international RP address."""
        [s] = pdu.encode_submit("+447700900123", "hi", smsc="+447785016005")
        assert s.hex.startswith("0791447758100650")
        assert s.tpdu_length == len(s.hex) // 2 - 8

    @pytest.mark.parametrize(
        ("text", "encoding", "parts"),
        [("", "gsm7", 1), ("a" * 160, "gsm7", 1), ("a" * 161, "gsm7", 2),
         ("a" * 306, "gsm7", 2), ("a" * 307, "gsm7", 3), ("€" * 80, "gsm7", 1),
         ("€" * 81, "gsm7", 2), ("ж" * 70, "ucs2", 1), ("ж" * 71, "ucs2", 2),
         ("ж" * 134, "ucs2", 2), ("ж" * 135, "ucs2", 3), ("😀" * 35, "ucs2", 1),
         ("😀" * 36, "ucs2", 2), ("😀" * 200, "ucs2", 7), ("a" * 159 + "ç", "ucs2", 3)],
    )  # fmt: skip
    def test_limits(self, text: str, encoding: str, parts: int) -> None:
        """160/153 septets (extension characters count two), 70/67 UTF-16 units."""
        assert pdu.plan(text) == (encoding, parts)
        out = pdu.encode_submit("+447700900123", text, reference=9)
        assert len(out) == parts
        assert {s.encoding for s in out} == {encoding}
        assert "".join(s.text for s in out) == text

    def test_gsm7_part_never_ends_inside_an_escape(self) -> None:
        """152 plain characters then '€': the '€' moves whole to part 2 (153 limit)."""
        text = "a" * 152 + "€" + "b" * 20
        first, second = pdu.encode_submit("+447700900123", text, reference=1)
        assert first.text == "a" * 152
        assert second.text == "€" + "b" * 20
        for s in (first, second):
            decoded = pdu.decode(s.hex)
            assert decoded.text == s.text

    def test_ucs2_part_never_splits_a_surrogate_pair(self) -> None:
        """66 units then an emoji: the pair moves whole to part 2 (67 limit)."""
        text = "ж" * 66 + "😀" + "ж" * 10
        first, second = pdu.encode_submit("+447700900123", text, reference=1)
        assert first.text == "ж" * 66
        assert second.text.startswith("😀")
        assert [pdu.decode(s.hex).text for s in (first, second)] == [first.text, second.text]

    def test_concatenation_header_8bit(self) -> None:
        """Multipart SUBMITs carry UDHI and IE 00 03 <ref> <total> <seq>."""
        parts = pdu.encode_submit("+447700900123", "x" * 200, reference=0xAB)
        for i, s in enumerate(parts, start=1):
            raw = bytes.fromhex(s.hex)
            assert raw[1] & 0x40
            ud = raw[1 + 2 + 2 + 6 + 3 :]
            assert ud[0:6] == bytes([0x05, 0x00, 0x03, 0xAB, 2, i])
            assert (s.reference, s.part, s.parts, s.ref_bits) == (0xAB, i, 2, 8)

    def test_concatenation_header_16bit(self) -> None:
        """With ref16 the header is IE 08 04 <ref hi> <ref lo> <total> <seq>; 152 septets a part."""
        text = "x" * 305
        parts = pdu.encode_submit("+447700900123", text, reference=0x1234, ref16=True)
        assert [len(s.text) for s in parts] == [152, 152, 1]
        raw = bytes.fromhex(parts[0].hex)
        ud = raw[1 + 2 + 2 + 6 + 3 :]
        assert ud[0:7] == bytes([0x06, 0x08, 0x04, 0x12, 0x34, 3, 1])
        decoded = pdu.decode(parts[2].hex)
        assert (decoded.reference, decoded.part, decoded.parts) == (0x1234, 3, 3)

    def test_ucs2_16bit_limit_is_66(self) -> None:
        """A 16-bit reference costs one octet: UCS-2 parts hold 66 units."""
        parts = pdu.encode_submit("+447700900123", "ж" * 133, reference=7, ref16=True)
        assert [len(s.text) for s in parts] == [66, 66, 1]

    @pytest.mark.parametrize(("reference", "ref16"), [(-1, False), (256, False), (65536, True)])
    def test_reference_range(self, reference: int, ref16: bool) -> None:
        """References must fit their IE."""
        with pytest.raises(PduError):
            pdu.encode_submit("+447700900123", "x" * 200, reference=reference, ref16=ref16)

    def test_too_many_parts(self) -> None:
        """More than 255 parts cannot be numbered: refused before anything is sent."""
        with pytest.raises(PduError, match="255"):
            pdu.encode_submit("+447700900123", "x" * (153 * 255 + 1))

    @pytest.mark.parametrize("text", ["a\ud83d", "\ude00b", "ok \ud83d\ud83d"])
    def test_lone_surrogate_refused(self, text: str) -> None:
        """Text no alphabet can carry (a lone surrogate from a JSON escape) is a PduError."""
        with pytest.raises(PduError, match="surrogate"):
            pdu.plan(text)
        with pytest.raises(PduError, match="surrogate"):
            pdu.encode_submit("+447700900123", text)
        with pytest.raises(PduError, match="surrogate"):
            pdu.encode_deliver("+447700900123", text, timestamp=datetime.now(UTC))

    def test_every_part_fits_140_octets(self) -> None:
        """No user data exceeds 140 octets, whatever the mix of characters."""
        text = ("€a😀ж{" * 200)[:900]
        for s in pdu.encode_submit("+447700900123", text, reference=3):
            raw = bytes.fromhex(s.hex)
            assert len(raw) - (1 + 2 + 2 + 6 + 3) <= 140


# --------------------------------------------------------------- DELIVER / STATUS-REPORT


class TestDeliver:
    TS = datetime(2024, 5, 1, 12, 30, 15, tzinfo=TZ_M5)

    @pytest.mark.parametrize(
        "sender", ["+447700900123", "07700900123", "InfoSMS", "Design@Home", "ÆØÅ Bank"]
    )
    def test_round_trip(self, sender: str) -> None:
        """encode_deliver -> decode gives back sender, text, time and SMSC."""
        [h] = pdu.encode_deliver(sender, "héllo € [x]", timestamp=self.TS)
        d = pdu.decode(h)
        assert isinstance(d, pdu.DeliverPdu)
        assert (d.sender, d.text, d.timestamp, d.smsc) == (
            sender,
            "héllo € [x]",
            self.TS,
            "+447785016005",
        )

    def test_alphanumeric_length_counts_useful_semi_octets(self) -> None:
        """'InfoSMS' (7 septets, 49 bits) has address length 13, not 14, so no stray '@'."""
        [h] = pdu.encode_deliver("InfoSMS", "x", timestamp=self.TS)
        raw = bytes.fromhex(h)
        assert raw[9] == 13 and raw[10] == 0xD0

    def test_alphanumeric_sender_limits(self) -> None:
        """Alphanumeric senders are GSM-7 and at most 11 characters."""
        with pytest.raises(PduError):
            pdu.encode_deliver("TwelveChars!", "x", timestamp=self.TS)
        with pytest.raises(PduError):
            pdu.encode_deliver("Ünïcødé✓", "x", timestamp=self.TS)

    def test_multipart_with_default_reference(self) -> None:
        """Without a reference one is derived from the content: stable, and not shared."""
        a = pdu.encode_deliver("+447700900123", "a" * 400, timestamp=self.TS)
        b = pdu.encode_deliver("+447700900123", "a" * 400, timestamp=self.TS)
        c = pdu.encode_deliver("+447700900123", "b" * 400, timestamp=self.TS)
        assert a == b
        da = [pdu.decode(h) for h in a]
        dc = [pdu.decode(h) for h in c]
        assert all(isinstance(d, pdu.DeliverPdu) for d in da + dc)
        assert {d.reference for d in da} != {d.reference for d in dc}
        assert "".join(d.text for d in da) == "a" * 400

    def test_timestamp_needs_a_zone(self) -> None:
        """A naive timestamp cannot be written as an SCTS."""
        with pytest.raises(PduError):
            pdu.encode_deliver("+447700900123", "x", timestamp=datetime(2024, 1, 1))

    def test_status_report_indication(self) -> None:
        """TP-SRI (bit 5) is read from a DELIVER's first octet."""
        [h] = pdu.encode_deliver("+447700900123", "x", timestamp=self.TS)
        raw = bytearray(bytes.fromhex(h))
        raw[8] |= 0x20
        d = pdu.decode(raw.hex())
        assert isinstance(d, pdu.DeliverPdu) and d.status_report_indication

    @pytest.mark.parametrize(
        ("dcs", "encoding"),
        [(0x00, "gsm7"), (0x04, "8bit"), (0x08, "ucs2"), (0x0C, "gsm7"), (0x10, "gsm7"),
         (0x18, "ucs2"), (0x24, "8bit"), (0xF0, "gsm7"), (0xF4, "8bit"), (0xE0, "ucs2")],
    )  # fmt: skip
    def test_data_coding_schemes(self, dcs: int, encoding: str) -> None:
        """TS 23.038 coding groups map to the alphabet used to read the user data."""
        [h] = pdu.encode_deliver("+447700900123", "x", timestamp=self.TS)
        raw = bytearray(bytes.fromhex(h))
        dcs_at = 8 + 1 + 2 + 6 + 1
        raw[dcs_at] = dcs
        raw[-2:] = bytes([2, 0x00, 0x41])  # two septets/octets
        d = pdu.decode(raw.hex())
        assert isinstance(d, pdu.DeliverPdu)
        assert d.encoding == encoding


class TestStatusReport:
    S = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    D = datetime(2024, 5, 1, 12, 0, 7, tzinfo=UTC)

    @pytest.mark.parametrize(
        ("status", "delivered", "final"),
        [(0x00, True, True), (0x01, True, True), (0x02, True, True), (0x03, False, True),
         (0x20, False, False), (0x3F, False, False), (0x40, False, True), (0x60, False, True)],
    )  # fmt: skip
    def test_round_trip_and_meaning(self, status: int, delivered: bool, final: bool) -> None:
        """TP-ST survives the round trip; delivered = 0x00..0x02, final unless 0x20..0x3F."""
        h = pdu.encode_status_report(
            77, "+447700900123", status=status, scts=self.S, discharge=self.D
        )
        r = pdu.decode(h)
        assert isinstance(r, pdu.StatusReportPdu)
        assert (r.message_reference, r.recipient, r.status) == (77, "+447700900123", status)
        assert (r.scts, r.discharge) == (self.S, self.D)
        assert (r.delivered, r.final) == (delivered, final)

    def test_message_reference_range(self) -> None:
        """TP-MR is one octet."""
        with pytest.raises(PduError):
            pdu.encode_status_report(256, "+447700900123", scts=self.S, discharge=self.D)


# --------------------------------------------------------------- malformed input


def _valid_pdus() -> list[str]:
    ts = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    return [
        HELLO_DELIVER,
        HELLO_SUBMIT,
        MM_ALPHANUMERIC,
        MM_UDH16,
        MM_STATUS_REPORT,
        pdu.encode_submit("+447700900123", "😀" * 50, reference=5)[1].hex,
        pdu.encode_deliver("Info", "€" * 100, timestamp=ts, reference=3)[1],
    ]


class TestMalformed:
    @pytest.mark.parametrize(
        "bad",
        ["", " ", "0", "ABC", "zz", "0G", "07917283", "00", "0003", "00FF",
         # TP-UDL 0x0B (11 septets) with only 10 septets of data (ModemManager)
         "07912143658709F1040B918100551512F20000111010214365000BE8329BFD4697D9EC37",
         # month 13 in the SCTS
         "07917283010010F5040BC87238880900F10000993192516195800AE8329BFD4697D9EC37",
         # filler nibble in the middle of the sender's digits
         "07917283010010F5040BC872F8880900F10000993092516195800AE8329BFD4697D9EC37",
         # filler nibble before the last digit of the SMSC
         "02911F040BC87238880900F10000993092516195800AE8329BFD4697D9EC37",
         # UDHI set, header length runs past the data
         "0041000B916407281553F8000004FF414243"],
    )  # fmt: skip
    def test_table(self, bad: str) -> None:
        """Bad hex, truncation, bad lengths, impossible dates: PduError carrying the input."""
        with pytest.raises(PduError) as info:
            pdu.decode(bad)
        assert info.value.pdu is not None
        assert info.value.pdu.upper().endswith(bad.strip().upper())

    @pytest.mark.parametrize("valid", _valid_pdus())
    def test_every_truncation(self, valid: str) -> None:
        """Each proper prefix of a valid PDU is refused with PduError, never decoded short."""
        for cut in range(0, len(valid), 2):
            with pytest.raises(PduError):
                pdu.decode(valid[:cut])

    def test_not_a_string(self) -> None:
        """Bytes instead of hex text is a PduError too."""
        with pytest.raises(PduError):
            pdu.decode(17)  # type: ignore[arg-type]

    @settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
    @given(st.binary(max_size=180), st.booleans())
    def test_random_bytes(self, data: bytes, smsc: bool) -> None:
        """Random octets decode or raise PduError; nothing else escapes."""
        try:
            pdu.decode(data.hex(), smsc_included=smsc)
        except PduError:
            pass

    @settings(max_examples=400)
    @given(
        st.sampled_from(_valid_pdus()),
        st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=4),
    )
    def test_mutated_pdus(self, valid: str, edits: list[tuple[int, int]]) -> None:
        """Valid PDUs with octets overwritten decode or raise PduError; nothing else escapes."""
        raw = bytearray(bytes.fromhex(valid))
        for pos, value in edits:
            raw[pos % len(raw)] = value
        try:
            result = pdu.decode(raw.hex())
        except PduError:
            return
        assert isinstance(result, pdu.DeliverPdu | pdu.SubmitPdu | pdu.StatusReportPdu)
        if not isinstance(result, pdu.StatusReportPdu):
            result.text.encode("utf-8")  # storable: no lone surrogates


class TestAgainstSpecArithmetic:
    @given(st.text(alphabet=st.sampled_from("ab€{ "), min_size=161, max_size=600))
    def test_gsm7_udl_counts_septets(self, text: str) -> None:
        """Every GSM-7 part's TP-UDL = 7 header septets + the part's septets (ESC counted)."""
        for s in pdu.encode_submit("+447700900123", text, reference=1):
            raw = bytes.fromhex(s.hex)
            udl = raw[1 + 2 + 2 + 6 + 2]
            assert udl == 7 + gsm7.septet_count(s.text)
            assert udl <= 160
