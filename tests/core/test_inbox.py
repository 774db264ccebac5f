"""Inbox: modem parts stored before acknowledging, reassembly across a restart,
dedupe, blocklist, STOP opt-out, delivery reports matched with TP-MR wrap."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from smsd.codec.pdu import DeliverPdu, StatusReportPdu, decode, encode_deliver, encode_status_report
from smsd.codec.reassembly import PartKey, Reassembler
from smsd.config import Policy
from smsd.core.events import EventBus
from smsd.core.inbox import Inbox
from smsd.core.outbox import Outbox, SubmitRequest
from smsd.errors import ValidationError
from smsd.store import Store, StoreError, ts
from smsd.store.parts import SqlitePartStore

from .inbox_harness import OWN, T0, harness
from .store_faults import refuse_writes

pytestmark = pytest.mark.timeout(20)

CUSTOMER = "+447700900777"
LONG = "Part of a long message. " * 15  # 360 GSM-7 characters: 3 parts


def deliver_parts(text: str, sender: str = CUSTOMER, at: datetime = T0) -> list[DeliverPdu]:
    """SMS-DELIVER PDUs as the network sends them, decoded by the production codec."""
    out = []
    for hexpdu in encode_deliver(sender, text, timestamp=at):
        pdu = decode(hexpdu)
        assert isinstance(pdu, DeliverPdu)
        out.append(pdu)
    return out


def report(mr: int, recipient: str, status: int = 0) -> StatusReportPdu:
    pdu = decode(encode_status_report(mr, recipient, status=status, scts=T0, discharge=T0))
    assert isinstance(pdu, StatusReportPdu)
    return pdu


async def inbound_rows(store: Store) -> list[dict[str, object]]:
    return [dict(r) for r in await store.fetchall("SELECT * FROM inbound ORDER BY id")]


class TestReceive:
    async def test_single_sms_stored_then_published(self, store: Store) -> None:
        """A one-part SMS is committed with route_state 'pending' and our DID, then published."""
        async with harness(store) as h:
            (pdu,) = deliver_parts("Hello there")
            await h.inbox.sms_received("gsm0", pdu)
            rows = await inbound_rows(store)
        assert len(rows) == 1
        assert rows[0]["text"] == "Hello there" and rows[0]["route_state"] == "pending"
        assert rows[0]["recipient"] == OWN and rows[0]["sender"] == CUSTOMER
        assert [e.id for e in h.inbound] == [rows[0]["id"]]
        assert h.inbound[0].gateway == "gsm" and h.inbound[0].modem == "gsm0"

    async def test_trunk_receive(self, store: Store) -> None:
        """receive() commits a whole message and returns its id, then publishes it."""
        async with harness(store) as h:
            mid = await h.inbox.receive(CUSTOMER, OWN, "via trunk", gateway="classound")
        rows = await inbound_rows(store)
        assert rows[0]["id"] == mid and rows[0]["gateway"] == "classound"
        assert h.inbound[0].id == mid

    async def test_trunk_receive_with_repeated_key_is_one(self, store: Store) -> None:
        """A whole message received again with the same dedupe_key returns the first id,
        stores no second row and is published once; a STOP repeated that way is one opt-out."""
        async with harness(store) as h:
            first = await h.inbox.receive(CUSTOMER, OWN, "STOP", gateway="classound",
                                          dedupe_key="call-1")
            again = await h.inbox.receive(CUSTOMER, OWN, "STOP", gateway="classound",
                                          dedupe_key="call-1")
        rows = await inbound_rows(store)
        assert again == first
        assert [r["id"] for r in rows] == [first]
        assert [e.id for e in h.inbound] == [first]
        outs = await store.fetchall("SELECT number FROM opt_outs")
        assert [r["number"] for r in outs] == [CUSTOMER]

    async def test_trunk_receive_keys_are_per_message(self, store: Store) -> None:
        """Different keys, no key, or the same key from another gateway are different
        messages; a caller's key never collides with a modem message's own key."""
        (pdu,) = deliver_parts("same text")
        async with harness(store) as h:
            await h.inbox.sms_received("gsm0", pdu)
            modem_key = (await inbound_rows(store))[0]["dedupe_key"]
            assert isinstance(modem_key, str)
            ids = [
                await h.inbox.receive(CUSTOMER, OWN, "same text", gateway="classound",
                                      dedupe_key="a"),
                await h.inbox.receive(CUSTOMER, OWN, "same text", gateway="classound",
                                      dedupe_key="b"),
                await h.inbox.receive(CUSTOMER, OWN, "same text", gateway="other",
                                      dedupe_key="a"),
                await h.inbox.receive(CUSTOMER, OWN, "same text", gateway="classound"),
                await h.inbox.receive(CUSTOMER, OWN, "same text", gateway="classound"),
                await h.inbox.receive(CUSTOMER, OWN, "same text", gateway="classound",
                                      dedupe_key=modem_key),
            ]
        assert len(set(ids)) == 6
        assert len(await inbound_rows(store)) == 7 and len(h.inbound) == 7

    async def test_receive_without_sender_is_refused(self, store: Store) -> None:
        """A whole message without a sender is a ValidationError and stores nothing."""
        with pytest.raises(ValidationError, match="sender"):
            await Inbox(store, EventBus()).receive("  ", OWN, "x", gateway="classound")
        assert await inbound_rows(store) == []

    async def test_multipart_out_of_order_and_duplicates(self, store: Store) -> None:
        """Parts in any order make one message; parts read again (before or after
        completion) store and publish nothing more."""
        p1, p2, p3 = deliver_parts(LONG)
        assert p1.parts == 3
        async with harness(store) as h:
            for p in (p3, p1, p3, p2, p2, p1):
                await h.inbox.sms_received("gsm0", p)
        rows = await inbound_rows(store)
        assert len(rows) == 1 and rows[0]["text"] == LONG and rows[0]["parts"] == 3
        assert len(h.inbound) == 1

    async def test_same_single_sms_twice_is_one(self, store: Store) -> None:
        """The same SMS read twice off a SIM (same SCTS and text) is stored once."""
        (pdu,) = deliver_parts("once")
        async with harness(store) as h:
            await h.inbox.sms_received("gsm0", pdu)
            await h.inbox.sms_received("gsm0", pdu)
        assert len(await inbound_rows(store)) == 1 and len(h.inbound) == 1

    async def test_reference_reused_by_a_new_message(self, store: Store) -> None:
        """A later message reusing the concatenation reference is a new message, not a dup."""
        first = deliver_parts(LONG, at=T0)
        second = [
            DeliverPdu(**{**p.__dict__, "timestamp": T0 + timedelta(hours=1),
                          "text": p.text.upper()})
            for p in first
        ]
        async with harness(store) as h:
            for p in [*first, *second]:
                await h.inbox.sms_received("gsm0", p)
        texts = [r["text"] for r in await inbound_rows(store)]
        assert texts == [LONG, LONG.upper()]

    async def test_reassembly_across_restart(self, db_path: Path) -> None:
        """Parts committed before a restart join parts arriving after it."""
        p1, p2, p3 = deliver_parts(LONG)
        s = await Store.open(db_path)
        async with harness(s) as h:
            await h.inbox.sms_received("gsm0", p2)
            await h.inbox.sms_received("gsm0", p1)
        await s.close()
        s = await Store.open(db_path)
        try:
            async with harness(s) as h:
                await h.inbox.sms_received("gsm0", p3)
            rows = await inbound_rows(s)
            assert [r["text"] for r in rows] == [LONG]
            assert len(h.inbound) == 1
        finally:
            await s.close()

    async def test_parts_committed_but_message_not(self, db_path: Path) -> None:
        """If a crash came after the last part was stored but before the message was,
        recover() at start-up stores it once."""
        parts = deliver_parts(LONG)
        s = await Store.open(db_path)
        ps = SqlitePartStore(s)
        key = PartKey("gsm0", CUSTOMER, parts[0].reference or 0, 3)
        for p in parts:
            assert await ps.put(key, p.part, p, T0)
        await s.close()
        s = await Store.open(db_path)
        try:
            async with harness(s) as h:
                assert await h.inbox.recover() == 1
                assert await h.inbox.recover() == 0
            assert [r["text"] for r in await inbound_rows(s)] == [LONG]
        finally:
            await s.close()

    async def test_missing_part_released_with_marker(self, store: Store) -> None:
        """A message whose part never comes is released after the timeout with a marker."""
        p1, _, p3 = deliver_parts(LONG)
        async with harness(store) as h:
            await h.inbox.sms_received("gsm0", p1)
            await h.inbox.sms_received("gsm0", p3)
            assert await h.inbox.expire() == 0
            h.now = T0 + timedelta(hours=25)
            assert await h.inbox.expire() == 1
        (row,) = await inbound_rows(store)
        assert row["complete"] == 0
        assert row["text"] == p1.text + Reassembler.MISSING_MARKER + p3.text

    async def test_store_failure_raises_and_stores_nothing(self, db_path: Path,
                                                           store: Store) -> None:
        """If the part cannot be committed sms_received raises (the SIM keeps it):
        a read-only SQLite file, a PostgreSQL session that refuses writes."""
        if store.dialect == "postgresql":
            await refuse_writes(store)
            refusing = store
        else:
            refusing = await Store.open(db_path, readonly=True)
        try:
            inbox = Inbox(refusing, EventBus())
            with pytest.raises(StoreError):
                await inbox.sms_received("gsm0", deliver_parts("x")[0])
            with pytest.raises(StoreError):
                await inbox.sms_received("gsm0", deliver_parts(LONG)[0])
        finally:
            if refusing is not store:
                await refusing.close()
        assert await inbound_rows(store) == []


class TestBlockAndStop:
    async def test_blocked_sender_stored_not_published(self, store: Store) -> None:
        """A blocklisted sender's message is kept with route_state 'blocked', never published."""
        await store.block(CUSTOMER, by="admin", reason="spam")
        async with harness(store) as h:
            await h.inbox.sms_received("gsm0", deliver_parts("buy now")[0])
            await h.inbox.receive(CUSTOMER, OWN, "again", gateway="classound")
        rows = await inbound_rows(store)
        assert [r["route_state"] for r in rows] == ["blocked", "blocked"]
        assert h.inbound == []

    @pytest.mark.parametrize("word", ["STOP", "  stop ", "Unsubscribe", "STOPALL", "cancel",
                                      "END", "quit"])
    async def test_stop_opts_out_until_start(self, store: Store, word: str) -> None:
        """A STOP keyword records an opt-out: outbound to that number is refused until START."""
        outbox = Outbox(store, Policy(country="GB"))
        async with harness(store) as h:
            await h.inbox.receive(CUSTOMER, OWN, word, gateway="classound")
            res = await outbox.submit(SubmitRequest([CUSTOMER], "hello"))
            assert res.ids == []
            assert f"(texted {word.strip().upper()})" in res.refused[0].reason
            await h.inbox.receive(CUSTOMER, OWN, "start", gateway="classound")
            res = await outbox.submit(SubmitRequest([CUSTOMER], "hello"))
            assert len(res.ids) == 1

    async def test_stop_inside_a_sentence_is_not_an_opt_out(self, store: Store) -> None:
        """Only the whole (trimmed) text is a keyword: 'please stop by' is a message."""
        async with harness(store) as h:
            await h.inbox.receive(CUSTOMER, OWN, "please stop by", gateway="classound")
        assert not await store.is_opted_out(CUSTOMER)


async def _sent_message(store: Store, recipient: str, parts: list[tuple[int, datetime]]) -> int:
    """An outbound message whose parts were sent on gsm0 with the given TP-MRs and times."""
    text = "x" * (153 * (len(parts) - 1) + 10)
    res = await Outbox(store, Policy(country="GB")).submit(SubmitRequest([recipient], text))
    mid = res.ids[0]
    async with store.transaction() as db:
        await db.execute("UPDATE messages SET state = 'sent', gateway = 'gsm' WHERE id = ?",
                         (mid,))
        for n, (mr, at) in enumerate(parts, start=1):
            await db.execute(
                "UPDATE message_parts SET state = 'sent', modem = 'gsm0', reference = ?, "
                "sent_at = ? WHERE message_id = ? AND part = ?",
                (mr, ts(at), mid, n),
            )
    return mid


async def _state(store: Store, mid: int) -> str:
    row = await store.fetchone("SELECT state FROM messages WHERE id = ?", (mid,))
    assert row is not None
    return str(row[0])


class TestDeliveryReports:
    async def test_mr_wrap_matches_most_recent(self, store: Store) -> None:
        """Two parts with TP-MR 5 (the counter wrapped): the report marks the newer one."""
        to = "+447700900123"
        old = await _sent_message(store, to, [(5, T0 - timedelta(hours=3))])
        new = await _sent_message(store, to, [(5, T0 - timedelta(minutes=1))])
        async with harness(store) as h:
            await h.inbox.status_report("gsm0", report(5, to))
        assert await _state(store, new) == "delivered"
        assert await _state(store, old) == "sent"
        assert [(e.id, e.state) for e in h.status] == [(new, "delivered")]

    async def test_delivered_when_all_parts_are(self, store: Store) -> None:
        """A two-part message is delivered only after both parts' reports."""
        to = "+447700900123"
        mid = await _sent_message(store, to, [(10, T0), (11, T0)])
        async with harness(store) as h:
            await h.inbox.status_report("gsm0", report(10, to))
            assert await _state(store, mid) == "sent"
            await h.inbox.status_report("gsm0", report(11, to))
            assert await _state(store, mid) == "delivered"
        view = await store.get_message(mid)
        assert view is not None and [p["state"] for p in view.part_states] == ["delivered"] * 2

    async def test_permanent_failure_and_pending_reports(self, store: Store) -> None:
        """0x20 (still trying) changes nothing; 0x41 fails the message with the TP-ST."""
        to = "+447700900123"
        mid = await _sent_message(store, to, [(20, T0)])
        async with harness(store) as h:
            await h.inbox.status_report("gsm0", report(20, to, status=0x20))
            assert await _state(store, mid) == "sent"
            await h.inbox.status_report("gsm0", report(20, to, status=0x41))
        view = await store.get_message(mid)
        assert view is not None and view.state == "failed" and "0x41" in (view.error or "")
        assert h.status[0].state == "failed"

    async def test_unmatched_report_is_kept(self, store: Store) -> None:
        """A report matching no part (other modem, other number, too old) changes nothing
        and is recorded without a message id."""
        to = "+447700900123"
        mid = await _sent_message(store, to, [(30, T0 - timedelta(days=8))])
        async with harness(store) as h:
            await h.inbox.status_report("gsm0", report(30, to))
            await h.inbox.status_report("gsm1", report(30, to))
            await h.inbox.status_report("gsm0", report(30, "+447700900999"))
        assert await _state(store, mid) == "sent"
        rows = await store.fetchall("SELECT message_id FROM delivery_reports")
        assert [r[0] for r in rows] == [None, None, None]
