"""What one modem is (from config) and what it tells the rest of smsd.

The modem package depends on nothing else in smsd except ``smsd.errors``, so
the callbacks the daemon provides are a Protocol defined here rather than an
import of the inbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from smsd.codec.pdu import DeliverPdu, StatusReportPdu

# The vendors' AT+CMGS maximum (Quectel EC25 AT manual 9.x, SIMCom SIM7600 4.x).
DEFAULT_SEND_TIMEOUT_S = 120.0

PROFILES = ("auto", "generic", "huawei", "quectel", "simcom", "sierra")
# Quectel AT+QURCCFG="urcport" values (EC2x/EG2x AT manual): the USB AT
# interface, the USB modem interface, the main UART.
URC_PORTS = ("usbat", "usbmodem", "uart1")
# Profiles for which ModemSpec.urc_port means something ("auto" may find a Quectel).
URC_PORT_PROFILES = ("auto", "quectel")

# States reported through ModemEvents.modem_state (docs/internals.md).
STATE_OPENING = "opening"
STATE_INITIALISING = "initialising"
STATE_READY = "ready"
STATE_SIM_ERROR = "sim_error"
STATE_NO_NETWORK = "no_network"
STATE_GONE = "gone"
STATE_BUSY = "busy"


@dataclass(frozen=True)
class ModemSpec:
    id: str
    path: str
    baudrate: int = 115200
    pin: str | None = None
    pin_file: str | None = None
    own_number: str | None = None
    smsc: str | None = None
    profile: str = "auto"
    rate_per_minute: int = 0
    daily_cap: int = 0
    request_reports: bool = True
    # Which port this is, for vendors that send URCs to one chosen port
    # (Quectel AT+QURCCFG="urcport"); None = from the USB interface number.
    urc_port: str | None = None
    # Longest wait for the answer to AT+CMGS after the PDU (TS 27.005 sets
    # none; vendor manuals give up to 120 s for the network's RP-ACK).
    send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S

    def __repr__(self) -> str:
        # The PIN must never reach a log line through a repr.
        pin = "***" if self.pin else None
        return (
            f"ModemSpec(id={self.id!r}, path={self.path!r}, baudrate={self.baudrate}, "
            f"pin={pin}, pin_file={self.pin_file!r}, own_number={self.own_number!r}, "
            f"profile={self.profile!r}, urc_port={self.urc_port!r})"
        )


class ModemEvents(Protocol):
    async def sms_received(self, modem: str, sms: DeliverPdu) -> None:
        """Return only once the part is durably stored; raising keeps it on the SIM."""

    async def status_report(self, modem: str, report: StatusReportPdu) -> None: ...

    def modem_state(self, modem: str, state: str, detail: str | None) -> None: ...


class PinGuard(Protocol):
    """Remembers refused PINs across reconnects (owned by the supervisor)."""

    def refused(self, modem: str, pin: str) -> bool: ...
    def remember_refused(self, modem: str, pin: str) -> None: ...


@dataclass
class DeviceInfo:
    manufacturer: str | None = None
    model: str | None = None
    revision: str | None = None
    imei: str | None = None
    imsi: str | None = None
    operator: str | None = None
    signal_dbm: int | None = None
    signal_bars: int | None = None
    registration: int | None = None
    own_number: str | None = None
    smsc: str | None = None
    sim: str | None = None
    cnmi: str | None = None
    storage: str | None = None
    # Messages in the read memory and its size (AT+CPMS?), for /metrics: a
    # full SIM stops accepting SMS, so this is worth an alert before it happens.
    storage_used: int | None = None
    storage_total: int | None = None
    # Where the modem sends URCs (Quectel AT+QURCCFG="urcport") after init,
    # as set or, when smsd could not tell which port it holds, as read.
    urc_port: str | None = None
