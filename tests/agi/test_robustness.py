"""Acceptance: hostile or broken peers cost nothing and break nothing.

One test drives, against one server: 1,000 connections that close before the
environment ends, a peer sending 10 MB without a newline, peers sending
invalid UTF-8, and 500 concurrent well-formed sessions.  Afterwards traced
memory, open file descriptors and asyncio tasks are back to where they were,
the process is idle (no busy loop left behind), and a normal session still
works.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
import tracemalloc

import pytest

from smsd.agi.handlers import build_handlers
from smsd.agi.server import AgiServer
from tests.agi.conftest import Fakes
from tests.fakes.asterisk_agi import FakeAsteriskAgi

pytestmark = pytest.mark.timeout(60)

# Tolerances for "no growth": small caches (structlog, asyncio) may settle.
MEMORY_TOLERANCE = 512 * 1024
FD_TOLERANCE = 3
# The 10 MB peer must never be buffered: the line limit is 16 KiB and the
# stream pauses reading at twice that.
FLOOD_PEAK_TOLERANCE = 2 * 1024 * 1024
# CPU the process may use while idle for IDLE_S (timer wake-ups only).
IDLE_S = 0.5
IDLE_CPU_S = 0.1


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def settle(srv: AgiServer) -> None:
    """Let closing transports finish (connection_lost callbacks run on the loop)."""
    for _ in range(200):
        if srv.connections == 0:
            break
        await asyncio.sleep(0.01)
    for _ in range(5):
        await asyncio.sleep(0)
    gc.collect()


async def early_close(port: int, payload: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if payload:
        writer.write(payload)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def flood(port: int, total: int) -> int:
    """Send `total` bytes without a newline; return how many the server took."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    chunk = b"A" * 65536
    sent = 0
    try:
        while sent < total:
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
    except ConnectionError:
        pass
    try:
        await reader.read()
    except ConnectionError:
        pass
    writer.close()
    try:
        await writer.wait_closed()
    except ConnectionError:
        pass
    return sent


async def raw_session(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    out = b""
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            out += line
            writer.write(b"200 result=1\n")
            await writer.drain()
    except ConnectionError:
        pass
    writer.close()
    try:
        await writer.wait_closed()
    except ConnectionError:
        pass
    return out


async def test_hostile_peers_cost_nothing(fakes: Fakes) -> None:
    """Steps:
    1. warm up with one normal session, then record memory, fds and tasks;
    2. 1,000 connections close before the blank line (in batches of 200);
    3. one peer sends 10 MB without a newline: it is cut off and the traced
       memory peak stays within 2 MB;
    4. invalid UTF-8 in the environment and in a reply is survived;
    5. 500 well-formed sms-send sessions run concurrently and all are QUEUED;
    6. memory, fds, tasks are back to the baseline, the process is idle, and
       a normal session still works.
    """
    srv = AgiServer(build_handlers(fakes.services()), "127.0.0.1", 0, env_timeout=2.0)
    await srv.start()
    try:
        warm = FakeAsteriskAgi(srv.port, "sms-send?to=+15557654321&from=100&body=warm")
        await warm.run()
        assert warm.variables["SMS_STATUS"] == "QUEUED"
        fakes.outbox.requests.clear()
        await settle(srv)
        tracemalloc.start()
        try:
            base_mem = tracemalloc.get_traced_memory()[0]
            base_fds = open_fds()
            base_tasks = len(asyncio.all_tasks())

            # 2. early closes: nothing, half a line, a few full lines.
            env = FakeAsteriskAgi(srv.port, "sms-send").environment()
            payloads = [b"", b"agi_netw", env[:200], env[:-1]]
            for start in range(0, 1000, 200):
                await asyncio.gather(
                    *(early_close(srv.port, payloads[i % 4]) for i in range(start, start + 200))
                )
            await settle(srv)
            assert srv.connections == 0

            # 3. 10 MB without a newline.
            tracemalloc.reset_peak()
            peak_base = tracemalloc.get_traced_memory()[0]
            sent = await flood(srv.port, 10 * 1024 * 1024)
            peak = tracemalloc.get_traced_memory()[1]
            assert peak - peak_base < FLOOD_PEAK_TOLERANCE
            assert sent < 10 * 1024 * 1024 or srv.errors_total >= 1
            await settle(srv)

            # 4. invalid UTF-8: in the script/query and as a reply.
            bad_env = env.replace(
                b"agi_network_script: sms-send",
                b"agi_network_script: sms-send?to=+15557654321&from=100&body=\xff\xfe\xc3",
            )
            out = await raw_session(srv.port, bad_env)
            assert b"SET VARIABLE SMS_STATUS QUEUED" in out
            assert fakes.outbox.requests[-1].text == "\ufffd\ufffd\ufffd"
            garbage = await raw_session(srv.port, b"\xff\xfe\x00garbage\n\x80\x81\n\n")
            assert garbage == b""  # no agi_network_script: not Asterisk, closed at once
            fakes.outbox.requests.clear()

            # 5. 500 concurrent well-formed sessions.
            calls = [
                FakeAsteriskAgi(srv.port, f"sms-send?to=+1555765{i:04d}&from=100&body=n{i}")
                for i in range(500)
            ]
            await asyncio.gather(*(c.run() for c in calls))
            assert all(c.variables["SMS_STATUS"] == "QUEUED" for c in calls)
            ids = {c.variables["SMS_ID"] for c in calls}
            assert len(ids) == 500
            fakes.outbox.requests.clear()
            calls.clear()

            # 6. back to baseline.
            await settle(srv)
            assert srv.connections == 0
            assert len(asyncio.all_tasks()) <= base_tasks
            assert open_fds() <= base_fds + FD_TOLERANCE
            grown = tracemalloc.get_traced_memory()[0] - base_mem
            assert grown < MEMORY_TOLERANCE, f"traced memory grew by {grown} bytes"
        finally:
            tracemalloc.stop()
        cpu0 = time.process_time()
        await asyncio.sleep(IDLE_S)
        assert time.process_time() - cpu0 < IDLE_CPU_S
        after = FakeAsteriskAgi(srv.port, "sms-send?to=+15557654321&from=100&body=after")
        await after.run()
        assert after.variables["SMS_STATUS"] == "QUEUED"
    finally:
        await srv.close()
