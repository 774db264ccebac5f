"""`smsd block add|remove|list` and the old `smsd block NUMBER` / `smsd unblock NUMBER`,
as real subprocesses against the real HTTP API."""

from __future__ import annotations

from tests.cli.api_rig import Rig, rig, verb

__all__ = ["rig"]

NUMBER = "+447700900666"


class TestBlockVerbs:
    async def test_add_list_remove(self, rig: Rig) -> None:
        """add blocks with its reason, list shows it beside the opted-out numbers, remove
        unblocks."""
        async with rig.store.transaction() as db:
            await db.execute("INSERT INTO opt_outs (number, did, keyword, created_at) "
                             "VALUES ('+447700900777', '+447700900001', 'STOP', "
                             "'2026-11-25 13:00Z')")
        r = await verb(rig, "block", "add", NUMBER, "--reason", "spam calls")
        assert r.code == 0 and r.stdout == f"blocked {NUMBER}\n", r.stderr
        assert await rig.store.is_blocked(NUMBER)
        r = await verb(rig, "block", "list")
        assert r.code == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].startswith(f"blocked    {NUMBER}") and "spam calls" in lines[0]
        assert lines[1].startswith("opted out  +447700900777") and "+447700900001" in lines[1]
        r = await verb(rig, "block", "remove", NUMBER)
        assert r.code == 0 and not await rig.store.is_blocked(NUMBER)

    async def test_old_spellings_still_work(self, rig: Rig) -> None:
        """`smsd block NUMBER` blocks and `smsd unblock NUMBER` unblocks, as before."""
        r = await verb(rig, "block", NUMBER)
        assert r.code == 0 and await rig.store.is_blocked(NUMBER)
        r = await verb(rig, "unblock", NUMBER)
        assert r.code == 0 and not await rig.store.is_blocked(NUMBER)

    async def test_usage_errors(self, rig: Rig) -> None:
        """A missing number or a number after list is a usage error (exit 2), nothing changes."""
        for args in (("block", "add"), ("block", "list", NUMBER), ("block", "add", NUMBER, "x")):
            r = await verb(rig, *args)
            assert r.code == 2 and r.stderr, args
        assert await rig.store.blocked() == []
