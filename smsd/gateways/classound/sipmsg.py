"""SIP messages as bytes and back (RFC 3261 section 7, 20, 25): no I/O.

Only what a MESSAGE user agent needs: requests and responses, header lines
(folded lines joined, compact names expanded, order and repeats kept), the
body framed by Content-Length, and the few structured values the trunk reads
(Via branch, CSeq, tags, URIs).  Everything unknown is carried, not judged.

Parsing is strict where a wrong guess would be unsafe (a Content-Length that
claims more than arrived is a truncated request, not a short body) and never
raises anything but ``SipParseError``, which carries the status a server
should answer with and, when the head could be read, the request itself so
the answer can be routed back (Via, From, To, Call-ID, CSeq).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from smsd.errors import SipParseError

# A whole SIP message we accept: far above any SMS (RFC 3428 keeps MESSAGE
# under 1300 bytes on UDP) and below the 64 KiB a UDP datagram can carry.
MAX_MESSAGE_BYTES = 16 * 1024
# Header lines in one message: real requests have 10 to 20.
MAX_HEADERS = 100

# RFC 3261 7.3.3 compact forms.
COMPACT = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
}
# Canonical spelling of the headers we write or look up, by lower-case name.
_CANONICAL = {
    name.lower(): name
    for name in (
        "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Content-Type",
        "Content-Length", "Content-Encoding", "Expires", "User-Agent", "Allow", "Accept",
        "Require", "Supported", "Unsupported", "WWW-Authenticate", "Authorization",
        "Proxy-Authenticate", "Proxy-Authorization", "Retry-After", "Subject", "Server",
        "Date",
    )
}
# RFC 3261 25.1 "token" characters: methods and header names.
_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6][0-9][0-9]) ?(.*)$")
_REQUEST_LINE = re.compile(r"^([A-Za-z0-9.!%*_+`'~-]+) (\S+) SIP/([0-9]+\.[0-9]+)$")
_CSEQ = re.compile(r"^([0-9]{1,10})\s+([A-Za-z0-9.!%*_+`'~-]+)$")
_MAX_CSEQ = 2**31 - 1  # RFC 3261 8.1.1.5


def canonical(name: str) -> str:
    low = name.strip().lower()
    if low in COMPACT:
        return COMPACT[low]
    return _CANONICAL.get(low, name.strip())


@dataclass
class _Message:
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def get(self, name: str) -> str | None:
        """The first value of header ``name`` (any spelling), or None."""
        want = canonical(name).lower()
        for k, v in self.headers:
            if k.lower() == want:
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        want = canonical(name).lower()
        return [v for k, v in self.headers if k.lower() == want]

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` header by one with ``value``, where the first one stood."""
        name = canonical(name)
        low = name.lower()
        at = next((i for i, (k, _) in enumerate(self.headers) if k.lower() == low),
                  len(self.headers))
        rest = [(k, v) for k, v in self.headers if k.lower() != low]
        rest.insert(min(at, len(rest)), (name, value))
        self.headers = rest

    def add(self, name: str, value: str) -> None:
        self.headers.append((canonical(name), value))

    def remove(self, name: str) -> None:
        want = canonical(name).lower()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != want]

    def _head_and_body(self, first: str) -> bytes:
        lines = [first]
        for k, v in self.headers:
            if k.lower() != "content-length":
                lines.append(f"{k}: {v}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        """(number, method); (0, "") when absent or malformed (see ``check_request``)."""
        m = _CSEQ.match((self.get("CSeq") or "").strip())
        if not m:
            return 0, ""
        return int(m.group(1)), m.group(2).upper()

    @property
    def branch(self) -> str | None:
        """The branch of the top Via (RFC 3261 8.1.1.7), the transaction's name."""
        vias = self.get_all("Via")
        if not vias:
            return None
        return via_params(vias[0].split(",")[0]).get("branch")


@dataclass
class SipRequest(_Message):
    method: str = "MESSAGE"
    uri: str = ""

    def encode(self) -> bytes:
        return self._head_and_body(f"{self.method} {self.uri} SIP/2.0")


@dataclass
class SipResponse(_Message):
    status: int = 200
    reason: str = "OK"

    def encode(self) -> bytes:
        return self._head_and_body(f"SIP/2.0 {self.status} {self.reason}")


SipMessage = SipRequest | SipResponse


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    # RFC 3261 7.5: a CRLF on its own ends the headers.  Bare LF is accepted
    # (RFC 3261 7 "implementations MUST accept"... is for CRLF; senders that use
    # LF alone exist and cost nothing to read).
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    if crlf < 0 and lf < 0:
        raise SipParseError("the header section has no end (truncated message)", status=400)
    if crlf >= 0 and (lf < 0 or crlf <= lf):
        return data[:crlf], data[crlf + 4:]
    return data[:lf], data[lf + 2:]


def _header_lines(head: str) -> list[str]:
    lines: list[str] = []
    for raw in head.replace("\r\n", "\n").split("\n"):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] += " " + raw.strip()  # RFC 3261 7.3.1 line folding
        else:
            lines.append(raw)
    return lines


def parse(data: bytes, *, stream: bool = False, limit: int = MAX_MESSAGE_BYTES) -> SipMessage:
    """One whole SIP message.  ``stream`` = it came over TCP (Content-Length required).

    Raises SipParseError with the status to answer (400, 413 for a body over
    the limit, 505 for another SIP version, 513 for an oversized message) and,
    when the start line and headers were readable, ``.message`` set.
    """
    data = data.lstrip(b"\r\n")  # RFC 3261 7.5: CRLFs before the start line are ignored
    if not data:
        raise SipParseError("empty message", status=400)
    head_raw, rest = _split_head(data)
    try:
        head = head_raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("the header section is not UTF-8", status=400) from None
    lines = _header_lines(head)
    first, header_lines = lines[0], lines[1:]
    msg: SipMessage
    version = "2.0"
    if (m := _STATUS_LINE.match(first)) is not None:
        msg = SipResponse(status=int(m.group(1)), reason=m.group(2))
    elif (m := _REQUEST_LINE.match(first)) is not None:
        msg = SipRequest(method=m.group(1).upper(), uri=m.group(2))
        version = m.group(3)
    elif first.startswith("SIP/"):
        raise SipParseError(f"unsupported SIP version in {first[:80]!r}", status=505)
    else:
        raise SipParseError(f"not a SIP start line: {first[:80]!r}", status=400)
    if len(header_lines) > MAX_HEADERS:
        raise SipParseError(f"more than {MAX_HEADERS} header lines", status=513)
    for line in header_lines:
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not _TOKEN.match(name):
            raise SipParseError(f"malformed header line {line[:80]!r}", status=400)
        msg.headers.append((canonical(name), value.strip()))
    # From here on the message is known well enough to be answered.
    if isinstance(msg, SipRequest) and version != "2.0":
        raise SipParseError(f"unsupported SIP version {version}", status=505, message=msg)
    if len(data) > limit:
        raise SipParseError(f"message of {len(data)} bytes, limit {limit}", status=513,
                            message=msg)
    length_raw = msg.get("Content-Length")
    if length_raw is None:
        if stream:
            raise SipParseError("Content-Length is required over TCP", status=400, message=msg)
        msg.body = rest  # RFC 3261 18.3: on UDP the datagram ends the body
        return msg
    if not length_raw.isdigit():
        raise SipParseError(f"Content-Length {length_raw[:20]!r} is not a number", status=400,
                            message=msg)
    length = int(length_raw)
    if length > len(rest):
        raise SipParseError(
            f"Content-Length {length} but {len(rest)} body bytes arrived (truncated)",
            status=400, message=msg,
        )
    msg.body = rest[:length]  # extra bytes in a datagram are discarded (RFC 3261 18.3)
    return msg


def check_request(req: SipRequest) -> None:
    """RFC 3261 8.1.1 / 8.2: the headers every request needs, with sane values."""
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        if not req.get(name):
            raise SipParseError(f"missing {name} header", status=400, message=req)
    number, method = req.cseq
    if not method or number > _MAX_CSEQ:
        raise SipParseError(f"malformed CSeq {req.get('CSeq')!r}", status=400, message=req)
    if method != req.method:
        raise SipParseError(f"CSeq method {method} differs from {req.method}", status=400,
                            message=req)
    if req.branch is None and not req.get_all("Via")[0].upper().startswith("SIP/2.0/"):
        raise SipParseError("malformed Via header", status=400, message=req)
    mf = req.get("Max-Forwards")
    if mf is not None and not mf.strip().isdigit():
        raise SipParseError(f"malformed Max-Forwards {mf!r}", status=400, message=req)


def response_to(req: SipRequest, status: int, reason: str, *, to_tag: str | None = None
                ) -> SipResponse:
    """A response copying Via, From, To, Call-ID and CSeq (RFC 3261 8.2.6.2)."""
    resp = SipResponse(status=status, reason=reason)
    for v in req.get_all("Via"):
        resp.add("Via", v)
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = req.get(name)
        if value is not None:
            if name == "To" and to_tag and "tag" not in addr_params(value):
                value = f"{value};tag={to_tag}"
            resp.add(name, value)
    return resp


def via_params(via: str) -> dict[str, str]:
    """``SIP/2.0/UDP host:port;branch=z9..;rport`` -> {"branch": "z9..", "rport": ""}."""
    _, _, params = via.partition(";")
    return _params(params)


def _params(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for piece in text.split(";"):
        key, _, value = piece.strip().partition("=")
        if key:
            out[key.lower()] = value.strip().strip('"')
    return out


_NAME_ADDR = re.compile(r'^\s*(?:"(?:[^"\\]|\\.)*"|[^<"]*)?\s*<([^>]*)>(.*)$')


def addr_uri(value: str) -> str:
    """The URI of a From/To/Contact value, with or without angle brackets."""
    m = _NAME_ADDR.match(value)
    if m:
        return m.group(1).strip()
    return value.split(";", 1)[0].strip()


def addr_params(value: str) -> dict[str, str]:
    """Header parameters of a From/To value (``tag``), not the URI's own."""
    m = _NAME_ADDR.match(value)
    rest = m.group(2) if m else ";" + value.split(";", 1)[1] if ";" in value else ""
    return _params(rest)


def uri_user(uri: str) -> str | None:
    """``sip:+15551234567@host;user=phone`` -> ``+15551234567``; None without a user part."""
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme.lower() not in ("sip", "sips", "tel"):
        return None
    if scheme.lower() == "tel":
        return unquote(rest.split(";", 1)[0]) or None
    user, at, _ = rest.partition("@")
    if not at:
        return None
    return unquote(user.split(";", 1)[0]) or None
