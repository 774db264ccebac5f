"""Which lines a modem sends unsolicited (URCs): the table and its fast lookup.

Pure: the channel asks the table about every line from the modem before
anything else, so a ``+CMTI`` inside a command's answer never reaches the
command's caller.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

# Unsolicited result codes (TS 27.005 3.4.1 / 27.007 and vendor manuals).
# Entries ending with ":" match as a prefix, the others as a whole line.
URC_TABLE: tuple[str, ...] = (
    "+CMTI:", "+CDSI:", "+CBMI:", "+CMT:", "+CDS:", "+CBM:", "+CUSD:",
    "+CREG:", "+CGREG:", "+CEREG:", "+CPIN:", "+CRING:", "+CLIP:", "+CTZV:", "+CTZE:",
    "RING",
    "^RSSI:", "^HCSQ:", "^BOOT:", "^MODE:", "^SRVST:", "^SIMST:", "^DSFLOWRPT:",  # Huawei
    "SMS DONE", "PB DONE", "+QIND:", "+QUSIM:", "RDY", "+CFUN:", "POWERED DOWN",   # Quectel
    "Call Ready", "SMS Ready", "*PSUTTZ:", "+PACSP",                               # SIMCom
)
# The PDU of these follows on the next line (TS 27.005 3.4.1, +CNMI mt=2 / ds=1).
TWO_LINE = frozenset({"+CMT", "+CDS", "+CBM"})
# Read answers that look like URCs: solicited when the command queries them.
AMBIGUOUS = frozenset({"+CREG", "+CGREG", "+CEREG", "+CPIN", "+CFUN"})


class UrcTable:
    """A URC table as lookups, answering exactly what a scan in table order would.

    Every line from the modem is checked, so a scan of ~35 entries per line
    was a good part of the daemon's CPU per message.  A prefix entry ``X:``
    (no other colon in it) matches a line exactly when the line's text up to
    its first colon is ``X:``, which is one dict lookup; whole-line entries are
    another.  Anything irregular (a colon inside a prefix entry, ``+PACSP``'s
    prefix match) is still scanned, and when several entries match, the one
    earliest in the table wins, as in the scan.
    """

    def __init__(self, entries: tuple[str, ...]) -> None:
        self._prefix: dict[str, tuple[int, str]] = {}
        self._whole: dict[str, tuple[int, str]] = {}
        self._scan: list[tuple[int, str, str]] = []   # (position, prefix, name)
        for i, entry in enumerate(entries):
            if entry.endswith(":"):
                if ":" in entry[:-1]:
                    self._scan.append((i, entry, entry[:-1]))
                else:
                    self._prefix.setdefault(entry, (i, entry[:-1]))
            elif entry == "+PACSP":
                self._scan.append((i, entry, entry))
            else:
                self._whole.setdefault(entry, (i, entry))

    def match(self, line: str) -> str | None:
        colon = line.find(":")
        best = self._prefix.get(line[:colon + 1]) if colon >= 0 else None
        whole = self._whole.get(line)
        if whole is not None and (best is None or whole[0] < best[0]):
            best = whole
        for i, prefix, name in self._scan:
            if best is not None and i > best[0]:
                break
            if line.startswith(prefix):
                best = (i, name)
                break
        return best[1] if best is not None else None


@functools.lru_cache(maxsize=64)
def urc_table(extra: tuple[str, ...]) -> UrcTable:
    return UrcTable((*URC_TABLE, *extra))


def urc_name(line: str, extra: Iterable[str] = ()) -> str | None:
    return urc_table(tuple(extra)).match(line)
