"""The acceptance checks of issue 16 against a REAL Asterisk 20 (skipped without one).

The suite runs on fakes; these tests say whether the fakes and the shipped
asterisk-conf/ samples hold against the real thing.  They need an Asterisk with
asterisk-conf/{extensions,manager,pjsip}.conf loaded as shipped (addresses
aside: PJSIP may listen elsewhere than 5060), func_json and func_curl, its
[globals] SMSD_API_USERPWD=dialplan:change-me, and nothing else on
127.0.0.1:4573 and :8080 (the addresses the samples call).  Environment:

    SMSD_ASTERISK        smsd:SECRET@127.0.0.1:5038   the sample's AMI user (required)
    SMSD_ASTERISK_ADMIN  lab:SECRET                   an AMI user with read = all (events
                                                      the smsd user never sees: SmsdLost,
                                                      the dialplan's Log) and Getvar
    SMSD_ASTERISK_SIP    127.0.0.1:5070               where PJSIP listens (default)
    SMSD_ASTERISK_LOG    /path/to/asterisk/full       Asterisk's log (expression checks)

Run: SMSD_ASTERISK=... python -m pytest -m real_asterisk tests/asterisk/test_real_asterisk.py
Phone 100 of the sample (password change-me-100) is used and left unregistered.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from smsd.passwords import hash_password
from tests.asterisk.ast_expr import is_valid
from tests.asterisk.sip_phone import SipPhone
from tests.e2e.conftest import DaemonProc, SimulatorProc

pytestmark = [
    pytest.mark.real_asterisk,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not os.environ.get("SMSD_ASTERISK"),
                       reason="SMSD_ASTERISK does not name a real Asterisk"),
]

DID = "+15551234567"            # the sample [kite-sms] DID (members 100, 201)
CUSTOMER = "+15557654321"
PHONE = ("100", "change-me-100")  # asterisk-conf/pjsip.conf, callerid "Alice Agent" <100>
DATA = Path(__file__).parent / "data"
# The Asterisk answers on loopback in milliseconds; SMS through the simulated
# modem and the retry after a registration take well under this.
EVENT_DEADLINE_S = 30.0


def _ami(spec: str) -> tuple[str, str, str, int]:
    creds, _, where = spec.rpartition("@")
    user, _, secret = creds.partition(":")
    host, _, port = (where or "127.0.0.1:5038").rpartition(":")
    return user, secret, host or "127.0.0.1", int(port)


def _sip() -> tuple[str, int]:
    host, _, port = os.environ.get("SMSD_ASTERISK_SIP", "127.0.0.1:5070").rpartition(":")
    return host, int(port)


class RawAmi:
    """An AMI session that records every frame (events included)."""

    def __init__(self) -> None:
        self.frames: list[dict[str, str]] = []
        self.arrived = asyncio.Event()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self, user: str, secret: str, host: str, port: int) -> RawAmi:
        self._reader, self._writer = await asyncio.open_connection(host, port)
        await self._reader.readline()
        self._task = asyncio.create_task(self._read())
        await self.send({"Action": "Login", "Username": user, "Secret": secret})
        return self

    async def send(self, headers: dict[str, str]) -> None:
        assert self._writer is not None
        self._writer.write("".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
                           + b"\r\n")
        await self._writer.drain()

    async def _read(self) -> None:
        assert self._reader is not None
        frame: dict[str, str] = {}
        while line := await self._reader.readline():
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if text:
                key, _, value = text.partition(": ")
                frame[key] = value
            elif frame:
                self.frames.append(frame)
                frame = {}
                self.arrived.set()

    async def wait(self, match: dict[str, str], within_s: float = EVENT_DEADLINE_S
                   ) -> dict[str, str]:
        async with asyncio.timeout(within_s):
            while True:
                for f in self.frames:
                    if all(f.get(k, "").startswith(v) for k, v in match.items()):
                        return f
                self.arrived.clear()
                await self.arrived.wait()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._writer is not None:
            self._writer.close()


def _config(tmp: Path, modem: str) -> Path:
    user, secret, host, port = _ami(os.environ["SMSD_ASTERISK"])
    pw = hash_password("change-me", n=2**4)
    users = [("100", "Alice Agent", "100", DID), ("201", "Bob Boss", "201", DID),
             ("900", "Dialplan", "dialplan", None)]
    lines = [f'state_dir = "{tmp / "state"}"', 'routing = ["gsm"]', "",
             "[policy]", 'country = "US"', "",
             "[ami]", f'host = "{host}"', f"port = {port}", f'username = "{user}"',
             f'secret = "{secret}"', "auth_retry_s = 5", ""]
    for ext, name, username, office in users:
        lines += ["[[users]]", f'extension = "{ext}"', f'name = "{name}"',
                  f'username = "{username}"', 'licence = "uc-business"',
                  f'password_hash = "{pw}"']
        if office:
            lines.append(f'office_number = "{office}"')
        lines.append("")
    lines += ["[[gateways.gsm.modems]]", 'id = "gsm0"', f'path = "{modem}"',
              f'own_number = "{DID}"', 'profile = "generic"', ""]
    path = tmp / "smsd.toml"
    path.write_text("\n".join(lines))
    return path


@pytest.fixture
async def modem(tmp_path: Path) -> AsyncIterator[SimulatorProc]:
    sim = SimulatorProc(tmp_path, count=1, own_number=DID, report_delay_s=0.1)
    await sim.start()
    yield sim
    await sim.stop()


async def _daemon(tmp_path: Path, modem: SimulatorProc, agi: str) -> DaemonProc:
    d = DaemonProc(tmp_path, _config(tmp_path, modem.link_of(0)),
                   http="127.0.0.1:8080", agi=agi)
    await d.start()
    return d


@pytest.fixture
async def phone() -> AsyncIterator[SipPhone]:
    p = await SipPhone(*PHONE, _sip()).start()
    await p.unregister_all()
    yield p
    await p.unregister_all()
    await p.close()


async def _eventually(check: object, what: str) -> None:
    """Poll another process's state (its database, the simulator) until ``check``."""
    for _ in range(int(EVENT_DEADLINE_S / 0.1)):
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {EVENT_DEADLINE_S} s: {what}")


def _log_size(log: str) -> int:
    return Path(log).stat().st_size


def _log_since(log: str, size: int) -> bytes:
    with open(log, "rb") as f:
        f.seek(size)
        return f.read()


async def test_phone_with_callerid_name_reaches_the_modem(
        tmp_path: Path, modem: SimulatorProc, phone: SipPhone) -> None:
    """Acceptance 1: phone 100 (callerid "Alice Agent" <100>) texts a customer; Asterisk
    runs [sms-out], smsd identifies user 100 and the SMS leaves through the modem."""
    daemon = await _daemon(tmp_path, modem, "127.0.0.1:4573")
    try:
        assert await phone.message(CUSTOMER, "real asterisk: hello from 100") == 202

        async def sent() -> bool:
            return any(s.get("text") == "real asterisk: hello from 100"
                       for s in await modem.submitted(0))
        await _eventually(sent, "the SMS reached the modem")
        [row] = daemon.query("SELECT user, recipient, origin FROM messages")
        assert (row["user"], row["recipient"], row["origin"]) == ("100", CUSTOMER, "agi")
    finally:
        await daemon.stop()


async def test_curl_fallback_error_is_loud(
        tmp_path: Path, modem: SimulatorProc, phone: SipPhone) -> None:
    """Acceptance 2: smsd's FastAGI unreachable, its HTTP API answers the CURL fallback
    with an error (the number is refused): [sms-out] logs at ERROR and emits SmsdLost,
    instead of taking the reply for success."""
    admin = os.environ.get("SMSD_ASTERISK_ADMIN")
    if not admin:
        pytest.skip("SMSD_ASTERISK_ADMIN (an AMI user with read = all) is needed to see "
                    "SmsdLost and the dialplan's Log")
    _, _, host, port = _ami(os.environ["SMSD_ASTERISK"])
    user, _, secret = admin.partition(":")
    watch = await RawAmi().open(user, secret, host, port)
    daemon = await _daemon(tmp_path, modem, "127.0.0.1:4599")   # not where AGI() calls
    try:
        await watch.wait({"Response": "Success"})
        assert await phone.message("+99912", "real asterisk: to a refused number") == 202
        logged = await watch.wait({"Event": "Newexten", "Application": "Log",
                                   "AppData": "ERROR,sms-out:"})
        assert "NOT accepted by smsd" in logged["AppData"]
        assert '"type":"error"' in logged["AppData"]
        lost = await watch.wait({"Event": "UserEvent", "UserEvent": "SmsdLost"})
        assert lost["Direction"] == "out" and lost["To"] == "+99912"
        assert not [f for f in watch.frames if f.get("Application") == "Verbose"
                    and "queued" in f.get("AppData", "")]
    finally:
        await daemon.stop()
        await watch.close()


async def test_phone_off_gets_the_sms_after_it_registers(
        tmp_path: Path, modem: SimulatorProc, phone: SipPhone) -> None:
    """Acceptance 3: an SMS to the DID while phone 100 has no contact is routed (the
    [kite-sms] members 100 and 201), 100's copy waits; when 100 registers, Asterisk
    reports ContactStatus and smsd sends it the SMS."""
    daemon = await _daemon(tmp_path, modem, "127.0.0.1:4573")
    try:
        await modem.deliver(0, CUSTOMER, "real asterisk: while you were off")

        async def waiting() -> bool:
            return bool(daemon.query(
                "SELECT 1 FROM inbound_delivery_waits WHERE extension = '100'"))
        await _eventually(waiting, "100's copy waits")
        assert await phone.register() == 200
        [got] = await phone.wait_message(1, EVENT_DEADLINE_S)
        assert got.body == "real asterisk: while you were off"
        assert CUSTOMER in got.get("From")

        async def delivered() -> bool:
            return bool(daemon.query(
                "SELECT 1 FROM inbound_deliveries WHERE extension = '100'"))
        await _eventually(delivered, "recorded as delivered")
    finally:
        await daemon.stop()


async def test_expression_model_agrees_with_this_asterisk() -> None:
    """The $[...] parser model (tests/asterisk/ast_expr.py) calls each recorded
    expression a syntax error exactly when this Asterisk logs one (Getvar EVAL)."""
    admin, log = os.environ.get("SMSD_ASTERISK_ADMIN"), os.environ.get("SMSD_ASTERISK_LOG")
    if not admin or not log:
        pytest.skip("SMSD_ASTERISK_ADMIN and SMSD_ASTERISK_LOG are needed")
    _, _, host, port = _ami(os.environ["SMSD_ASTERISK"])
    user, _, secret = admin.partition(":")
    ami = await RawAmi().open(user, secret, host, port)
    try:
        await ami.wait({"Response": "Success"})
        verdicts = json.loads((DATA / "ast-expr-verdicts.json").read_text("utf-8"))
        for i, v in enumerate(verdicts):
            size = await asyncio.to_thread(_log_size, log)
            await ami.send({"Action": "Getvar", "ActionID": f"x{i}",
                            "Variable": f"EVAL($[{v['expression']}])"})
            await ami.wait({"ActionID": f"x{i}"})
            await asyncio.sleep(0.2)   # the log line is written after the answer
            said_error = b"ast_yyerror" in await asyncio.to_thread(_log_since, log, size)
            assert said_error is not is_valid(v["expression"]), v
    finally:
        await ami.close()
