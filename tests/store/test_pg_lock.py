"""The node-name lock on the shared database (DESIGN.md invariant 6)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import asyncpg
import pytest

from smsd.errors import NodeLocked
from smsd.store.pg import NodeLock
from smsd.store.pg.migrate import LOCK_NAMESPACE

# How long PostgreSQL may take to end the session of a killed client (the
# kernel closes its socket at once; the backend sees EOF on its next read).
SESSION_END_DEADLINE_S = 30.0

_HOLDER = """
import asyncio, sys
from smsd.store.pg import NodeLock
async def main():
    lock = await NodeLock.acquire(sys.argv[1], sys.argv[2])
    print("locked", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
asyncio.run(main())
"""


async def _lock_held(dsn: str, node: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
            "AND classid = $1::oid AND objid = hashtext($2)::oid AND granted)",
            LOCK_NAMESPACE, node))
    finally:
        await conn.close()


class TestNodeLock:
    async def test_second_daemon_with_the_same_name_is_refused(self, pg_dsn: str) -> None:
        """While node-a holds its lock a second node-a is refused; node-b is not;
        release frees it."""
        first = await NodeLock.acquire(pg_dsn, "node-a")
        try:
            with pytest.raises(NodeLocked, match="node-a"):
                await NodeLock.acquire(pg_dsn, "node-a")
            other = await NodeLock.acquire(pg_dsn, "node-b")
            await other.release()
        finally:
            await first.release()
        again = await NodeLock.acquire(pg_dsn, "node-a")
        assert again.held
        await again.release()
        assert not again.held

    async def test_lock_is_freed_when_the_holder_process_dies(self, pg_dsn: str) -> None:
        """A holder killed with SIGKILL loses its lock with its session; the name is free again.

        1. a real process takes node-a's lock and says so;
        2. another one is refused;
        3. the holder is SIGKILLed (no clean-up runs);
        4. once PostgreSQL ended that session, node-a can be taken again.
        """
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _HOLDER, pg_dsn, "node-a",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        try:
            assert proc.stdout is not None
            while (line := await proc.stdout.readline()).strip() != b"locked":
                assert line, "the holder ended without taking the lock"
            with pytest.raises(NodeLocked):
                await NodeLock.acquire(pg_dsn, "node-a")
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        deadline = time.monotonic() + SESSION_END_DEADLINE_S
        while await _lock_held(pg_dsn, "node-a"):
            assert time.monotonic() < deadline, "the dead holder's session never ended"
            await asyncio.sleep(0.02)
        lock = await NodeLock.acquire(pg_dsn, "node-a")
        await lock.release()
