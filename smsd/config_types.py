"""The shapes of a validated config: frozen dataclasses and their defaults."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from socket import gethostname

from smsd.modem.spec import (
    ModemSpec,
)

DEFAULT_CONFIG_PATH = Path("/etc/smsd/smsd.toml")
DEFAULT_STATE_DIR = Path("/var/lib/smsd")
DEFAULT_DATABASE = "smsd.sqlite3"
GATEWAY_NAMES = ("curl", "gsm", "classound")

_PIN = re.compile(r"^[0-9]{4,8}$")
# MMS file types accepted unless [gateways.classound] mms_types says otherwise:
# what US carriers pass through their MMS gateways without surprises.
DEFAULT_MMS_TYPES = (
    "image/jpeg", "image/png", "image/gif", "video/mp4", "video/3gpp", "audio/mpeg",
    "audio/amr", "text/vcard", "application/pdf", "text/plain",
)


class Licence(StrEnum):
    NONE = "none"
    UC_ESSENTIAL = "uc-essential"
    UC_BUSINESS = "uc-business"
    UC_PREMIUM = "uc-premium"

    @property
    def rank(self) -> int:
        return _LICENCE_RANK[self]

    @property
    def can_send(self) -> bool:
        """UC-Essential and above may send outbound SMS (SEED-NOTES: licences)."""
        return self.rank >= 1

    @property
    def can_two_way(self) -> bool:
        """UC-Business and above may use two-way SMS and the API."""
        return self.rank >= 2


_LICENCE_RANK = {
    Licence.NONE: 0,
    Licence.UC_ESSENTIAL: 1,
    Licence.UC_BUSINESS: 2,
    Licence.UC_PREMIUM: 3,
}


@dataclass(frozen=True)
class User:
    extension: str
    name: str
    username: str
    office_number: str | None
    licence: Licence
    endpoint: str | None
    password_hash: str | None = field(default=None, repr=False)
    # Admins manage the blocklist, read every user's statistics and see every
    # message, conversation and modem in the web console; other users see their
    # own.  When no user is an admin, every API user may (a small PBX with one
    # administrator) use the admin API routes.
    admin: bool = False
    # An account for programs only (the dialplan's CURL fallback, a CRM): no
    # phone, so no extension; never a conversation participant or member.
    api_only: bool = False


@dataclass(frozen=True)
class CallGroup:
    name: str
    number: str | None
    members: tuple[str, ...]


@dataclass(frozen=True)
class CurlGateway:
    method: str
    url: str
    body: str
    headers: tuple[tuple[str, str], ...]
    success_pattern: str | None
    timeout_s: float


@dataclass(frozen=True)
class GsmGateway:
    modems: tuple[ModemSpec, ...]
    # Usernames allowed to run USSD through the API (POST /api/v1/modems/{id}/ussd).
    # Empty by default: a USSD code can move the SIM's credit or change its
    # services, so nobody gets it just by having an API licence.
    ussd_users: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClassoundGateway:
    """The carrier trunk.  ``mode`` picks the transport; the others are per mode.

    sip: ``sip_host``/``sip_port``/``sip_transport`` of the carrier's proxy, our
    ``sip_local_host``/``sip_local_port``, ``from_domain``; http: ``url`` with
    ``username``/``secret``; ami: Asterisk sends MESSAGE through the trunk
    endpoint ``ami_endpoint`` (``{number}`` is replaced by the recipient).
    """

    mode: str
    url: str | None = None
    username: str | None = None
    secret: str | None = field(default=None, repr=False)
    sip_host: str | None = None
    sip_port: int = 5060
    sip_transport: str = "udp"
    sip_local_host: str = "127.0.0.1"
    sip_local_port: int = 0
    from_domain: str | None = None
    ami_endpoint: str = "pjsip:{number}@classound"
    timeout_s: float = 10.0
    # sip: the From user when a message has no sender (default: username).
    from_user: str | None = None
    # sip: keep a registration with the carrier (RFC 3261 10), refreshed at
    # half the granted lifetime; sip_register_expires is the lifetime asked for.
    sip_register: bool = False
    sip_register_expires: int = 3600
    # sip: addresses allowed to deliver inbound MESSAGEs; empty = the
    # addresses sip_host resolves to.
    sip_carrier_addresses: tuple[str, ...] = ()
    # sip: RFC 3261 T1 (round-trip estimate) in milliseconds; retransmissions
    # on UDP start at T1 and double up to T2 (4 s).
    sip_t1_ms: int = 500
    # sip over tls: the CA bundle that signs the carrier's certificate (default:
    # the system's), and our certificate and key for inbound TLS connections.
    sip_tls_ca_file: str | None = None
    sip_tls_cert_file: str | None = None
    sip_tls_key_file: str | None = None
    # http: the shared secret of the carrier's webhooks (HMAC-SHA256 of the body
    # in X-Classound-Signature); without it webhooks are refused.
    webhook_secret: str | None = field(default=None, repr=False)
    # MMS: the accepted file types, and the base URL of the links to inbound
    # MMS files that participants receive (default: http://<[http] host:port>).
    mms_types: tuple[str, ...] = DEFAULT_MMS_TYPES
    media_url: str | None = None


@dataclass(frozen=True)
class Policy:
    country: str = "US"
    two_way: bool = True
    timezone: str = "UTC"
    sender_id_max: int = 11
    registered_sender_countries: tuple[str, ...] = ()
    registered_senders: tuple[str, ...] = ()
    sender_id_policy: str = "refuse"
    link_policy: str = "allow"
    monthly_package: int = 200
    fee_per_sms: float = 0.0
    # False (default): parts beyond the package are sent and billed at
    # fee_per_sms; True: a submit that would go beyond it is refused (QuotaExceeded).
    quota_hard_cap: bool = False
    max_attempts: int = 5
    retry_base_s: float = 30.0
    retry_max_s: float = 3600.0
    submitting_after_crash: str = "resend"
    verified_toll_free: tuple[str, ...] = ()
    unrouted_keep: bool = True
    # A message still queued/scheduled this long after it became due (its
    # send_at, else its creation) is moved to 'expired' and never sent: a day
    # late, a reminder or a code has usually lost its point.  0 = never.
    expire_after_hours: float = 24.0
    # Seconds the kite-sms procedure waits for the dialplan's AGI claim before
    # the directory decides (smsd.dialplan.procedure.CLAIM_TIMEOUT_S).
    kite_sms_claim_timeout_s: float = 15.0


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class HttpTls:
    """``[http] tls_cert`` / ``tls_key``: PEM files; the API then speaks HTTPS only."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Ami:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = ""
    secret: str = field(default="", repr=False)
    # Wait after Asterisk refused our login before trying again
    # (smsd.asterisk.ami.AUTH_RETRY_S): long, so a wrong secret does not flood the
    # Asterisk security log with failed logins.
    auth_retry_s: float = 300.0
    # Host of the From URI of SMS handed to phones (MessageSend).  None: Asterisk
    # fills it from the endpoint (PJSIP from_domain), so a phone's reply goes
    # back to the PBX; a value forces '"+1555..." <sip:+1555...@host>'.
    message_from_host: str | None = None
    # After "Permission denied" to an action smsd's rights should allow, log in
    # again (Asterisk copies a user's rights into the session at login), at most
    # this often (smsd.asterisk.ami.RELOGIN_MIN_INTERVAL_S).
    relogin_interval_s: float = 60.0


@dataclass(frozen=True)
class Config:
    state_dir: Path
    database: Path  # the SQLite file (unused when database_url is set)
    # postgresql:// URL of the shared database (issue 18); may hold a password.
    database_url: str | None = field(default=None, repr=False, kw_only=True)
    node: str = field(default_factory=gethostname, kw_only=True)  # this daemon's name among nodes
    # Shared PostgreSQL store: a node whose heartbeat is older than this has lost
    # its leases; the other nodes resolve its in-flight messages (issue 18).
    node_dead_after_s: float = field(default=15.0, kw_only=True)
    users: tuple[User, ...] = ()
    call_groups: tuple[CallGroup, ...] = ()
    curl: CurlGateway | None = None
    gsm: GsmGateway | None = None
    classound: ClassoundGateway | None = None
    routing: tuple[str, ...] = GATEWAY_NAMES
    policy: Policy = field(default_factory=Policy)
    http: Listen = field(default_factory=lambda: Listen("127.0.0.1", 8080))
    http_tls: HttpTls | None = None
    agi: Listen = field(default_factory=lambda: Listen("127.0.0.1", 4573))
    agi_allow: tuple[str, ...] = ("127.0.0.1", "::1")
    smtp: Listen = field(default_factory=lambda: Listen("127.0.0.1", 2525))
    smtp_password: str | None = field(default=None, repr=False)
    # scrypt hash of the SMSPASSWORD (``smsd passwd``); preferred to the plain password.
    smtp_password_hash: str | None = field(default=None, repr=False)
    ami: Ami = field(default_factory=Ami)
    mail2sms_enabled: bool = False
