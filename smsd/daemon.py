"""The daemon's lifecycle: build, listen, run, and stop without losing work.

Order matters and mirrors what an admin expects from uvicorn-style servers:

1. the config was checked before we get here (no I/O on a bad config);
   the database's lock (smsd/store/lock.py) is taken first: a second daemon
   on the same database exits 2 naming the holder and touches nothing;
2. the store is opened and crash leftovers are resolved (dispatcher.recover);
3. the listeners are bound *before* READY=1, so "port in use" is a clear
   start-up failure rather than a half-running daemon;
4. every long-lived task runs under one TaskGroup; a crash of one stops all;
5. SIGTERM/SIGINT: stop intake (close listeners), let in-flight sends finish
   within DRAIN_DEADLINE_S, cancel the rest, close the store, exit 0;
   a second signal skips the wait and exits at once (exit 1);
6. SIGHUP (`systemctl reload`): the config file is read and checked again; a
   good one replaces the running config (Services.reload), a bad one is
   refused with every problem logged at error, and the old one stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from smsd.cluster import claim_modem_ids, node_tasks
from smsd.config import Config, Listen
from smsd.core.directory import Directory
from smsd.demo import demo_banner, demo_modems
from smsd.errors import ConfigError, SmsdError
from smsd.sdnotify import Notifier, watchdog_interval
from smsd.services import Services
from smsd.startup import (
    StartupError,
    bind_reason,
    os_reason,
    prepare_state_dir,
    take_lock,
    take_node_lock,
    tls_context,
    warn_if_exposed,
)
from smsd.store.lock import DaemonLock
from smsd.store.pg.lock import NodeLock
from smsd.store.stats import ping

log = structlog.get_logger(__name__)

# In-flight modem sends take a few seconds (AT+CMGS answers within ~5 s on a
# healthy network); 20 s lets them finish yet stays well inside systemd's
# default TimeoutStopSec (90 s).
DRAIN_DEADLINE_S = 20.0
# The systemd status line (`systemctl status smsd`) is read by people: refreshed
# this often (or at each watchdog ping when that is sooner) it is never stale
# by more than a glance, for two indexed counts per refresh.
STATUS_INTERVAL_S = 10.0


def apply_overrides(
    config: Config, *, state_dir: Path | None, http: Listen | None, agi: Listen | None
) -> Config:
    if state_dir is not None:
        db = config.database
        if db.parent == config.state_dir:
            db = state_dir / db.name
        config = replace(config, state_dir=state_dir, database=db)
    if http is not None:
        config = replace(config, http=http)
    if agi is not None:
        config = replace(config, agi=agi)
    return config


@asynccontextmanager
async def open_services(config: Config) -> AsyncIterator[Services]:
    """Open the store and build every component; closes the store on exit.

    Used by the daemon and by tests that need the real core without listeners.
    """
    from smsd.services import build_services
    from smsd.store import open_database

    store = await open_database(config.database, config.database_url)
    try:
        yield await build_services(config, store, Directory(config))
    finally:
        await store.close()


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        demo: bool = False,
        reload_config: Callable[[], Config] | None = None,
    ) -> None:
        """``reload_config`` reads and checks the config file again (SIGHUP); None: no file."""
        self.config = config
        self.demo = demo
        self._reload_config = reload_config
        self._reload = asyncio.Event()
        self.notifier = Notifier()
        self.http_port: int | None = None
        self.agi_port: int | None = None
        self.trunk_port: int | None = None
        self.smtp_port: int | None = None
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._signals = 0
        self._node_lock: NodeLock | None = None   # on PostgreSQL
        self.exit_code = 0

    # --- signals ---------------------------------------------------------------

    def request_stop(self, reason: str = "requested") -> None:
        """Signal handler: act first, log second.

        The log line may fail (stderr is a closed pipe once the terminal or
        pager that read it is gone); the stop must happen anyway.
        """
        self._signals += 1
        if self._signals == 1:
            self._stop.set()
            event, level = "daemon.stopping", "info"
        else:
            self.exit_code = 1
            self._force.set()
            event, level = "daemon.forced_exit", "warning"
        with contextlib.suppress(OSError):
            log.log(logging.INFO if level == "info" else logging.WARNING, event, reason=reason)

    def request_reload(self) -> None:
        """SIGHUP: the reloader task does the work; several HUPs in a row make one reload."""
        self._reload.set()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)

    # --- run -------------------------------------------------------------------

    async def serve(self) -> int:
        cfg = self.config
        self._install_signals()
        lock: DaemonLock | None = None
        try:
            prepare_state_dir(cfg.state_dir)
            async with contextlib.AsyncExitStack() as stack:
                # Invariant 6: one daemon per database (per node name on a
                # shared PostgreSQL), decided before anything is read or
                # written (crash recovery, sockets, listeners).
                if cfg.database_url is None:
                    lock = take_lock(cfg)
                else:
                    self._node_lock = await take_node_lock(cfg)
                    stack.push_async_callback(self._node_lock.release)
                if self.demo:
                    await stack.enter_async_context(demo_modems(cfg))
                services = await stack.enter_async_context(open_services(cfg))
                # On a shared database: no modem id of ours declared by
                # another live node, else exit 2 before anything is served.
                await claim_modem_ids(services)
                await services.dispatcher.recover()
                runner = await self._start_http(services)
                stack.push_async_callback(runner.cleanup)
                agi = await self._start_agi(services)
                stack.push_async_callback(agi.close)
                if services.trunk is not None:
                    await self._start_trunk(services)
                    stack.push_async_callback(services.trunk.close)
                smtp = await self._start_smtp(services)
                if smtp is not None:
                    stack.push_async_callback(smtp.close)
                await self._run(services, runner, agi, smtp)
        except SmsdError as exc:  # StartupError, StoreError (database unusable), ...
            log.error("daemon.start_failed", error=str(exc))
            print(f"smsd: cannot start: {exc}", file=sys.stderr)
            return 2
        finally:
            self._remove_signals()
            self.notifier.close()
            if lock is not None:
                lock.release()
        log.info("daemon.stopped", exit_code=self.exit_code)
        return self.exit_code

    async def _start_http(self, services: Services) -> web.AppRunner:
        from smsd.api.app import build_app
        from smsd.ui.app import add_console

        listen = self.config.http
        tls = tls_context(self.config)
        warn_if_exposed("http", listen, encrypted=tls is not None)
        app = build_app(services)
        add_console(app, services)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, listen.host, listen.port, reuse_address=True,
                           ssl_context=tls)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise StartupError(bind_reason("HTTP", listen, exc)) from None
        bound = runner.addresses
        self.http_port = int(bound[0][1]) if bound else listen.port
        log.info("http.listening", host=listen.host, port=self.http_port, tls=tls is not None)
        return runner

    async def _start_agi(self, services: Services) -> Any:
        from smsd.agi.handlers import build_handlers
        from smsd.agi.ports import AgiServices
        from smsd.agi.server import AgiServer

        listen = self.config.agi
        warn_if_exposed("agi", listen, encrypted=False)
        server = AgiServer(
            build_handlers(AgiServices.from_services(services)),
            listen.host,
            listen.port,
            self.config.agi_allow,
        )
        try:
            await server.start()
        except OSError as exc:
            raise StartupError(bind_reason("AGI", listen, exc)) from None
        self.agi_port = server.port
        return server

    async def _start_trunk(self, services: Services) -> None:
        """Bind the trunk's SIP port before READY=1, like the other listeners."""
        trunk = services.trunk
        assert trunk is not None
        try:
            await trunk.start()
        except OSError as exc:
            raise StartupError(f"CLASSOUND trunk: {os_reason(exc)}") from None
        except TimeoutError as exc:
            raise StartupError(f"CLASSOUND trunk: {exc}") from None
        self.trunk_port = getattr(trunk, "local_port", None)

    async def _start_smtp(self, services: Services) -> Any:
        """The Mail2SMS SMTP listener, when [smtp] is configured and enabled."""
        if not self.config.mail2sms_enabled or services.mail2sms is None:
            return None
        from smsd.mail2sms.smtp import SmtpListener

        listen = self.config.smtp
        listener = SmtpListener(services.mail2sms, listen.host, listen.port)
        try:
            await listener.start()
        except OSError as exc:
            raise StartupError(bind_reason("SMTP", listen, exc)) from None
        self.smtp_port = listener.port
        return listener

    async def _run(
        self, services: Services, runner: web.AppRunner, agi: Any, smtp: Any = None
    ) -> None:
        tasks: list[asyncio.Task[Any]] = []
        try:
            async with asyncio.TaskGroup() as tg:
                tasks.append(tg.create_task(services.bus.run(), name="events"))
                tasks.append(tg.create_task(services.dispatcher.run(), name="dispatcher"))
                tasks.append(tg.create_task(services.inbox.run(), name="inbox"))
                if services.pool is not None:
                    tasks.append(tg.create_task(services.pool.run(), name="modems"))
                if services.ami is not None:
                    tasks.append(tg.create_task(services.ami.run(), name="ami"))
                    if services.conversations is not None:
                        tasks.append(tg.create_task(
                            services.conversations.deliveries.run(), name="phone-deliveries"))
                if services.trunk is not None:
                    tasks.append(tg.create_task(services.trunk.run(), name="trunk"))
                for name, coro in _extra_tasks(services):
                    tasks.append(tg.create_task(coro, name=name))
                node_stop = asyncio.Event()
                for name, coro in node_tasks(services, node_stop, self._node_lock):
                    tasks.append(tg.create_task(coro, name=name))
                interval = watchdog_interval()
                if interval is not None:
                    tasks.append(
                        tg.create_task(self._watchdog(services, interval), name="watchdog")
                    )
                self.notifier.ready(await status_line(services))
                if self.notifier.enabled:
                    every = min(STATUS_INTERVAL_S, interval or STATUS_INTERVAL_S)
                    tasks.append(tg.create_task(self._status(services, every), name="status"))
                tasks.append(tg.create_task(self._reloader(services), name="reload"))
                log.info("daemon.ready", http=self.http_port, agi=self.agi_port, demo=self.demo,
                         loop=type(asyncio.get_running_loop()).__module__)
                if self.demo:
                    print(demo_banner(self.config, self.http_port, self.agi_port), flush=True)
                # Everything built so far (modules, config, services: hundreds of
                # thousands of objects) lives as long as the daemon: out of the
                # garbage collector's full passes, which otherwise walk all of it
                # and froze the loop for 80 ms during a bulk submit (issue 17).
                gc.freeze()
                await self._stop.wait()
                self.notifier.stopping()
                # 1. stop intake: no new HTTP or AGI work is accepted.
                await runner.shutdown()
                await agi.close()
                if smtp is not None:
                    await smtp.close()
                # 2. let the sends already talking to a gateway finish.
                drain = asyncio.create_task(services.dispatcher.drain(DRAIN_DEADLINE_S))
                force = asyncio.create_task(self._force.wait())
                await asyncio.wait({drain, force}, return_when=asyncio.FIRST_COMPLETED)
                force.cancel()
                if not drain.done():
                    drain.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await drain
                # 3. cancel the rest; the TaskGroup waits for them to unwind.
                for task in tasks:
                    task.cancel("daemon stopping")
        except* Exception as group:
            for exc in group.exceptions:
                log.error("daemon.task_failed", error=repr(exc), exc_info=exc)
            self.exit_code = 1

    async def _watchdog(self, services: Services, interval: float) -> None:
        """WATCHDOG=1 every half period, only while the loop *and* the database answer.

        A stuck event loop sends nothing; a wedged database thread fails the
        probe.  Either way systemd sees the missing pings and restarts us.
        On a shared PostgreSQL server the probe failing means the server is
        away, which a restart of this daemon would not mend (and would only
        add a start-up that cannot reach the server): the ping still goes,
        the API answers 503 meanwhile, and the work resumes by itself.
        """
        shared = services.store.dialect == "postgresql"
        while True:
            try:
                async with asyncio.timeout(interval):
                    await ping(services.store)
            except Exception as exc:  # TimeoutError included
                reason = str(exc) or "database did not answer"
                if shared:
                    log.warning("daemon.database_unreachable", reason=reason)
                    self.notifier.watchdog()
                else:  # the database refused: do not vouch for health
                    log.warning("daemon.watchdog_skipped", reason=reason)
            else:
                self.notifier.watchdog()
            await asyncio.sleep(interval)

    async def _reloader(self, services: Services) -> None:
        """Each SIGHUP: RELOADING=1, read and check the file, swap or refuse, READY=1.

        The file is read in a worker thread (a slow disk must not stall the
        loop); the swap itself happens on the loop, in one step.
        """
        while True:
            await self._reload.wait()
            self._reload.clear()
            self.notifier.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
            outcome = await self._reload_once(services)
            self.notifier.notify(f"READY=1\nSTATUS={outcome}; {await status_line(services)}")

    async def _reload_once(self, services: Services) -> str:
        if self._reload_config is None:
            log.warning("config.reload_unavailable", reason="no config file (--demo)")
            return "reload ignored: no config file"
        try:
            new = await asyncio.to_thread(self._reload_config)
        except ConfigError as exc:
            # Problems name keys and reasons, never a secret's value (config_reader).
            log.error("config.reload_refused", file=exc.file,
                      problems=[f"{key}: {why}" for key, why in exc.problems])
            return "config reload refused, running the previous one"
        except Exception as exc:  # a bug in reading must not stop a running daemon
            log.error("config.reload_failed", error=repr(exc), exc_info=exc)
            return "config reload failed, running the previous one"
        restart = services.reload(new)
        self.config = services.config
        log.info("config.reloaded", users=len(new.users), routing=list(new.routing),
                 needs_restart=restart)
        return "config reloaded" + (f" ({', '.join(restart)} at next restart)" if restart else "")

    async def _status(self, services: Services, interval: float) -> None:
        """STATUS= for `systemctl status`: queue depth and modems up, sent when it changes."""
        last = ""
        while True:
            await asyncio.sleep(interval)
            try:
                async with asyncio.timeout(interval):
                    text = await status_line(services)
            except Exception as exc:  # the watchdog reports a sick database; just say so
                text = f"status unavailable: {exc}"
            if text != last:
                self.notifier.status(text)
                last = text


async def status_line(services: Services) -> str:
    """One line for systemd's STATUS=, e.g. ``3 queued, 1 sending; modems 2/2 up``."""
    waiting, in_flight = await services.outbox.queue.get()
    parts = [f"{waiting} queued, {in_flight} sending"]
    if services.pool is not None:
        modems = services.pool.snapshot()
        up = sum(1 for m in modems if m.state == "ready")
        parts.append(f"modems {up}/{len(modems)} up")
    return "; ".join(parts)


def _extra_tasks(services: Services) -> list[tuple[str, Coroutine[Any, Any, Any]]]:
    """One-shot start-up work that must not delay READY=1."""
    out: list[tuple[str, Coroutine[Any, Any, Any]]] = []
    if services.procedure is not None:
        # Inbound SMS a crash or an AMI outage left unrouted (kite-sms procedure).
        out.append(("route-pending", services.procedure.route_pending()))
    return out


# SMSD_EVENT_LOOP: "auto" (uvloop when installed, the [fast] extra), "uvloop"
# or "asyncio" (the standard loop, e.g. to rule uvloop out when debugging).
EVENT_LOOP_ENV = "SMSD_EVENT_LOOP"


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop the daemon runs on: uvloop if installed (see bench/RESULTS.md, issue 17)."""
    choice = os.environ.get(EVENT_LOOP_ENV, "auto").strip().lower() or "auto"
    if choice not in ("auto", "uvloop", "asyncio"):
        raise SmsdError(f"{EVENT_LOOP_ENV}={choice!r}: use auto, uvloop or asyncio")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SmsdError(
                f"{EVENT_LOOP_ENV}=uvloop but uvloop is not installed (pip install 'smsd[fast]')"
            ) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


# How long a thread holding the interpreter keeps it while another thread
# wants it (CPython's default: 5 ms).  The event loop shares the interpreter
# with the two database threads, which give it up around every statement: in a
# bulk submit each of their turns, and the loop's, could wait that long, and a
# chain of them stalled /healthz and the modems for 220-740 ms in half the
# runs; at 1 ms, 42-81 ms in every run, for CPU per message within the noise
# (bench/RESULTS.md, issue 17 round 3).
GIL_SWITCH_INTERVAL_S = 0.001


def run_daemon(
    config: Config, *, demo: bool = False, reload_config: Callable[[], Config] | None = None
) -> int:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(Daemon(config, demo=demo, reload_config=reload_config).serve())
