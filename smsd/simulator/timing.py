"""How closely the simulated modems keep their latency, and how fast their peer turns round.

Off unless a benchmark sets ``SimulatedModem.timing`` (issue 17's scale
rows).  A simulated modem is a Python task on a loop shared with its
siblings: when the loop is busy its replies come later than ``latency_ms``,
and a rate measured against the nominal send time then charges the daemon
with the simulator's delay.  The figures kept here split the two: how late
each timed reply was, and how long the peer took from a send's final result
to its next ``AT+CMGS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ReplyTiming:
    late_s: list[float] = field(default_factory=list)        # reply written - reply due
    turnaround_s: list[float] = field(default_factory=list)  # final of a send -> next AT+CMGS
    _final_at: float | None = None

    def replied(self, due: float, now: float) -> None:
        """A reply held back for the latency was written at ``now``, due at ``due``."""
        self.late_s.append(now - due)

    def send_answered(self, now: float) -> None:
        self._final_at = now

    def command_heard(self, line: str, now: float) -> None:
        """Only the next command after a send's final counts, and only a send."""
        final_at, self._final_at = self._final_at, None
        if final_at is not None and line[:8].upper() == "AT+CMGS=":
            self.turnaround_s.append(now - final_at)
