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
from tests.core.polling import eventually
from tests.fakes.asterisk_agi import FakeAsteriskAgi

pytestmark = pytest.mark.timeout(60)

# Traced memory a whole second round may leave allocated.  Measured: a steady
# ~118 KiB, all of it hash tables re-allocated at their grown size (the
# selector's fd map, asyncio's transport and task registries) and structlog's
# bounded state.  The margin catches a leak of ~100 bytes per good session.
MEMORY_TOLERANCE = 160 * 1024
FD_TOLERANCE = 3
# The 10 MB peer must never be buffered: the line limit is 16 KiB and the
# stream pauses reading at twice that.
FLOOD_PEAK_TOLERANCE = 2 * 1024 * 1024
# Per-session deadlines for the 500-session rounds (see the test).
LOADED_DEADLINE_S = 60.0
# CPU the process may use while idle for IDLE_S (timer wake-ups only).
IDLE_S = 0.5
IDLE_CPU_S = 0.1


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def accept_queue(port: int) -> int:
    """Connections the kernel holds for the listener on 127.0.0.1:port, not yet accepted.

    For a listening socket /proc/net/tcp's rx_queue is its accept-queue length.
    """
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[1] == want and cols[3] == "0A":  # 0A = LISTEN
                return int(cols[4].split(":")[1], 16)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def served(srv: AgiServer) -> bool:
    return srv.connections == 0 and accept_queue(srv.port) == 0


async def settle(srv: AgiServer) -> None:
    """Wait until every connection the clients made was accepted and its session ended.

    Under load the server may accept a closed client's connection long after the
    client is gone, so "no session running" alone is not enough: the kernel's
    accept queue must be empty too.  Between accept() and the session's task
    counting in ``connections`` lie a few loop iterations (transport, then
    connection_made, then the task's first step): both are looked at again after
    those, and closing transports finish their connection_lost callbacks.
    """
    while True:
        await eventually(lambda: served(srv))
        for _ in range(20):
            await asyncio.sleep(0)
        if served(srv):
            break
    gc.collect()


async def early_close(port: int, payload: bytes) -> None:
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
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


async def hostile_round(srv: AgiServer, fakes: Fakes) -> int:
    """One round of abuse plus 500 good sessions; returns the 10 MB flood's peak bytes."""
    # 1,000 early closes: nothing, half a line, a few full lines, all but the blank line.
    env = FakeAsteriskAgi(srv.port, "sms-send").environment()
    payloads = [b"", b"agi_netw", env[:200], env[:-1]]
    for start in range(0, 1000, 200):
        await asyncio.gather(
            *(early_close(srv.port, payloads[i % 4]) for i in range(start, start + 200))
        )
    await settle(srv)
    assert srv.connections == 0

    # 10 MB without a newline: cut off after the line limit, never buffered.
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    errors = srv.errors_total
    sent = await flood(srv.port, 10 * 1024 * 1024)
    peak = tracemalloc.get_traced_memory()[1] - before
    assert sent < 10 * 1024 * 1024 or srv.errors_total > errors
    await settle(srv)

    # Invalid UTF-8 in the script/query, and binary garbage instead of an environment.
    bad_env = env.replace(
        b"agi_network_script: sms-send",
        b"agi_network_script: sms-send?to=+15557654321&from=100&body=\xff\xfe\xc3",
    )
    out = await raw_session(srv.port, bad_env)
    assert b"SET VARIABLE SMS_STATUS QUEUED" in out
    assert fakes.outbox.requests[-1].text == "\ufffd\ufffd\ufffd"
    garbage = await raw_session(srv.port, b"\xff\xfe\x00garbage\n\x80\x81\n\n")
    assert garbage == b""  # no agi_network_script: not Asterisk, closed at once

    # 500 concurrent well-formed sessions.
    calls = [
        FakeAsteriskAgi(srv.port, f"sms-send?to=+1555765{i:04d}&from=100&body=n{i}")
        for i in range(500)
    ]
    await asyncio.gather(*(c.run() for c in calls))
    statuses = [c.variables["SMS_STATUS"] for c in calls]
    assert statuses == ["QUEUED"] * 500
    assert len({c.variables["SMS_ID"] for c in calls}) == 500
    calls.clear()
    fakes.outbox.requests.clear()
    fakes.conversations.asked.clear()  # the fake's own evidence, not server state
    await settle(srv)
    return peak


@pytest.mark.timeout(300)
async def test_hostile_peers_cost_nothing(fakes: Fakes) -> None:
    """Steps:
    1. round one of abuse (1,000 early closes, a 10 MB line, invalid UTF-8, garbage,
       500 concurrent good sessions) warms every bounded cache (asyncio's tables,
       structlog), then memory, fds and tasks are recorded;
    2. an identical second round runs; the 10 MB peer never costs more than 2 MB;
    3. memory, fds and tasks are back at the baseline (a leak per connection would
       show as 1,500+ objects), the process is idle (no busy loop left), and a
       normal session still works.
    """
    # Deadlines far above the product's: 500 fakes and the server share one
    # loop (under tracemalloc in round two), and on a machine with both cores
    # busy a good fake may take seconds to answer; dropping it would fail the
    # test for a reason it does not test (the deadlines have their own tests).
    srv = AgiServer(build_handlers(fakes.services()), "127.0.0.1", 0,
                    env_timeout=LOADED_DEADLINE_S, command_timeout=LOADED_DEADLINE_S)
    await srv.start()
    try:
        await hostile_round(srv, fakes)
        # Tracing starts now: what round two leaves allocated is exactly its leak.
        tracemalloc.start()
        base_mem = tracemalloc.get_traced_memory()[0]
        base_fds = open_fds()
        base_tasks = len(asyncio.all_tasks())

        peak = await hostile_round(srv, fakes)
        assert peak < FLOOD_PEAK_TOLERANCE, f"10 MB peer cost {peak} bytes"

        assert srv.connections == 0
        assert len(asyncio.all_tasks()) <= base_tasks
        assert open_fds() <= base_fds + FD_TOLERANCE
        grown = tracemalloc.get_traced_memory()[0] - base_mem
        assert grown < MEMORY_TOLERANCE, f"traced memory grew by {grown} bytes"
        tracemalloc.stop()

        cpu0 = time.process_time()
        await asyncio.sleep(IDLE_S)
        assert time.process_time() - cpu0 < IDLE_CPU_S
        after = FakeAsteriskAgi(srv.port, "sms-send?to=+15557654321&from=100&body=after")
        await after.run()
        assert after.variables["SMS_STATUS"] == "QUEUED"
    finally:
        tracemalloc.stop()
        await srv.close()
