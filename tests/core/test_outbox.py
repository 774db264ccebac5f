"""Outbox.submit: validation, refusals naming numbers, sender-ID choice, quota, commit."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from smsd.config import Licence, Policy
from smsd.core.outbox import Outbox, SubmitRequest
from smsd.errors import MessageTooLong, NotAllowed, ValidationError
from smsd.store import Store

from .conftest import make_user
from .store_faults import refuse_writes

pytestmark = pytest.mark.timeout(30)

NOW = datetime(2026, 11, 25, 13, 0, tzinfo=UTC)


def _outbox(store: Store, policy: Policy, wakes: list[int] | None = None) -> Outbox:
    def wake() -> None:
        if wakes is not None:
            wakes.append(1)

    return Outbox(store, policy, wake=wake, clock=lambda: NOW)


class TestValidation:
    async def test_bad_numbers_are_named_and_good_ones_go(
        self, store: Store, policy: Policy
    ) -> None:
        """Each bad number is refused with its own reason; the valid one is committed."""
        ob = _outbox(store, policy)
        res = await ob.submit(
            SubmitRequest(["+447700900123", "07700900123", "+44abc", "111"], "hi",
                          user=make_user())
        )
        assert len(res.ids) == 1
        assert [r.number for r in res.refused] == ["07700900123", "+44abc", "111"]
        assert all(r.reason for r in res.refused)
        assert "country code" in res.refused[0].reason

    async def test_nothing_valid_stores_nothing(self, store: Store, policy: Policy) -> None:
        """All numbers bad: no ids, every one refused, no row written."""
        res = await _outbox(store, policy).submit(SubmitRequest(["12", "x"], "hi"))
        assert res.ids == [] and len(res.refused) == 2
        assert (await store.queue_depth())["queued"] == 0

    async def test_empty_recipients_and_text(self, store: Store, policy: Policy) -> None:
        """No number at all, or an empty text, is a ValidationError."""
        ob = _outbox(store, policy)
        with pytest.raises(ValidationError, match="empty"):
            await ob.submit(SubmitRequest([], "hi"))
        with pytest.raises(ValidationError, match="empty"):
            await ob.submit(SubmitRequest(["+447700900123"], "   "))

    async def test_originate_limit_301_refused_300_accepted(
        self, store: Store, policy: Policy
    ) -> None:
        """With max_chars=300 (originate) 301 characters are refused, 300 accepted."""
        ob = _outbox(store, policy)
        with pytest.raises(MessageTooLong) as exc:
            await ob.submit(SubmitRequest(["+447700900123"], "a" * 301, max_chars=300))
        assert exc.value.length == 301 and exc.value.limit == 300
        res = await ob.submit(SubmitRequest(["+447700900123"], "a" * 300, max_chars=300))
        assert len(res.ids) == 1
        view = await store.get_message(res.ids[0])
        assert view is not None and view.parts == 2 and view.encoding == "gsm7"

    async def test_default_limit_is_670(self, store: Store, policy: Policy) -> None:
        """Elsewhere the limit is 670 characters."""
        with pytest.raises(MessageTooLong):
            await _outbox(store, policy).submit(SubmitRequest(["+447700900123"], "é" * 671))

    async def test_licence_none_refused(self, store: Store, policy: Policy) -> None:
        """A user without UC-Essential or higher may not send; nothing is stored."""
        user = make_user(licence=Licence.NONE)
        with pytest.raises(NotAllowed, match="licence"):
            await _outbox(store, policy).submit(SubmitRequest(["+447700900123"], "hi", user=user))
        assert (await store.queue_depth())["queued"] == 0

    async def test_essential_may_send(self, store: Store, policy: Policy) -> None:
        """UC-Essential is enough to send."""
        user = make_user(licence=Licence.UC_ESSENTIAL)
        res = await _outbox(store, policy).submit(
            SubmitRequest(["+447700900123"], "hi", user=user)
        )
        assert len(res.ids) == 1

    async def test_link_policy(self, store: Store, policy: Policy) -> None:
        """Links: refuse raises NotAllowed, warn accepts with a warning, allow is silent."""
        text = "see https://example.com/x"
        refuse = dataclasses.replace(policy, link_policy="refuse")
        with pytest.raises(NotAllowed, match="link"):
            await _outbox(store, refuse).submit(SubmitRequest(["+447700900123"], text))
        warn = dataclasses.replace(policy, link_policy="warn")
        res = await _outbox(store, warn).submit(SubmitRequest(["+447700900123"], text))
        assert len(res.ids) == 1 and any("link" in w for w in res.warnings)
        res = await _outbox(store, policy).submit(SubmitRequest(["+447700900123"], text))
        assert res.warnings == []

    async def test_opted_out_and_blocked_refused(self, store: Store, policy: Policy) -> None:
        """A number that texted STOP, or is blocklisted, is refused by name."""
        async with store.transaction() as db:
            await db.execute(
                "INSERT INTO opt_outs (number, keyword, created_at) VALUES "
                "('+447700900200', 'STOP', '2026-11-25 13:00Z')"
            )
        await store.block("+447700900201", by="admin", reason="abuse")
        res = await _outbox(store, policy).submit(
            SubmitRequest(["+447700900200", "+447700900201", "+447700900202"], "hi")
        )
        assert len(res.ids) == 1
        reasons = {r.number: r.reason for r in res.refused}
        assert "STOP" in reasons["+447700900200"]
        assert "blocklist" in reasons["+447700900201"]

    async def test_duplicates_collapse(self, store: Store, policy: Policy) -> None:
        """The same number written twice (even differently) gets one message."""
        res = await _outbox(store, policy).submit(
            SubmitRequest(["+44 7700 900123", "+447700900123"], "hi")
        )
        assert len(res.ids) == 1


class TestSenderId:
    async def _sender(self, store: Store, policy: Policy, user_kw: dict[str, object],
                      to: str) -> tuple[str | None, list[str], list[str]]:
        res = await _outbox(store, policy).submit(
            SubmitRequest([to], "hi", user=make_user(**user_kw))  # type: ignore[arg-type]
        )
        if not res.ids:
            return None, [r.reason for r in res.refused], res.warnings
        view = await store.get_message(res.ids[0])
        assert view is not None
        return view.sender, [], res.warnings

    async def test_two_way_did_is_the_sender(self, store: Store, policy: Policy) -> None:
        """A UK DID (two-way country, PBX in GB, Business licence) sends as the DID."""
        sender, _, _ = await self._sender(store, policy, {}, "+33612345678")
        assert sender == "+447700900100"

    async def test_one_way_did_uses_the_name(self, store: Store, policy: Policy) -> None:
        """A German DID is outbound-only: the sender ID comes from the full name (11 max)."""
        sender, _, _ = await self._sender(
            store, policy, {"office": "+4930123456789", "name": "Anna Maria Jones"},
            "+33612345678",
        )
        assert sender == "Anna Maria"  # cut at 11 ("Anna Maria "), trailing space dropped

    async def test_essential_licence_never_two_way(self, store: Store, policy: Policy) -> None:
        """UC-Essential cannot use two-way SMS, so even a UK DID gives the name as sender."""
        sender, _, _ = await self._sender(
            store, policy, {"licence": Licence.UC_ESSENTIAL}, "+33612345678"
        )
        assert sender == "Alice Smith"

    async def test_us_destination_needs_numeric_did(self, store: Store, policy: Policy) -> None:
        """US destinations: no DID means refusal (never an alphanumeric sender)."""
        sender, refusals, _ = await self._sender(store, policy, {"office": None}, "+12025550123")
        assert sender is None and "numeric" in refusals[0]
        sender, _, _ = await self._sender(
            store, policy, {"office": "+4930123456789"}, "+12025550123"
        )
        assert sender == "+4930123456789"

    async def test_unverified_toll_free_is_not_a_sender(
        self, store: Store, policy: Policy
    ) -> None:
        """A US toll-free DID must be verified in config before it may send."""
        kw: dict[str, object] = {"office": "+18005550123"}
        _, refusals, _ = await self._sender(store, policy, kw, "+12025550123")
        assert refusals
        ok = dataclasses.replace(policy, verified_toll_free=("+18005550123",))
        sender, _, _ = await self._sender(store, ok, kw, "+12025550123")
        assert sender == "+18005550123"

    async def test_registered_sender_country(self, store: Store, policy: Policy) -> None:
        """Alphanumeric to a registered-sender country: refuse or warn per policy."""
        pol = dataclasses.replace(policy, registered_sender_countries=("FR",))
        kw: dict[str, object] = {"office": None}
        _, refusals, _ = await self._sender(store, pol, kw, "+33612345678")
        assert "registered" in refusals[0]
        warn = dataclasses.replace(pol, sender_id_policy="warn")
        sender, _, warnings = await self._sender(store, warn, kw, "+33612345678")
        assert sender == "Alice Smith" and any("registered" in w for w in warnings)
        reg = dataclasses.replace(pol, registered_senders=("Alice Smith",))
        sender, _, warnings = await self._sender(store, reg, kw, "+33612345678")
        assert sender == "Alice Smith" and warnings == []

    async def test_italian_given_name_warns(self, store: Store, policy: Policy) -> None:
        """An Italian given name as sender towards +39 is accepted with a warning."""
        sender, _, warnings = await self._sender(
            store, policy, {"office": None, "name": "Federica Rossi"}, "+393471234567"
        )
        assert sender == "Federica Ro"
        assert any("Italian" in w for w in warnings)
        _, _, warnings = await self._sender(
            store, policy, {"office": None, "name": "Federica Rossi"}, "+33612345678"
        )
        assert warnings == []

    async def test_explicit_sender_and_system(self, store: Store, policy: Policy) -> None:
        """A conversation reply goes out from its DID; a system message has no sender."""
        ob = _outbox(store, policy)
        res = await ob.submit(
            SubmitRequest(["+33612345678"], "hi", user=make_user(), sender="+447700900555",
                          origin="conversation", conversation_id=7)
        )
        view = await store.get_message(res.ids[0])
        assert view is not None and view.sender == "+447700900555"
        assert view.conversation_id == 7 and view.origin == "conversation"
        res = await ob.submit(SubmitRequest(["+33612345678"], "hi"))
        view = await store.get_message(res.ids[0])
        assert view is not None and view.sender is None and view.user is None
        with pytest.raises(ValidationError, match="sender"):
            await ob.submit(SubmitRequest(["+33612345678"], "hi", sender="Bob"))


class TestCommit:
    async def test_committed_before_return_and_durable(self, db_path: Path,
                                                       policy: Policy) -> None:
        """Ids returned by submit are on disk: a fresh Store sees them queued, with parts."""
        wakes: list[int] = []
        s = await Store.open(db_path)
        res = await _outbox(s, policy, wakes).submit(
            SubmitRequest(["+447700900123", "+447700900124"], "x" * 200, user=make_user())
        )
        await s.close()
        assert wakes == [1]
        s = await Store.open(db_path)
        try:
            for i in res.ids:
                view = await s.get_message(i)
                assert view is not None and view.state == "queued"
                assert [p["part"] for p in view.part_states] == [1, 2]
                assert view.history[0]["state"] == "queued"
        finally:
            await s.close()

    async def test_postponed_is_scheduled(self, store: Store, policy: Policy) -> None:
        """send_at in the future stores 'scheduled' with that time; naive times are refused."""
        ob = _outbox(store, policy)
        later = NOW + timedelta(hours=2)
        res = await ob.submit(SubmitRequest(["+447700900123"], "hi", send_at=later))
        view = await store.get_message(res.ids[0])
        assert view is not None and view.state == "scheduled" and view.send_at == later
        with pytest.raises(ValidationError, match="time zone"):
            await ob.submit(SubmitRequest(["+447700900123"], "hi",
                                          send_at=datetime(2026, 12, 1, 10, 0)))

    async def test_quota_counts_parts_beyond_package(self, store: Store) -> None:
        """Parts beyond the monthly package are billable; the next month starts again."""
        pol = Policy(country="GB", monthly_package=3)
        ob = _outbox(store, pol)
        user = make_user()
        res = await ob.submit(SubmitRequest(["+447700900123", "+447700900124"], "x" * 200,
                                            user=user))
        rows = await store.fetchall(
            "SELECT cost_billable FROM messages WHERE id IN (?, ?) ORDER BY id", res.ids
        )
        assert [r[0] for r in rows] == [0, 1]  # 2 parts each: 2 included, then 1 of 2 billable
        nxt = Outbox(store, pol, clock=lambda: NOW + timedelta(days=10))
        res = await nxt.submit(SubmitRequest(["+447700900123"], "x", user=user))
        row = await store.fetchone("SELECT cost_billable FROM messages WHERE id = ?", res.ids)
        assert row is not None and row[0] == 0

    async def test_disk_full_acknowledges_nothing(self, store: Store, policy: Policy) -> None:
        """If the database cannot commit (disk full; a server refusing writes), submit
        raises StoreError and no id exists afterwards."""
        from smsd.store import StoreError

        await refuse_writes(store)
        numbers = [f"+4477009{i:05d}" for i in range(3000)]
        with pytest.raises(StoreError, match=r"full|read-only"):
            await _outbox(store, policy).submit(SubmitRequest(numbers, "y" * 600))
        assert sum((await store.queue_depth()).values()) == 0

    async def test_ten_thousand_recipients_one_call(self, store: Store, policy: Policy) -> None:
        """10,000 recipients are committed by one submit with consecutive ids."""
        numbers = [f"+4477009{i:05d}" for i in range(10_000)]
        res = await _outbox(store, policy).submit(SubmitRequest(numbers, "bulk"))
        assert len(res.ids) == 10_000 and res.refused == []
        assert res.ids == list(range(res.ids[0], res.ids[0] + 10_000))
        assert (await store.queue_depth())["queued"] == 10_000

    @pytest.mark.sqlite_only
    async def test_readonly_database_acknowledges_nothing(self, store: Store, db_path: Path,
                                                          policy: Policy) -> None:
        """On a database that cannot be written submit raises StoreError naming the file."""
        from smsd.store import StoreError

        ro = await Store.open(db_path, readonly=True)
        try:
            with pytest.raises(StoreError, match="read-only") as exc:
                await _outbox(ro, policy).submit(SubmitRequest(["+447700900123"], "hi"))
            assert str(db_path) in str(exc.value)
        finally:
            await ro.close()
        assert sum((await store.queue_depth()).values()) == 0
