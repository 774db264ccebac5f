"""Waiting for state that another task changes, without timed assertions.

Tests wait for a condition to become true; how long that may take is bounded
only by pytest-timeout, so a slow machine makes a test slower, never red.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

POLL_S = 0.005


async def eventually(cond: Callable[[], Awaitable[object] | object]) -> None:
    while True:
        result = cond()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        await asyncio.sleep(POLL_S)
