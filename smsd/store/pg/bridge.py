"""Run smsd's synchronous write functions over asyncpg, without a thread.

The store's hot path is ``Store.write(fn)``: ``fn`` is plain synchronous code
(``db.execute(...)``) so that on SQLite a whole operation is one hop to the
database thread.  On PostgreSQL the same ``fn`` must run over asyncpg, which
is asynchronous.  A greenlet makes the two meet: ``fn`` runs in a greenlet of
its own on the event loop's thread; each statement hands its coroutine to
:func:`run_sync`, which awaits it and switches back with the result.  So the
statements are written once, the event loop never blocks, and no thread is
involved (greenlet is the library SQLAlchemy's asyncio support stands on).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import greenlet

from smsd.errors import SmsdError

T = TypeVar("T")


class _Worker(greenlet.greenlet):  # type: ignore[misc]
    """The greenlet of one synchronous function started by :func:`run_sync`."""


async def run_sync(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` to its end, awaiting every statement it hands over."""
    worker = _Worker(fn)
    request = worker.switch(*args)
    while not worker.dead:
        try:
            value = await cast(Awaitable[Any], request)
        except BaseException as e:
            request = worker.throw(e)
        else:
            request = worker.switch(value)
    return cast(T, request)


def wait(awaitable: Awaitable[T]) -> T:
    """Inside a function run by :func:`run_sync`: the awaitable's result."""
    current = greenlet.getcurrent()
    if not isinstance(current, _Worker):
        if hasattr(awaitable, "close"):
            awaitable.close()
        raise SmsdError("a PostgreSQL statement was run outside Store.write()")
    return cast(T, current.parent.switch(awaitable))
