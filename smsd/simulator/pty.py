"""The simulated modem's end of a pseudo-terminal: bytes in and out, on the event loop.

The slave path (and a stable symlink to it) is what a driver opens like a
USB serial port; the master is read with ``loop.add_reader``.  We keep the
slave open ourselves so that a driver closing the port is not a hang-up for
us, and closing both ends (and removing the link) is exactly what an
unplugged USB modem looks like to the driver: EIO on its fd, and no device.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import tty

import structlog

log = structlog.get_logger(__name__)

# Bytes queued toward the driver when it does not read (a modem's UART FIFO
# and USB buffers are of this order); beyond this, output is dropped.
MAX_OUTPUT_BACKLOG = 64 * 1024
# Unread input kept from a driver that writes without waiting for answers.
MAX_INPUT_BACKLOG = 64 * 1024
READ_CHUNK = 4096


class PtyPort:
    def __init__(self, name: str) -> None:
        self.name = name
        self.link: str | None = None
        self.slave_path = ""
        self.silent = False
        self._master = -1
        self._slave = -1
        self._inbuf = bytearray()
        self._data = asyncio.Event()
        self._out = bytearray()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def path(self) -> str:
        return self.link or self.slave_path

    def open(self, link: str | None) -> str:
        """A new pty pair; ``link`` (re-)pointed at its slave atomically."""
        self._loop = asyncio.get_running_loop()
        self.link = link
        master, slave = os.openpty()
        # Raw on our side too: otherwise the line discipline would echo the
        # driver's bytes back to it and turn CR into LF.
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.slave_path = os.ttyname(slave)
        if link:
            tmp = f"{link}.{os.getpid()}.tmp"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(self.slave_path, tmp)
            os.replace(tmp, link)
        self._inbuf.clear()
        self._out.clear()
        self._loop.add_reader(master, self._on_readable)
        return self.slave_path

    def close(self) -> None:
        if self._master >= 0 and self._loop is not None:
            self._loop.remove_reader(self._master)
            self._loop.remove_writer(self._master)
            os.close(self._master)
            os.close(self._slave)
        self._master = self._slave = -1
        self._inbuf.clear()
        self._out.clear()

    def remove_link(self) -> None:
        if self.link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)

    def discard_input(self) -> None:
        self._inbuf.clear()

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                log.warning("simulator.read_failed", modem=self.name, error=str(exc))
            return
        if self.silent or not data:
            return
        if len(self._inbuf) + len(data) > MAX_INPUT_BACKLOG:
            log.warning("simulator.input_dropped", modem=self.name, bytes=len(data))
            return
        self._inbuf += data
        self._data.set()

    def write(self, data: bytes | bytearray, *, force: bool = False) -> None:
        if (self.silent and not force) or self._master < 0:
            return
        if len(self._out) + len(data) > MAX_OUTPUT_BACKLOG:
            log.warning("simulator.output_dropped", modem=self.name, bytes=len(data))
            return
        self._out += data
        self._flush()

    def _flush(self) -> None:
        while self._out and self._master >= 0:
            try:
                n = os.write(self._master, self._out)
            except BlockingIOError:
                assert self._loop is not None
                self._loop.add_writer(self._master, self._flush)
                return
            except OSError as exc:
                log.warning("simulator.write_failed", modem=self.name, error=str(exc))
                self._out.clear()
                return
            del self._out[:n]
        if self._loop is not None and self._master >= 0:
            self._loop.remove_writer(self._master)

    async def read_chunk(self) -> bytes:
        """Everything received and not read yet (waits for at least a byte).

        A chunk, not a byte per await: the modem's parsers walk it without a
        coroutine per byte, which kept a farm of 16 busy modems (issue 17's
        scale rows) answering late; what a parser does not consume it hands
        back with :meth:`unread`.
        """
        while not self._inbuf:
            self._data.clear()
            await self._data.wait()
        data = bytes(self._inbuf)
        self._inbuf.clear()
        return data

    def unread(self, data: bytes) -> None:
        """Put ``data`` back before anything received since (see read_chunk)."""
        if data:
            self._inbuf[:0] = data
