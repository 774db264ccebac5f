"""One TOML file -> one frozen, typed Config, checked before any I/O.

Every problem in the file is collected and reported at once with its key and
the reason, so an admin fixes a config in one pass instead of one error per
restart.  Unknown keys are problems too: a typo such as ``prot = 8080`` must not
silently fall back to a default.  Secrets may come from files (``secret_file``,
``password_file``) so the main config can be world-readable.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smsd.config_database import read_database
from smsd.config_reader import (
    Section,
    inline_secret_keys,
    warn_if_world_readable,
)
from smsd.config_sections import (
    parse_autodetect,
    parse_call_groups,
    parse_classound,
    parse_curl,
    parse_http_tls,
    parse_listen,
    parse_listen_section,
    parse_modem,
    parse_policy,
    parse_users,
)
from smsd.config_types import (
    DEFAULT_CONFIG_PATH,
    DEFAULT_DATABASE,
    DEFAULT_MMS_TYPES,
    DEFAULT_STATE_DIR,
    GATEWAY_NAMES,
    Ami,
    CallGroup,
    ClassoundGateway,
    Config,
    CurlGateway,
    GsmGateway,
    HttpTls,
    Licence,
    Listen,
    Policy,
    User,
)
from smsd.errors import ConfigError
from smsd.passwords import BadHash, parse

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_DATABASE",
    "DEFAULT_MMS_TYPES",
    "DEFAULT_STATE_DIR",
    "GATEWAY_NAMES",
    "Ami",
    "CallGroup",
    "ClassoundGateway",
    "Config",
    "CurlGateway",
    "GsmGateway",
    "HttpTls",
    "Licence",
    "Listen",
    "Policy",
    "User",
    "config_from_dict",
    "load_config",
    "parse_listen",
]


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
    database, database_url, node = read_database(root, state_dir, base, DEFAULT_DATABASE)
    # At least three heartbeats (5 s apart): one slow checkpoint must not make
    # a live node look dead and its sends be resolved under it.
    node_dead_after_s = root.number("node_dead_after_s", 15.0, lo=15.0, hi=3600.0)

    users = parse_users(root)
    groups = parse_call_groups(root, {u.extension for u in users if not u.api_only})

    curl = gsm = classound = None
    gws = root.table("gateways")
    if gws is not None:
        if (sec := gws.table("curl")) is not None:
            curl = parse_curl(sec)
        if (sec := gws.table("gsm")) is not None:
            modems = [parse_modem(m, i) for i, m in enumerate(sec.tables("modems"))]
            if (auto := parse_autodetect(sec)) is not None:
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
            classound = parse_classound(sec, base)
        gws.done()

    routing = root.str_list("routing")
    if "routing" not in data:
        routing = list(GATEWAY_NAMES)
    for i, name in enumerate(routing):
        if name not in GATEWAY_NAMES:
            problems.append((f"routing[{i}]", f"{name!r} is not one of {', '.join(GATEWAY_NAMES)}"))
        elif name in routing[:i]:
            problems.append((f"routing[{i}]", f"{name!r} is listed twice"))

    policy = parse_policy(root.table("policy"))

    http_sec = root.table("http")
    http = parse_listen_section(http_sec, Listen("127.0.0.1", 8080))
    http_tls = None
    if http_sec is not None:
        http_tls = parse_http_tls(http_sec, base)
        http_sec.done()
    agi_sec = root.table("agi")
    agi = parse_listen_section(agi_sec, Listen("127.0.0.1", 4573))
    agi_allow: tuple[str, ...] = ("127.0.0.1", "::1")
    if agi_sec is not None:
        if "allow" in agi_sec.data:
            agi_allow = tuple(agi_sec.str_list("allow"))
        agi_sec.done()
    smtp_sec = root.table("smtp")
    smtp = parse_listen_section(smtp_sec, Listen("127.0.0.1", 2525))
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
        database_url=database_url,
        node=node,
        node_dead_after_s=node_dead_after_s,
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
