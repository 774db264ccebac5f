"""Faults armed for a moment of the SMS exchange, so tests hit the moments that matter.

A fault injected "now" lands wherever the modem happens to be; the races
worth testing sit at three moments of the exchange, and a test must hit
them every time, not by luck:

* ``prompt``: the modem has read ``AT+CMGS=<n>`` and is about to send ``> ``;
* ``cmgs``: the network took the PDU (the SMS is out) and the modem is about
  to answer ``+CMGS: <mr>`` / ``OK``;
* ``cmgr``: the modem is about to answer ``AT+CMGR`` with a stored message.

At that moment the armed fault fires once: ``garbage`` glues its bytes into
the answer at the start of the line that matters (before ``> ``, on the
``+CMGS:`` line, on the PDU line of ``+CMGR``), as line noise would;
``silent`` withholds the answer and the modem stops talking; ``unplug``
pulls the plug instead of answering.  The control socket can wait for the
moment and report what was in flight (for ``cmgs``: the accepted SMS).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

MOMENTS = ("prompt", "cmgs", "cmgr")
KINDS = ("garbage", "silent", "unplug")
# The answer line each moment's garbage lands on (1-based, empty lines skipped):
# "\r\n> " has the prompt first; "+CMGS: <mr>" is first; a +CMGR answer has
# its header first and the PDU second.
GLUE_LINE = {"prompt": 1, "cmgs": 1, "cmgr": 2}


@dataclass
class Armed:
    kind: str
    data: bytes
    fired: asyncio.Future[dict[str, Any]]


@dataclass
class FaultPlan:
    """Faults waiting for their moment, first armed first fired, per moment."""

    armed: dict[str, deque[Armed]] = field(default_factory=dict)

    def arm(self, moment: str, kind: str, data: bytes = b"") -> asyncio.Future[dict[str, Any]]:
        if moment not in MOMENTS:
            raise ValueError(f"moment must be one of {', '.join(MOMENTS)}, not {moment!r}")
        if kind not in KINDS:
            raise ValueError(f"fault must be one of {', '.join(KINDS)}, not {kind!r}")
        fired: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.armed.setdefault(moment, deque()).append(Armed(kind, data, fired))
        return fired

    def take(self, moment: str) -> Armed | None:
        queue = self.armed.get(moment)
        while queue:
            fault = queue.popleft()
            if not fault.fired.done():      # a waiter that gave up cancelled it
                return fault
        return None

    def pending(self) -> int:
        return sum(1 for q in self.armed.values() for f in q if not f.fired.done())


def glue(answer: bytes, garbage: bytes, line: int) -> bytes:
    """``answer`` with ``garbage`` at the start of its ``line``-th non-empty line."""
    seen = 0
    pos = 0
    while pos < len(answer):
        end = pos
        while end < len(answer) and answer[end] not in b"\r\n":
            end += 1
        if end > pos:
            seen += 1
            if seen == line:
                return answer[:pos] + garbage + answer[pos:]
        pos = end + 1
    return answer + garbage
