"""``smsd modem probe``: open a port, identify the modem and report everything.

Read-only apart from ATE0/+CMEE=1 (and the PIN, only when one is given): a
technician can probe a modem the daemon is about to use without changing its
SMS settings.  Port problems raise (PortBusy names the holder); everything
the modem says, including SIM trouble, is reported as data.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from typing import Any

from smsd.errors import AtError, AtTimeout, PortGone, SimError
from smsd.modem import at
from smsd.modem.channel import AtChannel
from smsd.modem.device import Modem
from smsd.modem.quirks import choose_profile
from smsd.modem.spec import ModemSpec

# The whole probe: about 15 queries of at most a few seconds each; a modem
# that needs longer than 60 s in total is reported as not answering.
PROBE_TIMEOUT = 60.0
# A powered modem answers ATE0 within 300 ms (vendor manuals); 3 s allows for
# one still booting.  No answer at all is reported, not retried.
ANSWER_TIMEOUT = 3.0


@dataclass
class ProbeReport:
    path: str
    responding: bool = False
    manufacturer: str | None = None
    model: str | None = None
    revision: str | None = None
    imei: str | None = None
    imsi: str | None = None
    profile: str = "generic"
    urc_port_note: str | None = None
    sim: str | None = None              # READY, SIM PIN, SIM PUK, NOT INSERTED, ...
    sim_error: str | None = None
    signal_dbm: int | None = None
    signal_bars: int | None = None
    registration: int | None = None     # TS 27.007 <stat>
    registered: bool = False
    roaming: bool = False
    operator: str | None = None
    smsc: str | None = None
    own_number: str | None = None
    pdu_mode: bool | None = None        # AT+CMGF=? lists 0
    cnmi_supported: str | None = None   # the AT+CNMI=? answer
    storage: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Quiet:
    """ModemEvents that ignores everything: a probe stores nothing."""

    async def sms_received(self, modem: str, sms: object) -> None:
        raise RuntimeError("probe does not take messages")

    async def status_report(self, modem: str, report: object) -> None:
        raise RuntimeError("probe does not take reports")

    def modem_state(self, modem: str, state: str, detail: str | None) -> None:
        return None


async def probe(path: str, *, baudrate: int = 115200, pin: str | None = None,
                profile: str = "auto", answer_s: float = ANSWER_TIMEOUT) -> ProbeReport:
    """Identify the modem at ``path``; raises PortBusy/PortGone for port problems."""
    spec = ModemSpec(id="probe", path=path, baudrate=baudrate, pin=pin, profile=profile)
    modem = Modem(spec, _Quiet())
    report = ProbeReport(path=path)
    await modem.open()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await _probe(modem, report, answer_s)
    except TimeoutError:
        report.errors.append(f"probe did not finish within {PROBE_TIMEOUT:g} s")
    finally:
        await modem.close()
    return report


async def _probe(modem: Modem, report: ProbeReport, answer_s: float) -> None:
    chan = modem.channel
    assert chan is not None
    try:
        await chan.command("ATE0", answer_s)
    except AtError:
        pass                # answers, just not to ATE0: carry on
    except (AtTimeout, PortGone) as exc:
        report.errors.append(f"no answer to ATE0: {exc}")
        return
    report.responding = True
    await _optional(chan, report, "AT+CMEE=1")
    await modem.identify()
    info = modem.info
    report.manufacturer, report.model = info.manufacturer, info.model
    report.revision, report.imei = info.revision, info.imei
    prof = choose_profile(modem.spec.profile, info.manufacturer, info.model)
    modem.profile = prof
    report.profile, report.urc_port_note = prof.name, prof.urc_port_note

    try:
        if modem.spec.pin:
            await modem.unlock_sim()
        report.sim = await modem.sim_state()
        if report.sim == "READY":
            report.imsi = at.parse_info(await _optional(chan, report, "AT+CIMI"), "+CIMI")
    except SimError as exc:
        report.sim_error = str(exc)
    except (AtError, AtTimeout) as exc:
        report.errors.append(str(exc))

    await modem.refresh_status()
    report.signal_dbm, report.signal_bars = info.signal_dbm, info.signal_bars
    report.operator = info.operator
    reg = await modem.registration()
    if reg is not None:
        report.registration, report.registered, report.roaming = (
            reg.stat, reg.registered, reg.roaming)
    for line in await _optional(chan, report, "AT+CSCA?"):
        if line.startswith("+CSCA"):
            report.smsc = at.parse_csca(line)
    numbers = at.parse_cnum(await _optional(chan, report, "AT+CNUM"))
    report.own_number = numbers[0] if numbers else None
    cmgf = await _optional(chan, report, "AT+CMGF=?")
    report.pdu_mode = any("0" in line for line in cmgf) if cmgf else None
    cnmi = await _optional(chan, report, "AT+CNMI=?")
    report.cnmi_supported = cnmi[0].split(":", 1)[-1].strip() if cnmi else None
    for line in await _optional(chan, report, "AT+CPMS?"):
        if line.startswith("+CPMS"):
            with_names = at.parse_cpms(line)
            report.storage = [{"memory": s.mem, "used": s.used, "total": s.total}
                              for s in with_names]


async def _optional(chan: AtChannel, report: ProbeReport, command: str) -> list[str]:
    try:
        return await chan.command(command)
    except (AtError, AtTimeout) as exc:
        report.errors.append(str(exc))
        return []
