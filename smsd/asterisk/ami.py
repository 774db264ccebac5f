"""The daemon's one AMI connection, on panoramisk, supervised.

panoramisk reconnects on its own every two seconds and re-sends actions that
were in flight when the link dropped.  Neither is acceptable here: a wrong
secret would hammer Asterisk (and its fail2ban) every two seconds, and a
re-sent MessageSend duplicates a message the caller already retried.  So the
Manager is used only as a codec/transport; this module owns connecting,
logging in, backing off and failing in-flight actions when the link goes.

AMI being down never stops the daemon: callers get ``AmiError`` and keep
their work (inbound messages stay ``pending`` in the store) until
``connected`` turns true again and the ``on_connected`` hooks run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog
from panoramisk import Manager  # type: ignore[import-untyped,unused-ignore]

from smsd.asterisk import codec
from smsd.config import Ami
from smsd.errors import AmiAuthError, AmiError, AmiNotConnected

if TYPE_CHECKING:
    from smsd.core.events import StatusChange

log = structlog.get_logger(__name__)

# TCP connect on loopback answers at once; 5 s covers a busy remote PBX.
CONNECT_TIMEOUT_S = 5.0
# Asterisk answers Login right after the banner (captured: < 1 ms); 10 s
# leaves room for a loaded box without hanging the supervisor.
LOGIN_TIMEOUT_S = 10.0
# Simple actions (MessageSend, UserEvent, Ping) are answered once the SIP
# stack or manager thread has them, well under a second on the captured 20.20.1.
ACTION_TIMEOUT_S = 10.0
# ShowDialPlan for one exten@context walks the contexts once under their lock
# and answers a handful of events (pbx.c manager_show_dialplan): as quick as a
# simple action, so the same 10 s bound.
SHOW_DIALPLAN_TIMEOUT_S = ACTION_TIMEOUT_S
# Async Originate: the OriginateResponse comes when the Local channel is
# answered (or fails); the kite-sms context answers at once, 20 s is generous.
ORIGINATE_TIMEOUT_S = 20.0
# How long the Local channel's ;1 side waits after answer, so the ;2 side can
# run the kite-sms dialplan (and its AGI) to the end before being hung up.
ORIGINATE_HOLD_S = 30
# Watchdog: with no traffic for this long, a Ping must be answered within
# ACTION_TIMEOUT_S or the link counts as dead (a hung Asterisk or a silently
# dropped NAT/firewall entry never closes the TCP connection by itself).
WATCHDOG_INTERVAL_S = 30.0
# Reconnect backoff after a lost or refused TCP connection: 1 s doubling to
# 60 s, the usual operator expectation for "Asterisk restarting".
BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 60.0
# After Asterisk answered "Permission denied", log in again at most this often:
# Asterisk copies a user's rights into the session at login (main/manager.c),
# so a manager.conf fix plus "manager reload" only reaches a new login
# (tests/asterisk/data/ami-rights-copied-at-login.txt).  A minute keeps a user
# that really lacks a right from logging in for every inbound SMS.
RELOGIN_MIN_INTERVAL_S = 60.0
# The new login waits until the link has been idle this long, so the work that
# got the refusal (a directory fallback's MessageSends right after a refused
# ShowDialPlan) finishes on the old session instead of failing mid-way.
RELOGIN_IDLE_S = 1.0
# After "Authentication failed" retry slowly: the admin must fix manager.conf
# or our secret, and Asterisk logs every failure (fail2ban watches that).
AUTH_RETRY_S = 300.0

ConnectedHook = Callable[[], Awaitable[object]]
# A handler of one AMI event: gets its headers, must not block (schedule work elsewhere).
EventHandler = Callable[[Mapping[str, str]], None]


class _Manager(Manager):  # type: ignore[misc]
    """panoramisk Manager with its own reconnect and re-send switched off."""

    def __init__(self, on_lost: Callable[[Exception | None], None], **config: Any) -> None:
        super().__init__(**config)
        self._on_lost = on_lost
        self.pinger: asyncio.TimerHandle | None = None

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        if f.cancelled() or f.exception() is not None:
            return  # the supervisor awaits the same task and handles the failure
        super().connection_made(f)
        if self.pinger is not None:  # our watchdog pings, with a deadline
            self.pinger.cancel()
            self.pinger = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._connected = False
        self.authenticated = False
        if self.pinger is not None:
            self.pinger.cancel()
            self.pinger = None
        # panoramisk queued unanswered actions for a re-send after reconnect;
        # fail them instead (the caller decides whether to retry).
        while self.awaiting_actions:
            action = self.awaiting_actions.popleft()
            if not action.future.done():
                action.future.set_exception(AmiNotConnected("AMI connection lost"))
        self._on_lost(exc)


class AmiClient:
    """Login, reconnect with backoff, and the few typed actions smsd needs."""

    def __init__(
        self,
        settings: Ami,
        *,
        backoff_min_s: float = BACKOFF_MIN_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        auth_retry_s: float = AUTH_RETRY_S,
        relogin_interval_s: float | None = None,
        watchdog_s: float = WATCHDOG_INTERVAL_S,
        ping_timeout_s: float = ACTION_TIMEOUT_S,
    ) -> None:
        self._settings = settings
        self._from_host = settings.message_from_host
        self._backoff_min = backoff_min_s
        self._backoff_max = backoff_max_s
        self._auth_retry = auth_retry_s
        self._relogin_interval = (settings.relogin_interval_s if relogin_interval_s is None
                                  else relogin_interval_s)
        self._last_relogin: float | None = None
        self._relogin = asyncio.Event()     # a permission refusal asks for a new login
        self._last_action = 0.0             # monotonic time the last action ended
        self.relogins = 0           # logins forced by a permission refusal (tests, status)
        self._watchdog = watchdog_s
        self._ping_timeout = ping_timeout_s
        self._manager: _Manager | None = None
        self._lost: asyncio.Future[None] | None = None
        self._connected = asyncio.Event()
        self._hooks_done = asyncio.Event()   # the on_connected hooks of this login ran
        self._hooks: list[ConnectedHook] = []
        self._event_handlers: list[tuple[str, EventHandler]] = []
        self._inflight: set[asyncio.Future[Any]] = set()
        self._auth_reported = False
        self.attempts = 0           # connection attempts, for status and tests
        self.last_error: str | None = None
        self.next_retry_s: float | None = None

    # --- state -----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def on_connected(self, hook: ConnectedHook) -> None:
        """Run ``hook`` after every successful login (pending work is retried there)."""
        self._hooks.append(hook)

    def on_event(self, name: str, handler: EventHandler) -> None:
        """Call ``handler`` with the headers of every AMI event ``name`` (all sessions).

        The AMI user's ``read =`` classes and ``eventfilter`` lines decide which
        events Asterisk sends at all (asterisk-conf/manager.conf).
        """
        self._event_handlers.append((name, handler))

    def _dispatch_event(self, handler: EventHandler, message: Any) -> None:
        try:
            handler({str(k): str(v) for k, v in dict(message).items()})
        except Exception:
            # One bad handler must not break panoramisk's reader.
            log.exception("ami.event_handler_failed", event=str(message.get("Event", "?")))

    async def wait_connected(self, within_s: float, *, hooks: bool = False) -> bool:
        """Wait for a login; with ``hooks``, also for its on_connected hooks to finish
        (so the pending work they retry has been tried)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                await self._connected.wait()
                if hooks:
                    await self._hooks_done.wait()
        return self.connected and (not hooks or self._hooks_done.is_set())

    # --- supervisor ------------------------------------------------------------------

    async def run(self) -> None:
        """Stay logged in until cancelled; never raises for AMI trouble."""
        delay = self._backoff_min
        try:
            while True:
                self.attempts += 1
                try:
                    await self._session()
                    delay = self._backoff_min   # we were logged in: start over fast
                    self.next_retry_s = delay
                except AmiAuthError as exc:
                    self.last_error = str(exc)
                    if not self._auth_reported:
                        self._auth_reported = True
                        log.error(
                            "ami.auth_failed",
                            host=self._settings.host,
                            port=self._settings.port,
                            username=self._settings.username,
                            retry_in_s=self._auth_retry,
                            hint="check [ami] username/secret against manager.conf",
                        )
                    self.next_retry_s = self._auth_retry
                    await asyncio.sleep(self._auth_retry)
                    continue
                except (OSError, TimeoutError, AmiError) as exc:
                    self.last_error = str(exc) or type(exc).__name__
                    log.warning(
                        "ami.unreachable",
                        host=self._settings.host,
                        port=self._settings.port,
                        error=self.last_error,
                        retry_in_s=delay,
                    )
                except Exception:
                    # A bug in a codec or library must not take the daemon down:
                    # contain it here, log it with its traceback, back off.
                    self.last_error = "internal error"
                    log.exception("ami.session_failed", retry_in_s=delay)
                self.next_retry_s = delay
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff_max)
        finally:
            self._teardown()

    async def _session(self) -> None:
        """One connection: connect, login, run hooks, wait until it is lost."""
        creds = self._settings.username + self._settings.secret
        if "\r" in creds or "\n" in creds:
            raise AmiAuthError("AMI username or secret contains a line break")
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        manager = _Manager(
            self._lost_cb,
            host=self._settings.host,
            port=self._settings.port,
            loop=loop,
        )
        self._manager = manager
        for name, handler in self._event_handlers:
            manager.register_event(
                name, lambda _m, msg, handler=handler: self._dispatch_event(handler, msg))
        task = manager.connect()
        try:
            # Not wait_for: on 3.11 a cancel that lands as the connect finishes
            # is dropped there (CPython gh-86296) and run() carries on logging
            # in, so the daemon's shutdown waits for it for ever.
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await task
            login = manager.send_action(
                {
                    "Action": "Login",
                    "Username": self._settings.username,
                    "Secret": self._settings.secret,
                    "Events": "on",
                }
            )
            resp = await self._await(login, LOGIN_TIMEOUT_S, "Login")
            if str(resp.get("Response")) != "Success":
                raise AmiAuthError(
                    f"AMI login as {self._settings.username!r} refused: "
                    f"{resp.get('Message') or resp.get('Response')}"
                )
            if self._auth_reported:
                log.info("ami.auth_recovered", username=self._settings.username)
            self._auth_reported = False
            self.last_error = None
            self._connected.set()
            log.info("ami.connected", host=self._settings.host, port=self._settings.port)
            for hook in list(self._hooks):
                try:
                    await hook()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("ami.hook_failed", hook=getattr(hook, "__qualname__", "?"))
            self._hooks_done.set()
            await self._watch()
            log.warning("ami.disconnected", host=self._settings.host)
        finally:
            self._teardown()

    async def _watch(self) -> None:
        """Return when the link is lost, stops answering Pings, or must log in again."""
        lost = self._lost
        assert lost is not None
        self._relogin.clear()
        while True:
            relogin: asyncio.Future[Any] = asyncio.ensure_future(self._relogin.wait())
            waiters: set[asyncio.Future[Any]] = {lost, relogin}
            try:
                done, _ = await asyncio.wait(waiters, timeout=self._watchdog,
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                relogin.cancel()
            if lost in done:
                return
            if relogin in done:
                await self._until_idle(lost)
                log.info("ami.relogin", host=self._settings.host,
                         reason="permission refused; rights are read at login")
                return
            try:
                await self._action({"Action": "Ping"}, self._ping_timeout)
            except AmiNotConnected:
                return
            except AmiError as exc:
                log.warning("ami.watchdog_timeout", host=self._settings.host, error=str(exc))
                return

    async def _until_idle(self, lost: asyncio.Future[None]) -> None:
        """Wait until no action is in flight and none ended for RELOGIN_IDLE_S."""
        while not lost.done():
            quiet_s = time.monotonic() - self._last_action
            if not self._inflight and quiet_s >= RELOGIN_IDLE_S:
                return
            await asyncio.wait({lost}, timeout=max(RELOGIN_IDLE_S - quiet_s, 0.05))

    def _lost_cb(self, exc: Exception | None) -> None:
        self._connected.clear()
        self._hooks_done.clear()
        for fut in list(self._inflight):
            if not fut.done():
                fut.set_exception(AmiNotConnected("AMI connection lost"))
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def _teardown(self) -> None:
        self._connected.clear()
        self._hooks_done.clear()
        manager, self._manager = self._manager, None
        if manager is not None:
            manager.close()
            if manager.pinger is not None:
                manager.pinger.cancel()
        for fut in list(self._inflight):
            if not fut.done():
                fut.set_exception(AmiNotConnected("AMI connection closed"))

    # --- actions ----------------------------------------------------------------------

    async def _await(self, fut: asyncio.Future[Any], limit_s: float, what: str) -> Any:
        self._inflight.add(fut)
        lost = self._lost
        try:
            waiters: set[asyncio.Future[Any]] = {fut}
            if lost is not None:
                waiters.add(lost)
            done, _ = await asyncio.wait(
                waiters, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED
            )
            if fut in done:
                return fut.result()
            if lost is not None and lost in done:
                raise AmiNotConnected(f"AMI connection lost during {what}")
            raise AmiError(f"AMI {what} got no answer within {limit_s:g} s")
        finally:
            self._inflight.discard(fut)
            self._last_action = time.monotonic()
            if not fut.done():
                fut.cancel()

    async def _action(self, action: dict[str, Any], limit_s: float = ACTION_TIMEOUT_S) -> Any:
        manager = self._manager
        if manager is None or not self.connected:
            raise AmiNotConnected(f"AMI is not connected ({self.last_error or 'not yet'})")
        result = await self._await(manager.send_action(action), limit_s, str(action["Action"]))
        first = result[0] if isinstance(result, list) and result else result
        if (hasattr(first, "get") and str(first.get("Response", "")) == "Error"
                and str(first.get("Message", "")) == "Permission denied"):
            self._permission_denied(str(action["Action"]))
        return result

    def _permission_denied(self, action: str) -> None:
        """Asterisk refused ``action`` for this session's rights: log in again (rate-limited).

        The rights of a session are those of manager.conf at its login; after
        the admin adds the missing class and runs "manager reload", only a new
        login has it.  The refused action still fails (its caller falls back);
        the following ones run on the new session.
        """
        now = time.monotonic()
        hint = ("Asterisk copies the AMI user's rights at login: after adding the class to "
                "manager.conf and 'manager reload', smsd logs in again (at most every "
                f"{self._relogin_interval:g} s); restarting smsd does the same")
        if self._last_relogin is not None and now - self._last_relogin < self._relogin_interval:
            log.warning("ami.permission_denied", action=action, relogin="not yet",
                        relogin_in_s=round(self._relogin_interval - (now - self._last_relogin)),
                        hint=hint)
            return
        self._last_relogin = now
        self.relogins += 1
        log.warning("ami.permission_denied", action=action, relogin="now", hint=hint)
        self._relogin.set()     # _watch ends the session once idle; run() logs in again

    async def has_extension(self, context: str, exten: str) -> bool:
        """Does ``context`` hold ``exten`` itself (``+`` included, patterns ignored)?

        Asks with the ShowDialPlan action, which Asterisk allows to the
        ``reporting`` write class: smsd's AMI user never needs ``command``
        (any CLI command, "core stop now" included).  Raises
        :class:`~smsd.asterisk.codec.AmiPermissionError` (an ``AmiError``)
        naming that class when the user lacks it.
        """
        if any(c in context + exten for c in " \r\n@"):
            raise AmiError(f"refusing odd dialplan lookup {exten!r}@{context!r}")
        result = await self._action(codec.show_dialplan_action(context, exten),
                                    SHOW_DIALPLAN_TIMEOUT_S)
        return codec.show_dialplan_has_exact(result, context, exten, self._settings.username)

    async def channels(self) -> list[dict[str, str]]:
        """CoreShowChannels (write class ``reporting``): one header dict per live channel,
        as ``CoreShowChannel`` events carry them (tests/asterisk/data/ami-call-tracking.txt)."""
        result = await self._action({"Action": "CoreShowChannels"}, ACTION_TIMEOUT_S)
        messages = result if isinstance(result, list) else [result]
        if messages and str(messages[0].get("Response", "")) == "Error":
            raise AmiError(f"CoreShowChannels refused: {messages[0].get('Message')}")
        return [{str(k): str(v) for k, v in dict(m).items()} for m in messages
                if str(m.get("Event", "")) == "CoreShowChannel"]

    async def originate_local(
        self, exten: str, context: str, variables: Mapping[str, str]
    ) -> bool:
        """Originate ``Local/<exten>@<context>`` (Async); True when it was answered.

        The Local channel's other half runs the dialplan (the kite-sms AGI);
        this side just Waits so the dialplan is not cut short.
        """
        action: dict[str, Any] = {
            "Action": "Originate",
            "Channel": f"Local/{exten}@{context}",
            "Application": "Wait",
            "Data": str(ORIGINATE_HOLD_S),
            "Async": "true",
            "Timeout": str(int(ORIGINATE_TIMEOUT_S * 1000)),
            "Variable": codec.channel_variables(variables),
        }
        result = await self._action(action, ORIGINATE_TIMEOUT_S + ACTION_TIMEOUT_S)
        answered, headers = codec.originate_outcome(result)
        log.info(
            "ami.originate",
            channel=action["Channel"],
            answered=answered,
            reason=headers.get("Reason"),
            message=headers.get("Message"),
        )
        return answered

    async def message_send(self, to: str, from_: str, body: str) -> None:
        """MessageSend to ``to``, as many actions as the body needs.

        ``from_`` is a number (made into the From that lets Asterisk fill the
        host, or ``"num" <sip:num@host>`` with ``[ami] message_from_host``) or
        an already bracketed From.  Success only means Asterisk's SIP stack took
        the request, not that the phone got it (captured: an unanswered
        MESSAGE still answers Success).
        """
        sender = (from_ if from_.endswith(">")
                  else codec.message_from(from_, self._from_host, to))
        for action in codec.message_send_actions(to, sender, body):
            resp = await self._action(action)
            if str(resp.get("Response")) != "Success":
                raise AmiError(
                    f"MessageSend to {to} refused: {resp.get('Message') or resp.get('Response')}"
                )

    async def user_event(self, name: str, headers: Mapping[str, str]) -> None:
        action: dict[str, Any] = {"Action": "UserEvent", "UserEvent": name}
        for key, value in codec.iter_user_event_headers(headers):
            action[key] = value
        resp = await self._action(action)
        if str(resp.get("Response")) != "Success":
            raise AmiError(f"UserEvent {name} refused: {resp.get('Message')}")

    # --- EventBus subscriber ---------------------------------------------------------

    async def on_status(self, ev: StatusChange) -> None:
        """Tell dialplan/CTI listeners about sent/delivered/failed/expired (UserEvent SmsStatus)."""
        if ev.state not in ("sent", "delivered", "failed", "expired") or not self.connected:
            return
        # Id is the outbound numbering (GET /api/v1/sms/{id}); OutboundId says so,
        # since SmsReceived's Id numbers inbound SMS, a different sequence.
        headers = {"Id": str(ev.id), "OutboundId": str(ev.id), "State": ev.state,
                   "Recipient": ev.recipient}
        if ev.user:
            headers["User"] = ev.user
        if ev.gateway:
            headers["Gateway"] = ev.gateway
        if ev.error:
            headers["Error"] = " ".join(ev.error.split())[:200]
        try:
            await self.user_event("SmsStatus", headers)
        except AmiError as exc:
            log.warning("ami.status_event_failed", sms_id=ev.id, error=str(exc))
