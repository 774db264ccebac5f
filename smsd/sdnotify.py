"""systemd notification (sd_notify) without a dependency.

The protocol is one datagram per notification to the unix socket named in
$NOTIFY_SOCKET (a leading "@" means the abstract namespace), see
sd_notify(3).  Outside systemd the variable is unset and every call is a no-op.
"""

from __future__ import annotations

import os
import socket

import structlog

log = structlog.get_logger(__name__)


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        self._address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._sock: socket.socket | None = None
        if self._address:
            addr = self._address
            if addr.startswith("@"):
                addr = "\0" + addr[1:]
            self._target = addr
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, state: str) -> None:
        """Send ``state`` ("READY=1", "WATCHDOG=1", ...); failures are logged, never raised.

        A datagram to a local unix socket never blocks for long; a full queue is
        reported and dropped (systemd would then restart us on watchdog, as it should).
        """
        if self._sock is None:
            return
        try:
            self._sock.sendto(state.encode("utf-8"), self._target)
        except OSError as exc:
            log.warning("sdnotify.failed", state=state.split("=")[0], error=str(exc))

    def ready(self, status: str = "") -> None:
        self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval() -> float | None:
    """Half of $WATCHDOG_USEC in seconds, as sd_watchdog_enabled(3) advises; None if off."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2_000_000, 0.1)
    except ValueError:
        return None
