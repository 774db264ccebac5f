"""SIP over a byte stream (TCP): bytes -> whole messages, bounded (RFC 3261 18.3). No I/O.

On a stream the Content-Length header is the only frame boundary.  The buffer
never holds more than one message's limit: a header section that does not end
within it, or a Content-Length beyond it, cannot be framed any more, so the
connection is to be closed (``FramingLost``) after an answer where possible.
CRLF keep-alives between messages (RFC 5626 3.5.1) are skipped.
"""

from __future__ import annotations

import re

from smsd.gateways.classound.sipmsg import MAX_MESSAGE_BYTES

_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([0-9]+)[ \t]*\r?$", re.I | re.M)


class FramingLost(Exception):
    """The stream cannot be split into messages any more; ``head`` is what was read."""

    def __init__(self, reason: str, head: bytes) -> None:
        self.head = head
        super().__init__(reason)


class StreamFramer:
    def __init__(self, limit: int = MAX_MESSAGE_BYTES) -> None:
        self._buf = bytearray()
        self._limit = limit

    def feed(self, data: bytes) -> list[bytes]:
        """Whole messages completed by ``data``; raises FramingLost when framing is gone."""
        self._buf += data
        out: list[bytes] = []
        while True:
            while self._buf[:2] == b"\r\n" or self._buf[:1] == b"\n":
                del self._buf[: 2 if self._buf[:2] == b"\r\n" else 1]
            end = self._buf.find(b"\r\n\r\n")
            sep = 4
            if end < 0:
                end = self._buf.find(b"\n\n")
                sep = 2
            if end < 0:
                if len(self._buf) > self._limit:
                    head = bytes(self._buf[: self._limit])
                    self._buf.clear()
                    raise FramingLost(f"no end of headers within {self._limit} bytes", head)
                return out
            head = bytes(self._buf[:end])
            m = _LENGTH.search(head)
            length = int(m.group(1)) if m else 0  # absent: parse() answers 400
            total = end + sep + length
            if total > self._limit:
                self._buf.clear()
                raise FramingLost(f"message of {total} bytes, limit {self._limit}",
                                  head + b"\r\n\r\n")
            if len(self._buf) < total:
                return out
            out.append(bytes(self._buf[:total]))
            del self._buf[:total]
