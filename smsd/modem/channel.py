"""One AT command in flight, with deadlines, URC routing and resync.

Every line from the modem is first checked against the URC table; only what
is not unsolicited goes to the command in flight, so a ``+CMTI`` arriving
between ``+CPMS:`` and ``OK`` reaches the URC handler and never the caller.
A final result code is matched as a whole line.  After a timeout the channel
resynchronises before the next command, so a late reply is never read as the
next command's answer; too many timeouts in a row declare the port dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

import structlog

from smsd.errors import (
    AtError,
    AtTimeout,
    CmeError,
    CmsError,
    ModemError,
    PartNotSent,
    PortGone,
    SubmitUnconfirmed,
)
from smsd.modem import at
from smsd.modem.framing import LineFramer, Prompt
from smsd.modem.urcs import TWO_LINE, urc_name, urc_table
from smsd.turns import Turns

log = structlog.get_logger(__name__)

# Plain queries answer within a few hundred ms on every modem we know;
# vendor manuals (Quectel EC25 AT manual 1.1.4, SIMCom SIM7600 2.x) give 300 ms
# as the maximum response time for most commands.  10 s covers a busy SIM.
DEFAULT_TIMEOUT = 10.0
# A resync query must be answered quickly by a live modem; 2 s x 3 attempts.
RESYNC_TIMEOUT = 2.0
RESYNC_ATTEMPTS = 3
# After the information line a command's answer is known (``+CMGS: <mr>``:
# the network took the SMS); the final ``OK`` follows in the same burst on
# every modem we know, so 2 s without it means line noise ate it.
FINAL_GRACE_S = 2.0
# What _finish sees when the grace ran out: treated as OK, then resync.
_ASSUMED_OK = "\x00assumed OK"
# The deadline timer may run this early (uvloop counts its timers in ms).
_TIMER_SLACK_S = 0.001
# Consecutive timeouts (commands or resyncs) after which the port is dead:
# three silent commands in a row is how ModemManager decides a port is stuck.
MAX_CONSECUTIVE_TIMEOUTS = 3

CTRL_Z = b"\x1a"
ESC = b"\x1b"
# After ESC a modem left at the ``> `` prompt answers at once (TS 27.005
# 3.5.1 leaves the answer to the vendor: OK or +CMS ERROR); 200 ms is ample
# for that answer to arrive and be discarded before the first command.
PROMPT_ABORT_SETTLE = 0.2

_QUERY = re.compile(r"^AT([+^$*][A-Z0-9]+)(?:\?|=\?)$", re.IGNORECASE)


@dataclass(frozen=True)
class Urc:
    name: str            # "+CMTI", "RING", "SMS DONE"
    line: str
    pdu: str | None = None


class ByteStream(Protocol):
    path: str

    def start_reading(self, on_data: Callable[[bytes], None],
                      on_lost: Callable[[PortGone], None]) -> None: ...
    async def write(self, data: bytes) -> None: ...
    def write_now(self, data: bytes) -> None: ...
    async def close(self) -> None: ...


@dataclass
class ChannelStats:
    urcs: int = 0
    stray: int = 0
    timeouts: int = 0
    resyncs: int = 0


@dataclass
class _Pending:
    command: str
    solicited: str | None
    done: asyncio.Future[str]
    lines: list[str] = field(default_factory=list)
    awaiting_prompt: bool = False     # AT+CMGS=: "> " not seen yet
    resync: bool = False          # only a final preceded by +CMEE: counts
    stale_error: bool = False     # an error final seen while resyncing
    answer_prefix: str | None = None   # "+CMGS:": once seen, the answer is known
    grace: bool = False                # the answer line came: FINAL_GRACE_S runs
    # What follows the "> " prompt (the PDU and Ctrl-Z): written by the read
    # callback that sees the prompt, then None; ``written`` says it left.
    payload: bytes | None = None
    written: bool = False
    wait_s: float = 0.0                # the final's deadline, armed once written


class _Expired(Exception):
    """The exchange's deadline passed while a future of it was awaited (internal)."""


class AtChannel:
    def __init__(self, stream: ByteStream, on_urc: Callable[[Urc], None],
                 *, extra_urcs: Iterable[str] = (), resync_s: float = RESYNC_TIMEOUT,
                 on_dead: Callable[[], None] | None = None) -> None:
        self.stream = stream
        self.resync_s = resync_s
        self.framer = LineFramer()
        self.stats = ChannelStats()
        self._on_urc = on_urc
        self._extra = tuple(extra_urcs)
        self._urcs = urc_table(self._extra)
        # One exchange at a time; Turns, not asyncio.Lock: a free take is a
        # plain call, and every AT command takes it (issue 17).
        self._lock = Turns(1)
        self._pending: _Pending | None = None
        self._two_line: tuple[str, str] | None = None
        self._need_resync = False
        self._timeouts = 0
        # Why the port is unusable, once it is (set here only, by _die, which
        # tells ``on_dead`` at once: the modem's ``ready`` follows it).
        self.dead: PortGone | None = None
        # Told once, as soon as ``dead`` is set (the modem's ``ready`` follows).
        self._on_dead = on_dead
        self._closed = asyncio.Event()
        # The deadlines of the exchange in flight (see _arm): the future being
        # awaited fails at _wait_at; _grace_for's final is taken as lost at
        # _grace_at.  One timer handle serves both and outlives exchanges.
        self._wait_for: asyncio.Future[Any] | None = None
        self._wait_owner: _Pending | None = None
        self._wait_at = 0.0
        self._grace_for: _Pending | None = None
        self._grace_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        # Each chunk is framed and routed inside the transport's read callback:
        # no reader task to wake per chunk (issue 17).
        self.stream.start_reading(self._on_data, self._die)

    async def close(self) -> None:
        self._die(PortGone(f"{self.stream.path}: closed"))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.stream.close()

    async def wait_closed(self) -> PortGone:
        await self._closed.wait()
        assert self.dead is not None
        return self.dead

    def abort(self, exc: PortGone) -> None:
        """Declare the port dead (the modem rebooted, the watchdog failed)."""
        self._die(exc)

    def _die(self, exc: PortGone) -> None:
        if self.dead is None:
            self.dead = exc
            log.info("modem.port_gone", path=self.stream.path, reason=str(exc))
            if self._on_dead is not None:
                self._on_dead()
        if self._pending is not None:
            fut = self._pending.done
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()     # the caller may be gone: not "never retrieved"
        self._closed.set()

    def _on_data(self, data: bytes) -> None:
        try:
            frames = self.framer.feed(data)
        except Exception as exc:     # a framer bug: the port is unusable, not the daemon
            log.exception("modem.reader_failed", path=self.stream.path)
            self._die(PortGone(f"{self.stream.path}: {exc}"))
            return
        for frame in frames:
            try:
                self._on_frame(frame)
            except Exception:    # a handler bug must not stop the reader
                log.exception("modem.urc_handler_failed", path=self.stream.path)

    # -------------------------------------------------------------- incoming

    def _on_frame(self, frame: str | Prompt) -> None:
        pending = self._pending
        if isinstance(frame, Prompt):
            if pending is not None and pending.awaiting_prompt and not pending.done.done():
                self._answer_prompt(pending)
            else:
                self.stats.stray += 1
            return
        line = frame
        if self._two_line is not None:
            first, header = self._two_line
            self._two_line = None
            if not at.is_final(line) and self._urcs.match(line) is None:
                self._emit(Urc(first, header, line))
                return
            log.warning("modem.urc_without_pdu", path=self.stream.path, header=header)
        name = self._urcs.match(line)
        if name is not None and not (pending is not None and pending.solicited == name):
            if name in TWO_LINE:
                self._two_line = (name, line)
            else:
                self._emit(Urc(name, line))
            return
        if pending is None or pending.done.done():
            self.stats.stray += 1
            log.debug("modem.stray_line", path=self.stream.path, line=line)
            return
        if line == pending.command and not pending.lines:
            return      # echo (before ATE0 takes effect)
        if at.is_final(line):
            if pending.resync and not (line in at.FINAL_OK and any(
                    x.startswith("+CMEE") for x in pending.lines)):
                pending.stale_error = pending.stale_error or line not in at.FINAL_OK
                pending.lines.clear()       # a stale reply: keep waiting for ours
                return
            pending.done.set_result(line)
            pending.awaiting_prompt = False     # the answer came instead of "> "
        else:
            pending.lines.append(line)
            if (pending.answer_prefix is not None and not pending.grace
                    and line.startswith(pending.answer_prefix)):
                pending.grace = True
                self._grace_for = pending
                self._grace_at = asyncio.get_running_loop().time() + FINAL_GRACE_S
                self._schedule(self._grace_at)

    def _answer_prompt(self, pending: _Pending) -> None:
        """The ``> `` prompt: the PDU goes out from here, and the final's deadline
        starts; the sending task is not woken.

        Issue 17: waking the task at the prompt, or to write the PDU, cost a
        loop hand-off per SMS (each a loop turn shared with every busy modem,
        and a resumption of the whole send's chain of coroutines); the task
        now wakes once, for the answer.
        """
        # Only called while the answer is awaited: a command that timed out or
        # whose port died has its future done, and a cancelled one is no longer
        # pending (_abandoned), so a late "> " writes nothing.
        pending.awaiting_prompt = False
        payload, pending.payload = pending.payload, None
        if payload is not None:
            try:
                # From the first byte of the PDU on, the modem may send it.
                pending.written = True
                self.stream.write_now(payload)
            except PortGone as exc:
                self._die(exc)
                return
        self._arm(pending, pending.done, pending.wait_s)

    def _final_lost(self, pending: _Pending) -> None:
        """The answer line came but its final result did not: noise ate it."""
        if pending.done.done():
            return
        self._need_resync = True
        log.warning("modem.final_lost", path=self.stream.path, command=pending.command,
                    lines=pending.lines)
        pending.done.set_result(_ASSUMED_OK)

    def _emit(self, urc: Urc) -> None:
        self.stats.urcs += 1
        self._on_urc(urc)

    # -------------------------------------------------------------- commands

    async def abort_stale_prompt(self, settle_s: float = PROMPT_ABORT_SETTLE) -> None:
        """Send ESC and discard whatever answers it, before the first command.

        A process killed between ``AT+CMGS=`` and the PDU leaves the modem at
        the ``> `` prompt, where our ``ATE0`` would become message text.  ESC
        ends the prompt without sending; in command mode a modem ignores
        anything before ``AT``, so it is harmless there.
        """
        await self._lock.take()
        try:
            await self._prepare()
            await self._write(ESC)
            await asyncio.sleep(settle_s)
        finally:
            self._lock.give()

    async def command(self, cmd: str, wait_s: float = DEFAULT_TIMEOUT) -> list[str]:
        """Run one command; returns the information lines, raises on any failure."""
        lock = self._lock
        if not lock.try_take():
            await lock.take()
        try:
            if self.dead is not None or self._need_resync:
                await self._prepare()
            pending = self._new_pending(cmd)
            try:
                await self._write(cmd.encode("ascii") + b"\r")
                final = await self._await_final(pending, wait_s)
            except asyncio.CancelledError:
                self._abandoned(pending)
                raise
            return self._finish(cmd, pending, final)
        finally:
            lock.give()

    async def command_with_pdu(self, cmd: str, pdu: str, *, prompt_s: float,
                               wait_s: float, answer_prefix: str | None = None) -> list[str]:
        """``AT+CMGS=<n>``: wait for ``> ``, send the PDU and Ctrl-Z, await the result.

        Failures say whether the PDU left: PartNotSent when the port was dead
        or the prompt never came (nothing was sent), SubmitUnconfirmed when
        the port died or fell silent after the PDU was written (the network
        may have taken it).  A timeout resynchronises at once, inside this
        call, so a silent modem is declared dead within its own deadlines
        rather than by whichever command comes next.  Once a line starting
        with ``answer_prefix`` arrived, a lost final result costs
        FINAL_GRACE_S, not ``wait_s``.
        """
        payload = at.check_pdu_hex(pdu).encode("ascii")
        lock = self._lock
        if not lock.try_take():
            await lock.take()
        try:
            if self.dead is not None or self._need_resync:
                try:
                    await self._prepare()
                except PortGone as exc:
                    raise PartNotSent(str(exc)) from exc
            pending = self._new_pending(cmd)
            pending.answer_prefix = answer_prefix
            pending.payload = payload + CTRL_Z      # _answer_prompt writes it
            pending.awaiting_prompt = True
            pending.wait_s = wait_s
            try:
                await self._write(cmd.encode("ascii") + b"\r")
                # One wait for the whole exchange: prompt_s until "> ", then
                # _answer_prompt writes the PDU and arms wait_s; an error final
                # instead of the prompt ends it as well.
                self._arm(pending, pending.done, prompt_s)
                try:
                    final = await pending.done      # raises PortGone if the port died
                except _Expired:
                    if pending.written:
                        self._timed_out(cmd, wait_s)
                    await self._write(ESC)   # TS 27.005 3.5.1: ESC aborts the message
                    self._timed_out(cmd, prompt_s)
                finally:
                    self._disarm(pending)
            except asyncio.CancelledError:
                self._abandoned(pending)
                raise
            except (AtTimeout, PortGone) as exc:
                timed_out = isinstance(exc, AtTimeout)
                if timed_out:
                    await self._resync_after_timeout()
                if pending.written:
                    raise SubmitUnconfirmed(f"{_redact(cmd)}: PDU written, then {exc}") from exc
                raise PartNotSent(f"{_redact(cmd)}: {exc}") from exc
            return self._finish(cmd, pending, final)
        finally:
            lock.give()

    async def _resync_after_timeout(self) -> None:
        """Resync now (under the lock): a dead modem is found within this call."""
        if self.dead is not None or not self._need_resync:
            return
        with contextlib.suppress(PortGone):
            await self._resync()

    def _abandoned(self, pending: _Pending) -> None:
        """The caller gave up on a command: its late answer must not reach the next one."""
        if self._pending is pending:
            self._pending = None
            self._need_resync = True
        if self._grace_for is pending:
            self._grace_for = None
        self._disarm(pending)

    def _arm(self, pending: _Pending, fut: asyncio.Future[Any], seconds: float) -> None:
        """The deadline for ``fut``: a time noted, not a timer per wait.

        Deadlines are the hot path of every AT exchange (issue 17), and an
        answer nearly always comes long before them: the channel keeps one
        timer handle, moved only when a deadline is earlier than the time it
        is set for; when it fires, whatever is due fails and it is set again
        for what is not (a later deadline noted since).
        """
        self._wait_for, self._wait_owner = fut, pending
        self._wait_at = asyncio.get_running_loop().time() + seconds
        self._schedule(self._wait_at)

    def _disarm(self, pending: _Pending) -> None:
        if self._wait_owner is pending:
            self._wait_for = self._wait_owner = None

    def _schedule(self, when: float) -> None:
        """The timer fires at ``when`` at the latest."""
        if self._timer is not None:
            if self._timer_at <= when:
                return
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(when, self._on_timer)
        self._timer_at = when

    def _on_timer(self) -> None:
        self._timer = None
        # The loop may run a timer up to its clock's resolution early (1 ms
        # with uvloop); a deadline of seconds is not moved by that.
        now = asyncio.get_running_loop().time() + _TIMER_SLACK_S
        fut = self._wait_for
        if fut is not None:
            if now >= self._wait_at:
                self._wait_for = self._wait_owner = None
                _expire(fut)
            else:
                self._schedule(self._wait_at)
        grace = self._grace_for
        if grace is not None:
            if now >= self._grace_at:
                self._grace_for = None
                self._final_lost(grace)
            else:
                self._schedule(self._grace_at)

    def _new_pending(self, cmd: str) -> _Pending:
        m = _QUERY.match(cmd)
        solicited = m.group(1).upper() if m else None
        self._pending = _Pending(cmd, solicited, asyncio.get_running_loop().create_future())
        return self._pending

    async def _prepare(self) -> None:
        if self.dead is not None:
            raise self.dead
        if self._need_resync:
            await self._resync()

    async def _write(self, data: bytes) -> None:
        try:
            await self.stream.write(data)
        except PortGone as exc:
            self._die(exc)
            raise

    async def _await_final(self, pending: _Pending, wait_s: float) -> str:
        # A timer that fails the future, not wait_for: on 3.11 wait_for loses
        # a cancel that coincides with the reply arriving (CPython gh-86296).
        # The future is awaited directly (no shield, one callback less per
        # command): if this wait is cancelled, the command is over anyway and
        # a late answer to it is counted as stray.
        self._arm(pending, pending.done, wait_s)
        try:
            return await pending.done
        except _Expired:
            self._timed_out(pending.command, wait_s)
        finally:
            self._disarm(pending)

    def _timed_out(self, cmd: str, seconds: float) -> NoReturn:
        self._pending = None
        self._need_resync = True
        self.stats.timeouts += 1
        self._timeouts += 1
        log.warning("modem.at_timeout", path=self.stream.path, command=_redact(cmd),
                    seconds=seconds, consecutive=self._timeouts)
        if self._timeouts >= MAX_CONSECUTIVE_TIMEOUTS:
            exc = PortGone(f"{self.stream.path}: no answer to {self._timeouts} commands")
            self._die(exc)
            raise exc
        raise AtTimeout(_redact(cmd), seconds)

    def _finish(self, cmd: str, pending: _Pending, final: str) -> list[str]:
        self._pending = None
        self._timeouts = 0
        if self._grace_for is pending:
            self._grace_for = None
        if final in at.FINAL_OK or final == _ASSUMED_OK:
            return pending.lines
        shown = _redact(cmd)
        code = at.error_code(final)
        if final.startswith(at.CMS_PREFIX):
            raise CmsError(shown, final, code, at.cms_temporary(code))
        if final.startswith(at.CME_PREFIX):
            raise CmeError(shown, final, code)
        raise AtError(shown, final, None)

    async def _resync(self) -> None:
        """Query +CMEE? until its own answer arrives, discarding stale replies.

        A bare ``AT`` cannot tell its ``OK`` from the late ``OK`` of the command
        that timed out; ``+CMEE?`` (TS 27.007 9.1, answered with or without a
        SIM) carries an information line that a stale reply lacks.
        """
        self.stats.resyncs += 1
        for _ in range(RESYNC_ATTEMPTS):
            pending = self._new_pending("AT+CMEE?")
            pending.resync = True
            await self._write(b"AT+CMEE?\r")
            try:
                async with asyncio.timeout(self.resync_s):
                    await asyncio.shield(pending.done)
            except TimeoutError:
                if pending.stale_error:     # alive, but does not know +CMEE?
                    self._synced()
                    return
                self._timeouts += 1
                if self._timeouts >= MAX_CONSECUTIVE_TIMEOUTS:
                    break
                continue
            self._synced()
            return
        self._pending = None
        exc = PortGone(f"{self.stream.path}: no answer while resynchronising")
        self._die(exc)
        raise exc

    def _synced(self) -> None:
        self._pending = None
        self._need_resync = False
        self._timeouts = 0
        log.info("modem.resynced", path=self.stream.path)


def _expire(fut: asyncio.Future[Any]) -> None:
    """A deadline passed: the waiter of ``fut`` gets _Expired (if nothing answered first)."""
    if not fut.done():
        fut.set_exception(_Expired())
        fut.exception()     # the waiter may have been cancelled meanwhile: never "not retrieved"


async def reap(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for it without swallowing our own cancellation."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception:
        log.exception("modem.task_failed_while_stopping", task=task.get_name())


def _redact(cmd: str) -> str:
    """Never log a PIN: ``AT+CPIN="1234"`` becomes ``AT+CPIN=***``."""
    if cmd.upper().startswith("AT+CPIN=") or cmd.upper().startswith("AT+CPWD"):
        return cmd.split("=", 1)[0] + "=***"
    return cmd


__all__ = ["AtChannel", "ModemError", "Urc", "urc_name"]
