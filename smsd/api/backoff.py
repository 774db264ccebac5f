"""Back-off for failed logins, per user name and per client address.

scrypt makes each guess cost tens of milliseconds, which still allows tens of
thousands of guesses a day.  After a few free failures (typing mistakes) each
further failure of the same key doubles the wait before that key may try
again; requests inside the wait are answered 429 without checking anything,
so guessing costs the daemon nothing either.  Keyed by address, it stops one
client spraying many user names; keyed by user, it stops many clients
guessing one password.  A success clears the key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# Failures allowed before any wait: a person mistyping a password, or a
# dialplan with a stale one retried a few times, is never slowed down.
FREE_FAILURES = 5
# The first wait; each further failure doubles it.
BASE_WAIT_S = 1.0
# A key's failures are forgotten this long after its last one, so a few
# mistakes a day never add up to a lock.
FORGET_AFTER_S = 900.0
# Keys remembered at most (memory bound under a flood of random user names);
# beyond it the oldest are forgotten first.
MAX_KEYS = 10_000


@dataclass
class _Entry:
    failures: int
    last: float
    until: float


class FailureBackoff:
    def __init__(self, *, max_wait_s: float, free: int = FREE_FAILURES,
                 base_s: float = BASE_WAIT_S, forget_s: float = FORGET_AFTER_S,
                 max_keys: int = MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max_wait_s
        self._free = free
        self._base = base_s
        self._forget = forget_s
        self._max_keys = max_keys
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    def wait_s(self, key: str) -> float:
        """Seconds before ``key`` may try again; 0 when it may now."""
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        now = self._clock()
        if now - entry.last > self._forget:
            del self._entries[key]
            return 0.0
        return max(0.0, entry.until - now)

    def failed(self, key: str) -> float:
        """Count a failure; returns the wait it starts (0 while failures are free)."""
        now = self._clock()
        entry = self._entries.pop(key, None)
        if entry is None or now - entry.last > self._forget:
            entry = _Entry(0, now, now)
        entry.failures += 1
        entry.last = now
        over = entry.failures - self._free
        # the exponent is capped so years of failures cannot overflow a float
        wait = min(self._base * 2.0 ** min(over - 1, 40), self._max) if over > 0 else 0.0
        entry.until = now + wait
        self._entries[key] = entry          # re-inserted: dict order is least recent first
        while len(self._entries) > self._max_keys:
            del self._entries[next(iter(self._entries))]
        return wait

    def succeeded(self, key: str) -> None:
        self._entries.pop(key, None)
