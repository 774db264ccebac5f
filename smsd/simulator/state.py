"""The simulated modem's memory: settings, SIM, message storage, and the reply model.

Kept apart from the interpreter so that the command handlers (general ones in
general.py, SMS ones in sms.py, vendor ones in vendor.py) share one plain state object.
What survives a power cycle follows the hardware: the SIM's files (PIN state
counters, SM storage, SMSC, TP-MR) and the ME's flash (Quectel's URC port)
survive, the session
settings (echo, +CMEE, +CNMI, +CMGF, ...) do not (V.250 6.1.1 / &F).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from smsd.simulator.profiles import Identity, Profile

# TS 27.007 9.2 +CME ERROR values the simulator uses, with their verbose texts.
CME_TEXT: dict[int, str] = {
    3: "operation not allowed",
    4: "operation not supported",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    16: "incorrect password",
    21: "invalid index",
    30: "no network service",
    50: "incorrect parameters",
    100: "unknown",
}

# TS 27.005 3.2.5 +CMS ERROR values, with the texts some modems print at +CMEE=2.
CMS_TEXT: dict[int, str] = {
    1: "unassigned (unallocated) number",
    21: "short message transfer rejected",
    42: "congestion",
    302: "operation not allowed",
    303: "operation not supported",
    304: "invalid PDU mode parameter",
    305: "invalid text mode parameter",
    310: "SIM not inserted",
    311: "SIM PIN required",
    316: "SIM PUK required",
    321: "invalid memory index",
    322: "memory full",
    331: "no network service",
    332: "network timeout",
    340: "no +CNMA acknowledgement expected",
    500: "unknown error",
}

DEFAULT_PUK = "12345678"
PIN_ATTEMPTS = 3      # TS 31.101 / ETSI TS 102 221: PIN blocked after 3 wrong tries
PUK_ATTEMPTS = 10     # ... and the PUK after 10

# 27.005 3.1 <stat> in PDU mode
STAT_REC_UNREAD = 0
STAT_REC_READ = 1
STAT_STO_UNSENT = 2
STAT_STO_SENT = 3


class CommandFailed(Exception):
    """A handler's way of ending the command line with an error result."""

    def __init__(self, kind: str, code: int | None = None) -> None:
        self.kind = kind          # "ERROR" | "CME" | "CMS"
        self.code = code
        super().__init__(f"{kind} {code}")


def error() -> CommandFailed:
    return CommandFailed("ERROR")


def cme(code: int) -> CommandFailed:
    return CommandFailed("CME", code)


def cms(code: int) -> CommandFailed:
    return CommandFailed("CMS", code)


@dataclass(frozen=True)
class Prompt:
    """Returned by +CMGS: send the ``> `` prompt and collect a PDU of ``length`` octets."""

    length: int


@dataclass
class Reply:
    lines: list[str]
    final: str | None          # None while the modem waits at the "> " prompt
    prompt: Prompt | None = None


@dataclass
class Stored:
    stat: int
    pdu: str                   # hex, SMSC address included


class Memory:
    """One message storage (27.005 3.2.2 <mem>): fixed capacity, indexed slots."""

    def __init__(self, name: str, capacity: int, first_index: int) -> None:
        self.name = name
        self.capacity = capacity
        self.first_index = first_index
        self.slots: dict[int, Stored] = {}

    @property
    def used(self) -> int:
        return len(self.slots)

    def valid_index(self, index: int) -> bool:
        return self.first_index <= index < self.first_index + self.capacity

    def store(self, stat: int, pdu: str) -> int | None:
        for index in range(self.first_index, self.first_index + self.capacity):
            if index not in self.slots:
                self.slots[index] = Stored(stat, pdu)
                return index
        return None


@dataclass
class Settings:
    """Session settings: back to these on power-up, ATZ and AT&F."""

    echo: bool = True
    verbose: bool = True
    quiet: bool = False
    cmee: int = 0
    cmgf: int = 0
    cnmi: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    creg: int = 0
    cgreg: int = 0
    cereg: int = 0
    cops_format: int = 0
    cpms: tuple[str, str, str] = ("SM", "SM", "SM")
    csms: int = 0
    cscs: str = "IRA"
    curc: int = 1
    cusd: int = 0
    cfun: int = 1
    pending_cnma: int = 0


@dataclass
class SimCard:
    present: bool = True
    pin: str | None = None
    puk: str = DEFAULT_PUK
    pin_attempts: int = PIN_ATTEMPTS
    puk_attempts: int = PUK_ATTEMPTS
    verified: bool = False         # PIN entered since power-up
    puk_required: bool = False
    smsc: str = "+447785016005"
    own_number: str | None = None

    @property
    def state(self) -> str:
        """The +CPIN? answer text (27.007 8.3)."""
        if not self.present:
            return "NOT INSERTED"
        if self.puk_required:
            return "SIM PUK"
        if self.pin is not None and not self.verified:
            return "SIM PIN"
        return "READY"

    @property
    def ready(self) -> bool:
        return self.state == "READY"


class EngineHost(Protocol):
    """What the interpreter needs from the modem that owns the pseudo-terminal."""

    def urc(self, text: str, *, sms: bool = False) -> None: ...

    def after(self, delay_s: float, fn: Callable[[], None]) -> None: ...

    def sim_became_ready(self) -> None: ...

    def registration_changed(self) -> None: ...

    def sms_submitted(self, hex_pdu: str, mr: int) -> None: ...

    def injected_failure(self) -> int | None: ...

    def storage_freed(self) -> None: ...

    def indications_changed(self) -> None: ...

    def power_cycle(self) -> None: ...


@dataclass
class ModemState:
    profile: Profile
    identity: Identity
    sim: SimCard
    memories: dict[str, Memory]
    network_up: bool = True
    rssi: int = 20               # 27.007 8.5: 20 -> -73 dBm
    operator: str = "Sim Mobile"
    operator_numeric: str = "23415"
    next_mr: int = 0             # TP-MR, rolling 0..255 (23.040 9.2.3.6), kept on the SIM
    settings: Settings = field(default_factory=Settings)
    boot_count: int = 0
    # Quectel AT+QURCCFG="urcport": kept in the ME's NV memory ("the
    # configuration will be saved automatically", EC25 AT manual), so it
    # survives power cycles and ATZ, unlike the session settings above.
    qurc_port: str = "usbat"

    @property
    def registered(self) -> bool:
        return self.network_up and self.sim.ready and self.settings.cfun == 1

    def creg_stat(self) -> int:
        """27.007 7.2 <stat>: 1 home, 2 searching, 0 not searching (radio off / no SIM)."""
        if self.registered:
            return 1
        if self.sim.ready and self.settings.cfun == 1:
            return 2
        return 0

    def take_mr(self) -> int:
        mr = self.next_mr
        self.next_mr = (self.next_mr + 1) % 256
        return mr
