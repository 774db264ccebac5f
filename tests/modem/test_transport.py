"""transport.py: exclusive open of ptys, PortBusy naming the holder, socket:// ports."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from smsd.errors import PortBusy, PortGone
from smsd.modem import transport as transport_module
from smsd.modem.channel import AtChannel
from smsd.modem.transport import open_transport
from tests.fakes.scripted_modem import ScriptedModem

pytestmark = pytest.mark.timeout(20)


async def test_port_held_by_other_process(fake: ScriptedModem) -> None:
    """A port another process has open is refused with PortBusy naming it and its pid."""
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", f"import sys,time; f=open({fake.path!r},'rb'); "
                              "print('held', flush=True); time.sleep(30)",
        stdout=asyncio.subprocess.PIPE)
    try:
        assert holder.stdout is not None
        await asyncio.wait_for(holder.stdout.readline(), 10)
        with pytest.raises(PortBusy) as err:
            await open_transport(fake.path)
        assert f"(pid {holder.pid})" in (err.value.holder or "")
        assert fake.path in str(err.value)
    finally:
        holder.kill()
        await holder.wait()


async def test_port_open_twice_in_process(fake: ScriptedModem) -> None:
    """The exclusive lock refuses a second open of the same port by this process."""
    first = await open_transport(fake.path)
    try:
        with pytest.raises(PortBusy):
            await open_transport(fake.path)
    finally:
        await first.close()
    second = await open_transport(fake.path)     # released on close
    await second.close()


async def test_missing_port(tmp_path: object) -> None:
    """A path that does not exist is PortGone, not a crash."""
    with pytest.raises(PortGone):
        await open_transport("/dev/does-not-exist-smsd")


@pytest.mark.parametrize("path", ["/dev/null", "__regular_file__"])
async def test_not_a_serial_port(path: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A character device that is no terminal, or a plain file, is refused as 'not a
    serial port' (not 'busy', not a bare ioctl error)."""
    if path == "__regular_file__":
        path = str(tmp_path / "hostname")
        (tmp_path / "hostname").write_text("x")
    with pytest.raises(PortGone, match="not a serial port"):
        await open_transport(path)


async def test_socket_port() -> None:
    """socket://127.0.0.1:<port> carries AT like a serial port (e.g. ser2net)."""
    async def modem(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readuntil(b"\r"):
            if line.strip() == b"AT+CGMI":
                writer.write(b"\r\nSIMCOM INCORPORATED\r\n\r\nOK\r\n")
            await writer.drain()

    server = await asyncio.start_server(modem, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stream = await open_transport(f"socket://127.0.0.1:{port}")
    chan = AtChannel(stream, lambda u: None)
    chan.start()
    try:
        assert await chan.command("AT+CGMI") == ["SIMCOM INCORPORATED"]
    finally:
        await chan.close()
        server.close()
        await server.wait_closed()


async def test_socket_refused() -> None:
    """A socket port nobody listens on is PortGone."""
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    with pytest.raises(PortGone):
        await open_transport(f"socket://127.0.0.1:{port}")


class TestWriteBackpressure:
    """A write the kernel cannot take at once waits for the modem to read it, bounded
    by WRITE_TIMEOUT; a short write returns at once.  Real pty, nothing scripted."""

    @staticmethod
    def _pty() -> tuple[int, str]:
        master, slave = os.openpty()
        path = os.ttyname(slave)
        os.close(slave)
        os.set_blocking(master, False)
        return master, path

    async def test_large_write_waits_until_read_and_arrives_whole(self) -> None:
        """1 MB (far beyond the pty buffer) arrives complete and in order once read."""
        master, path = self._pty()
        transport = await open_transport(path)
        payload = bytes(range(256)) * 4096
        got = bytearray()
        try:
            writing = asyncio.create_task(transport.write(payload))
            async with asyncio.timeout(15):
                while len(got) < len(payload):
                    try:
                        got += os.read(master, 65536)
                    except BlockingIOError:
                        await asyncio.sleep(0.001)
                await writing
            assert bytes(got) == payload
        finally:
            await transport.close()
            os.close(master)

    async def test_write_now_beyond_the_buffer_arrives_whole_after_later_writes_wait(
            self) -> None:
        """write_now (the PDU from the prompt's read callback) never waits: what the
        kernel does not take is written as the modem reads, ahead of a later write,
        so 1 MB and then a command line arrive complete and in order."""
        master, path = self._pty()
        transport = await open_transport(path)
        payload = bytes(range(256)) * 4096
        got = bytearray()
        try:
            transport.write_now(payload)
            writing = asyncio.create_task(transport.write(b"AT\r"))
            async with asyncio.timeout(15):
                while len(got) < len(payload) + 3:
                    try:
                        got += os.read(master, 65536)
                    except BlockingIOError:
                        await asyncio.sleep(0.001)
                await writing
            assert bytes(got) == payload + b"AT\r"
        finally:
            await transport.close()
            os.close(master)

    async def test_write_nobody_reads_fails_after_the_deadline(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A modem that stops reading: PortGone saying the write blocked, not a hang."""
        monkeypatch.setattr(transport_module, "WRITE_TIMEOUT", 0.3)
        master, path = self._pty()
        transport = await open_transport(path)
        try:
            with pytest.raises(PortGone, match="write blocked"):
                await transport.write(b"x" * (1 << 20))
        finally:
            await transport.close()
            os.close(master)
