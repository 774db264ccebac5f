"""Text rules (smsd.text): segments, sender IDs, originate clean-up, links, names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsd.codec import gsm7, pdu
from smsd.errors import ValidationError
from smsd.text import (
    ITALIAN_GIVEN_NAMES,
    SENDER_ID_ALPHABET,
    SegmentInfo,
    contains_link,
    sanitize_originate_text,
    segments,
    sender_id_from_name,
)

SEED_ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    '@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&()*+,-./:;<>=?¡äöñüà'
)


class TestSegments:
    @pytest.mark.parametrize(
        ("text", "info"),
        [
            ("", SegmentInfo("gsm7", 1, 0)),
            ("a" * 160, SegmentInfo("gsm7", 1, 160)),
            ("a" * 161, SegmentInfo("gsm7", 2, 161)),
            ("a" * 306, SegmentInfo("gsm7", 2, 306)),
            ("a" * 307, SegmentInfo("gsm7", 3, 307)),
            ("€" * 80, SegmentInfo("gsm7", 1, 160)),
            ("€" * 81, SegmentInfo("gsm7", 2, 162)),
            ("[]" * 40 + "x", SegmentInfo("gsm7", 2, 161)),
            ("ç", SegmentInfo("ucs2", 1, 1)),
            ("ж" * 70, SegmentInfo("ucs2", 1, 70)),
            ("ж" * 71, SegmentInfo("ucs2", 2, 71)),
            ("😀" * 35, SegmentInfo("ucs2", 1, 70)),
            ("😀" * 36, SegmentInfo("ucs2", 2, 72)),
            ("😀" * 200, SegmentInfo("ucs2", 7, 400)),
        ],
    )
    def test_table(self, text: str, info: SegmentInfo) -> None:
        """GSM-7 160/153 (extension characters count two), UCS-2 70/67 UTF-16 units."""
        assert segments(text) == info

    def test_unsendable_text_is_a_validation_error(self) -> None:
        """A lone surrogate is refused when counting, before anything is stored."""
        with pytest.raises(ValidationError, match="surrogate"):
            segments("broken \ud83d")

    @given(st.text(max_size=700))
    def test_agrees_with_the_encoder(self, text: str) -> None:
        """The count shown and billed is the number of PDUs the modem will send."""
        info = segments(text)
        out = pdu.encode_submit("+447700900123", text, reference=1)
        assert info.parts == len(out)
        assert info.encoding == out[0].encoding


class TestSenderId:
    @pytest.mark.parametrize(
        ("name", "sender"),
        [
            ("Mario Rossi", "Mario Rossi"),
            ("Federica Bianchi", "Federica Bi"),  # cut to 11
            ("Maria Grazia Neri", "Maria Grazi"),
            ("Anna Maria Rossi", "Anna Maria"),  # cut at 11, trailing space dropped
            ("Anna   Maria\tRossi", "Anna Maria"),
            ("Jörg Müller", "Jörg Müller"),
            ("ÖSTERREICH", "öSTERREICH"),  # non-Latin capitals become lower case
            ("ÄÑÜ", "äñü"),
            ("Àlex", "àlex"),
            ("Âme Ôtée", "Ame Otée"),  # nearest letter; é is allowed
            ("François", "Francois"),
            ("Łukasz Żółć", "Lukasz Zolc"),
            ("Çelik Øre", "Çelik Øre"),  # allowed as they are
            ("O'Brien", "O?Brien"),  # no apostrophe in the alphabet
            ("李小龙", "???"),
            ("δέλτα", "ΔEΛTA"),  # Greek: capitals exist, look-alikes become Latin
            ("Ænima ß", "Ænima ß"),
            ("Rene\u0301e", "Renée"),  # decomposed accents are composed first
            ("Zero\u200bWidth", "ZeroWidth"),  # invisible characters are dropped
            ("¨Umlaut", "Umlaut"),  # a spacing mark does not leave a space behind
        ],
    )
    def test_rules(self, name: str, sender: str) -> None:
        """SEED-NOTES: allowed set, lower-cased non-Latin capitals, nearest letter or '?'."""
        assert sender_id_from_name(name) == sender

    def test_configurable_length(self) -> None:
        """The limit is configurable (the vendor's page also says 10)."""
        assert sender_id_from_name("Francesca Neri", max_len=10) == "Francesca"
        assert sender_id_from_name("Francesca Neri", max_len=14) == "Francesca Neri"

    @pytest.mark.parametrize("name", ["", "   ", "\t\n"])
    def test_nothing_usable(self, name: str) -> None:
        """A name with nothing to show is a validation error, not an empty sender."""
        with pytest.raises(ValidationError):
            sender_id_from_name(name)

    def test_bad_limit(self) -> None:
        """A zero limit is refused."""
        with pytest.raises(ValidationError):
            sender_id_from_name("Mario", max_len=0)

    def test_alphabet_is_the_seed_notes_one(self) -> None:
        """The allowed set is exactly SEED-NOTES' and every character of it is GSM-7."""
        assert frozenset(SEED_ALPHABET) == SENDER_ID_ALPHABET
        assert gsm7.is_gsm7(SEED_ALPHABET)

    @given(st.text(min_size=1, max_size=40), st.integers(1, 20))
    def test_always_valid(self, name: str, max_len: int) -> None:
        """Any name gives a sender within the limit, from the allowed set, trimmed."""
        try:
            sender = sender_id_from_name(name, max_len)
        except ValidationError:
            return
        assert 1 <= len(sender) <= max_len
        assert set(sender) <= SENDER_ID_ALPHABET
        assert sender == sender.strip(" ")
        assert "  " not in sender


class TestOriginateText:
    def test_replaced_characters(self) -> None:
        """' \" \\ / become spaces and nothing else changes (Wildix CURL compatibility)."""
        assert sanitize_originate_text('it\'s "ok" a\\b c/d €😀') == "it s  ok  a b c d €😀"

    @given(st.text())
    def test_length_kept(self, text: str) -> None:
        """One character in, one character out; none of the four survive."""
        out = sanitize_originate_text(text)
        assert len(out) == len(text)
        assert not set(out) & set("'\"\\/")


class TestLinks:
    @pytest.mark.parametrize(
        "text",
        [
            "see https://example.com/x",
            "HTTP://EXAMPLE.ORG",
            "go to www.example.it now",
            "bit.ly/3abcde",
            "visit example.com",
            "mail mario.rossi@example.it",
            "tinyurl.com/y3",
            "ftp://files.example.net",
        ],
    )
    def test_links(self, text: str) -> None:
        """Schemes, www. hosts and bare hosts with a common TLD count as links."""
        assert contains_link(text)

    @pytest.mark.parametrize(
        "text",
        [
            "ci vediamo alle 10.30",
            "e.g. this",
            "version 2.0.1 released",
            "file.txt attached",
            "fine.Grazie",
            "costa 3.50€",
            "",
            "Dr.Smith",
        ],
    )
    def test_not_links(self, text: str) -> None:
        """Times, prices, versions, file names and missing spaces are not links."""
        assert not contains_link(text)


class TestItalianNames:
    def test_names_from_the_rules(self) -> None:
        """The names SEED-NOTES gives as examples are in the list, in lower case."""
        assert {"federica", "marco", "francesca"} <= ITALIAN_GIVEN_NAMES

    def test_shape(self) -> None:
        """A reasonable list: lower case, single words, a couple of hundred common names."""
        assert len(ITALIAN_GIVEN_NAMES) >= 150
        assert all(n == n.lower() and n.isalpha() for n in ITALIAN_GIVEN_NAMES)
        assert {"giuseppe", "maria", "giovanni", "anna", "luca", "giulia"} <= ITALIAN_GIVEN_NAMES
