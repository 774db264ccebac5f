"""One look at one modem port: who it is, its SIM, its network, and what is wrong.

The only probe in smsd: ``smsd modem probe`` prints this report, nothing
more.  Read-only apart from ATE0/+CMEE=1 (and the PIN, only when one is
given and the SIM asks for it), so a technician can probe a modem the daemon
is about to use without changing its SMS settings.  Opening the port raises
(PortBusy names the holder, PortGone says why); everything after that,
including "not a modem", is reported as data.  What is wrong is worded here,
in plain language, so every caller says the same thing.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog

from smsd.errors import AtError, AtTimeout, ModemError, PortGone
from smsd.modem import at
from smsd.modem.device import Modem
from smsd.modem.quirks import choose_profile, parse_urc_port
from smsd.modem.spec import ModemSpec
from smsd.modem.usbinfo import usb_interface

# +CPMS? answers three memories in this order (TS 27.005 3.2.2): mem1 is read
# and deleted from, mem2 written and sent from, mem3 where new SMS are stored.
CPMS_SLOTS = ("read_delete", "write_send", "receive")

log = structlog.get_logger(__name__)

# A modem answers a bare AT within milliseconds; one still booting or busy
# with a SIM access may take a second or two (vendor manuals give 300 ms for
# "AT" and up to 5 s for SIM commands).  Three tries of 2 s each.
PROBE_AT_TIMEOUT_S = 2.0
PROBE_AT_TRIES = 3
# The whole probe is about 20 queries of at most a few seconds each; a modem
# that needs longer than 60 s in total is reported as having stopped answering.
PROBE_TIMEOUT_S = 60.0
# After an accepted PIN the SIM reads its files before +CPIN? says READY;
# TS 27.007 8.3 allows +CME ERROR 14 (SIM busy) meanwhile.  Modems seen in
# the field settle within a second or two; 5 s, polled twice a second.
PIN_SETTLE_S = 5.0
PIN_SETTLE_POLL_S = 0.5
# Closing the channel finishes within one AT command; the longest ordinary
# command deadline in device.py is SIM_TIMEOUT (5 s).
UNWIND_TIMEOUT_S = 5.0

# ICCID commands by vendor (generic/Telit, Huawei, Quectel, SIMCom, Sierra);
# the first that answers wins.  None is in TS 27.007.
ICCID_COMMANDS = ("AT+CCID", "AT^ICCID?", "AT+QCCID", "AT+CICCID", "AT!ICCID?")

# TS 27.007 7.2 +CREG/+CEREG <stat>, in the words a technician reads.
REG_TEXT = {0: "not registered, not searching", 1: "registered (home network)",
            2: "not registered, searching", 3: "registration denied", 4: "unknown",
            5: "registered (roaming)", 6: "registered for SMS only (home network)",
            7: "registered for SMS only (roaming)", 8: "emergency services only",
            9: "registered, CSFB not preferred (home network)",
            10: "registered, CSFB not preferred (roaming)"}

_SIM_PIN = "SIM PIN"
_SIM_READY = "READY"


@dataclass
class ProbeReport:
    """Everything the probe learnt; ``problems`` says in plain words what is wrong."""

    device: str
    responding: bool = False            # it speaks AT (even if it refused something)
    manufacturer: str | None = None
    model: str | None = None
    firmware: str | None = None
    imei: str | None = None
    imsi: str | None = None
    iccid: str | None = None
    profile: str = "generic"            # the quirks profile smsd would use
    urc_port_note: str | None = None    # where this vendor sends +CMTI
    usb_interface: int | None = None    # bInterfaceNumber of this port (sysfs), None if not USB
    this_port: str | None = None        # the vendor's name for this port (Quectel "usbat", ...)
    urc_port: str | None = None         # where the modem sends URCs now (AT+QURCCFG="urcport")
    sim: str | None = None              # READY, SIM PIN, SIM PUK, NOT INSERTED, ...
    operator: str | None = None
    registration: int | None = None     # TS 27.007 <stat>
    registered: bool = False
    roaming: bool = False
    signal_dbm: int | None = None
    signal_bars: int | None = None
    smsc: str | None = None
    # One entry per +CPMS memory, named by its slot (TS 27.005 3.2.2): often
    # the same memory (SM) three times, which is only clear with the slot.
    storage: list[dict[str, Any]] = field(default_factory=list)
    own_number: str | None = None
    pdu_mode: bool | None = None        # AT+CMGF=? lists 0; None when it would not say
    cnmi_supported: str | None = None   # the AT+CNMI=? answer, as given
    problems: list[str] = field(default_factory=list)
    # Commands the modem refused or did not answer; evidence, not problems.
    command_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.responding and not self.problems

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


# --- pure: parsing and wording ---------------------------------------------------


def parse_iccid(lines: list[str]) -> str | None:
    """The ICCID from any vendor's answer; Huawei's nibble-swapped form is un-swapped.

    EF_ICCID holds the digits nibble-swapped (TS 102 221 13.2); an ICCID always
    starts 89 (ITU-T E.118), so a raw "98..." is the card's byte order.
    """
    for line in lines:
        digits = re.sub(r"[^0-9A-Fa-f]", "", line.split(":", 1)[-1])
        if len(digits) >= 18:
            if digits.startswith("98"):
                digits = "".join(digits[i + 1] + digits[i]
                                 for i in range(0, len(digits) - 1, 2))
            return digits.rstrip("Ff")
    return None


def parse_mode_list(lines: list[str], prefix: str) -> set[int] | None:
    """The values of the first parameter of a test-command answer, e.g. "+CMGF: (0,1)"."""
    for line in lines:
        if not line.startswith(prefix):
            continue
        body = line.split(":", 1)[1].strip()
        first = body[1:body.index(")")] if body.startswith("(") and ")" in body else body
        values: set[int] = set()
        for item in first.split(","):
            lo, _, hi = item.strip().partition("-")
            if not lo.isdigit() or (hi and not hi.isdigit()):
                return None
            values.update(range(int(lo), int(hi or lo) + 1))
        return values
    return None


def registration_text(stat: int | None) -> str:
    if stat is None:
        return "-"
    return REG_TEXT.get(stat, f"status {stat}")


def not_a_modem(device: str, detail: str) -> str:
    return (f"not a modem: {device} gave {detail}; wrong port of a multi-port modem "
            "(try the others), or not a modem at all")


def find_problems(r: ProbeReport, *, pin_given: bool,
                  pin_refused: str | None = None) -> list[str]:
    """What a technician must fix, in the order to fix it (SIM, then network)."""
    problems: list[str] = []
    if pin_refused is not None:
        problems.append(f"the SIM refused the PIN ({pin_refused}); check it before "
                        "retrying: 3 wrong PINs lock the SIM behind its PUK")
    if r.sim == "NOT INSERTED":
        problems.append("no SIM card: insert one (power the modem off first)")
    elif r.sim == _SIM_PIN:
        if not pin_given:
            problems.append("PIN needed: the SIM is locked; give --pin, or set pin / "
                            "pin_file in the modem's config")
    elif r.sim in ("SIM PUK", "SIM PUK2"):
        problems.append("the SIM is PUK-locked after wrong PINs: unlock it in a phone")
    elif r.sim == "BUSY":
        problems.append("the SIM is busy (still reading its files?): probe again in a "
                        "few seconds")
    elif r.sim == "SIM FAILURE":
        problems.append("SIM failure: the modem cannot talk to the card; power off, "
                        "reseat the SIM and try again")
    elif r.sim != _SIM_READY:
        problems.append(f"SIM not usable: {r.sim}")
    if r.pdu_mode is False:
        problems.append("the modem offers no PDU mode (AT+CMGF=? lacks 0): smsd "
                        "needs PDU mode for long and non-Latin messages")
    if r.sim == _SIM_READY:
        if not r.smsc:
            problems.append("no SMS centre on the SIM: set smsc in the modem's config")
        if not r.registered:
            problems.append(f"no network: {registration_text(r.registration or 0)}; check "
                            "the antenna, coverage and that the SIM is active")
    return problems


# --- talking to the modem ---------------------------------------------------------


class _Quiet:
    """ModemEvents for a probe: nothing is taken, so received SMS stay on the SIM."""

    async def sms_received(self, modem: str, sms: object) -> None:
        raise RuntimeError("the probe leaves received SMS on the SIM")

    async def status_report(self, modem: str, report: object) -> None:
        raise RuntimeError("the probe leaves status reports on the SIM")

    def modem_state(self, modem: str, state: str, detail: str | None) -> None:
        return None


async def probe(path: str, *, baudrate: int = 115200, pin: str | None = None,
                profile: str = "auto", answer_s: float = PROBE_AT_TIMEOUT_S,
                tries: int = PROBE_AT_TRIES) -> ProbeReport:
    """Probe the modem at ``path``; raises PortBusy/PortGone only when it cannot be opened."""
    spec = ModemSpec(id="probe", path=path, baudrate=baudrate, profile=profile)
    modem = Modem(spec, _Quiet(), registration_s=0)
    report = ProbeReport(device=path)
    await modem.open()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            await _probe(modem, report, pin, answer_s, tries)
    except TimeoutError:
        report.problems.append(f"the modem stopped answering: the probe did not finish "
                               f"within {PROBE_TIMEOUT_S:g} s")
    except PortGone as exc:
        report.problems.append(f"the port went away during the probe: {exc}")
    finally:
        await close_quietly(modem)
    log.info("modem.probed", path=path, responding=report.responding, ok=report.ok,
             problems=len(report.problems))
    return report


async def close_quietly(modem: Modem) -> None:
    """Close after a probe or a CLI command: the verdict is made, a slow or failing close
    must neither hide it nor hang the command (shared with smsd.cli.modem_device)."""
    try:
        async with asyncio.timeout(UNWIND_TIMEOUT_S):
            await modem.close()
    except (TimeoutError, ModemError):
        pass


async def _answers(modem: Modem, answer_s: float, tries: int) -> str | None:
    """None when the port speaks AT, else what it did instead."""
    detail = f"no answer to AT in {tries} tries of {answer_s:g} s"
    for _ in range(tries):
        try:
            await modem.cmd("AT", answer_s)
        except AtError:
            pass                        # it speaks AT, even if it dislikes a bare AT
        except AtTimeout:
            continue
        except PortGone as exc:         # the channel gives up when its resync gets no answer
            return f"no answer to AT ({exc})"
        return None
    return detail


async def _probe(modem: Modem, r: ProbeReport, pin: str | None, answer_s: float,
                 tries: int) -> None:
    detail = await _answers(modem, answer_s, tries)
    if detail is not None:
        r.problems.append(not_a_modem(r.device, detail))
        return
    r.responding = True
    await _optional(modem, r, "ATE0")
    await _optional(modem, r, "AT+CMEE=1")
    await modem.identify()
    info = modem.info
    r.manufacturer, r.model, r.firmware, r.imei = (
        info.manufacturer, info.model, info.revision, info.imei)
    prof = choose_profile(modem.spec.profile, info.manufacturer, info.model)
    modem.profile = prof
    r.profile, r.urc_port_note = prof.name, prof.urc_port_note
    r.usb_interface = usb_interface(r.device)
    r.this_port = prof.urc_port_for_interface(r.usb_interface)
    if prof.urc_port_query and prof.urc_port_prefix:     # a read: the setting is not changed
        r.urc_port = parse_urc_port(await _optional(modem, r, prof.urc_port_query),
                                    prof.urc_port_prefix)
    for command in ICCID_COMMANDS:       # readable without the PIN (TS 102 221 13.2)
        lines = await _optional(modem, None, command)
        if lines and (iccid := parse_iccid(lines)):
            r.iccid = iccid
            break
    r.sim, refused = await _sim_state(modem), None
    if r.sim == _SIM_PIN and pin:
        refused = await _enter_pin(modem, r, pin)
    if r.sim == _SIM_READY:
        await _sim_details(modem, r)
    cmgf = parse_mode_list(await _optional(modem, r, "AT+CMGF=?"), "+CMGF")
    r.pdu_mode = None if cmgf is None else 0 in cmgf
    cnmi = await _optional(modem, r, "AT+CNMI=?")
    r.cnmi_supported = next((line.split(":", 1)[1].strip() for line in cnmi
                             if line.startswith("+CNMI")), None)
    reg = await modem.registration()
    await modem.refresh_status()
    r.registration = reg.stat if reg else None
    r.registered, r.roaming = bool(reg and reg.registered), bool(reg and reg.roaming)
    r.operator = info.operator
    r.signal_dbm, r.signal_bars = info.signal_dbm, info.signal_bars
    r.problems.extend(find_problems(r, pin_given=bool(pin), pin_refused=refused))


async def _enter_pin(modem: Modem, r: ProbeReport, pin: str) -> str | None:
    """Enter the PIN once; the modem's refusal, or None.  Never retried: 3 lock the SIM."""
    try:
        command = at.build_cpin(pin)
    except ValueError:
        r.problems.append("the PIN given is not 4 to 8 digits: it was not sent to the SIM")
        return None
    try:
        await modem.cmd(command)
    except AtError as exc:
        r.sim = await _sim_state(modem)
        return exc.raw
    except AtTimeout as exc:
        r.command_errors.append(f"AT+CPIN=<pin>: {exc}")   # never the PIN itself
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PIN_SETTLE_S
    while True:
        r.sim = await _sim_state(modem)
        if r.sim not in (_SIM_PIN, "BUSY") or loop.time() >= deadline:
            return None
        await asyncio.sleep(PIN_SETTLE_POLL_S)


async def _sim_state(modem: Modem) -> str:
    try:
        lines = await modem.cmd("AT+CPIN?")
    except AtError as exc:
        if exc.code == at.CME_SIM_NOT_INSERTED:
            return "NOT INSERTED"
        if exc.code == at.CME_SIM_BUSY:
            return "BUSY"
        if exc.code == at.CME_SIM_FAILURE:
            return "SIM FAILURE"
        return f"unknown ({exc.raw})"
    except AtTimeout:
        return "unknown (no answer to AT+CPIN?)"
    for line in lines:
        if line.startswith("+CPIN"):
            return at.parse_cpin(line)
    return "unknown"


async def _sim_details(modem: Modem, r: ProbeReport) -> None:
    r.imsi = at.parse_info(await _optional(modem, r, "AT+CIMI"), "+CIMI")
    for line in await _optional(modem, r, "AT+CSCA?"):
        if line.startswith("+CSCA"):
            r.smsc = at.parse_csca(line)
    for line in await _optional(modem, r, "AT+CPMS?"):
        if line.startswith("+CPMS"):
            r.storage = [{"slot": slot, "memory": s.mem, "used": s.used, "total": s.total}
                         for slot, s in zip(CPMS_SLOTS, at.parse_cpms(line), strict=False)]
    numbers = at.parse_cnum(await _optional(modem, r, "AT+CNUM"))
    r.own_number = numbers[0] if numbers else None


async def _optional(modem: Modem, r: ProbeReport | None, command: str) -> list[str]:
    """A query whose failure is evidence, not a problem; [] when it failed."""
    try:
        return await modem.cmd(command)
    except (AtError, AtTimeout) as exc:
        if r is not None:
            r.command_errors.append(f"{command}: {exc}")
        return []
