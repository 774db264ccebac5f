"""One TOML file -> one frozen, typed Config, checked before any I/O.

Every problem in the file is collected and reported at once with its key and
the reason, so an admin fixes a config in one pass instead of one error per
restart.  Unknown keys are problems too: a typo such as ``prot = 8080`` must not
silently fall back to a default.  Secrets may come from files (``secret_file``,
``password_file``) so the main config can be world-readable.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from smsd.config_reader import (
    Section,
    country_problem,
    e164_problem,
    inline_secret_keys,
    warn_if_world_readable,
)
from smsd.errors import ConfigError
from smsd.modem.spec import (
    DEFAULT_SEND_TIMEOUT_S,
    PROFILES,
    URC_PORT_PROFILES,
    URC_PORTS,
    ModemSpec,
)
from smsd.passwords import BadHash, parse

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
    database: Path
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


def parse_listen(text: str) -> Listen:
    """``HOST:PORT`` or ``[v6]:PORT`` -> Listen; ValueError says what is wrong."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT with a port 0..65535")
    return Listen(host, int(port))


def _listen(sec: Section | None, default: Listen) -> Listen:
    if sec is None:
        return default
    host = sec.text("host", default.host)
    port = sec.integer("port", default.port, lo=0, hi=65535)
    if not host:
        sec.problem("host", "must not be empty")
    return Listen(host, port)


def _users(root: Section) -> list[User]:
    users: list[User] = []
    for sec in root.tables("users"):
        api_only = sec.flag("api_only", False)
        if api_only:
            users.append(_api_user(sec))
            continue
        ext = sec._get("extension", (str, int), "a string", "")
        ext = str(ext)
        if "extension" not in sec.data:
            sec.problem("extension", "is required (or api_only = true for an account "
                        "without a phone)")
        elif not ext or not re.fullmatch(r"[0-9A-Za-z*#+_.-]+", ext):
            sec.problem("extension", f"{ext!r} must be a non-empty dialplan extension")
        name = sec.req_str("name")
        username = sec.text("username", ext) or ext
        office = _office_number(sec)
        licence = _licence(sec)
        endpoint = sec.text("endpoint", f"pjsip:{ext}")
        pw = _password_hash(sec)
        admin = sec.flag("admin", False)
        sec.done()
        users.append(User(ext, name, username, office, licence, endpoint, pw, admin))
    seen_ext: set[str] = set()
    seen_user: set[str] = set()
    for i, u in enumerate(users):
        if u.extension and u.extension in seen_ext:
            root.problems.append((f"users[{i}].extension", f"{u.extension!r} is used twice"))
        if u.username in seen_user:
            root.problems.append((f"users[{i}].username", f"{u.username!r} is used twice"))
        seen_ext.add(u.extension)
        seen_user.add(u.username)
    return users


def _api_user(sec: Section) -> User:
    """``api_only = true``: a username and password for programs, no extension or name."""
    for key in ("extension", "endpoint"):
        if key in sec.data:
            sec.problem(key, "an api_only user has no phone: drop this key (or api_only)")
    username = sec.req_str("username")
    name = sec.text("name", username) or username
    office = _office_number(sec)
    licence = _licence(sec)
    pw = _password_hash(sec)
    if pw is None:
        sec.problem("password_hash", "is required for an api_only user (see `smsd passwd`)")
    sec.done()
    return User("", name, username, office, licence, None, pw, api_only=True)


def _office_number(sec: Section) -> str | None:
    office = sec.text("office_number", None)
    if office is not None and (reason := e164_problem(office)):
        sec.problem("office_number", reason)
    return office


def _licence(sec: Section) -> Licence:
    lic_raw = sec.text("licence", Licence.NONE.value).lower()
    try:
        return Licence(lic_raw)
    except ValueError:
        sec.problem(
            "licence", f"must be one of {', '.join(x.value for x in Licence)}, got {lic_raw!r}"
        )
        return Licence.NONE


def _password_hash(sec: Section) -> str | None:
    pw = sec.text("password_hash", None)
    if pw is not None:
        try:
            parse(pw)
        except BadHash as exc:
            sec.problem("password_hash", str(exc))
    return pw


def _call_groups(root: Section, extensions: set[str]) -> list[CallGroup]:
    groups: list[CallGroup] = []
    for sec in root.tables("call_groups"):
        name = sec.req_str("name")
        number = sec.text("number", None)
        if number is not None and (reason := e164_problem(number)):
            sec.problem("number", reason)
        raw = sec._get("members", (list,), "a list of extensions", [])
        members: list[str] = []
        for i, m in enumerate(raw):
            if isinstance(m, bool) or not isinstance(m, (str, int)):
                sec.problems.append((f"{sec.key('members')}[{i}]", "must be an extension"))
            elif str(m) not in extensions:
                reason = f"{str(m)!r} is not the extension of a [[users]]"
                sec.problems.append((f"{sec.key('members')}[{i}]", reason))
            else:
                members.append(str(m))
        sec.done()
        groups.append(CallGroup(name, number, tuple(members)))
    return groups


def _curl(sec: Section) -> CurlGateway:
    method = sec.choice("method", "POST", ("GET", "POST"))
    url = sec.req_str("url")
    if url and not re.match(r"^https?://", url):
        sec.problem("url", f"{url!r} must start with http:// or https://")
    body = sec.text("body", "")
    headers: list[tuple[str, str]] = []
    htab = sec.table("headers")
    if htab is not None:
        for k, v in htab.data.items():
            htab.seen.add(k)
            if not isinstance(v, str):
                htab.problem(k, "header values must be strings")
            else:
                headers.append((k, v))
    pattern = sec.text("success_pattern", None)
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            sec.problem("success_pattern", f"is not a regular expression: {exc}")
    # 10 s: an HTTP SMS provider answers in well under a second; beyond 10 s the
    # router's failover to the next gateway serves the user better than waiting.
    timeout = sec.number("timeout_s", 10.0, lo=0.1)
    sec.done()
    return CurlGateway(method, url, body, tuple(headers), pattern, timeout)


def _modem(sec: Section, index: int) -> ModemSpec:
    mid = sec.text("id", f"gsm{index}") or f"gsm{index}"
    path = sec.req_str("path")
    baud = sec.integer("baudrate", 115200, lo=300, hi=4_000_000)
    pin = sec.text("pin", None)
    if pin is not None and not _PIN.match(pin):
        sec.problem("pin", "must be 4 to 8 digits")  # never echo the PIN
    pin_file = sec.text("pin_file", None)
    if pin is not None and pin_file is not None:
        sec.problem("pin", "give pin or pin_file, not both")
    if pin_file is not None:
        warn_if_world_readable(Path(pin_file), sec.key("pin_file"))
    own = sec.text("own_number", None)
    if own is not None and (reason := e164_problem(own)):
        sec.problem("own_number", reason)
    smsc = sec.text("smsc", None)
    if smsc is not None and (reason := e164_problem(smsc)):
        sec.problem("smsc", reason)
    profile = sec.choice("profile", "auto", PROFILES)
    rate = sec.integer("rate_per_minute", 0, lo=0)
    cap = sec.integer("daily_cap", 0, lo=0)
    reports = sec.flag("request_reports", True)
    urc_port = _urc_port(sec, profile)
    # AT+CMGS answer deadline; vendors give up to 120 s (see modem/device.py).
    # Shorter means a silent modem is given up on sooner; the part is then
    # resolved by policy.submitting_after_crash.
    send_timeout = sec.number("send_timeout_s", DEFAULT_SEND_TIMEOUT_S, lo=1.0, hi=600.0)
    sec.done()
    return ModemSpec(mid, path, baud, pin, pin_file, own, smsc, profile, rate, cap, reports,
                     urc_port, send_timeout)


def _autodetect(sec: Section) -> ModemSpec | None:
    """``autodetect = "/dev/smsd/*-at"``: every modem whose link appears there, as it appears.

    The links come from systemd/60-smsd-modems.rules; the pool rescans the
    glob, so a modem plugged in later is used without a restart, named by its
    link (``quectel-<serial>-at``) with the vendor profile found by +CGMI.
    """
    pattern = sec.text("autodetect", None)
    if pattern is None:
        return None
    if not pattern.startswith("/") or not any(ch in pattern for ch in "*?["):
        sec.problem("autodetect", f"{pattern!r} must be an absolute path with a wildcard, "
                    'like "/dev/smsd/*-at"')
        return None
    return ModemSpec("", pattern, profile="auto")


def _http_tls(sec: Section, base: Path | None) -> HttpTls | None:
    """Both PEM paths or neither; each must be a readable file (checked again at start)."""
    paths: dict[str, Path] = {}
    for name in ("tls_cert", "tls_key"):
        raw = sec.text(name, None)
        if raw is None:
            continue
        p = Path(raw)
        if base is not None and not p.is_absolute():
            p = base / p
        if not p.is_file():
            sec.problem(name, f"{str(p)!r} is not a readable file")
        paths[name] = p
    if not paths:
        return None
    if len(paths) == 1:
        sec.problem("tls_key" if "tls_cert" in paths else "tls_cert",
                    "give both tls_cert and tls_key for HTTPS")
        return None
    warn_if_world_readable(paths["tls_key"], sec.key("tls_key"))
    return HttpTls(paths["tls_cert"], paths["tls_key"])


def _urc_port(sec: Section, profile: str) -> str | None:
    """Which Quectel port ``path`` is, when smsd cannot read it from sysfs (ser2net)."""
    value = sec.text("urc_port", None)
    if value is None:
        return None
    if value not in URC_PORTS:
        sec.problem("urc_port", f"must be one of {', '.join(URC_PORTS)} (the Quectel "
                    f'AT+QURCCFG="urcport" name of the port in path), got {value!r}')
        return None
    if profile not in URC_PORT_PROFILES:
        sec.problem("urc_port", f"only Quectel modems choose their URC port; it means "
                    f"nothing with profile = {profile!r} (use auto or quectel)")
        return None
    return value


def _classound(sec: Section, base: Path | None) -> ClassoundGateway:
    mode = sec.choice("mode", "sip", ("sip", "http", "ami"))
    url = sec.text("url", None)
    if mode == "http" and not url:
        sec.problem("url", "is required when mode = 'http'")
    elif url and not re.match(r"^https?://", url):
        sec.problem("url", f"{url!r} must start with http:// or https://")
    sip_host = sec.text("sip_host", None)
    if mode == "sip" and not sip_host:
        sec.problem("sip_host", "is required when mode = 'sip'")
    gw = ClassoundGateway(
        mode=mode,
        url=url,
        username=sec.text("username", None),
        secret=sec.secret("secret", base),
        sip_host=sip_host,
        sip_port=sec.integer("sip_port", 5060, lo=1, hi=65535),
        sip_transport=sec.choice("sip_transport", "udp", ("udp", "tcp", "tls")),
        sip_local_host=sec.text("sip_local_host", "127.0.0.1"),
        sip_local_port=sec.integer("sip_local_port", 0, lo=0, hi=65535),
        from_domain=sec.text("from_domain", None),
        ami_endpoint=sec.text("ami_endpoint", "pjsip:{number}@classound"),
        # the whole exchange with the carrier; for sip it is Timer F (RFC 3261's
        # default 64*T1 = 32 s is long for an SMS that another gateway could take)
        timeout_s=sec.number("timeout_s", 10.0, lo=0.1),
        from_user=sec.text("from_user", None),
        sip_register=sec.flag("sip_register", False),
        # at least 60 s: registrars refuse shorter lifetimes with 423 (RFC 3261 10.2.8)
        sip_register_expires=sec.integer("sip_register_expires", 3600, lo=60, hi=86400),
        sip_carrier_addresses=tuple(sec.str_list("sip_carrier_addresses", _ip_problem)),
        # 50 ms..10 s: below that retransmissions flood a slow link; above it a
        # lost datagram costs more than failing over
        sip_t1_ms=sec.integer("sip_t1_ms", 500, lo=50, hi=10_000),
        webhook_secret=sec.secret("webhook_secret", base),
        sip_tls_ca_file=_path(sec, "sip_tls_ca_file", base),
        sip_tls_cert_file=_path(sec, "sip_tls_cert_file", base),
        sip_tls_key_file=_path(sec, "sip_tls_key_file", base),
        mms_types=tuple(sec.str_list("mms_types", _mime_problem))
        if "mms_types" in sec.data else DEFAULT_MMS_TYPES,
        media_url=sec.text("media_url", None),
    )
    if gw.media_url is not None and not re.match(r"^https?://", gw.media_url):
        sec.problem("media_url", f"{gw.media_url!r} must start with http:// or https://")
    if (gw.sip_tls_cert_file is None) != (gw.sip_tls_key_file is None):
        sec.problem("sip_tls_cert_file", "give both sip_tls_cert_file and sip_tls_key_file")
    if gw.sip_register and not gw.username:
        sec.problem("sip_register", "needs username (and secret) to register")
    sec.done()
    return gw


def _path(sec: Section, key: str, base: Path | None) -> str | None:
    """A file the daemon must be able to read, relative to the config file."""
    raw = sec.text(key, None)
    if raw is None:
        return None
    p = Path(raw)
    if base is not None and not p.is_absolute():
        p = base / p
    if not p.is_file():
        sec.problem(key, f"{str(p)!r} is not a readable file")
    return str(p)


def _mime_problem(value: str) -> str | None:
    if not re.fullmatch(r"[a-z0-9.+-]+/[a-z0-9.+-]+", value):
        return f"{value!r} is not a lower-case MIME type like 'image/jpeg'"
    return None


def _ip_problem(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IP address"
    return None


def _policy(sec: Section | None) -> Policy:
    if sec is None:
        return Policy()
    d = Policy()
    country = sec.text("country", d.country)
    if reason := country_problem(country):
        sec.problem("country", reason)
    tz = sec.text("timezone", d.timezone)
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        sec.problem("timezone", f"{tz!r} is not an IANA time zone like 'Europe/London'")
    base = sec.number("retry_base_s", d.retry_base_s, lo=0.0)
    top = sec.number("retry_max_s", d.retry_max_s, lo=0.0)
    if top < base:
        sec.problem("retry_max_s", f"must be at least retry_base_s ({base:g})")
    p = Policy(
        country=country,
        two_way=sec.flag("two_way", d.two_way),
        timezone=tz,
        sender_id_max=sec.integer("sender_id_max", d.sender_id_max, lo=1, hi=11),
        registered_sender_countries=tuple(
            sec.str_list("registered_sender_countries", country_problem)
        ),
        registered_senders=tuple(sec.str_list("registered_senders")),
        sender_id_policy=sec.choice("sender_id_policy", d.sender_id_policy, ("refuse", "warn")),
        link_policy=sec.choice("link_policy", d.link_policy, ("allow", "warn", "refuse")),
        monthly_package=sec.integer("monthly_package", d.monthly_package, lo=0),
        fee_per_sms=sec.number("fee_per_sms", d.fee_per_sms, lo=0.0),
        quota_hard_cap=sec.flag("quota_hard_cap", d.quota_hard_cap),
        max_attempts=sec.integer("max_attempts", d.max_attempts, lo=1),
        retry_base_s=base,
        retry_max_s=top,
        submitting_after_crash=sec.choice(
            "submitting_after_crash", d.submitting_after_crash, ("resend", "fail")
        ),
        verified_toll_free=tuple(sec.str_list("verified_toll_free", e164_problem)),
        unrouted_keep=sec.flag("unrouted_keep", d.unrouted_keep),
        # at most a year: beyond that "never" (0) is what is meant, and the
        # age must stay within what a datetime can add
        expire_after_hours=sec.number(
            "expire_after_hours", d.expire_after_hours, lo=0.0, hi=24.0 * 366
        ),
        # below 1 s the claim could not beat even the ~0.5 s Originate -> AGI
        # round trip captured on Asterisk 20, so every message would go unclaimed
        kite_sms_claim_timeout_s=sec.number(
            "kite_sms_claim_timeout_s", d.kite_sms_claim_timeout_s, lo=1.0
        ),
    )
    sec.done()
    return p


def config_from_dict(data: Mapping[str, Any], file: str | None = None) -> Config:
    """Build a Config from parsed TOML; raises ConfigError with every problem.

    Relative paths (state_dir, secret files) are taken relative to the config
    file's directory, or the current directory when there is no file.
    """
    problems: list[tuple[str, str]] = []
    base = Path(file).resolve().parent if file else None
    root = Section(data, "", problems)

    state_raw = root.text("state_dir", str(DEFAULT_STATE_DIR))
    state_dir = Path(state_raw)
    if base is not None and not state_dir.is_absolute():
        state_dir = base / state_dir
    db_path = Path(root.text("database", DEFAULT_DATABASE))
    database = db_path if db_path.is_absolute() else state_dir / db_path

    users = _users(root)
    groups = _call_groups(root, {u.extension for u in users if not u.api_only})

    curl = gsm = classound = None
    gws = root.table("gateways")
    if gws is not None:
        if (sec := gws.table("curl")) is not None:
            curl = _curl(sec)
        if (sec := gws.table("gsm")) is not None:
            modems = [_modem(m, i) for i, m in enumerate(sec.tables("modems"))]
            if (auto := _autodetect(sec)) is not None:
                modems.append(auto)
            ussd_users = sec.str_list("ussd_users")
            sec.done()
            known = {u.username for u in users}
            for i, name in enumerate(ussd_users):
                if name not in known:
                    problems.append((f"gateways.gsm.ussd_users[{i}]",
                                     f"{name!r} is not the username of a [[users]] entry"))
            ids = [m.id for m in modems]
            for i, mid in enumerate(ids):
                if mid in ids[:i]:
                    problems.append((f"gateways.gsm.modems[{i}].id", f"{mid!r} is used twice"))
            gsm = GsmGateway(tuple(modems), tuple(ussd_users))
        if (sec := gws.table("classound")) is not None:
            classound = _classound(sec, base)
        gws.done()

    routing = root.str_list("routing")
    if "routing" not in data:
        routing = list(GATEWAY_NAMES)
    for i, name in enumerate(routing):
        if name not in GATEWAY_NAMES:
            problems.append((f"routing[{i}]", f"{name!r} is not one of {', '.join(GATEWAY_NAMES)}"))
        elif name in routing[:i]:
            problems.append((f"routing[{i}]", f"{name!r} is listed twice"))

    policy = _policy(root.table("policy"))

    http_sec = root.table("http")
    http = _listen(http_sec, Listen("127.0.0.1", 8080))
    http_tls = None
    if http_sec is not None:
        http_tls = _http_tls(http_sec, base)
        http_sec.done()
    agi_sec = root.table("agi")
    agi = _listen(agi_sec, Listen("127.0.0.1", 4573))
    agi_allow: tuple[str, ...] = ("127.0.0.1", "::1")
    if agi_sec is not None:
        if "allow" in agi_sec.data:
            agi_allow = tuple(agi_sec.str_list("allow"))
        agi_sec.done()
    smtp_sec = root.table("smtp")
    smtp = _listen(smtp_sec, Listen("127.0.0.1", 2525))
    smtp_password = smtp_hash = None
    mail2sms = False
    if smtp_sec is not None:
        mail2sms = smtp_sec.flag("enabled", True)
        smtp_password = smtp_sec.secret("password", base)
        smtp_hash = smtp_sec.text("password_hash", None)
        if smtp_hash is not None:
            try:
                parse(smtp_hash)
            except BadHash as exc:
                smtp_sec.problem("password_hash", str(exc))
            if smtp_password is not None:
                smtp_sec.problem("password", "give password_hash or password, not both")
        if mail2sms and not smtp_password and not smtp_hash:
            smtp_sec.problem(
                "password_hash",
                "is required when Mail2SMS is enabled (the SMSPASSWORD:; or password / "
                "password_file)",
            )
        smtp_sec.done()

    ami = Ami()
    ami_sec = root.table("ami")
    if ami_sec is not None:
        enabled = ami_sec.flag("enabled", True)
        host = ami_sec.text("host", "127.0.0.1")
        port = ami_sec.integer("port", 5038, lo=1, hi=65535)
        username = ami_sec.text("username", "")
        secret = ami_sec.secret("secret", base) or ""
        # at least 1 s: retrying a refused login faster only floods the
        # Asterisk security log (and may trip fail2ban) without any chance of success
        auth_retry_s = ami_sec.number("auth_retry_s", Ami.auth_retry_s, lo=1.0)
        from_host = ami_sec.text("message_from_host", "").strip() or None
        if from_host is not None and not re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", from_host):
            ami_sec.problem("message_from_host",
                            f"must be a host name or address, got {from_host!r}")
        relogin_s = ami_sec.number("relogin_interval_s", Ami.relogin_interval_s, lo=1.0)
        if enabled and not username:
            ami_sec.problem("username", "is required when AMI is enabled")
        if enabled and not secret:
            ami_sec.problem("secret", "is required when AMI is enabled (or secret_file)")
        ami_sec.done()
        ami = Ami(enabled, host, port, username, secret, auth_retry_s, from_host, relogin_s)

    root.done()
    if problems:
        raise ConfigError(problems, file)
    return Config(
        state_dir=state_dir,
        database=database,
        users=tuple(users),
        call_groups=tuple(groups),
        curl=curl,
        gsm=gsm,
        classound=classound,
        routing=tuple(routing),
        policy=policy,
        http=http,
        http_tls=http_tls,
        agi=agi,
        agi_allow=agi_allow,
        smtp=smtp,
        smtp_password=smtp_password,
        smtp_password_hash=smtp_hash,
        ami=ami,
        mail2sms_enabled=mail2sms,
    )


def load_config(path: Path | str = DEFAULT_CONFIG_PATH) -> Config:
    """Read and check one TOML file; every failure is a ConfigError."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError([("(file)", f"cannot read: {exc.strerror or exc}")], str(p)) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError([("(file)", f"not UTF-8: {exc}")], str(p)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([("(syntax)", str(exc))], str(p)) from None
    config = config_from_dict(data, str(p))
    if inline := inline_secret_keys(data):
        # Secrets belong in *_file files (mode 0640 root:smsd); one written
        # here makes this file as sensitive as they are.
        warn_if_world_readable(p, ", ".join(inline))
    return config
