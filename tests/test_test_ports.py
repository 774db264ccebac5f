"""The test suite's port picker (tests/fakes/ports.py) never hands out one port twice.

A test takes all its ports before its daemon binds any, so a port that is
merely "free right now" can come back for the second listener of the same
daemon, which then fails to start with "address already in use" (CI: the
Mail2SMS daemon test's AGI and SMTP listeners got one port).
"""

from __future__ import annotations

import random
import socket

from tests.fakes.ports import bindable, ephemeral_low, free_port


class _Repeating(random.Random):
    """Draws the same number twice, then counts up: a picker that trusts "free
    right now" would return the first number twice."""

    def __init__(self, first: int) -> None:
        super().__init__()
        self._draws = [first, first]
        self._next = first + 1

    def randint(self, a: int, b: int) -> int:
        if self._draws:
            return self._draws.pop(0)
        self._next += 1
        return self._next


def _low_free_port() -> int:
    """A port below the ephemeral range, bindable now (a draw free_port would take)."""
    start = max(1024, ephemeral_low() - 6000)
    for port in range(start, start + 500):
        if bindable(port, socket.SOCK_STREAM) and bindable(port, socket.SOCK_DGRAM):
            return port
    raise AssertionError("no free port below the ephemeral range")


def test_the_same_draw_twice_gives_two_ports() -> None:
    """Two calls whose random draws repeat still return two different ports."""
    rng = _Repeating(_low_free_port())
    first = free_port(rng)
    second = free_port(rng)
    assert first != second


def test_many_ports_are_all_distinct() -> None:
    """Two hundred ports taken in a row (no daemon binds them) are all different."""
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
