"""The real HTTP API in the test's loop and `smsd` verbs as real subprocesses against it."""

from __future__ import annotations

import asyncio
import os
import pty
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from smsd.services import Services
from smsd.store import Store
from tests.api.conftest import PASSWORD, FakeGateway, api_services, make_config, serving
from tests.backend import open_store

# Start-up of the CLI plus 20 chunks of 500 numbers on a busy machine; bounds a hang only.
CHILD_DEADLINE_S = 110.0


@dataclass
class Rig:
    base: str
    store: Store
    pwfile: Path
    services: Services | None = None

    async def recipients(self) -> list[str]:
        rows = await self.store.fetchall("SELECT recipient, origin FROM messages ORDER BY id")
        assert all(r["origin"] == "bulk" for r in rows)
        return [r["recipient"] for r in rows]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    cfg = make_config(tmp_path)
    store = await open_store(cfg)
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    try:
        services = api_services(cfg, store, FakeGateway("gsm"))
        async with serving(services) as base:
            yield Rig(base, store, pw, services)
    finally:
        await store.close()


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


async def send(rig: Rig, *args: str, stdin: bytes | None = None, tty: bool = False) -> Run:
    """`smsd send ...` as a child process; with ``tty`` its stderr is a real pseudo-terminal."""
    return await verb(rig, "send", *args, stdin=stdin, tty=tty)


async def verb(rig: Rig, name: str, *args: str, stdin: bytes | None = None, tty: bool = False,
               user: str = "alice") -> Run:
    """`smsd NAME ...` as alice (or ``user``), as a child process."""
    cmd = [sys.executable, "-m", "smsd", name, "--url", rig.base, "--user", user,
           "--password-file", str(rig.pwfile), *args]
    master = slave = None
    if tty:
        master, slave = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=slave if slave is not None else asyncio.subprocess.PIPE,
    )
    if slave is not None:
        os.close(slave)
    async with asyncio.timeout(CHILD_DEADLINE_S):
        out, err = await proc.communicate(stdin)
    if master is not None:
        err = await asyncio.to_thread(_drain, master)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


def _drain(fd: int) -> bytes:
    """Everything the child wrote to the pty (it has exited: read until EOF/EIO)."""
    chunks = []
    try:
        while data := os.read(fd, 65536):
            chunks.append(data)
    except OSError:  # EIO: the slave side is closed
        pass
    finally:
        os.close(fd)
    return b"".join(chunks)


