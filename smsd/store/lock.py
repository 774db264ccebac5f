"""One daemon per database: the lock every daemon takes before touching anything.

Two daemons on one SQLite file both run crash recovery, both dispatch the same
queue and delete each other's sockets: every message may go out twice.  So the
daemon takes an exclusive lock *before* it reads or writes anything, holds it
for its whole life and refuses to start when another process holds it.

Why a ``flock`` on a side file (``<database>.lock``):

* the kernel releases it when the holder dies, however it dies (SIGKILL, OOM,
  power loss of a container): a crash never leaves a stale lock for an admin
  to delete, unlike a pid file checked with ``kill -0``;
* it is not SQLite's own locking (which is per transaction, not per process
  life) and never blocks the CLI's read-only report connections;
* the holder writes its pid into the file so the refusal can name it.

A shared PostgreSQL database (several nodes) needs the same guarantee per node
name; ``DaemonLock`` is the interface such a backend implements (for instance
with ``pg_try_advisory_lock`` on a hash of the node name, held on a dedicated
connection whose loss ends the node).  ``daemon_lock`` picks the backend.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Protocol

from smsd.errors import AlreadyRunning

LOCK_SUFFIX = ".lock"
# A pid is at most 7 digits on Linux (pid_max <= 4194304); read a little more.
_HOLDER_MAX = 64


class DaemonLock(Protocol):
    """Exclusive ownership of a database (SQLite) or of a node name on it (PostgreSQL)."""

    @property
    def where(self) -> str:
        """Where the lock lives, for messages (a path, or ``node NAME on HOST/DB``)."""
        ...

    def acquire(self) -> None:
        """Take the lock at once or raise AlreadyRunning naming the holder; never waits."""
        ...

    def release(self) -> None:
        """Give the lock up (also happens when the process dies)."""
        ...


class FileLock:
    """``flock(LOCK_EX | LOCK_NB)`` on ``path``, holding the owner's pid as text."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def where(self) -> str:
        return str(self.path)

    def acquire(self) -> None:
        if self._fd is not None:
            return
        # O_CLOEXEC (Python's default): a child process (a modem tool the
        # daemon might spawn) must not inherit and outlive the lock.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise AlreadyRunning(self.where, holder) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        # Empty the file first: a reader racing the release must not name us.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)   # closing the last descriptor drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_holder(fd: int) -> str | None:
    try:
        raw = os.pread(fd, _HOLDER_MAX, 0)
    except OSError:
        return None
    text = raw.decode("ascii", "replace").strip()
    return text if text.isdigit() else None


def lock_path(database: Path) -> Path:
    """``/var/lib/smsd/smsd.sqlite3`` -> ``/var/lib/smsd/smsd.sqlite3.lock``."""
    return database.with_name(database.name + LOCK_SUFFIX)


def daemon_lock(database: Path) -> DaemonLock:
    """The lock for this daemon's database (SQLite today: a lock file beside it)."""
    return FileLock(lock_path(database))


__all__ = ["DaemonLock", "FileLock", "daemon_lock", "lock_path"]
