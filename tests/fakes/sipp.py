"""The carrier's side of the SIP trunk: real SIPp (Debian ``sip-tester``) on loopback.

Scenarios live in tests/gateways/sipp/.  A UAS scenario plays the carrier's
proxy answering smsd's MESSAGEs; a UAC scenario plays the carrier delivering
one.  SIPp writes every message it sent and received to a trace file
(``-trace_msg``); tests read what the carrier *received* from there.

Start-up is awaited on an event, not a delay: the scenario's socket showing up
bound in /proc/net (SIPp prints nothing before its first screen refresh).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.fakes.ports import free_port

SCENARIOS = Path(__file__).resolve().parent.parent / "gateways" / "sipp"
SIPP = shutil.which("sipp")
# Polling /proc/net while SIPp binds: a few milliseconds per look.
BIND_POLL_S = 0.01
# The trace file's separator between messages.
_SEPARATOR = "-" * 47


def _bound(port: int, transport: str) -> bool:
    table = "/proc/net/udp" if transport == "udp" else "/proc/net/tcp"
    want = f"0100007F:{port:04X}"
    with open(table) as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[1] == want and (transport == "udp" or cols[3] == "0A"):  # 0A = LISTEN
                return True
    return False


@dataclass
class Sipp:
    scenario: str
    port: int
    transport: str
    trace: Path
    process: asyncio.subprocess.Process

    async def wait(self) -> int:
        """SIPp's exit status once it ends (0: every call passed)."""
        return await self.process.wait()

    def output(self) -> str:
        return (self.trace.parent / f"{self.trace.stem}.out").read_text(errors="replace")

    def received(self) -> list[str]:
        """Every SIP message SIPp received, in order, as text."""
        return self._messages("received")

    def sent(self) -> list[str]:
        return self._messages("sent")

    def _messages(self, way: str) -> list[str]:
        if not self.trace.exists():
            return []
        out: list[str] = []
        for chunk in self.trace.read_text(errors="replace").split(_SEPARATOR):
            head, _, body = chunk.partition("\n\n")
            if f"message {way}" in head:
                out.append(body.strip("\n").replace("\n", "\r\n"))
        return out

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            with contextlib.suppress(ProcessLookupError):
                await self.process.wait()


async def start_sipp(
    scenario: str,
    workdir: Path,
    *,
    transport: str = "udp",
    calls: int = 1,
    keys: Mapping[str, str] | None = None,
    remote: tuple[str, int] | None = None,
    port: int | None = None,
    extra: Sequence[str] = (),
    trace: bool = True,
) -> Sipp:
    """Run ``scenario`` (a file in SCENARIOS); returns once its socket is bound."""
    assert SIPP is not None, "sipp is not installed (Debian package sip-tester)"
    port = port or free_port()
    name = Path(scenario).stem
    trace_file = workdir / f"sipp-{name}-{port}.log"
    args = [
        SIPP, "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1", "-p", str(port),
        "-m", str(calls), "-nostdin", "-t", "u1" if transport == "udp" else "t1",
        *(["-trace_msg", "-message_file", str(trace_file)] if trace else []),
        # a scenario that waits longer than this for smsd has failed; it ends
        # the process so a test never hangs on it (pytest-timeout is the outer bound)
        "-timeout", "60s", "-timeout_error",
    ]
    for k, v in (keys or {}).items():
        args += ["-key", k, v]
    args += list(extra)
    if remote is not None:
        args.append(f"{remote[0]}:{remote[1]}")
    # a local file opened once per test: not worth a thread
    out = open(trace_file.parent / f"{trace_file.stem}.out", "wb")  # noqa: ASYNC230
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
        cwd=workdir,
    )
    out.close()
    sipp = Sipp(scenario, port, transport, trace_file, proc)
    if remote is None:  # a UAS: wait until it listens
        while not _bound(port, transport):
            if proc.returncode is not None:
                raise RuntimeError(f"sipp exited with {proc.returncode}: {sipp.output()}")
            await asyncio.sleep(BIND_POLL_S)
    return sipp


def parse_headers(message: str) -> tuple[str, dict[str, str], str]:
    """(start line, {lower-case name: first value}, body) of a traced message."""
    head, _, body = message.partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return lines[0], headers, body
