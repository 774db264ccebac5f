"""Bytes from a modem -> text lines and the SMS ``> `` prompt (sans-I/O).

A modem talks in lines ended by CR and/or LF (TS 27.007 4.1: S3/S4), except
for the SMS text prompt, which TS 27.005 3.5.1 defines as
``<CR><LF><greater_than><space>`` with no line end after it.  The framer is
pure so that it can be fed one byte at a time in tests; it never raises on
what a modem sends: noise and overlong lines are dropped and counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The longest legitimate line: an SMS PDU line is at most 2 * (12 SMSC + 164
# TPDU) = 352 hex digits; +COPS=? lists and +CUSD replies in UCS-2 hex run to
# about 2 kB.  4 kB leaves room and bounds memory against a babbling port.
MAX_LINE = 4096

PROMPT = "> "
_PROMPT_BYTES = b"> "
# Anything but IRA printables and TAB (see _is_clean).
_UNCLEAN = re.compile(rb"[^\t\x20-\x7e]")


@dataclass(frozen=True)
class Prompt:
    """The ``> `` prompt after ``AT+CMGS=<n>``: the modem waits for the PDU."""


@dataclass
class FramerStats:
    lines: int = 0
    garbage: int = 0      # lines dropped for bytes no AT response contains
    overlong: int = 0     # lines dropped for exceeding MAX_LINE
    prompts: int = 0


Frame = str | Prompt


def _is_clean(raw: bytes) -> bool:
    """AT responses are IRA (7-bit printable, TS 27.007 5.5 +CSCS default)."""
    return _UNCLEAN.search(raw) is None


class LineFramer:
    """Feed bytes, get complete frames; keeps at most MAX_LINE bytes buffered."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buf = bytearray()
        self._max = max_line
        self._discarding = False   # inside an overlong line: drop until its end
        self.stats = FramerStats()

    def feed(self, data: bytes) -> list[Frame]:
        out: list[Frame] = []
        # One C-level split instead of a regex search per line end; every
        # segment but the last was ended by a CR or LF.
        segments = data.replace(b"\r", b"\n").split(b"\n")
        last = len(segments) - 1
        for i, seg in enumerate(segments):
            if seg and not self._discarding:
                if (i < last and not self._buf and 2 <= len(seg) <= self._max
                        and seg[:2] != _PROMPT_BYTES):
                    # A whole line inside this chunk (the usual case): taken
                    # as it is, without passing through the buffer.
                    self._line(seg, out)
                    continue
                self._take(seg, out)
            if i < last and (self._buf or self._discarding):
                self._end_line(out)
        return out

    def _take(self, chunk: bytes, out: list[Frame]) -> None:
        """Buffer ``chunk`` (no line ends in it), spotting the prompt and overlong lines.

        The prompt is exactly two buffered bytes, so only the first bytes after
        an empty buffer need looking at one by one; the rest is one append.
        """
        buf = self._buf
        i = 0
        while len(buf) < 2 and i < len(chunk):
            buf.append(chunk[i])
            i += 1
            if len(buf) > self._max:
                self._overlong()
                return
            if len(buf) == 2 and buf == _PROMPT_BYTES:
                buf.clear()
                self.stats.prompts += 1
                out.append(Prompt())
        if i < len(chunk):
            if len(buf) + len(chunk) - i > self._max:
                self._overlong()
                return
            buf += chunk[i:]

    def _overlong(self) -> None:
        self._buf.clear()
        self._discarding = True
        self.stats.overlong += 1

    def _end_line(self, out: list[Frame]) -> None:
        if self._discarding:
            self._discarding = False
            self._buf.clear()
            return
        if not self._buf:
            return
        raw = bytes(self._buf)
        self._buf.clear()
        self._line(raw, out)

    def _line(self, raw: bytes, out: list[Frame]) -> None:
        """One complete line (its line end not included): a frame unless blank or garbage."""
        raw = raw.strip(b"\x00")  # some modems emit NULs around a reboot
        if not raw.strip():
            return
        if not _is_clean(raw):
            self.stats.garbage += 1
            return
        self.stats.lines += 1
        out.append(raw.decode("ascii").strip())

    @property
    def pending(self) -> bytes:
        """Bytes of an unfinished line (for diagnostics)."""
        return bytes(self._buf)
