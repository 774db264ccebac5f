"""Concatenated SMS reassembly (smsd.codec.reassembly)."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsd.codec import pdu
from smsd.codec.reassembly import (
    CompleteSms,
    MemoryPartStore,
    PartKey,
    PartStore,
    Reassembler,
    join_parts,
)

pytestmark = pytest.mark.timeout(30)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LONG = "".join(f"part-of-the-story-{i:03d} " for i in range(45))  # 990 chars, 7 parts


def parts_of(text: str, sender: str = "+447700900123", reference: int = 7) -> list[pdu.DeliverPdu]:
    """Parts as the network delivers them, decoded by the production codec."""
    out = []
    for h in pdu.encode_deliver(sender, text, timestamp=T0, reference=reference):
        d = pdu.decode(h)
        assert isinstance(d, pdu.DeliverPdu)
        out.append(d)
    return out


async def feed(r: Reassembler, modem: str, sms: list[pdu.DeliverPdu]) -> list[CompleteSms]:
    done = []
    for part in sms:
        result = await r.add(modem, part, received_at=T0)
        if result is not None:
            done.append(result)
    return done


class TestReassembler:
    async def test_single_part_passes_straight_through(self) -> None:
        """A one-part SMS is complete at once and nothing is kept in the store."""
        store = MemoryPartStore()
        r = Reassembler(store)
        [one] = parts_of("hello")
        done = await r.add("gsm0", one)
        assert done is not None
        assert (done.text, done.sender, done.parts, done.complete) == (
            "hello",
            "+447700900123",
            1,
            True,
        )
        assert done.smsc == "+447785016005"
        assert await store.older_than(T0 + timedelta(days=365)) == []

    @pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
    async def test_any_order(self, order: tuple[int, ...]) -> None:
        """Three parts in every order give one message, released by the last to arrive."""
        text = LONG[:400]
        sms = parts_of(text)
        assert len(sms) == 3
        r = Reassembler(MemoryPartStore())
        shuffled = [sms[i] for i in order]
        done = [await r.add("gsm0", p, received_at=T0) for p in shuffled]
        assert done[:2] == [None, None]
        assert done[2] is not None
        assert done[2].text == text
        assert done[2].complete and done[2].parts == 3
        assert done[2].timestamp == T0

    async def test_duplicates_ignored(self) -> None:
        """A part reported twice is kept once; the message is released once, whole."""
        sms = parts_of(LONG[:400])
        r = Reassembler(MemoryPartStore())
        feed_order = [sms[0], sms[0], sms[1], sms[1], sms[2]]
        done = await feed(r, "gsm0", feed_order)
        assert [d.text for d in done] == [LONG[:400]]

    async def test_same_reference_different_senders(self) -> None:
        """Parts are matched on (modem, sender, reference, total), not the reference alone."""
        a = parts_of("A" * 300, sender="+447700900001", reference=9)
        b = parts_of("B" * 300, sender="+447700900002", reference=9)
        r = Reassembler(MemoryPartStore())
        done = await feed(r, "gsm0", [a[0], b[0], b[1], a[1]])
        assert sorted(d.text for d in done) == ["A" * 300, "B" * 300]

    async def test_same_sender_and_reference_on_two_modems(self) -> None:
        """The same sender and reference arriving on two SIMs are two messages."""
        a = parts_of("A" * 300, reference=9)
        r = Reassembler(MemoryPartStore())
        assert await r.add("gsm0", a[0], received_at=T0) is None
        assert await r.add("gsm1", a[1], received_at=T0) is None
        done0 = await r.add("gsm0", a[1], received_at=T0)
        assert done0 is not None and done0.modem == "gsm0" and done0.text == "A" * 300

    async def test_same_reference_different_totals(self) -> None:
        """A 2-part and a 3-part message with one reference do not mix."""
        two = parts_of("x" * 300, reference=4)
        three = parts_of("y" * 400, reference=4)
        r = Reassembler(MemoryPartStore())
        done = await feed(r, "gsm0", [two[0], three[0], three[1], two[1], three[2]])
        assert sorted(d.text for d in done) == ["x" * 300, "y" * 400]

    async def test_sixteen_bit_references(self) -> None:
        """Parts with IE 0x08 references reassemble like 8-bit ones."""
        hexes = pdu.encode_deliver("Bank", "z" * 400, timestamp=T0, reference=0xBEEF, ref16=True)
        sms = [pdu.decode(h) for h in hexes]
        r = Reassembler(MemoryPartStore())
        done = await feed(r, "gsm0", [s for s in reversed(sms) if isinstance(s, pdu.DeliverPdu)])
        assert [(d.text, d.sender) for d in done] == [("z" * 400, "Bank")]

    async def test_incomplete_released_with_markers_after_timeout(self) -> None:
        """A message missing parts 2 and 4 is released after the timeout with one marker each."""
        sms = parts_of(LONG)
        assert len(sms) == 7
        r = Reassembler(MemoryPartStore(), timeout=timedelta(hours=1))
        present = [s for s in sms if s.part not in (2, 4)]
        assert await feed(r, "gsm0", present) == []
        assert await r.expire(T0 + timedelta(minutes=59)) == []
        [released] = await r.expire(T0 + timedelta(hours=1, seconds=1))
        expected = "".join(
            s.text if s.part not in (2, 4) else Reassembler.MISSING_MARKER for s in sms
        )
        assert released.text == expected
        assert not released.complete
        assert released.parts == 7
        assert await r.expire(T0 + timedelta(days=2)) == []  # released once

    async def test_late_part_after_release_starts_afresh(self) -> None:
        """After expiry the store is empty: a late part is held on its own, not merged."""
        sms = parts_of(LONG[:400])
        store = MemoryPartStore()
        r = Reassembler(store, timeout=timedelta(hours=1))
        await r.add("gsm0", sms[0], received_at=T0)
        await r.expire(T0 + timedelta(hours=2))
        assert await r.add("gsm0", sms[1], received_at=T0 + timedelta(hours=3)) is None
        key = PartKey("gsm0", "+447700900123", 7, 3)
        assert set(await store.parts(key)) == {2}

    async def test_concurrent_completion_releases_once(self) -> None:
        """Two last parts arriving together release the message exactly once."""
        sms = parts_of(LONG[:400])
        r = Reassembler(SlowStore())
        await r.add("gsm0", sms[0], received_at=T0)
        results = await asyncio.gather(
            r.add("gsm0", sms[1], received_at=T0), r.add("gsm0", sms[2], received_at=T0)
        )
        assert sum(1 for x in results if x is not None) == 1

    async def test_impossible_header_is_delivered_as_is(self) -> None:
        """A part whose number exceeds its total cannot be placed: it is delivered, not held."""
        [one] = parts_of("odd")
        weird = pdu.DeliverPdu(
            sender=one.sender,
            text="odd",
            timestamp=T0,
            smsc=None,
            reference=3,
            part=5,
            parts=2,
            ref_bits=8,
            encoding="gsm7",
            status_report_indication=False,
        )
        done = await Reassembler(MemoryPartStore()).add("gsm0", weird)
        assert done is not None and done.text == "odd"

    @settings(max_examples=50, deadline=None)
    @given(st.permutations(range(7)), st.lists(st.integers(0, 6), max_size=5))
    def test_any_order_with_duplicates(self, order: list[int], dups: list[int]) -> None:
        """Any arrival order, with any duplicates, yields exactly the original text once."""
        sms = parts_of(LONG)
        arrivals = [sms[i] for i in order] + [sms[i] for i in dups]

        async def run() -> list[CompleteSms]:
            return await feed(Reassembler(MemoryPartStore()), "gsm0", arrivals)

        done = asyncio.run(run())
        assert [d.text for d in done] == [LONG]


class TestMemoryPartStore:
    async def test_store_contract(self) -> None:
        """put reports duplicates; older_than uses the first part's arrival; drop forgets."""
        store: PartStore = MemoryPartStore()
        key = PartKey("gsm0", "+447700900123", 1, 2)
        a, b = parts_of("q" * 300, reference=1)
        assert await store.put(key, 2, b, T0 + timedelta(minutes=5))
        assert await store.put(key, 1, a, T0)
        assert not await store.put(key, 1, a, T0 + timedelta(minutes=9))
        assert set(await store.parts(key)) == {1, 2}
        assert await store.older_than(T0) == []
        assert await store.older_than(T0 + timedelta(seconds=1)) == [key]
        await store.drop(key)
        assert await store.parts(key) == {}
        assert await store.older_than(T0 + timedelta(days=1)) == []


class SlowStore(MemoryPartStore):
    """A store that yields to the loop on every call, as an SQLite-backed one does."""

    async def put(
        self, key: PartKey, part: int, sms: pdu.DeliverPdu, received_at: datetime
    ) -> bool:
        await asyncio.sleep(0)
        return await super().put(key, part, sms, received_at)

    async def parts(self, key: PartKey) -> dict[int, pdu.DeliverPdu]:
        await asyncio.sleep(0)
        return await super().parts(key)


class TestJoinParts:
    """join_parts is what both the Reassembler and the inbox release messages with."""

    def test_gaps_are_marked_and_the_message_is_incomplete(self) -> None:
        """Missing parts 2 and 4 of 4 stand as markers in place; complete is False."""
        sms = parts_of(LONG[:600])
        assert len(sms) == 4
        key = PartKey("gsm0", sms[0].sender, 7, 4)
        held = {1: sms[0], 3: sms[2]}
        joined = join_parts(key, held)
        marker = Reassembler.MISSING_MARKER
        assert joined.text == sms[0].text + marker + sms[2].text + marker
        assert (joined.parts, joined.complete, joined.timestamp) == (4, False, T0)

    def test_all_parts_held_give_the_whole_text(self) -> None:
        """Every part held, in any dict order: the original text, complete, first part's SMSC."""
        text = LONG[:400]
        sms = parts_of(text)
        key = PartKey("gsm0", sms[0].sender, 7, len(sms))
        joined = join_parts(key, {p.part: p for p in reversed(sms)})
        assert (joined.text, joined.complete, joined.smsc) == (text, True, sms[0].smsc)
