"""One daemon per database (DESIGN.md invariant 6), with real daemon processes.

A second `smsd run` on a live database must be refused before it reads or
writes anything: no crash recovery on the first one's in-flight messages, no
socket of the first one deleted, exit status 2 naming the pid that holds it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from smsd.errors import AlreadyRunning
from smsd.store.lock import FileLock, lock_path
from tests.daemon_rig import Rig, control, db_rows, wait_for
from tests.test_daemon import DemoDaemon, free_port

MESSAGES = 24
# Bounds how long a broken build can hang the test; nothing is measured.
EXIT_DEADLINE_S = 60.0


@pytest.fixture
def slow_rig(tmp_path: Path) -> Iterator[Rig]:
    # 300 ms per send on 2 modems: 24 messages keep the first daemon busy for
    # seconds, so the second one starts while parts are in flight.
    r = Rig(tmp_path, 2, sim_args=("--latency-ms", "300"))
    try:
        yield r
    finally:
        r.close()


def second_run(args: list[str], log: Path) -> subprocess.CompletedProcess[bytes]:
    """Another `smsd run`; if it starts serving (the old behaviour) it is killed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "smsd", "run", *args, "--log-level", "info"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = proc.communicate(timeout=EXIT_DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        log.write_bytes(err)
        raise AssertionError(
            "the second daemon kept running on the same database:\n" + err.decode()[-3000:]
        ) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.timeout(180)
def test_second_daemon_while_sending_is_refused_and_touches_nothing(slow_rig: Rig) -> None:
    """A second `smsd run` on the same config while the first sends is refused.

    1. two slow simulated modems (300 ms per send) in their own process;
    2. the first daemon queues 24 messages and starts sending;
    3. while some are sent and others still queued or in flight, a second
       `smsd run --config` on other ports starts: it exits 2 and names the
       first daemon's pid;
    4. nothing was recovered (no "recovered after a crash" history row);
    5. the first daemon finishes: every number reached a modem exactly once.
    """
    rig = slow_rig
    rig.start_sim()
    first = rig.start_daemon()
    numbers = [f"+4477009{i:05d}" for i in range(MESSAGES)]
    ids = rig.send(numbers)
    assert len(ids) == MESSAGES
    sent_sql = "SELECT COUNT(*) FROM messages WHERE state IN ('sent', 'delivered')"
    wait_for("a first message sent", lambda: db_rows(rig.db, sent_sql)[0][0] >= 1, rig.log)

    done = second_run(
        [
            "--config", str(rig.cfg),
            "--http", f"127.0.0.1:{free_port()}",
            "--agi", f"127.0.0.1:{free_port()}",
        ],
        rig.tmp / "second.log",
    )
    assert db_rows(rig.db, sent_sql)[0][0] < MESSAGES, "the first daemon finished too early"
    err = done.stderr.decode()
    assert done.returncode == 2, err
    if rig.database is None:   # SQLite: the lock file names its holder
        assert f"pid {first.pid}" in err, err
        assert "already running" in err
    else:                      # PostgreSQL: the node name's advisory lock
        assert "another smsd runs under this node name" in err, err

    wait_for("all sent", lambda: db_rows(rig.db, sent_sql)[0][0] == MESSAGES, rig.log)
    recovered = db_rows(
        rig.db, "SELECT COUNT(*) FROM message_history WHERE detail LIKE 'recovered%'"
    )[0][0]
    assert recovered == 0
    received: Counter[str] = Counter()
    for i in range(rig.modems):
        for sub in control(rig.sock, {"cmd": "submitted", "modem": i})["submitted"]:  # type: ignore[union-attr]
            received[sub["to"]] += 1
    assert received == Counter(numbers), {n: c for n, c in received.items() if c != 1}
    assert first.poll() is None
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0


@pytest.mark.timeout(120)
def test_second_demo_keeps_the_first_ones_modem_socket(tmp_path: Path) -> None:
    """A second `smsd run --demo` in the same state directory deletes nothing.

    1. a demo daemon runs (its simulated modem's control socket is modem.sock);
    2. a second demo on other ports in the same directory exits 2 naming the pid;
    3. modem.sock is the first one's still: the control socket answers, and a
       message sent through the first daemon is delivered.
    """
    state = tmp_path / "state"
    first = DemoDaemon(state, tmp_path / "first.log")
    first.start()
    try:
        sock = state / "modem.sock"
        inode = sock.stat().st_ino
        done = second_run(
            [
                "--demo", "--state-dir", str(state),
                "--http", f"127.0.0.1:{free_port()}",
                "--agi", f"127.0.0.1:{free_port()}",
            ],
            tmp_path / "second.log",
        )
        err = done.stderr.decode()
        assert done.returncode == 2, err
        assert first.proc is not None and f"pid {first.proc.pid}" in err, err
        assert sock.stat().st_ino == inode
        assert control(sock, {"cmd": "modems"})["ok"]
        status, body = first.request(
            "POST", "/api/v1/originate/sms", b"number=%2B447700900123&message=still+here"
        )
        assert status == 200, body
        (msg,) = first.get_json("/api/v1/sms?limit=1")["messages"]
        first.wait_state(int(msg["id"]), {"delivered"})
        assert first.stop() == 0
    finally:
        first.kill()


class TestFileLock:
    def test_second_holder_is_refused_with_the_first_pid(self, tmp_path: Path) -> None:
        """A second FileLock on the same path raises AlreadyRunning naming our pid."""
        path = lock_path(tmp_path / "smsd.sqlite3")
        one = FileLock(path)
        one.acquire()
        try:
            with pytest.raises(AlreadyRunning) as info:
                FileLock(path).acquire()
            assert info.value.holder == str(os.getpid())
            assert str(path) in str(info.value)
        finally:
            one.release()
        two = FileLock(path)
        two.acquire()
        two.release()

    @pytest.mark.timeout(60)
    def test_killed_holder_leaves_no_stale_lock(self, tmp_path: Path) -> None:
        """SIGKILL of the holder frees the lock: the kernel drops a dead process's flock.

        1. a child process takes the lock and says so;
        2. while it lives, taking the lock fails naming its pid;
        3. after SIGKILL (no clean-up code runs) the lock is free at once.
        """
        path = tmp_path / "smsd.sqlite3.lock"
        child = subprocess.Popen(
            [
                sys.executable, "-c",
                "import sys, pathlib\n"
                "from smsd.store.lock import FileLock\n"
                f"FileLock(pathlib.Path({str(path)!r})).acquire()\n"
                "print('locked', flush=True)\n"
                "sys.stdin.read()\n",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == b"locked"
            with pytest.raises(AlreadyRunning) as info:
                FileLock(path).acquire()
            assert info.value.holder == str(child.pid)
            child.send_signal(signal.SIGKILL)
            child.wait(30)
            lock = FileLock(path)
            lock.acquire()
            lock.release()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
