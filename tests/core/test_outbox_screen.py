"""The blocklist and opt-out check of a submit: inside its own write when small (issue 17),
a separate read before the chunked writes when big, the same refusals either way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from smsd.config import Policy
from smsd.core.outbox import Outbox, Refusal, SubmitRequest
from smsd.store import Store
from smsd.store.optouts import add_opt_out
from smsd.store.submits import SCREEN_MAX, screen_numbers

from .conftest import make_user

pytestmark = pytest.mark.timeout(60)

OFFICE = "+447700900100"          # make_user's DID: the sender of every accepted message
BLOCKED_A = "+447700900301"
BLOCKED_B = "+447700900300"
STOPPED_ALL = "+447700900302"     # opted out of this PBX (an admin added it)
STOPPED_OFFICE = "+447700900303"  # texted STOP to the user's own DID
STOPPED_ELSEWHERE = "+447700900304"  # opted out of another DID only: still accepted
US_NUMBER = "+12025550123"        # no numeric sender for the US from a GB DID: refused
FINE = "+447700900305"


async def _fill(store: Store) -> None:
    await store.block(BLOCKED_A, by="admin", reason="abuse")
    await store.block(BLOCKED_B, by="admin", reason="abuse")
    await store.block(US_NUMBER, by="admin", reason="abuse")   # blocked beats "no sender"
    await add_opt_out(store, STOPPED_ALL, "", by="admin")
    async with store.transaction() as db:
        await db.execute(
            "INSERT INTO opt_outs (number, did, keyword, created_at) VALUES "
            f"('{STOPPED_OFFICE}', '{OFFICE}', 'STOP', '2026-11-25T13:00:00.000000+00:00'), "
            f"('{STOPPED_ELSEWHERE}', '+447700900999', 'STOP', "
            "'2026-11-25T13:00:00.000000+00:00')"
        )


class Watched:
    """The real store, noting which of its calls the outbox makes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: list[str] = []

    async def blocked_and_opted_out(self, numbers: list[str]) -> Any:
        self.calls.append("read")
        return await self.store.blocked_and_opted_out(numbers)

    async def write(self, fn: Callable[[Any], Any]) -> Any:
        self.calls.append("write")
        return await self.store.write(fn)


EXPECTED = [
    Refusal(US_NUMBER, "the number is on the blocklist"),
    Refusal(BLOCKED_B, "the number is on the blocklist"),
    Refusal(BLOCKED_A, "the number is on the blocklist"),
    Refusal(STOPPED_ALL, "the recipient opted out of SMS from this PBX (an administrator "
                         "added the opt-out); they can text START to opt back in"),
    Refusal(STOPPED_OFFICE, f"the recipient opted out of SMS from {OFFICE} (texted STOP); "
                            "they can text START to opt back in"),
]
ORDER = [FINE, BLOCKED_A, STOPPED_ALL, BLOCKED_B, US_NUMBER, STOPPED_OFFICE,
         STOPPED_ELSEWHERE]


class TestScreenInTheWrite:
    async def test_a_small_submit_is_one_write_with_no_read_before_it(
        self, store: Store
    ) -> None:
        """A submit of a few numbers checks the blocklist and opt-outs inside the write
        that inserts the rest: one call to the store, no read before it, and the
        refusals exactly as worded (blocked first, sorted; then in the request's order)."""
        await _fill(store)
        watched = Watched(store)
        outbox = Outbox(watched, Policy(country="GB"))  # type: ignore[arg-type]
        res = await outbox.submit(SubmitRequest(ORDER, "hello", user=make_user()))
        assert watched.calls == ["write"]
        assert res.refused == EXPECTED
        assert len(res.ids) == 2
        rows = await store.fetchall(
            "SELECT recipient, sender FROM messages ORDER BY id")
        assert [(r[0], r[1]) for r in rows] == [(FINE, OFFICE), (STOPPED_ELSEWHERE, OFFICE)]

    async def test_nothing_accepted_writes_no_message(self, store: Store) -> None:
        """Every number blocked or opted out: no message row, no usage counted, every
        number refused by name."""
        await _fill(store)
        res = await Outbox(store, Policy(country="GB")).submit(
            SubmitRequest([BLOCKED_A, STOPPED_ALL], "hello", user=make_user()))
        assert res.ids == [] and [r.number for r in res.refused] == [BLOCKED_A, STOPPED_ALL]
        row = await store.fetchone("SELECT count(*) FROM messages")
        assert row is not None and row[0] == 0
        row = await store.fetchone("SELECT count(*) FROM usage_months")
        assert row is not None and row[0] == 0

    async def test_a_big_submit_refuses_the_same_way(self, store: Store) -> None:
        """Past SCREEN_MAX numbers the check is a read before the chunked writes; the
        same numbers get the same refusals, in the same order."""
        await _fill(store)
        extra = [f"+4477009{i:05d}" for i in range(10000, 10000 + SCREEN_MAX)]
        watched = Watched(store)
        outbox = Outbox(watched, Policy(country="GB"))  # type: ignore[arg-type]
        res = await outbox.submit(SubmitRequest([*ORDER, *extra], "hello", user=make_user()))
        assert watched.calls[0] == "read"
        assert res.refused == EXPECTED
        assert len(res.ids) == 2 + len(extra)


class TestScreenNumbers:
    @pytest.mark.parametrize("size", [1, 3, 5, SCREEN_MAX])
    async def test_the_padded_lookup_answers_as_the_read_does(
        self, store: Store, size: int
    ) -> None:
        """screen_numbers (IN lists padded to a power of two) finds exactly what
        Store.blocked_and_opted_out finds, for any count up to SCREEN_MAX."""
        await _fill(store)
        numbers = [*ORDER, *(f"+4477009{i:05d}" for i in range(20000, 20000 + SCREEN_MAX))]
        numbers = numbers[:size]
        blocked, opted = await store.write(lambda db: screen_numbers(db, numbers))
        want_blocked, want_opted = await store.blocked_and_opted_out(numbers)
        assert sorted(blocked) == sorted(want_blocked)
        assert sorted(opted, key=str) == sorted(want_opted, key=str)
        assert sorted(blocked) == sorted(
            n for n in (BLOCKED_A, BLOCKED_B, US_NUMBER) if n in numbers)

    async def test_more_than_screen_max_is_refused(self, store: Store) -> None:
        """A caller that passes more than SCREEN_MAX numbers gets a ValueError, not a
        statement with thousands of parameters."""
        numbers = [f"+4477009{i:05d}" for i in range(SCREEN_MAX + 1)]
        with pytest.raises(ValueError, match="at most"):
            await store.write(lambda db: screen_numbers(db, numbers))

