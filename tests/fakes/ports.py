"""Loopback ports for the servers a test starts, chosen where nothing else takes them.

A port the kernel hands out for ``bind(("127.0.0.1", 0))`` lies in the
ephemeral range (net.ipv4.ip_local_port_range), which every outgoing
connection on the machine draws from as well.  Between choosing such a port
and the daemon binding it (seconds, on a loaded machine) any ``connect()``
anywhere may take it, and the daemon fails to start with "address already in
use" (seen under load: the trunk acceptance test's AGI port).  These ports come
from just below that range, where only explicit binds land.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# How many ports below the ephemeral range to choose from.
_SPAN = 12_000
_LOWEST = 1024


def ephemeral_low() -> int:
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def bindable(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# Every port handed out by this process.  A test takes several ports before
# its daemon binds any of them, so "free right now" alone gave one test the
# same port twice (its AGI and SMTP listeners, seen in CI): a port is handed
# out once per process.
_GIVEN: set[int] = set()


def free_port(rng: random.Random | None = None) -> int:
    """A port free on 127.0.0.1 for both TCP and UDP right now, outside the ephemeral
    range, and never handed out before by this process."""
    hi = ephemeral_low() - 1
    lo = max(_LOWEST, hi - _SPAN)
    rng = rng or random.SystemRandom()
    while True:
        if hi - lo < 100:  # no room below the range on this machine: the kernel's choice
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
        else:
            port = rng.randint(lo, hi)
        if port in _GIVEN:
            continue
        if bindable(port, socket.SOCK_STREAM) and bindable(port, socket.SOCK_DGRAM):
            _GIVEN.add(port)
            return port
