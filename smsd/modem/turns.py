"""Whose turn it is to talk on an AT channel: a FIFO lock the channel can hand on itself.

With ``asyncio.Lock`` the next command gets the port only once the previous
command's task has woken and released it: a loop turn between a modem's
final result and the next ``AT+CMGS``, and with many busy modems that turn
is shared with all of them (issue 17).  Here a waiter may bring its command
ready to write (``express``): the read callback that sees the previous
command's final result hands the turn on and writes that command at once,
and the waiter's task wakes only for its answer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

_E = TypeVar("_E")


class Turn(Generic[_E]):
    """One command's place in line; ``express``: its command, ready to be started
    by whoever hands the turn on (see Turns.next_express)."""

    __slots__ = ("express", "granted")

    def __init__(self, express: _E | None = None) -> None:
        self.express = express
        self.granted: asyncio.Future[None] | None = None   # set while it waits


class Turns(Generic[_E]):
    def __init__(self) -> None:
        self.holder: Turn[_E] | None = None
        self._waiting: deque[Turn[_E]] = deque()

    async def acquire(self, turn: Turn[_E]) -> None:
        """Wait for ``turn``; first come, first served.

        Cancelled while waiting, it leaves the line.  Cancelled just after it
        was granted, it still holds the turn: the caller must release it.
        """
        if self.holder is None and not self._waiting:
            self.holder = turn
            return
        turn.granted = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await turn.granted
        except asyncio.CancelledError:
            if self.holder is not turn and turn in self._waiting:
                self._waiting.remove(turn)
            raise
        finally:
            turn.granted = None

    def release(self, turn: Turn[_E]) -> None:
        """``turn`` is done; a turn already handed on releases nothing."""
        if self.holder is not turn:
            return
        self.holder = None
        while self._waiting:
            nxt = self._waiting.popleft()
            if nxt.granted is not None and not nxt.granted.done():
                self.holder = nxt
                nxt.granted.set_result(None)
                return
            # its wait was cancelled: its task leaves the line itself

    def next_express(self) -> Turn[_E] | None:
        """The first waiter, if it brought its command ready and still waits."""
        if not self._waiting:
            return None
        nxt = self._waiting[0]
        if nxt.express is None or nxt.granted is None or nxt.granted.done():
            return None
        return nxt

    def hand_on(self, turn: Turn[_E]) -> None:
        """Give the turn to ``turn`` (from next_express) now, whoever held it."""
        assert self._waiting and self._waiting[0] is turn and turn.granted is not None
        self._waiting.popleft()
        self.holder = turn
        turn.granted.set_result(None)
