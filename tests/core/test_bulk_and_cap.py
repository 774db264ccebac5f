"""Bulk sender rule on US/Canadian DIDs and the optional monthly hard cap (issue 9)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from smsd.config import Licence, Policy
from smsd.core.outbox import Outbox, SubmitRequest
from smsd.errors import QuotaExceeded
from smsd.store import Store

from .conftest import make_user

pytestmark = pytest.mark.timeout(30)

NOV = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DEC = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def _senders(store: Store, ids: list[int]) -> list[str | None]:
    marks = ",".join("?" * len(ids))
    rows = await store.fetchall(
        f"SELECT sender FROM messages WHERE id IN ({marks}) ORDER BY id", ids
    )
    return [r["sender"] for r in rows]


class TestBulkSender:
    @pytest.mark.parametrize("did", ["+12025550143", "+14165550143"], ids=["US", "CA"])
    async def test_bulk_from_a_north_american_did_uses_the_numeric_did(
        self, store: Store, did: str
    ) -> None:
        """A UC-Essential user (no two-way) on a US/Canadian DID: a single SMS to the UK goes
        from the name, a bulk send goes only from the numeric office number."""
        user = make_user(office=did, licence=Licence.UC_ESSENTIAL)
        outbox = Outbox(store, Policy(country="US"))
        single = await outbox.submit(SubmitRequest(["+447700900123"], "hi", user=user))
        assert await _senders(store, single.ids) == ["Alice Smith"]
        bulk = await outbox.submit(
            SubmitRequest(["+447700900124", "+33612345678"], "hi", user=user, origin="bulk")
        )
        assert await _senders(store, bulk.ids) == [did, did]

    async def test_bulk_from_unverified_toll_free_is_refused(self, store: Store) -> None:
        """A US toll-free DID not marked verified cannot carry bulk: refused by name."""
        user = make_user(office="+18005550143", licence=Licence.UC_ESSENTIAL)
        res = await Outbox(store, Policy(country="US")).submit(
            SubmitRequest(["+447700900124"], "hi", user=user, origin="bulk")
        )
        assert res.ids == [] and "numeric office number" in res.refused[0].reason


class TestHardCap:
    async def test_default_continues_billable(self, store: Store) -> None:
        """Without the cap, SMS beyond the package are queued and billable."""
        outbox = Outbox(store, Policy(country="GB", monthly_package=2), clock=lambda: NOV)
        res = await outbox.submit(
            SubmitRequest(["+447700900001", "+447700900002", "+447700900003"], "hi",
                          user=make_user())
        )
        assert len(res.ids) == 3
        row = await store.fetchone("SELECT SUM(cost_billable) AS b FROM messages")
        assert row is not None and row["b"] == 1

    async def test_hard_cap_refuses_beyond_the_package(self, store: Store) -> None:
        """With quota_hard_cap a submit that would go beyond the package is refused whole,
        with an error naming the user and the package; a new month may send again."""
        now = [NOV]
        pol = Policy(country="GB", monthly_package=2, quota_hard_cap=True)
        outbox = Outbox(store, pol, clock=lambda: now[0])
        user = make_user()
        assert len((await outbox.submit(SubmitRequest(["+447700900001"], "a", user=user))).ids)
        with pytest.raises(QuotaExceeded) as info:
            await outbox.submit(
                SubmitRequest(["+447700900002", "+447700900003"], "b", user=user)
            )
        assert "'alice' has used 1 of 2" in str(info.value)
        row = await store.fetchone("SELECT COUNT(*) AS n FROM messages")
        assert row is not None and row["n"] == 1
        now[0] = DEC
        res = await outbox.submit(SubmitRequest(["+447700900002", "+447700900003"], "b",
                                                user=user))
        assert len(res.ids) == 2


class TestChunkedCommit:
    async def test_a_big_submit_commits_in_chunks_that_let_other_writes_in(
        self, store: Store
    ) -> None:
        """A submit of more than COMMIT_CHUNK numbers is several commits, in order.

        Each chunk is its own transaction, so a write queued while the submit
        runs (a modem's 'submitting') commits before the submit's last chunk
        instead of after all of it (issue 17); every message, its parts,
        history and the month's usage are still there, ids consecutive.
        """
        from smsd.core import outbox as outbox_mod

        n = outbox_mod.COMMIT_CHUNK * 2 + 7
        numbers = [f"+4477009{i:05d}" for i in range(n)]
        started = asyncio.Event()

        class FirstWriteSeen:
            """The store, telling the test when the submit hands over its first write."""

            async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
                return await store.fetchall(sql, params)

            async def blocked_and_opted_out(self, numbers: list[str]) -> Any:
                return await store.blocked_and_opted_out(numbers)

            async def write(self, fn: Callable[[Any], Any]) -> Any:
                started.set()
                return await store.write(fn)

        outbox = Outbox(FirstWriteSeen(), Policy(country="GB", monthly_package=10),  # type: ignore[arg-type]
                        clock=lambda: NOV)
        user = make_user()
        commits0 = store.commits
        order: list[str] = []

        async def other_writer() -> None:
            await started.wait()
            await store.write(lambda db: order.append("other"))

        other = asyncio.create_task(other_writer())
        res = await outbox.submit(SubmitRequest(numbers, "hi", user=user, origin="bulk"))
        order.append("submit done")
        await other
        assert store.commits - commits0 >= 3            # one per chunk (and the other write)
        assert order == ["other", "submit done"]
        assert res.ids == list(range(res.ids[0], res.ids[0] + n))
        row = await store.fetchone(
            "SELECT count(*), sum(cost_billable) FROM messages WHERE user = 'alice'")
        assert row is not None and (row[0], row[1]) == (n, n - 10)
        parts = await store.fetchone("SELECT count(*) FROM message_parts")
        assert parts is not None and parts[0] == n
