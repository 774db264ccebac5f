"""A scripted modem on a real pseudo-terminal, written from TS 27.005/27.007.

The driver under test opens the pty slave exactly as it would a USB port.
The script answers commands in V.250 verbose form (``<CR><LF>text<CR><LF>``),
the SMS prompt is ``<CR><LF>> `` (TS 27.005 3.5.1) and the PDU ends with
Ctrl-Z.  Tests can inject URCs at any moment, send every byte on its own,
fall silent, or cut the pty mid-command.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import termios
import tty
from collections.abc import Callable
from dataclasses import dataclass, field

Reply = list[str] | Callable[[str], list[str]]


@dataclass
class Stored:
    stat: int
    pdu: str
    mem: str = "SM"


@dataclass
class ScriptedModem:
    link: str | None = None
    fragmented: bool = False          # write replies one byte per event-loop turn
    echo: bool = True                 # V.250 E1 until ATE0
    silent: bool = False
    received: list[str] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)
    path: str = ""

    def __post_init__(self) -> None:
        self._rules: list[tuple[re.Pattern[str], Reply, bool]] = []
        self._master = -1
        self._slave = -1
        self._buf = bytearray()
        self._in_pdu: str | None = None
        self._writer: asyncio.Task[None] | None = None
        self._out: asyncio.Queue[bytes] = asyncio.Queue()
        self.on_pdu: Callable[[str, str], list[str]] = self._default_pdu
        self.next_mr = 1
        self.store: dict[int, Stored] = {}
        self.mem1 = "SM"                  # +CPMS <mem1>: where +CMGL/+CMGR/+CMGD act

    # ---------------------------------------------------------------- script

    def reply_to(self, command: str, reply: Reply) -> None:
        """Answer every ``command`` (regex, whole line) with ``reply``; latest rule wins."""
        self._rules.insert(0, (re.compile(command), reply, False))

    def reply_once(self, command: str, reply: Reply) -> None:
        self._rules.insert(0, (re.compile(command), reply, True))

    def inject(self, *lines: str) -> None:
        """Send unsolicited lines now (between or inside responses)."""
        for line in lines:
            self._send(f"\r\n{line}\r\n".encode())

    def send_raw(self, data: bytes) -> None:
        self._send(data)

    # ---------------------------------------------------------------- pty

    async def start(self) -> str:
        self._open_pty()
        self._writer = asyncio.create_task(self._write_loop())
        return self.path

    def _open_pty(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave, termios.TCSANOW)
        os.set_blocking(self._master, False)
        slave_name = os.ttyname(self._slave)
        if self.link:
            tmp = self.link + ".new"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(slave_name, tmp)
            os.replace(tmp, self.link)
            self.path = self.link
        else:
            self.path = slave_name
        asyncio.get_running_loop().add_reader(self._master, self._on_readable)

    def _close_pty(self) -> None:
        if self._master >= 0:
            asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            os.close(self._slave)
            self._master = self._slave = -1
        self._buf.clear()
        self._in_pdu = None

    async def unplug(self) -> None:
        """Cut the line: the driver's next read fails as when a USB modem is pulled."""
        self._close_pty()

    async def replug(self) -> None:
        """A new pty behind the same link (a re-enumerated USB modem)."""
        self.echo = True
        self._open_pty()

    async def stop(self) -> None:
        self._close_pty()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        if self.link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)

    def _send(self, data: bytes) -> None:
        self._out.put_nowait(data)

    async def _write_loop(self) -> None:
        while True:
            data = await self._out.get()
            if self._master < 0:
                continue
            chunks = [data[i:i + 1] for i in range(len(data))] if self.fragmented else [data]
            for chunk in chunks:
                with contextlib.suppress(OSError):
                    if self._master >= 0:
                        os.write(self._master, chunk)
                if self.fragmented:
                    await asyncio.sleep(0)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except OSError:
            return
        for byte in data:
            if self._in_pdu is not None:
                if byte == 0x1A:
                    pdu, self._in_pdu = self._in_pdu, None
                    self.submitted.append(pdu)
                    self._answer(self.on_pdu(self.received[-1], pdu))
                elif byte == 0x1B:
                    self._in_pdu = None
                else:
                    self._in_pdu += chr(byte)
                continue
            if byte == 0x0D:
                line = self._buf.decode("ascii", "replace").strip()
                self._buf.clear()
                if line:
                    self._command(line)
            elif byte != 0x0A:
                self._buf.append(byte)

    def _command(self, line: str) -> None:
        self.received.append(line)
        if self.echo:
            self._send(line.encode() + b"\r")
        if line.upper() == "ATE0":
            self.echo = False
        if self.silent:
            return
        if line.upper().startswith("AT+CMGS="):
            self._in_pdu = ""
            self._send(b"\r\n> ")
            return
        for i, (pattern, reply, once) in enumerate(self._rules):
            if pattern.fullmatch(line):
                if once:
                    del self._rules[i]
                self._answer(reply(line) if callable(reply) else reply)
                return
        self._answer(["ERROR"])

    def _answer(self, lines: list[str]) -> None:
        if lines:
            self._send(b"".join(f"\r\n{x}\r\n".encode() for x in lines))

    def _default_pdu(self, command: str, pdu: str) -> list[str]:
        mr = self.next_mr
        self.next_mr = (self.next_mr + 1) % 256
        return [f"+CMGS: {mr}", "OK"]

    # ---------------------------------------------------------------- a standard modem

    def install_standard(self, *, manufacturer: str = "ACME", model: str = "M1",
                         cpin: str = "READY", creg: int = 1,
                         own_number: str | None = "+447700900001",
                         csca: str = "+447785016005") -> None:
        """The answers TS 27.005/27.007 prescribe for a ready, registered modem."""
        ok: list[str] = ["OK"]
        for cmd in ("AT", "ATE0", r"AT\+CMEE=1", r"AT\+CMGF=0", r"AT\+CNMI=.*", r"AT\+CSCA=.*"):
            self.reply_to(cmd, ok)
        self.reply_to(r"AT\+CMEE\?", ["+CMEE: 1", "OK"])
        self.reply_to(r"AT\+CGMI", [manufacturer, "OK"])
        self.reply_to(r"AT\+CGMM", [model, "OK"])
        self.reply_to(r"AT\+CGMR", ["1.0", "OK"])
        self.reply_to(r"AT\+CGSN", ["356938035643809", "OK"])
        self.reply_to(r"AT\+CIMI", ["234150999999999", "OK"])
        self.reply_to(r"AT\+CPIN\?", [f"+CPIN: {cpin}", "OK"])
        self.reply_to(r"AT\+CREG\?", [f"+CREG: 0,{creg}", "OK"])
        self.reply_to(r"AT\+CEREG\?", [f"+CEREG: 0,{creg}", "OK"])
        self.reply_to(r"AT\+CREG=\d", ok)
        self.reply_to(r"AT\+CEREG=\d", ok)
        self.reply_to(r"AT\+COPS\?", ['+COPS: 0,0,"ACME UK",7', "OK"])
        self.reply_to(r"AT\+CSQ", ["+CSQ: 20,99", "OK"])
        self.reply_to(r"AT\+CSCA\?", [f'+CSCA: "{csca}",145', "OK"])
        self.reply_to(r"AT\+CNUM", ([f'+CNUM: "","{own_number}",145'] if own_number else [])
                      + ["OK"])
        self.reply_to(r"AT\+CPMS=.*", self._cpms)
        self.reply_to(r"AT\+CPMS\?", self._cpms)
        self.reply_to(r"AT\+CMGL=4", self._cmgl)
        self.reply_to(r"AT\+CMGR=\d+", self._cmgr)
        self.reply_to(r"AT\+CMGD=\d+", self._cmgd)
        self.reply_to(r"AT\+CNMA", ok)

    def _cpms(self, line: str) -> list[str]:
        if "=" in line and not line.endswith("?"):
            self.mem1 = line.split("=", 1)[1].split(",")[0].strip('"')
        used = len(self.store)
        if line.endswith("?"):
            return [f'+CPMS: "SM",{used},30,"SM",{used},30,"SM",{used},30', "OK"]
        return [f"+CPMS: {used},30,{used},30,{used},30", "OK"]

    def put_sms(self, pdu: str, *, stat: int = 0, mem: str = "SM") -> int:
        index = max(self.store, default=0) + 1
        self.store[index] = Stored(stat, pdu, mem)
        return index

    def _cmgl(self, line: str) -> list[str]:
        out: list[str] = []
        for index, s in sorted(self.store.items()):
            if s.mem != self.mem1:
                continue
            out += [f"+CMGL: {index},{s.stat},,{len(s.pdu) // 2 - 1 - int(s.pdu[:2], 16)}", s.pdu]
        return [*out, "OK"]

    def _cmgr(self, line: str) -> list[str]:
        index = int(line.split("=")[1])
        s = self.store.get(index)
        if s is None or s.mem != self.mem1:
            return ["+CMS ERROR: 321"]         # invalid memory index
        return [f"+CMGR: {s.stat},,{len(s.pdu) // 2 - 1 - int(s.pdu[:2], 16)}", s.pdu, "OK"]

    def _cmgd(self, line: str) -> list[str]:
        index = int(line.split("=")[1])
        if index in self.store and self.store[index].mem == self.mem1:
            del self.store[index]
        return ["OK"]
