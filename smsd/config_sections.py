"""One parser per config section: typed values, or a problem named by key."""

from __future__ import annotations

import ipaddress
import re
import zoneinfo
from pathlib import Path

from smsd.config_reader import (
    Section,
    country_problem,
    e164_problem,
    warn_if_world_readable,
)
from smsd.config_types import (
    _PIN,
    DEFAULT_MMS_TYPES,
    CallGroup,
    ClassoundGateway,
    CurlGateway,
    HttpTls,
    Licence,
    Listen,
    Policy,
    User,
)
from smsd.modem.spec import (
    DEFAULT_SEND_TIMEOUT_S,
    PROFILES,
    URC_PORT_PROFILES,
    URC_PORTS,
    ModemSpec,
)
from smsd.passwords import BadHash, parse


def parse_listen(text: str) -> Listen:
    """``HOST:PORT`` or ``[v6]:PORT`` -> Listen; ValueError says what is wrong."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT with a port 0..65535")
    return Listen(host, int(port))


def parse_listen_section(sec: Section | None, default: Listen) -> Listen:
    if sec is None:
        return default
    host = sec.text("host", default.host)
    port = sec.integer("port", default.port, lo=0, hi=65535)
    if not host:
        sec.problem("host", "must not be empty")
    return Listen(host, port)


def parse_users(root: Section) -> list[User]:
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


def parse_call_groups(root: Section, extensions: set[str]) -> list[CallGroup]:
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


def parse_curl(sec: Section) -> CurlGateway:
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


def parse_modem(sec: Section, index: int) -> ModemSpec:
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


def parse_autodetect(sec: Section) -> ModemSpec | None:
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


def parse_http_tls(sec: Section, base: Path | None) -> HttpTls | None:
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


def parse_classound(sec: Section, base: Path | None) -> ClassoundGateway:
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


def parse_policy(sec: Section | None) -> Policy:
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
