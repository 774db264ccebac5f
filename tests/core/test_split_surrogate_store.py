"""A surrogate pair cut between UCS-2 parts survives the SQLite part store and a restart.

The parts are hand-built SMS-DELIVERs (tests/codec/foreign_ucs2.py, from
TS 23.040) cut every 67 UTF-16 units, so both seams of ``TEXT`` fall inside
an emoji's surrogate pair.  What the inbox commits must be the exact text,
whichever way the parts reach it: across a close and reopen of the
database, through ``recover()`` after a crash, or (with a part missing) as a
timed-out message that must not pair halves across the gap.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from smsd.codec.pdu import DeliverPdu, decode
from smsd.codec.reassembly import PartKey, Reassembler
from smsd.store import Store
from smsd.store.parts import SqlitePartStore
from tests.codec import foreign_ucs2 as foreign

from .inbox_harness import harness

pytestmark = pytest.mark.timeout(30)

NOW = datetime(2026, 11, 25, 13, 5, tzinfo=UTC)
GRINNING = "\U0001f600"  # D83D DE00, cut by seam 1
G_CLEF = "\U0001d11e"  # D834 DD1E, cut by seam 2
TEXT = "a" * 66 + GRINNING + "b" * 65 + G_CLEF + " fin 🇮🇹"
FFFD = "\ufffd"


def parts() -> list[DeliverPdu]:
    out = []
    for h in foreign.foreign_parts(TEXT, reference=0x21):
        d = decode(h)
        assert isinstance(d, DeliverPdu)
        out.append(d)
    assert [(p.split_high, p.split_low) for p in out] == [
        (0xD83D, None), (0xD834, 0xDE00), (None, 0xDD1E)
    ]
    return out


async def inbound_texts(store: Store) -> list[tuple[str, int]]:
    rows = await store.fetchall("SELECT text, complete FROM inbound ORDER BY id")
    return [(r["text"], int(r["complete"])) for r in rows]


class TestSqlitePartStore:
    async def test_halves_are_stored_and_joined_after_reopen(self, db_path: Path) -> None:
        """Parts 3 and 1 committed, database closed and reopened, part 2 arrives:
        the message is the exact text, and the rows held the halves as JSON."""
        p1, p2, p3 = parts()
        s = await Store.open(db_path)
        r = Reassembler(SqlitePartStore(s))
        assert await r.add("gsm0", p3, NOW) is None
        assert await r.add("gsm0", p1, NOW) is None
        await s.close()

        s = await Store.open(db_path)
        try:
            rows = await s.fetchall("SELECT part, pdu FROM inbound_parts ORDER BY part")
            stored = {int(row["part"]): json.loads(row["pdu"]) for row in rows}
            assert stored[1]["split_high"] == 0xD83D and stored[3]["split_low"] == 0xDD1E
            done = await Reassembler(SqlitePartStore(s)).add("gsm0", p2, NOW)
            assert done is not None and done.complete
            assert done.text == TEXT
        finally:
            await s.close()


class TestInbox:
    async def test_restart_between_parts(self, db_path: Path) -> None:
        """Part 2 before a restart, parts 3 and 1 after it: the committed and the
        published text are both exactly what was sent."""
        p1, p2, p3 = parts()
        s = await Store.open(db_path)
        async with harness(s, NOW) as h:
            await h.inbox.sms_received("gsm0", p2)
        await s.close()

        s = await Store.open(db_path)
        try:
            async with harness(s, NOW) as h:
                await h.inbox.sms_received("gsm0", p3)
                await h.inbox.sms_received("gsm0", p1)
            assert await inbound_texts(s) == [(TEXT, 1)]
            assert [ev.text for ev in h.inbound] == [TEXT]
        finally:
            await s.close()

    async def test_recover_after_crash(self, db_path: Path) -> None:
        """Every part committed but the message not (a crash): recover() at the
        next start stores the exact text once."""
        all_parts = parts()
        s = await Store.open(db_path)
        store = SqlitePartStore(s)
        key = PartKey("gsm0", foreign.SENDER, 0x21, 3)
        for p in all_parts:
            assert await store.put(key, p.part, p, NOW)
        await s.close()

        s = await Store.open(db_path)
        try:
            async with harness(s, NOW) as h:
                assert await h.inbox.recover() == 1
                assert await h.inbox.recover() == 0
            assert await inbound_texts(s) == [(TEXT, 1)]
        finally:
            await s.close()

    async def test_missing_middle_part_after_timeout(self, db_path: Path) -> None:
        """Part 2 never comes: after the timeout the stored text keeps each lone
        half as U+FFFD around the marker, never a character made across the gap."""
        p1, _, p3 = parts()
        s = await Store.open(db_path)
        try:
            async with harness(s, NOW) as h:
                await h.inbox.sms_received("gsm0", p1)
                await h.inbox.sms_received("gsm0", p3)
                h.now = NOW + timedelta(days=2)
                assert await h.inbox.expire() == 1
            ((text, complete),) = await inbound_texts(s)
            wrong = chr(0x10000 + ((0xD83D - 0xD800) << 10) + (0xDD1E - 0xDC00))
            assert wrong not in text
            assert text == "a" * 66 + FFFD + Reassembler.MISSING_MARKER + FFFD + " fin 🇮🇹"
            assert complete == 0
        finally:
            await s.close()
