"""The SIP message codec, digest authentication and stream framing: pure, no sockets."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsd.errors import SipAuthError, SipParseError
from smsd.gateways.classound import digest
from smsd.gateways.classound.framing import FramingLost, StreamFramer
from smsd.gateways.classound.sipmsg import (
    SipRequest,
    SipResponse,
    addr_params,
    addr_uri,
    check_request,
    parse,
    response_to,
    uri_user,
)

# A MESSAGE as a carrier's SBC sends it: compact headers, a folded line, a
# display name, user=phone, and a body that is not the whole datagram.
CAPTURE = (
    b"MESSAGE sip:+15551234567@198.51.100.7:5060;user=phone SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 203.0.113.9:5060;branch=z9hG4bK-524287-1---7a2;rport\r\n"
    b"Max-Forwards: 69\r\n"
    b'f: "Customer" <sip:%2B15550001111@203.0.113.9>;tag=3f2a\r\n'
    b"t: <sip:+15551234567@198.51.100.7;user=phone>\r\n"
    b"i: 8f9b6c1e-0001@203.0.113.9\r\n"
    b"CSeq: 20 MESSAGE\r\n"
    b"c: text/plain; charset=UTF-8\r\n"
    b"Subject: folded\r\n  continues here\r\n"
    b"l: 5\r\n"
    b"\r\n"
    b"Hello trailing-bytes-ignored"
)


class TestParse:
    def test_capture_with_compact_and_folded_headers(self) -> None:
        """Compact names expand, folded lines join, Content-Length bounds the body."""
        req = parse(CAPTURE)
        assert isinstance(req, SipRequest)
        assert (req.method, req.uri) == ("MESSAGE", "sip:+15551234567@198.51.100.7:5060;user=phone")
        assert req.call_id == "8f9b6c1e-0001@203.0.113.9"
        assert req.cseq == (20, "MESSAGE")
        assert req.branch == "z9hG4bK-524287-1---7a2"
        assert req.get("subject") == "folded continues here"
        assert req.body == b"Hello"
        check_request(req)
        frm = req.get("From") or ""
        assert uri_user(addr_uri(frm)) == "+15550001111"
        assert addr_params(frm) == {"tag": "3f2a"}

    def test_encode_then_parse_round_trip(self) -> None:
        """What we write is what we read back, Content-Length computed."""
        req = SipRequest(method="MESSAGE", uri="sip:+1555@h")
        req.add("Via", "SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bKx")
        req.add("Call-ID", "a@b")
        req.add("CSeq", "1 MESSAGE")
        req.body = "✓ ok".encode()
        again = parse(req.encode(), stream=True)
        assert again.get("Content-Length") == str(len("✓ ok".encode()))
        again.remove("Content-Length")
        assert again == req

    def test_response_copies_the_routing_headers_and_tags_to(self) -> None:
        """RFC 3261 8.2.6.2: Via (all), From, Call-ID, CSeq copied; To gets our tag."""
        req = parse(CAPTURE)
        assert isinstance(req, SipRequest)
        resp = response_to(req, 200, "OK", to_tag="abc")
        again = parse(resp.encode())
        assert isinstance(again, SipResponse) and again.status == 200
        assert again.get("Via") == req.get("Via")
        assert again.get("To") == "<sip:+15551234567@198.51.100.7;user=phone>;tag=abc"
        assert again.cseq == (20, "MESSAGE")

    @pytest.mark.parametrize(
        ("raw", "status", "answerable"),
        [
            (b"", 400, False),
            (b"\x00\x01garbage\r\n\r\n", 400, False),
            (CAPTURE[:80], 400, False),  # cut inside the headers
            (CAPTURE.replace(b"l: 5", b"l: 500"), 400, True),  # cut inside the body
            (CAPTURE.replace(b"l: 5", b"l: five"), 400, True),
            (CAPTURE.replace(b"CSeq: 20", b"CSeq 20"), 400, False),
            (b"SIP/3.0 200 OK\r\n\r\n", 505, False),
            (CAPTURE.replace(b" SIP/2.0\r\n", b" SIP/2.1\r\n", 1), 505, True),
            (CAPTURE.replace(b"Max-Forwards", b"X-Big: " + b"a" * 20_000 + b"\r\nMax-Forwards"),
             513, True),
            (CAPTURE.replace(b"Max-Forwards: 69\r\n", b"X: y\r\n" * 101), 513, False),
            (CAPTURE.replace(b"Subject", "Sübject".encode()), 400, False),
        ],
        ids=["empty", "binary", "cut-head", "cut-body", "bad-length", "no-colon", "sip3-response",
             "sip21-request", "oversized", "too-many-headers", "non-token-name"],
    )
    def test_malformed_input_is_one_typed_error(self, raw: bytes, status: int,
                                                answerable: bool) -> None:
        """Every malformed message raises SipParseError with the status to answer; the
        request comes with it exactly when its headers were readable."""
        with pytest.raises(SipParseError) as err:
            parse(raw)
        assert err.value.status == status
        assert (err.value.message is not None) is answerable

    def test_stream_requires_content_length(self) -> None:
        """Over TCP, Content-Length is the only boundary: without it, 400."""
        with pytest.raises(SipParseError):
            parse(CAPTURE.replace(b"l: 5\r\n", b""), stream=True)

    @given(st.binary(max_size=600))
    def test_any_bytes_parse_or_raise_sip_parse_error(self, data: bytes) -> None:
        """No input makes the parser raise anything but SipParseError."""
        try:
            parse(data)
        except SipParseError:
            pass

    @given(st.integers(min_value=0, max_value=len(CAPTURE)))
    def test_every_truncation_of_a_capture_is_handled(self, cut: int) -> None:
        """A request cut at any byte either parses (body cut off after its length) or
        raises SipParseError."""
        try:
            parse(CAPTURE[:cut])
        except SipParseError:
            pass


class TestDigest:
    # RFC 7616 section 3.9.1 (the example request and its two responses).
    RFC7616: ClassVar[dict[str, Any]] = dict(
        username="Mufasa", password="Circle of Life", method="GET", uri="/dir/index.html",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", nc=1,
    )
    CHALLENGE = ('Digest realm="http-auth@example.org", qop="auth, auth-int", '
                 'algorithm={alg}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
                 'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"')

    @pytest.mark.parametrize(("alg", "expected"), [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ])
    def test_rfc7616_example_vectors(self, alg: str, expected: str) -> None:
        """The responses RFC 7616 3.9.1 gives for MD5 and SHA-256 with qop=auth."""
        ch = digest.parse_challenge(self.CHALLENGE.format(alg=alg))
        assert ch is not None and ch.supported and ch.qop == ("auth", "auth-int")
        assert digest.response(ch, **self.RFC7616) == expected  # type: ignore[arg-type]

    def test_rfc2617_example_vector(self) -> None:
        """RFC 2617 3.5: MD5, qop=auth."""
        ch = digest.parse_challenge('Digest realm="testrealm@host.com", qop="auth,auth-int", '
                                    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
                                    'opaque="5ccc069c403ebaf9f0171e9517f40e41"')
        assert ch is not None
        got = digest.response(ch, username="Mufasa", password="Circle Of Life", method="GET",
                              uri="/dir/index.html", cnonce="0a4f113b", nc=1)
        assert got == "6629fae49393a05397450978507c4ef1"

    def test_authorization_header_fields(self) -> None:
        """The header names the algorithm, qop=auth, nc in 8 hex digits, opaque echoed."""
        ch = digest.parse_challenge(self.CHALLENGE.format(alg="SHA-256"))
        assert ch is not None
        value = digest.authorization(ch, **self.RFC7616)  # type: ignore[arg-type]
        assert value.startswith('Digest username="Mufasa", realm="http-auth@example.org"')
        assert "algorithm=SHA-256" in value and "qop=auth" in value and "nc=00000001" in value
        assert 'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"' in value

    def test_first_supported_challenge_is_chosen(self) -> None:
        """Several challenges (RFC 8760): the first we support wins; none supported names them."""
        values = ['Digest realm="r", nonce="n", algorithm=SHA-512-256',
                  'Digest realm="r", nonce="n", algorithm=SHA-256, qop="auth"',
                  'Digest realm="r", nonce="n", algorithm=MD5, qop="auth"']
        assert digest.choose(values).algorithm == "SHA-256"
        with pytest.raises(SipAuthError, match="SHA-512-256"):
            digest.choose(values[:1])
        with pytest.raises(SipAuthError):
            digest.choose(['Digest realm="r", nonce="n", qop="auth-int"'])

    def test_no_qop_is_rfc2069_form(self) -> None:
        """Without qop the response omits nc/cnonce (RFC 2069 compatibility)."""
        ch = digest.parse_challenge('Digest realm="r", nonce="n"')
        assert ch is not None
        value = digest.authorization(ch, username="u", password="p", method="MESSAGE",
                                     uri="sip:x@y", cnonce="c", nc=1)
        assert "qop" not in value and "nc=" not in value

    def test_credentials_count_nonces(self) -> None:
        """Answers to a remembered challenge carry nc 1, 2, ...; a new challenge restarts it."""
        creds = digest.Credentials("u", "p")
        ch = digest.parse_challenge('Digest realm="r", nonce="n1", qop="auth"')
        assert ch is not None
        creds.learn("Authorization", ch)
        assert "nc=00000001" in creds.headers("MESSAGE", "sip:x@y")[0][1]
        assert "nc=00000002" in creds.headers("MESSAGE", "sip:x@y")[0][1]
        ch2 = digest.parse_challenge('Digest realm="r", nonce="n2", qop="auth"')
        assert ch2 is not None
        creds.learn("Authorization", ch2)
        assert "nc=00000001" in creds.headers("MESSAGE", "sip:x@y")[0][1]

    def test_challenge_garbage_is_not_a_challenge(self) -> None:
        """Basic, a missing nonce, unbalanced quotes: None, never an exception."""
        for value in ('Basic realm="r"', 'Digest realm="r"', 'Digest realm="r, nonce="n',
                      "Digest", ""):
            assert digest.parse_challenge(value) is None


class TestFraming:
    def test_messages_split_across_and_within_chunks(self) -> None:
        """Bytes arriving one at a time, and two messages in one chunk, frame the same."""
        one = CAPTURE[: CAPTURE.index(b"Hello") + 5]
        framer = StreamFramer()
        got: list[bytes] = []
        for i in range(len(one)):
            got += framer.feed(one[i:i + 1])
        assert got == [one]
        assert StreamFramer().feed(b"\r\n\r\n" + one + one) == [one, one]

    def test_unframeable_stream_is_lost(self) -> None:
        """No end of headers within the limit, or a Content-Length beyond it: FramingLost."""
        with pytest.raises(FramingLost):
            StreamFramer(limit=1000).feed(b"MESSAGE x SIP/2.0\r\n" + b"a" * 2000)
        with pytest.raises(FramingLost):
            StreamFramer(limit=1000).feed(b"MESSAGE x SIP/2.0\r\nl: 5000\r\n\r\n")
