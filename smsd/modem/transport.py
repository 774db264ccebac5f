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
import functools
import os
import re
import stat
import termios
from collections.abc import Callable
from urllib.parse import urlparse

import serial
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
    """A socket:// modem (a serial server, ser2net) as a byte stream; every failure is PortGone.

    Read through asyncio's StreamReader by a task of its own that hands each
    chunk to the channel; serial ports and ptys use FdTransport instead.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 path: str) -> None:
        self.path = path
        self._reader = reader
        self._writer = writer
        self._closed = False
        self._pump: asyncio.Task[None] | None = None

    def start_reading(self, on_data: Callable[[bytes], None],
                      on_lost: Callable[[PortGone], None]) -> None:
        """Hand every chunk read to ``on_data``; the end of the stream to ``on_lost``."""
        self._pump = asyncio.create_task(self._read_into(on_data, on_lost),
                                         name=f"at-read {self.path}")

    async def _read_into(self, on_data: Callable[[bytes], None],
                         on_lost: Callable[[PortGone], None]) -> None:
        while True:
            try:
                data = await self._reader.read(READ_CHUNK)
            except (OSError, serial.SerialException) as exc:
                on_lost(PortGone(f"{self.path}: {exc}"))
                return
            if not data:
                on_lost(PortGone(f"{self.path}: end of file"))
                return
            on_data(data)

    def write_now(self, data: bytes) -> None:
        """Hand ``data`` to the socket without waiting (asyncio buffers what it cannot send)."""
        if self._closed or self._writer.is_closing():
            raise PortGone(f"{self.path}: closed")
        try:
            self._writer.write(data)
        except (OSError, RuntimeError) as exc:
            raise PortGone(f"{self.path}: {exc}") from exc

    async def write(self, data: bytes) -> None:
        self.write_now(data)
        if not self._writer.transport.get_write_buffer_size():
            # The kernel took it all (the usual case for a command line):
            # no need to wait, and no timer to arm and cancel per write.
            return
        try:
            async with asyncio.timeout(WRITE_TIMEOUT):
                await self._writer.drain()
        except TimeoutError as exc:
            raise PortGone(f"{self.path}: write blocked for {WRITE_TIMEOUT:g} s") from exc
        except (OSError, RuntimeError) as exc:
            raise PortGone(f"{self.path}: {exc}") from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        # abort, not close: output still queued for a vanished modem would
        # otherwise hold the close open until it drains (never).
        if not self._writer.transport.is_closing():
            self._writer.transport.abort()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._writer.wait_closed()


class FdTransport:
    """A serial port or pty read and written through its file descriptor on the event loop.

    pyserial opens and configures the port (flock, termios) and closes it;
    the bytes themselves go through ``os.read``/``os.write`` on the
    non-blocking descriptor, read from a reader callback of the loop that
    hands each chunk straight to the channel.  pyserial's own read costs a
    ``select()`` and two Timeout objects per chunk, and a StreamReader adds a
    buffer and a task wake-up: several per SMS (issue 17).
    """

    def __init__(self, ser: serial.Serial, path: str, fd: int, exclusive: bool) -> None:
        self.path = path
        self._ser = ser
        self._fd = fd
        self._exclusive = exclusive      # TIOCEXCL set: cleared on close
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._reading = False
        self._on_data: Callable[[bytes], None] | None = None
        self._on_lost: Callable[[PortGone], None] | None = None
        self._out = bytearray()          # what the kernel has not taken yet
        self._drained: list[asyncio.Future[None]] = []
        self._write_error: PortGone | None = None

    # ------------------------------------------------------------ reading

    def start_reading(self, on_data: Callable[[bytes], None],
                      on_lost: Callable[[PortGone], None]) -> None:
        """Hand every chunk read to ``on_data``; a dead port (EOF, EIO) to ``on_lost``."""
        self._on_data, self._on_lost = on_data, on_lost
        self._loop.add_reader(self._fd, self._readable)
        self._reading = True

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:          # EIO: the modem (or the pty's peer) went away
            self._lost(PortGone(f"{self.path}: {exc}"))
            return
        if not data:
            self._lost(PortGone(f"{self.path}: end of file"))
            return
        assert self._on_data is not None
        self._on_data(data)

    def _lost(self, exc: PortGone) -> None:
        self._stop_reading()
        if self._on_lost is not None:
            self._on_lost(exc)

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    # ------------------------------------------------------------ writing

    def write_now(self, data: bytes) -> None:
        """Hand ``data`` to the port without waiting: what the kernel does not take
        now is written from a writer callback (a PDU after the ``> `` prompt, from
        the read callback that saw the prompt).  A blocked port shows as the
        missing answer: the caller's deadline, not a write timeout."""
        if self._closed:
            raise PortGone(f"{self.path}: closed")
        if self._write_error is not None:
            raise self._write_error
        if self._out:
            self._out += data
            return
        try:
            n = os.write(self._fd, data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            raise PortGone(f"{self.path}: {exc}") from exc
        if n < len(data):
            self._out += data[n:]
            self._loop.add_writer(self._fd, self._writable)

    async def write(self, data: bytes) -> None:
        self.write_now(data)
        if not self._out:
            return       # the usual case: the kernel took it all, no timer, no wait
        fut = self._loop.create_future()
        self._drained.append(fut)
        try:
            async with asyncio.timeout(WRITE_TIMEOUT):
                await fut
        except TimeoutError as exc:
            raise PortGone(f"{self.path}: write blocked for {WRITE_TIMEOUT:g} s") from exc
        finally:
            if fut in self._drained:
                self._drained.remove(fut)

    def _writable(self) -> None:
        try:
            n = os.write(self._fd, self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._write_error = PortGone(f"{self.path}: {exc}")
            self._out.clear()
            self._loop.remove_writer(self._fd)
            self._answer_writers(self._write_error)
            return
        del self._out[:n]
        if not self._out:
            self._loop.remove_writer(self._fd)
            self._answer_writers(None)

    def _answer_writers(self, exc: PortGone | None) -> None:
        waiting, self._drained = self._drained, []
        for fut in waiting:
            if not fut.done():
                if exc is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(exc)

    # ------------------------------------------------------------ closing

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_reading()
        if self._out:
            self._loop.remove_writer(self._fd)
            self._out.clear()
        self._answer_writers(PortGone(f"{self.path}: closed"))
        if self._exclusive:
            with contextlib.suppress(OSError):
                fcntl.ioctl(self._fd, termios.TIOCNXCL)
        # Output still queued for a vanished modem would hold close() open
        # until it drains (never): drop it, then close in a thread.
        with contextlib.suppress(OSError, termios.error):
            termios.tcflush(self._fd, termios.TCOFLUSH)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._loop.run_in_executor(None, self._ser.close)


async def open_transport(path: str, baudrate: int = 115200) -> Transport | FdTransport:
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
    loop = asyncio.get_running_loop()
    # timeout 0: never blocks (only the descriptor is used for the bytes).
    opening = functools.partial(serial.Serial, real, baudrate=baudrate, exclusive=True,
                                rtscts=False, dsrdtr=False, timeout=0, write_timeout=0)
    try:
        async with asyncio.timeout(OPEN_TIMEOUT):
            ser = await loop.run_in_executor(None, opening)
    except serial.SerialException as exc:
        if "lock" in str(exc).lower():
            raise PortBusy(path, f"this process (pid {os.getpid()})") from exc
        raise PortGone(f"{path}: {exc}") from exc
    except (OSError, TimeoutError) as exc:
        raise PortGone(f"{path}: {exc}") from exc
    fd: int = ser.fd
    os.set_blocking(fd, False)
    exclusive = True
    try:
        fcntl.ioctl(fd, termios.TIOCEXCL)
    except OSError:
        exclusive = False
    log.debug("modem.port_opened", path=path, device=real)
    return FdTransport(ser, path, fd, exclusive)
