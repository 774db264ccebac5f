"""End-to-end harness: the real daemon and the real simulator as subprocesses.

Only the peers are fakes, and they live in the test process on loopback:
the Asterisk manager (``tests/fakes/asterisk_ami.py``, which also plays the
kite-sms dialplan and calls our FastAGI server as res_agi would) and the
Asterisk FastAGI client for phone replies (``tests/fakes/asterisk_agi.py``).
The modems are ``smsd modem simulate`` on real pseudo-terminals, scripted
through its control socket; the daemon is ``smsd run --config`` and knows
nothing about being tested.

Every wait is a poll against a deadline; the deadlines only bound how long a
broken build can hang the suite, they are not measurements.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from smsd.simulator.control import control_request
from tests.backend import database_toml, database_url
from tests.daemon_rig import pg_records
from tests.fakes.asterisk_ami import FakeAmi

REPO = Path(__file__).resolve().parents[2]

CUSTOMER = "+15557654321"      # the external party texting the company
DID_OTHER = "+15551234566"     # modem 0: a DID with no kite-sms extension
DID = "+15551234567"           # modem 1: the Sales call group's DID
AMI_USER = "smsd"
AMI_SECRET = "e2e-ami-secret"

# Start-up of the simulator (two ptys) and of the daemon (store, listeners,
# modem init over the pty) takes about a second each on a laptop; these only
# bound how long a broken build can hang the suite.
START_DEADLINE_S = 20.0
# One inbound SMS crosses modem -> store -> AMI Originate -> FastAGI -> claim
# -> MessageSend in tens of milliseconds; modem init may still be running when
# the test injects, so allow for that plus a slow CI box.
DELIVERY_DEADLINE_S = 20.0
# SIGTERM drains in-flight sends (daemon.DRAIN_DEADLINE_S is 20 s) but nothing
# is in flight at the end of a test; a clean stop takes well under a second.
STOP_DEADLINE_S = 25.0
# A control socket request is answered at once by the simulator's loop.
CONTROL_DEADLINE_S = 5.0
POLL_S = 0.02


async def wait_for(
    probe: Callable[[], Any],
    what: str,
    deadline_s: float = DELIVERY_DEADLINE_S,
    *,
    diagnostics: Callable[[], str] | None = None,
) -> Any:
    """Poll ``probe`` (plain or async) until it gives something truthy; fail naming ``what``."""
    end = time.monotonic() + deadline_s
    while True:
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > end:
            extra = f"\n{diagnostics()}" if diagnostics is not None else ""
            raise AssertionError(f"timed out after {deadline_s:g} s waiting for {what}{extra}")
        await asyncio.sleep(POLL_S)


async def _terminate(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is not None:
        return proc.returncode
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.wait(), STOP_DEADLINE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return -9


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["SMSD_LOG_LEVEL"] = "info"
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --- the simulated modems -------------------------------------------------------


class SimulatorProc:
    """``smsd modem simulate --count N`` with its control socket."""

    def __init__(self, tmp: Path, *, count: int, own_number: str, report_delay_s: float) -> None:
        self.link = str(tmp / "modem")
        self.control_path = str(tmp / "sim.sock")
        self.count = count
        self.own_number = own_number
        self.report_delay_s = report_delay_s
        self.log_path = tmp / "simulator.log"
        self.proc: asyncio.subprocess.Process | None = None

    def link_of(self, i: int) -> str:
        return self.link if self.count == 1 else f"{self.link}{i}"

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "smsd", "modem", "simulate",
            "--link", self.link, "--count", str(self.count),
            "--own-number", self.own_number, "--control", self.control_path,
            "--report-delay", str(self.report_delay_s),
            stdout=asyncio.subprocess.PIPE, stderr=self.log_path.open("ab"),
            cwd=REPO, env=_env(),
        )
        assert self.proc.stdout is not None
        seen = b""

        async def ready() -> None:
            nonlocal seen
            assert self.proc is not None and self.proc.stdout is not None
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    raise AssertionError(
                        f"simulator exited: {seen!r}\n{self.log_path.read_text(errors='replace')}")
                seen += line
                if line.strip() == b"ready":
                    return

        await asyncio.wait_for(ready(), START_DEADLINE_S)

    async def control(self, request: dict[str, Any]) -> dict[str, Any]:
        """One JSON request on the control socket; the answer must be ok."""
        answer = await asyncio.wait_for(control_request(self.control_path, request),
                                        CONTROL_DEADLINE_S)
        assert answer.get("ok") is True, f"simulator refused {request}: {answer}"
        return answer

    async def deliver(self, modem: int, sender: str, text: str) -> None:
        await self.control({"cmd": "deliver", "modem": modem, "from": sender, "text": text})

    async def submitted(self, modem: int) -> list[dict[str, Any]]:
        answer = await self.control({"cmd": "submitted", "modem": modem})
        subs: list[dict[str, Any]] = answer["submitted"]
        return subs

    async def stop(self) -> None:
        if self.proc is not None:
            await _terminate(self.proc)


# --- the daemon ------------------------------------------------------------------


@dataclass
class Member:
    extension: str
    name: str
    office_number: str
    licence: str


# The PBX: Sales (DID) has static members 100 and 201 (UC-Business and
# UC-Premium with the DID as office number) and 202, a UC-Essential user with
# the same office number who must never get two-way SMS.  203 and 204 have
# DID_OTHER, which has no kite-sms extension: the directory decides there.
MEMBERS = (
    Member("100", "Alice Agent", DID, "uc-business"),
    Member("201", "Bob Boss", DID, "uc-premium"),
    Member("202", "Carol Cheap", DID, "uc-essential"),
    Member("203", "Dan Direct", DID_OTHER, "uc-business"),
    Member("204", "Eve Essential", DID_OTHER, "uc-essential"),
)


def write_config(
    tmp: Path, *, ami_port: int, ami_secret: str, modem_paths: list[str],
    own_numbers: list[str],
) -> Path:
    lines = [
        f'state_dir = "{tmp / "state"}"',
        database_toml().rstrip("\n"),
        'routing = ["gsm"]',
        "",
        "[policy]",
        'country = "US"',
        "",
        "[ami]",
        'host = "127.0.0.1"',
        f"port = {ami_port}",
        f'username = "{AMI_USER}"',
        f'secret = "{ami_secret}"',
        "",
    ]
    for m in MEMBERS:
        lines += [
            "[[users]]",
            f'extension = "{m.extension}"',
            f'name = "{m.name}"',
            f'office_number = "{m.office_number}"',
            f'licence = "{m.licence}"',
            "",
        ]
    lines += [
        "[[call_groups]]",
        'name = "Sales"',
        f'number = "{DID}"',
        'members = ["100", "201", "202"]',
        "",
        "[gateways.gsm]",
    ]
    for i, (modem_path, own) in enumerate(zip(modem_paths, own_numbers, strict=True)):
        lines += [
            "[[gateways.gsm.modems]]",
            f'id = "gsm{i}"',
            f'path = "{modem_path}"',
            f'own_number = "{own}"',
            'profile = "generic"',
            "",
        ]
    path = tmp / "smsd.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class DaemonProc:
    """``smsd run --config`` on ephemeral loopback ports; JSON log in a file."""

    def __init__(self, tmp: Path, config: Path, *, http: str = "127.0.0.1:0",
                 agi: str = "127.0.0.1:0") -> None:
        self.config = config
        self.http = http
        self.agi = agi
        self.state_dir = tmp / "state"
        self.log_path = tmp / "smsd.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.agi_port = 0
        self.http_port = 0

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "smsd", "run", "--config", str(self.config),
            "--state-dir", str(self.state_dir),
            "--http", self.http, "--agi", self.agi,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=self.log_path.open("ab"), cwd=REPO, env=_env(),
        )

        def ready() -> dict[str, Any] | None:
            self.assert_running()
            return next(iter(self.events("daemon.ready")), None)

        event = await wait_for(ready, "daemon.ready in the daemon log", START_DEADLINE_S,
                               diagnostics=self.log_text)
        self.agi_port = int(event["agi"])
        self.http_port = int(event["http"])

    def assert_running(self) -> None:
        assert self.proc is not None
        assert self.proc.returncode is None, (
            f"daemon exited with {self.proc.returncode}\n{self.log_text()}")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The daemon's structured log events (JSON lines), optionally by name."""
        out: list[dict[str, Any]] = []
        for line in self.log_text().splitlines():
            if not line.startswith("{"):
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                continue  # a line still being written
            if name is None or ev.get("event") == name:
                out.append(ev)
        return out

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Read the daemon's database read-only (WAL lets a reader run beside the writer)."""
        url = database_url()   # SMSD_TEST_BACKEND=postgresql
        if url is not None:
            return pg_records(url, sql, params)
        db = self.state_dir / "smsd.sqlite3"
        if not db.exists():
            return []
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            conn.row_factory = sqlite3.Row
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    async def stop(self) -> int:
        return await _terminate(self.proc) if self.proc is not None else 0


# --- one whole stack ---------------------------------------------------------------


@dataclass
class Stack:
    tmp: Path
    sim: SimulatorProc
    ami: FakeAmi | None
    daemon: DaemonProc
    extra: list[Any] = field(default_factory=list)

    def diagnostics(self) -> str:
        lines = [f"--- daemon log ---\n{self.daemon.log_text()[-6000:]}"]
        if self.ami is not None:
            lines.append(f"--- fake AMI: logins={self.ami.logins} messages={self.ami.messages} "
                         f"user_events={self.ami.user_events} "
                         f"agi_runs={[(r.url, r.status, r.variables) for r in self.ami.agi_runs]}")
        return "\n".join(lines)


def kite_sms_dialplan(agi_port: int) -> dict[str, dict[str, list[str]]]:
    """[kite-sms] as asterisk-conf/extensions.conf writes it, members 100, 201, 202.

    The commas between members are escaped as in the shipped sample: Asterisk
    splits application data on unescaped commas.
    """
    return {
        "kite-sms": {
            DID: [
                "NoOp(SMS ${SMS_ID} from ${SMS_FROM} to ${EXTEN})",
                "Answer()",
                f"AGI(agi://127.0.0.1:{agi_port}/kite-sms?members=100\\,201\\,202)",
                "Hangup()",
            ]
        }
    }


StackFactory = Callable[..., Awaitable[Stack]]


@pytest.fixture
async def make_stack(tmp_path: Path) -> AsyncIterator[StackFactory]:
    """Build simulator + fake AMI + daemon; everything is stopped at teardown."""
    built: list[Stack] = []

    async def factory(
        *, ami_up: bool = True, ami_secret: str = AMI_SECRET, ami_port: int | None = None,
        report_delay_s: float = 0.0,
    ) -> Stack:
        sim = SimulatorProc(tmp_path, count=2, own_number=DID_OTHER,
                            report_delay_s=report_delay_s)
        await sim.start()
        ami: FakeAmi | None = None
        if ami_up:
            ami = await FakeAmi(username=AMI_USER, secret=AMI_SECRET).start(ami_port or 0)
            port = ami.port
        else:
            assert ami_port is not None
            port = ami_port
        config = write_config(tmp_path, ami_port=port, ami_secret=ami_secret,
                              modem_paths=[sim.link_of(0), sim.link_of(1)],
                              own_numbers=[DID_OTHER, DID])
        daemon = DaemonProc(tmp_path, config)
        stack = Stack(tmp_path, sim, ami, daemon)
        built.append(stack)
        await daemon.start()
        # daemon.ready comes when the listeners are bound; the modems finish
        # their AT set-up a moment later.  Tests that check which modem an SMS
        # leaves from must not race that: wait until both say "ready".
        await wait_for(
            lambda: {e["modem"] for e in daemon.events("modem.state")
                     if e.get("state") == "ready"} >= {"gsm0", "gsm1"} or None,
            "both modems ready in the daemon log", START_DEADLINE_S,
            diagnostics=daemon.log_text)
        if ami is not None:
            ami.dialplan.update(kite_sms_dialplan(daemon.agi_port))
        return stack

    yield factory
    for stack in built:
        await stack.daemon.stop()
        await stack.sim.stop()
        if stack.ami is not None:
            await stack.ami.stop()
        for extra in stack.extra:
            await extra.stop()
    for stack in built:
        # Whatever a test did, the AMI secret never reaches the log.
        assert AMI_SECRET not in stack.daemon.log_text()


async def unused_ami_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    probe = await FakeAmi().start()
    port = probe.port
    await probe.stop()
    return port
