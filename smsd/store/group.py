"""Group commits: the write path both backends share (``Store.write``, ``write_soon``).

Split from store.py (module size, issue 17's fourth round): how writes are
queued, grouped into one transaction under the writer's turn
(``smsd.turns.Turns``), answered, and how a lingering write waits for a group
to ride on.  Each backend says only how one group runs
(:meth:`GroupCommits._submit_group`: SQLite on aiosqlite's thread,
PostgreSQL in a task over asyncpg) and calls :meth:`GroupCommits._settle`.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import structlog

from smsd.store.sqlite_io import StoreError, WriteFn
from smsd.turns import Turns

# The logger keeps store.py's name: the events logged here are the same as before the split.
log = structlog.get_logger("smsd.store.store")

T = TypeVar("T")

# How long a lingering write (``write(fn, linger=True)``) waits for another
# write to start a group commit it can ride on before it starts one itself.
# Long enough to span one modem's whole send cycle, so that a status report
# that just missed one send's 'submitting' commit rides on the next one: 3-4
# ms per message on a quiet machine, 6-10 ms when the daemon shares its two
# cores with the simulated modems under load (bench/daemon_cost_bench.py
# steady phase at load 4: with 3 ms, half the reports lingered out and were
# committed alone; with 10 ms, under 1 %).  Short enough to be invisible to
# what waits on a lingering write: a network re-sends an unacknowledged
# status report only after seconds (+CNMA, 3GPP TS 24.011's TR2M), a trunk's
# HTTP report answer and a 'sent' event 10 ms later change nothing for
# anyone.  A quiet store pays it once per write; a busy one hardly ever.
LINGER_S = 0.010
# A write_soon that failed (its group as a whole, or itself) is queued again
# for the next group this many times before it is given up and logged: its
# caller does not wait for it, so nothing else would ever try it again (a
# part's 'sent' lost to one failed COMMIT left the part 'submitting' under a
# 'sent' message, and its status report unmatched).
SOON_RETRIES = 3


class _Soon:
    """A write_soon's function, with the tries it has had (see SOON_RETRIES)."""

    __slots__ = ("fn", "tries")

    def __init__(self, fn: WriteFn) -> None:
        self.fn = fn
        self.tries = 1

    def __call__(self, db: Any) -> Any:
        return self.fn(db)


class GroupCommits:
    """The group-commit half of a Store: ``write``, ``write_soon`` and their groups."""

    path: Path | str

    def _init_writes(self, path: Path | str) -> None:
        """The group-commit state both backends share (write, write_soon)."""
        self.path: Path | str = path
        # The writer connection's turn: transaction() awaits it, write()'s
        # group commits take and hand it on from callbacks (no task per group).
        self._turn = Turns(1)
        self._pending: list[tuple[WriteFn, asyncio.Future[Any]]] = []
        self._group_queued = False  # a group commit waits for the turn (or runs soon)
        self._runners: set[asyncio.Future[None]] = set()
        self.commits = 0  # group commits done by write(): evidence for tests and metrics
        # Lingering writes (and write_soon) wait for a group at most this long:
        # one loop timer for all of them, armed by the first, dropped by any group.
        self.linger_s = LINGER_S
        self._linger: asyncio.TimerHandle | None = None
        self.lingered = 0  # groups the linger's timer started (no other write came in time)

    async def write(self, fn: Callable[[sqlite3.Connection], T], *, linger: bool = False) -> T:
        """Run ``fn`` on the writer connection in a committed transaction; return its result.

        The hot path (part hooks, status reports, inbound parts).  ``fn`` is
        plain synchronous sqlite3 code and runs on the database thread, so a
        whole operation is one hop instead of one per statement.  Writes that
        arrive while another commit is in progress are committed together
        (group commit): each still returns only after *its* data is on disk,
        but one fsync serves all of them.  One that raises is rolled back
        alone and gets its exception; a failed COMMIT fails every write of the
        group.  So ``fn`` must only touch the database (and its own locals):
        when one write of a group raises, the group is undone and run again
        with a savepoint around each write, so ``fn`` may run twice.

        ``linger=True`` (issue 17): do not start a group for it; it rides on
        the next group any other write starts, and only if none does within
        ``linger_s`` (:data:`LINGER_S`) does it start one.  The caller is
        still answered only once that group committed, with the same errors
        and cancellation as any write.  For writes whose caller can wait that
        long (a message's 'sent', a status report before its +CNMA), never
        for one that something else is waiting to start: a part's
        'submitting' is what starts the next group.
        """
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        entry = (cast(WriteFn, fn), fut)
        self._pending.append(entry)
        if linger:
            self._linger_for_group()
        elif not self._group_queued:
            self._queue_group()
        try:
            # Awaited directly: a caller cancelled while its write is still
            # queued takes it back; once its group runs, the group commits and
            # every other caller still gets its answer (only this one is gone).
            return cast(T, await fut)
        except asyncio.CancelledError:
            if entry in self._pending:
                self._pending.remove(entry)
            raise

    def write_soon(self, fn: Callable[[sqlite3.Connection], Any]) -> None:
        """Queue ``fn`` for the next group commit, without waiting for its commit.

        For a write that may become durable with the caller's next one: a
        part's 'sent' rides on the same message's next write (the next part's
        'submitting' or the message's 'sent'), one commit fewer per part
        (issue 17).  ``fn`` runs in the batch of the next group, before the
        functions of writes queued after it, so a write queued later (a
        status report for the part) still sees it.  Like a lingering write it
        starts a group itself if none starts within ``linger_s``.  A crash
        before that commit loses it: use it only for what recovery resolves
        anyway (a part left 'submitting' is in flight, invariant 2).  A
        failure is tried again with the next group, up to SOON_RETRIES
        times, then logged.
        """
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(self._log_soon_failure)
        self._pending.append((_Soon(fn), fut))
        self._linger_for_group()

    async def _flush_pending(self) -> None:
        """At close: commit what lingers or write_soon left queued, and answer its
        callers.  A failed write_soon comes back for its retries, so this runs
        groups until none is left (at most SOON_RETRIES + 1)."""
        for _ in range(SOON_RETRIES + 1):
            if not self._pending:
                return
            await self.write(lambda db: None)

    def _retry_soon(self, fn: WriteFn, fut: asyncio.Future[Any], again: list[Any]) -> bool:
        """Queue a failed write_soon for the next group (into ``again``) if it has
        tries left; whether it did."""
        if not isinstance(fn, _Soon) or fn.tries >= SOON_RETRIES:
            return False
        fn.tries += 1       # the same entry, its future still unanswered
        again.append((fn, fut))
        return True

    def _requeue(self, again: list[tuple[WriteFn, asyncio.Future[Any]]]) -> None:
        """Failed write_soon entries go first into the next group, in their order."""
        if again:
            self._pending[:0] = again
            self._linger_for_group()

    def _queue_group(self) -> None:
        """Ask for a group commit of everything queued: now if the writer is free."""
        self._group_queued = True
        self._turn.when_free(self._start_group)

    def _linger_for_group(self) -> None:
        """A lingering write was queued: make sure some group takes it within linger_s."""
        if self._group_queued or self._linger is not None:
            return      # a group will take it, or the timer already runs
        self._linger = asyncio.get_running_loop().call_later(self.linger_s, self._lingered)

    def _lingered(self) -> None:
        """No other write started a group within linger_s: start one for what waits."""
        self._linger = None
        if self._pending and not self._group_queued:
            self.lingered += 1
            self._queue_group()

    def _log_soon_failure(self, fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            log.error("store.write_soon_failed", path=str(self.path), reason=str(fut.exception()))

    # The backend's own errors, turned into StoreError (PgStore adds asyncpg's).
    db_errors: tuple[type[BaseException], ...] = (sqlite3.Error,)

    def _start_group(self) -> None:
        """Holding the writer's turn: start one group commit of every queued write."""
        self._group_queued = False
        if self._linger is not None:    # the lingering writes ride on this group
            self._linger.cancel()
            self._linger = None
        batch, self._pending = self._pending, []
        if not batch:               # every caller of the group was cancelled meanwhile
            self._turn.give()
            return
        self._submit_group(batch)

    def _submit_group(self, batch: list[tuple[WriteFn, asyncio.Future[Any]]]) -> None:
        """Run ``batch`` as one transaction, then call :meth:`_settle` (each backend's own)."""
        raise NotImplementedError

    def _settle(
        self, batch: list[tuple[WriteFn, asyncio.Future[Any]]],
        results: list[tuple[bool, Any]], error: BaseException | None,
    ) -> None:
        """Answer every writer of a finished group, then hand the writer's turn on.

        The turn goes on one loop turn later, after the writers just answered
        have run: what they write next joins the next group instead of waiting
        for the one after it (bigger groups, fewer fsyncs, as with a lock).
        """
        try:
            self._answer(batch, results, error)
        finally:
            asyncio.get_running_loop().call_soon(self._turn.give)

    def _answer(
        self, batch: list[tuple[WriteFn, asyncio.Future[Any]]],
        results: list[tuple[bool, Any]], error: BaseException | None,
    ) -> None:
        if error is not None:
            if isinstance(error, StoreError):
                failed = error
            else:
                log.error("store.write_failed", path=str(self.path), reason=str(error))
                failed = StoreError(self.path, "write", str(error) or type(error).__name__)
            again: list[tuple[WriteFn, asyncio.Future[Any]]] = []
            for fn, fut in batch:
                if not fut.done() and not self._retry_soon(fn, fut, again):
                    fut.set_exception(failed)
            self._requeue(again)
            return
        self.commits += 1
        again = []
        for (fn, fut), (ok, value) in zip(batch, results, strict=True):
            if fut.done():
                continue
            if ok:
                fut.set_result(value)
            elif self._retry_soon(fn, fut, again):
                continue
            elif isinstance(value, self.db_errors):
                fut.set_exception(StoreError(self.path, "write", str(value)))
            else:
                fut.set_exception(value)
        self._requeue(again)
