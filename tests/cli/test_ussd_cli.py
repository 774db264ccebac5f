"""`smsd modem ussd` and `smsd ussd` as real subprocesses on real pseudo-terminals.

The simulator (`smsd modem simulate`, its own process) answers AT+CUSD with OK
and the balance later as an unsolicited +CUSD (TS 27.007 7.15).  The wire
format tests use the scripted modem instead, whose answers are written from
TS 27.007 and the Huawei AT reference: a Huawei takes the code as packed
GSM 7-bit hex ("*100#" is AA180C3602) and answers in the same form.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from smsd.passwords import hash_password
from smsd.simulator.general import USSD_BALANCE
from tests.backend import database_toml
from tests.cli.sim_process import CLI_TIMEOUT_S, READY_TIMEOUT_S, ROOT, Simulator, _env
from tests.fakes.scripted_modem import ScriptedModem
from tests.test_daemon import free_port

pytestmark = pytest.mark.timeout(60)

# A packed GSM 7-bit text: "hellohello" is the classic TS 23.038 packing example.
HELLO_PACKED = "E8329BFD4697D9EC37"


def smsd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smsd", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env=_env(),
        cwd=ROOT,
    )


async def smsd_async(*args: str) -> tuple[int, str, str]:
    """The CLI while this test's event loop keeps serving the scripted modem."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "smsd",
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT_S)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class TestUssdOnSimulator:
    def test_balance_answer_printed(self, simulator: Callable[..., Simulator]) -> None:
        """*100# on a generic modem: exit 0, the network's text, then the +CUSD status
        and what it means."""
        sim = simulator()
        out = smsd("modem", "ussd", sim.link, "*100#")
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [USSD_BALANCE, "status 0: no further action required"]

    def test_huawei_profile_json(self, simulator: Callable[..., Simulator]) -> None:
        """A Huawei (profile chosen from +CGMI), --json: one object with the device,
        the code, the status and the text."""
        sim = simulator("--profile", "huawei")
        out = smsd("modem", "ussd", sim.link, "*100#", "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {
            "device": sim.link,
            "code": "*100#",
            "status": 0,
            "text": USSD_BALANCE,
        }

    def test_bad_codes_exit_2_before_the_port_is_opened(self, tmp_path: Path) -> None:
        """A code with anything but 0-9, * and # (an injected AT command, a space, a
        letter), or an empty one: exit 2 with a reason saying nothing was sent.  The port
        path does not exist, so a CLI that tried to open it would say so instead."""
        missing = str(tmp_path / "no-such-port")
        for bad in ('*100#";AT+CMGD=1,4', "*100# ", "*10O#", ""):
            out = smsd("modem", "ussd", missing, bad)
            assert out.returncode == 2, (bad, out.stderr)
            assert "nothing was sent" in out.stderr and "0-9, * and #" in out.stderr, bad
            assert "cannot open" not in out.stderr and out.stdout == ""

    def test_port_held_by_another_program(self, simulator: Callable[..., Simulator]) -> None:
        """A port some other program holds: exit 2, 'port busy' naming that process;
        no hint about the daemon, since it is not the daemon."""
        sim = simulator()
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import os,sys,time; fd=os.open(sys.argv[1], os.O_RDWR);"
                " print('held', flush=True); time.sleep(60)",
                sim.link,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            out = smsd("modem", "ussd", sim.link, "*100#")
        finally:
            holder.kill()
            holder.wait()
        assert out.returncode == 2
        assert "port busy" in out.stderr and f"pid {holder.pid}" in out.stderr
        assert "smsd ussd" not in out.stderr


class TestUssdThroughTheDaemon:
    def test_busy_port_points_to_the_daemon(
        self, simulator: Callable[..., Simulator], tmp_path: Path
    ) -> None:
        """1. `smsd run` holds the simulated modem's port.
        2. `smsd modem ussd` on that port: exit 2, 'port busy', and the hint to ask
           the daemon with `smsd ussd <modem id> '*100#'`.
        3. `smsd ussd gsm0 '*100#'` does: the balance and status 0, exit 0; --json
           prints the daemon's answer object.
        4. `smsd ussd` with an unknown modem id: exit 1 with the daemon's 404 reason.
        """
        sim = simulator()
        port = free_port()
        state = tmp_path / "state"
        cfg = tmp_path / "smsd.toml"
        cfg.write_text(
            f'state_dir = "{state}"\n{database_toml()}routing = ["gsm"]\n'
            f"[http]\nport = {port}\n[agi]\nport = {free_port()}\n"
            '[policy]\ncountry = "GB"\n'
            '[[users]]\nextension = "100"\nname = "Tech"\nusername = "tech"\n'
            'licence = "uc-business"\n'
            f'password_hash = "{hash_password("pw", n=2**4)}"\n'
            '[gateways.gsm]\nussd_users = ["tech"]\n'
            f'[[gateways.gsm.modems]]\nid = "gsm0"\npath = "{sim.link}"\n'
        )
        pw = tmp_path / "pw"
        pw.write_text("pw\n")
        log = tmp_path / "daemon.log"
        base = f"http://127.0.0.1:{port}"
        daemon = subprocess.Popen(
            [sys.executable, "-m", "smsd", "run", "--config", str(cfg), "--log-level", "info"],
            stdout=subprocess.DEVNULL,
            stderr=log.open("ab"),
            env=_env(),
            cwd=ROOT,
        )
        try:
            _wait_modem_ready(base, log)
            out = smsd("modem", "ussd", sim.link, "*100#")
            assert out.returncode == 2, out.stdout + out.stderr
            assert "port busy" in out.stderr and "smsd daemon" in out.stderr
            assert "smsd ussd <modem id> '*100#'" in out.stderr

            auth = ("--url", base, "--user", "tech", "--password-file", str(pw))
            out = smsd("ussd", "gsm0", "*100#", *auth)
            assert out.returncode == 0, out.stderr
            assert out.stdout.splitlines() == [
                USSD_BALANCE,
                "status 0: no further action required",
            ]
            out = smsd("ussd", "gsm0", "*100#", "--json", *auth)
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout) == {
                "modem": "gsm0",
                "code": "*100#",
                "status": 0,
                "text": USSD_BALANCE,
            }
            out = smsd("ussd", "gsm7", "*100#", *auth)
            assert out.returncode == 1
            assert "404" in out.stderr and "gsm7" in out.stderr
        finally:
            daemon.terminate()
            try:
                daemon.wait(15)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()

    def test_smsd_ussd_refuses_a_bad_code_locally(self, tmp_path: Path) -> None:
        """`smsd ussd` with a bad code: exit 2 before any request (the URL is a closed
        port, which would otherwise be 'cannot reach the daemon')."""
        out = smsd(
            "ussd",
            "gsm0",
            "*100#;ATH",
            "--url",
            f"http://127.0.0.1:{free_port()}",
            "--user",
            "tech",
        )
        assert out.returncode == 2
        assert "only digits, * and #" in out.stderr and "cannot reach" not in out.stderr


def _wait_modem_ready(base: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
                body = json.loads(r.read())
            if any(m["state"] == "ready" for m in body.get("modems", [])):
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"the daemon's modem never became ready; log:\n{log.read_text()}")


# --- the wire format, against a modem scripted from the documents ----------------------


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedModem]:
    fake = ScriptedModem()
    await fake.start()
    yield fake
    await fake.stop()


def _answer_later(fake: ScriptedModem, urc: str) -> Callable[[str], list[str]]:
    """OK at once, the network's answer a moment later (TS 27.007 7.15)."""

    def reply(line: str) -> list[str]:
        asyncio.get_running_loop().call_later(0.05, fake.inject, urc)
        return ["OK"]

    return reply


class TestUssdWireFormat:
    async def test_huawei_code_and_answer_packed(self, scripted: ScriptedModem) -> None:
        """A Huawei gets the code as packed GSM 7-bit hex and its packed answer is
        printed as text."""
        huawei = scripted
        huawei.install_standard(manufacturer="huawei", model="E3372")
        huawei.reply_to(
            r'AT\+CUSD=1,"AA180C3602",15',
            _answer_later(huawei, f'+CUSD: 0,"{HELLO_PACKED}",15'),
        )
        code, out, err = await smsd_async("modem", "ussd", huawei.path, "*100#", "--json")
        assert code == 0, err
        assert json.loads(out)["text"] == "hellohello"
        assert 'AT+CUSD=1,"AA180C3602",15' in huawei.received

    async def test_menu_answer_ends_the_session(self, scripted: ScriptedModem) -> None:
        """A menu (+CUSD: 1) is printed with what status 1 means, and the session is
        ended with AT+CUSD=2 rather than left open on the network."""
        scripted.install_standard()
        scripted.reply_to(
            r'AT\+CUSD=1,"\*100#",15',
            _answer_later(scripted, '+CUSD: 1,"1 Balance 2 Bundles",15'),
        )
        scripted.reply_to(r"AT\+CUSD=2", ["OK"])
        code, out, err = await smsd_async("modem", "ussd", scripted.path, "*100#")
        assert code == 0, err
        assert out.splitlines() == [
            "1 Balance 2 Bundles",
            "status 1: further action required (the network offers a menu)",
            "smsd does not answer USSD menus: the session was ended (AT+CUSD=2)",
        ]
        asked = scripted.received.index('AT+CUSD=1,"*100#",15')
        assert "AT+CUSD=2" in scripted.received[asked:]

    async def test_not_supported_is_a_failure(self, scripted: ScriptedModem) -> None:
        """+CUSD: 4 (operation not supported) carries no balance: exit 1 saying so,
        and no cancel is sent for a dialogue the network already ended."""
        scripted.install_standard()
        scripted.reply_to(r'AT\+CUSD=1,"\*999#",15', _answer_later(scripted, "+CUSD: 4"))
        code, out, err = await smsd_async("modem", "ussd", scripted.path, "*999#")
        assert code == 1, err
        assert out.splitlines() == [
            "(the network sent no text)",
            "status 4: operation not supported",
        ]
        assert "AT+CUSD=2" not in scripted.received
