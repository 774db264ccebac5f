"""Bytes from a modem -> text lines and the SMS ``> `` prompt (sans-I/O).

A modem talks in lines ended by CR and/or LF (TS 27.007 4.1: S3/S4), except
for the SMS text prompt, which TS 27.005 3.5.1 defines as
``<CR><LF><greater_than><space>`` with no line end after it.  The framer is
pure so that it can be fed one byte at a time in tests; it never raises on
what a modem sends: noise and overlong lines are dropped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

# The longest legitimate line: an SMS PDU line is at most 2 * (12 SMSC + 164
# TPDU) = 352 hex digits; +COPS=? lists and +CUSD replies in UCS-2 hex run to
# about 2 kB.  4 kB leaves room and bounds memory against a babbling port.
MAX_LINE = 4096

PROMPT = "> "
_TERMINATORS = b"\r\n"


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
    return all(0x20 <= b < 0x7F or b == 0x09 for b in raw)


class LineFramer:
    """Feed bytes, get complete frames; keeps at most MAX_LINE bytes buffered."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buf = bytearray()
        self._max = max_line
        self._discarding = False   # inside an overlong line: drop until its end
        self.stats = FramerStats()

    def feed(self, data: bytes) -> list[Frame]:
        out: list[Frame] = []
        for byte in data:
            if byte in _TERMINATORS:
                self._end_line(out)
                continue
            if self._discarding:
                continue
            self._buf.append(byte)
            if len(self._buf) > self._max:
                self._buf.clear()
                self._discarding = True
                self.stats.overlong += 1
                continue
            if len(self._buf) == 2 and self._buf == b"> ":
                self._buf.clear()
                self.stats.prompts += 1
                out.append(Prompt())
        return out

    def _end_line(self, out: list[Frame]) -> None:
        if self._discarding:
            self._discarding = False
            self._buf.clear()
            return
        if not self._buf:
            return
        raw = bytes(self._buf).strip(b"\x00")  # some modems emit NULs around a reboot
        self._buf.clear()
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
