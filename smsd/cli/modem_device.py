"""``smsd modem probe|send|read|ussd``: a technician's direct look at one modem.

These talk to the port themselves through the driver (device.py), so they
refuse to run while the daemon (or ModemManager) holds the port, and say so.
Every failure ends in a :class:`ModemCliError` whose message tells the
technician what is wrong in plain words; exit codes: 1 = the modem answered
but something is wrong (SIM, network, refused send), 2 = no usable modem
at that path (missing, busy, not a modem).  The probe itself, and the
words for what it finds, live in probe.py; this module only prints it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from smsd.codec import pdu
from smsd.codec.reassembly import CompleteSms, MemoryPartStore, Reassembler
from smsd.errors import (
    AtError,
    AtTimeout,
    CmsError,
    ModemError,
    PduError,
    PortBusy,
    PortGone,
    SimError,
    SubmitUnconfirmed,
)
from smsd.modem import at
from smsd.modem.device import USSD_TIMEOUT, Modem
from smsd.modem.pool import BadUssdCode, check_ussd_code
from smsd.modem.probe import ProbeReport, close_quietly, registration_text
from smsd.modem.probe import probe as probe_port
from smsd.modem.receive import LIST_TIMEOUT
from smsd.modem.spec import ModemSpec

# `send` waits this long for registration after init: a modem just plugged in
# attaches in 5-30 s (GSM attach), so 30 s before we call it "no network".
SEND_REGISTRATION_S = 30.0
# Delivery reports usually come within seconds; a phone that is off defers
# them for hours, so the default wait is short and --timeout extends it.
DEFAULT_REPORT_TIMEOUT_S = 60.0

# Cancelling the driver's receive loop finishes within one AT command; the
# longest ordinary command deadline in device.py is SIM_TIMEOUT (5 s).
UNWIND_TIMEOUT_S = 5.0

EXIT_PROBLEM = 1
EXIT_NO_MODEM = 2
EXIT_USAGE = 2

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


class ModemCliError(Exception):
    def __init__(self, message: str, code: int = EXIT_PROBLEM) -> None:
        self.code = code
        super().__init__(message)


def check_e164(number: str) -> str:
    if not _E164.fullmatch(number):
        raise ModemCliError(
            f"{number!r} is not an E.164 number: write it as + country code and number, "
            "e.g. +447700900123", EXIT_PROBLEM)
    return number


class _Events:
    """What the CLI does with modem events: keep SMS on the SIM, collect our reports."""

    def __init__(self) -> None:
        self.wanted: set[int] = set()
        self.reports: dict[int, pdu.StatusReportPdu] = {}
        self.changed = asyncio.Event()

    async def sms_received(self, modem: str, sms: pdu.DeliverPdu) -> None:
        # Raising keeps the message on the SIM for the daemon or `smsd modem read`.
        raise ModemCliError("the CLI leaves received SMS on the SIM")

    async def status_report(self, modem: str, report: pdu.StatusReportPdu) -> None:
        if report.message_reference not in self.wanted:
            raise ModemCliError("not a report for this send: left for the daemon")
        self.reports[report.message_reference] = report
        self.changed.set()

    def modem_state(self, modem: str, state: str, detail: str | None) -> None:
        return None


async def _open(path: str, events: _Events, *, pin: str | None,
                registration_s: float,
                busy: Callable[[str, PortBusy], ModemCliError] | None = None) -> Modem:
    # claim_urc_port=False: the daemon may hold another port of this modem;
    # pointing the modem's URCs here would silence the daemon's +CMTI.
    modem = Modem(ModemSpec(id="cli", path=path, pin=pin), events,
                  registration_s=registration_s, claim_urc_port=False)
    try:
        await modem.open()
    except PortBusy as exc:
        raise (busy or _busy)(path, exc) from exc
    except PortGone as exc:
        raise ModemCliError(f"cannot open {path}: {exc}", EXIT_NO_MODEM) from exc
    return modem


def _busy(path: str, exc: PortBusy) -> ModemCliError:
    holder = exc.holder or "another process"
    return ModemCliError(
        f"port busy: {path} is held by {holder}; stop it first "
        "(for ModemManager: systemctl stop ModemManager, or the udev rule in systemd/)",
        EXIT_NO_MODEM)


async def _initialise(modem: Modem, path: str) -> None:
    try:
        await modem.initialise()
    except SimError as exc:
        raise ModemCliError(f"SIM problem on {path}: {exc}", EXIT_PROBLEM) from exc
    except AtTimeout as exc:
        raise ModemCliError(f"not a modem, or not answering: {exc}", EXIT_NO_MODEM) from exc
    except PortGone as exc:
        raise ModemCliError(f"the port went away: {exc}", EXIT_NO_MODEM) from exc
    except ModemError as exc:
        raise ModemCliError(f"modem initialisation failed on {path}: {exc}") from exc


# --- probe -------------------------------------------------------------------


async def probe(path: str, *, pin: str | None = None) -> ProbeReport:
    """The probe of :mod:`smsd.modem.probe`, with "no usable modem" as exit 2.

    A modem that answered comes back as the report, problems and all (exit 1
    when it has any); a port that cannot be opened, or does not speak AT, is a
    :class:`ModemCliError` with code 2.
    """
    try:
        report = await probe_port(path, pin=pin)
    except PortBusy as exc:
        raise _busy(path, exc) from exc
    except PortGone as exc:
        raise ModemCliError(f"cannot open {path}: {exc}", EXIT_NO_MODEM) from exc
    if not report.responding:
        raise ModemCliError(report.problems[0] if report.problems
                            else f"not a modem: {path} gave no answer", EXIT_NO_MODEM)
    return report


def format_probe(r: ProbeReport) -> str:
    """The report for a person: one field a line, then OK or each problem."""
    def val(v: object) -> str:
        return "-" if v is None or v == "" else str(v)

    signal = "-"
    if r.signal_dbm is not None:
        signal = f"{r.signal_dbm} dBm ({r.signal_bars}/4 bars)"
    storage = ", ".join(f"{s['memory'] or '?'} {s['used']}/{s['total']}" for s in r.storage[:1])
    rows = [("device", r.device), ("manufacturer", r.manufacturer), ("model", r.model),
            ("firmware", r.firmware), ("IMEI", r.imei), ("IMSI", r.imsi), ("ICCID", r.iccid),
            ("SIM", r.sim), ("operator", r.operator),
            ("registration", registration_text(r.registration)),
            ("signal", signal), ("SMS centre", r.smsc), ("storage", storage or None),
            ("own number", r.own_number)]
    if r.urc_port is not None:        # vendors whose URCs go to one chosen port
        here = f" (this port: {r.this_port})" if r.this_port else ""
        rows.append(("URC port", r.urc_port + here))
    lines = [f"{name + ':':<14}{val(value)}" for name, value in rows]
    if r.ok:
        lines.append("status:       OK, ready for SMS")
    else:
        lines.extend(f"PROBLEM:      {p}" for p in r.problems)
    return "\n".join(lines)


def render_probe(r: ProbeReport, *, as_json: bool) -> str:
    """What ``smsd modem probe`` prints: the text above, or one JSON object."""
    if as_json:
        return json.dumps(r.to_json(), indent=2, ensure_ascii=False)
    return format_probe(r)


# --- send --------------------------------------------------------------------


@dataclass
class SendResult:
    references: list[int]
    reports: dict[int, pdu.StatusReportPdu]


async def send(path: str, number: str, text: str, *, pin: str | None, wait_report: bool,
               timeout_s: float, out: Any) -> SendResult:
    check_e164(number)
    try:
        submits = pdu.encode_submit(number, text, reference=random.randrange(256),
                                    request_report=wait_report)
    except PduError as exc:
        raise ModemCliError(f"cannot encode the message: {exc}") from exc
    events = _Events()
    modem = await _open(path, events, pin=pin, registration_s=SEND_REGISTRATION_S)
    try:
        await _initialise(modem, path)
        if not modem.ready:
            raise ModemCliError(f"no network: the modem on {path} is {modem.state} "
                                f"({modem.detail or 'not registered'})")
        refs: list[int] = []
        for part in submits:
            try:
                mr = await modem.send_pdu(part)
            except CmsError as exc:
                kind = "temporary, try again later" if exc.temporary else "permanent"
                raise ModemCliError(f"part {part.part}/{part.parts} refused: {exc.raw} "
                                    f"({kind})") from exc
            except SubmitUnconfirmed as exc:
                raise ModemCliError(f"part {part.part}/{part.parts}: no answer after the PDU "
                                    f"went out, the network may have it ({exc}); check "
                                    "before sending again") from exc
            except ModemError as exc:
                raise ModemCliError(f"part {part.part}/{part.parts} not sent: {exc}") from exc
            if mr is None:      # accepted; line noise garbled the reference
                print(f"part {part.part}/{part.parts}: sent, TP-MR unreadable (no report "
                      "can be matched)", file=out, flush=True)
                continue
            refs.append(mr)
            events.wanted.add(mr)
            print(f"part {part.part}/{part.parts}: sent, TP-MR {mr}", file=out, flush=True)
        if wait_report:
            await _wait_reports(modem, events, refs, timeout_s)
        return SendResult(refs, dict(events.reports))
    finally:
        await close_quietly(modem)


async def _wait_reports(modem: Modem, events: _Events, refs: list[int], timeout_s: float) -> None:
    async def until_all() -> None:
        while not all(r in events.reports for r in refs):
            events.changed.clear()
            await events.changed.wait()

    runner = asyncio.create_task(modem.run())
    try:
        async with asyncio.timeout(timeout_s):
            await until_all()
    except TimeoutError:
        pass
    finally:
        runner.cancel()
        # Never hang the technician's shell on a driver that is slow to unwind.
        await asyncio.wait({runner}, timeout=UNWIND_TIMEOUT_S)
        if runner.done() and not runner.cancelled():
            exc = runner.exception()
            if exc is not None and not isinstance(exc, ModemError):
                raise exc


def describe_report(report: pdu.StatusReportPdu) -> str:
    if report.delivered:
        return f"delivered (TP-ST 0x{report.status:02X}) at {report.discharge.isoformat()}"
    if not report.final:
        return f"still trying (TP-ST 0x{report.status:02X})"
    return f"failed (TP-ST 0x{report.status:02X})"


# --- read --------------------------------------------------------------------


@dataclass
class ReadResult:
    messages: list[dict[str, Any]]
    reports: list[dict[str, Any]]
    undecodable: list[dict[str, Any]]


async def read(path: str, *, pin: str | None, delete: bool) -> ReadResult:
    modem = await _open(path, _Events(), pin=pin, registration_s=0)
    try:
        await _initialise(modem, path)
        try:
            entries = at.parse_cmgl(await modem.cmd(at.build_cmgl(4), LIST_TIMEOUT))
        except (AtError, AtTimeout, ValueError) as exc:
            raise ModemCliError(f"listing the SIM's messages failed: {exc}") from exc
        result = await _assemble(entries)
        if delete:
            done = [i for m in result.messages for i in m["indexes"]]
            done += [r["index"] for r in result.reports]
            for index in done:
                await modem.cmd(at.build_cmgd(index))
        return result
    finally:
        await close_quietly(modem)


async def _assemble(entries: list[at.StoredPdu]) -> ReadResult:
    reassembler = Reassembler(MemoryPartStore())
    result = ReadResult([], [], [])
    # SIM indexes per message: (sender, reference, parts) for concatenated parts,
    # the index itself for a one-part SMS.
    indexes: dict[tuple[str, int, int], list[int]] = {}
    done: list[tuple[CompleteSms, tuple[str, int, int]]] = []
    for entry in entries:
        try:
            decoded = pdu.decode(entry.pdu)
        except PduError as exc:
            result.undecodable.append({"index": entry.index, "pdu": entry.pdu,
                                       "error": str(exc)})
            continue
        if isinstance(decoded, pdu.StatusReportPdu):
            result.reports.append({"index": entry.index, "mr": decoded.message_reference,
                                   "recipient": decoded.recipient, "status": decoded.status,
                                   "delivered": decoded.delivered})
            continue
        if not isinstance(decoded, pdu.DeliverPdu) or entry.index is None:
            continue
        if decoded.reference is None or decoded.parts <= 1:
            key = (decoded.sender, -1 - entry.index, 1)
        else:
            key = (decoded.sender, decoded.reference, decoded.parts)
        indexes.setdefault(key, []).append(entry.index)
        sms = await reassembler.add("cli", decoded)
        if sms is not None:
            done.append((sms, key))
    # Whatever is still missing parts is shown too, with the gap marked.
    finished = {key for _, key in done}
    waiting = [key for key in indexes if key not in finished]
    for sms in await reassembler.expire(datetime.now(UTC) + timedelta(days=3650)):
        match = next((k for k in waiting if k[0] == sms.sender and k[2] == sms.parts), None)
        if match is not None:
            waiting.remove(match)
            done.append((sms, match))
    for sms, key in done:
        result.messages.append({"from": sms.sender, "text": sms.text, "parts": sms.parts,
                                "complete": sms.complete, "timestamp": sms.timestamp.isoformat(),
                                "smsc": sms.smsc, "indexes": sorted(indexes[key])})
    return result


# --- ussd --------------------------------------------------------------------

@dataclass(frozen=True)
class UssdResult:
    device: str
    code: str
    status: int
    text: str | None

    @property
    def answer(self) -> at.Ussd:
        return at.Ussd(self.status, self.text, None)

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "code": self.code, "status": self.status,
                "text": self.text}


def _smsd_daemon_holds(holder: str | None) -> bool:
    """Whether a port holder named by PortBusy ("name (pid N)") is ``smsd run``.

    The process name alone does not tell (``python3 -m smsd run``), so the
    holder's command line is read from /proc.
    """
    for pid in re.findall(r"pid (\d+)", holder or ""):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = [a.decode(errors="replace") for a in f.read().split(b"\0")]
        except OSError:
            continue
        names = [os.path.basename(a) for a in args]
        if "smsd" in names and "run" in names[names.index("smsd") + 1:]:
            return True
    return False


def _busy_for_ussd(code: str) -> Callable[[str, PortBusy], ModemCliError]:
    def busy(path: str, exc: PortBusy) -> ModemCliError:
        if not _smsd_daemon_holds(exc.holder):
            return _busy(path, exc)
        return ModemCliError(
            f"port busy: {path} is held by the smsd daemon ({exc.holder}); ask the daemon "
            f"instead: smsd ussd <modem id> '{code}' (modem ids: smsd status)", EXIT_NO_MODEM)
    return busy


async def ussd(path: str, code: str, *, pin: str | None,
               wait_s: float = USSD_TIMEOUT) -> UssdResult:
    """One USSD request (a balance check) and the network's answer.

    A menu answer (status 1) is returned as it is: the driver has already
    ended the session, since a one-off command has no way to reply.
    """
    try:
        check_ussd_code(code)
    except BadUssdCode as exc:
        raise ModemCliError(f"{exc}; nothing was sent", EXIT_USAGE) from exc
    modem = await _open(path, _Events(), pin=pin, registration_s=SEND_REGISTRATION_S,
                        busy=_busy_for_ussd(code))
    try:
        await _initialise(modem, path)
        if not modem.ready:
            raise ModemCliError(f"no network: the modem on {path} is {modem.state} "
                                f"({modem.detail or 'not registered'}); USSD needs the network")
        answer = await _ask(modem, path, code, wait_s)
        return UssdResult(path, code, answer.status, answer.text)
    finally:
        await close_quietly(modem)


async def _ask(modem: Modem, path: str, code: str, wait_s: float) -> at.Ussd:
    # The answer comes as a +CUSD URC, which only the driver's receive loop
    # reads; a receive loop that ends first means the port died.
    ask = asyncio.create_task(modem.ussd(code, wait_s))
    runner = asyncio.create_task(modem.run())
    try:
        await asyncio.wait({ask, runner}, return_when=asyncio.FIRST_COMPLETED)
        if not ask.done():
            gone = runner.exception() if not runner.cancelled() else None
            raise ModemCliError(f"the port went away: {gone}", EXIT_NO_MODEM)
        try:
            return ask.result()
        except AtTimeout as exc:
            raise ModemCliError(f"no USSD answer from the network within {exc.seconds:g} s "
                                f"(code {code})") from exc
        except AtError as exc:
            raise ModemCliError(f"the modem refused the USSD request {code}: {exc.raw}") from exc
        except PortGone as exc:
            raise ModemCliError(f"the port went away: {exc}", EXIT_NO_MODEM) from exc
    finally:
        for task in (ask, runner):
            task.cancel()
        # Never hang the technician's shell on a driver that is slow to unwind.
        await asyncio.wait({ask, runner}, timeout=UNWIND_TIMEOUT_S)
        for task in (ask, runner):        # already reported above, or beside the point
            if task.done() and not task.cancelled():
                task.exception()
