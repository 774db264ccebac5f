"""Open a modem port: serial device, pty, or ``socket://host:port``.

The only module that touches the serial library.  Ports are opened
exclusively (a flock through pyserial plus TIOCEXCL) and a port that another
process already has open is refused with PortBusy naming that process, found
by scanning /proc/*/fd: two programs talking AT on one port corrupt each
other's replies (ModemManager is the usual culprit).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import stat
import termios
from urllib.parse import urlparse

import serial
import serial_asyncio_fast
import structlog

from smsd.errors import PortBusy, PortGone

log = structlog.get_logger(__name__)

# Opening a USB CDC port completes in milliseconds; a port whose driver hangs
# (a modem rebooting mid-enumeration) must not stall the supervisor.  5 s is
# the udev settle budget ModemManager allows for port probing.
OPEN_TIMEOUT = 5.0
# A write only blocks when hardware flow control holds us off; a modem that
# withholds CTS for 10 s is wedged (vendor manuals allow 1-2 s during boot).
WRITE_TIMEOUT = 10.0
# Closing runs the serial library's close in its executor thread; 2 s is
# generous for a close() system call.
CLOSE_TIMEOUT = 2.0
READ_CHUNK = 4096

_PTS = re.compile(r"^/dev/pts/(\d+)$")


def _holders(real: str) -> list[str]:
    """Other processes holding ``real`` open, as ``"name (pid N)"``.

    A process that holds the master side of the same pty is the peer that
    created it (a simulator, socat), not a competitor, and is ignored.
    """
    me = os.getpid()
    pts = _PTS.match(real)
    found: list[str] = []
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        if int(pid) == me:
            continue
        fd_dir = f"/proc/{pid}/fd"
        holds = peer = False
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target == real:
                holds = True
            elif pts and target == "/dev/ptmx" and _master_index(pid, fd) == pts.group(1):
                peer = True
        if holds and not peer:
            found.append(f"{_comm(pid)} (pid {pid})")
    return found


def _resolve(path: str) -> str:
    """Follow by-id links; device-file metadata lives in devfs, never blocks."""
    real = os.path.realpath(path)
    if not os.path.exists(real):
        raise PortGone(f"{path} does not exist")
    st = os.stat(real)
    if not stat.S_ISCHR(st.st_mode):
        raise PortGone(f"{path} is not a serial port (not a character device)")
    # A character device of another class (/dev/null is "mem") would otherwise
    # look busy (every process holds /dev/null) or fail with a bare ioctl
    # error.  sysfs names the class without opening the device (opening and
    # closing a real modem's tty may drop DTR); ptys have no entry there.
    subsystem = f"/sys/dev/char/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}/subsystem"
    if os.path.islink(subsystem):
        kind = os.path.basename(os.readlink(subsystem))
        if kind != "tty":
            raise PortGone(f"{path} is not a serial port (a {kind} device)")
    return real


def _master_index(pid: str, fd: str) -> str | None:
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("tty-index:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _comm(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip() or "?"
    except OSError:
        return "?"


class Transport:
    """A byte stream to one modem; every failure surfaces as PortGone."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 path: str, fd: int | None = None) -> None:
        self.path = path
        self._reader = reader
        self._writer = writer
        self._fd = fd
        self._closed = False

    async def read(self) -> bytes:
        try:
            data = await self._reader.read(READ_CHUNK)
        except (OSError, serial.SerialException) as exc:
            raise PortGone(f"{self.path}: {exc}") from exc
        if not data:
            raise PortGone(f"{self.path}: end of file")
        return data

    async def write(self, data: bytes) -> None:
        if self._closed or self._writer.is_closing():
            raise PortGone(f"{self.path}: closed")
        try:
            self._writer.write(data)
            if not self._writer.transport.get_write_buffer_size():
                # The kernel took it all (the usual case for a command line):
                # no need to wait, and no timer to arm and cancel per write.
                return
            async with asyncio.timeout(WRITE_TIMEOUT):
                await self._writer.drain()
        except TimeoutError as exc:
            raise PortGone(f"{self.path}: write blocked for {WRITE_TIMEOUT:g} s") from exc
        except (OSError, serial.SerialException, RuntimeError) as exc:
            raise PortGone(f"{self.path}: {exc}") from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.ioctl(self._fd, termios.TIOCNXCL)
        # abort, not close: output still queued for a vanished modem would
        # otherwise hold the close open until it drains (never).
        if not self._writer.transport.is_closing():
            self._writer.transport.abort()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._writer.wait_closed()


async def open_transport(path: str, baudrate: int = 115200) -> Transport:
    """Open ``path`` exclusively; raises PortBusy or PortGone."""
    if path.startswith("socket://"):
        url = urlparse(path)
        if not url.hostname or not url.port:
            raise PortGone(f"{path}: expected socket://host:port")
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                reader, writer = await asyncio.open_connection(url.hostname, url.port)
        except (OSError, TimeoutError) as exc:
            raise PortGone(f"{path}: {exc}") from exc
        return Transport(reader, writer, path)

    real = _resolve(path)
    # The scan reads every fd link of every process: thousands of syscalls on
    # a busy PBX, so it runs off the event loop (AT traffic of other modems).
    holders = await asyncio.to_thread(_holders, real)
    if holders:
        raise PortBusy(path, ", ".join(holders))
    try:
        async with asyncio.timeout(OPEN_TIMEOUT):
            reader, writer = await serial_asyncio_fast.open_serial_connection(
                url=real, baudrate=baudrate, exclusive=True, rtscts=False, dsrdtr=False)
    except serial.SerialException as exc:
        if "lock" in str(exc).lower():
            raise PortBusy(path, f"this process (pid {os.getpid()})") from exc
        raise PortGone(f"{path}: {exc}") from exc
    except (OSError, TimeoutError) as exc:
        raise PortGone(f"{path}: {exc}") from exc
    ser = writer.transport.get_extra_info("serial")
    fd: int | None = getattr(ser, "fd", None)
    if fd is not None:
        try:
            fcntl.ioctl(fd, termios.TIOCEXCL)
        except OSError:
            fd = None
    log.debug("modem.port_opened", path=path, device=real)
    return Transport(reader, writer, path, fd)
