"""Start-up checks of the daemon: TLS context, exposed listeners, state directory, locks.

Split from daemon.py (module size): each either passes or raises
:class:`StartupError` with the reason an admin reads (exit 2, nothing touched),
or warns; the daemon's lifecycle (listeners, tasks, signals) stays in daemon.py.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import ssl
from pathlib import Path
from typing import Any

import structlog

from smsd.config import Config, Listen
from smsd.errors import AlreadyRunning, SmsdError
from smsd.store.lock import DaemonLock, daemon_lock

# The logger keeps daemon.py's name: the events logged here are the same as before the split.
log = structlog.get_logger("smsd.daemon")


class StartupError(SmsdError):
    """The daemon could not start (port in use, unwritable state directory).

    Defined here: smsd/errors.py has no start-up error and the reason is only
    ever shown to the admin.
    """


def tls_context(cfg: Config) -> ssl.SSLContext | None:
    """The HTTPS context of ``[http] tls_cert``/``tls_key``; StartupError when they do not load."""
    if cfg.http_tls is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cfg.http_tls.cert, cfg.http_tls.key)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"HTTP TLS: cannot load {cfg.http_tls.cert} / {cfg.http_tls.key}: "
                           f"{getattr(exc, 'strerror', None) or exc}") from None
    return ctx


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost; a name or any other address is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_if_exposed(name: str, listen: Listen, *, encrypted: bool) -> None:
    """Every listener is on loopback unless configured; say so loudly when it is not."""
    if is_loopback(listen.host):
        return
    log.warning("listener.not_loopback", listener=name, host=listen.host, port=listen.port,
                encrypted=encrypted,
                advice="reachable from the network: firewall it"
                + ("" if encrypted else "; passwords travel in clear (set [http] tls_cert)"
                   if name == "http" else "; limit peers with [agi] allow"))


def prepare_state_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o750)
    except OSError as exc:
        raise StartupError(f"state directory {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise StartupError(f"state directory {path} is not writable by this user")


def take_lock(cfg: Config) -> DaemonLock:
    """The database's lock, or StartupError naming the holder (exit 2, nothing touched)."""
    lock = daemon_lock(cfg.database)
    try:
        if cfg.database.parent != cfg.state_dir:
            prepare_state_dir(cfg.database.parent)
        lock.acquire()
    except AlreadyRunning as exc:
        log.error("daemon.already_running", lock=exc.lock, holder_pid=exc.holder)
        raise StartupError(str(exc)) from None
    except OSError as exc:
        raise StartupError(f"lock file {lock.where}: {exc.strerror or exc}") from None
    log.info("daemon.locked", lock=lock.where, pid=os.getpid())
    return lock


async def take_node_lock(cfg: Config) -> Any:
    """The node name's lock on the shared database, or StartupError naming the clash."""
    from smsd.store.pg.lock import NodeLock

    assert cfg.database_url is not None
    try:
        lock = await NodeLock.acquire(cfg.database_url, cfg.node)
    except SmsdError as exc:
        log.error("daemon.already_running", node=cfg.node, error=str(exc))
        raise StartupError(str(exc)) from None
    log.info("daemon.locked", node=cfg.node, pid=os.getpid())
    return lock


def os_reason(exc: OSError) -> str:
    """Why a bind failed, in the same words on either event loop: uvloop raises
    "could not bind to local_addr ..." with no errno, the cause holding it."""
    cause = exc.__cause__
    code = exc.errno
    if code is None and isinstance(cause, OSError):
        exc, code = cause, cause.errno
    if code == errno.EADDRINUSE:
        return "address already in use (another smsd, or another service on that port?)"
    if code == errno.EACCES:
        return "permission denied (ports below 1024 need privileges)"
    if code == errno.EADDRNOTAVAIL:
        return "no such local address"
    return exc.strerror or str(exc)


def bind_reason(what: str, listen: Listen, exc: OSError) -> str:
    return f"{what} listener {listen}: {os_reason(exc)}"
