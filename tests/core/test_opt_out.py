"""STOP/START opt-out per company number (issue 9): an inbound STOP refuses outbound SMS
from that DID with a clear error, START restores it, other DIDs are not affected."""

from __future__ import annotations

import pytest

from smsd.config import Licence, Policy
from smsd.core.outbox import Outbox, SubmitRequest
from smsd.store import Store
from smsd.store.optouts import add_opt_out

from .conftest import make_user
from .inbox_harness import OWN, harness

pytestmark = pytest.mark.timeout(20)

CUSTOMER = "+447700900777"
OTHER_DID = "+447700900002"
# Two users of the same PBX on two DIDs; UC-Business, so replies come back to the DID.
ALICE = make_user("alice", office=OWN, licence=Licence.UC_BUSINESS)
BOB = make_user("bob", name="Bob Jones", office=OTHER_DID, licence=Licence.UC_BUSINESS)


class TestOptOut:
    async def test_stop_refuses_then_start_restores(self, store: Store) -> None:
        """Inbound STOP to Alice's DID: Alice's SMS to that number is refused with a reason
        naming the DID and the way back; after START the same SMS is queued."""
        outbox = Outbox(store, Policy(country="GB"))
        async with harness(store) as h:
            await h.inbox.receive(CUSTOMER, OWN, "STOP", gateway="classound")
            res = await outbox.submit(SubmitRequest([CUSTOMER], "hello", user=ALICE))
            assert res.ids == []
            [refusal] = res.refused
            assert refusal.number == CUSTOMER
            assert refusal.reason == (
                f"the recipient opted out of SMS from {OWN} (texted STOP); "
                "they can text START to opt back in"
            )
            await h.inbox.receive(CUSTOMER, OWN, "START", gateway="classound")
            res = await outbox.submit(SubmitRequest([CUSTOMER], "hello", user=ALICE))
            assert len(res.ids) == 1 and res.refused == []

    async def test_an_admin_added_opt_out_says_so(self, store: Store) -> None:
        """An opt-out an admin added by hand (the customer asked by phone) refuses the SMS
        without claiming the customer texted STOP; a STOPALL by text names that word."""
        outbox = Outbox(store, Policy(country="GB"))
        await add_opt_out(store, CUSTOMER, "", by="admin")
        res = await outbox.submit(SubmitRequest([CUSTOMER], "hello", user=ALICE))
        [refusal] = res.refused
        assert refusal.reason == (
            "the recipient opted out of SMS from this PBX (an administrator added the "
            "opt-out); they can text START to opt back in"
        )
        async with harness(store) as h:
            await h.inbox.receive(CUSTOMER, OWN, "STOPALL", gateway="classound")
        res = await outbox.submit(SubmitRequest([CUSTOMER], "hello", user=ALICE))
        [refusal] = res.refused
        assert refusal.reason == (
            f"the recipient opted out of SMS from {OWN} (texted STOPALL); "
            "they can text START to opt back in"
        )

    @pytest.mark.parametrize("word", ["STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"])
    async def test_stop_is_per_company_number(self, store: Store, word: str) -> None:
        """A STOP synonym to one DID opts out of that DID only: Bob on another DID still sends;
        UNSTOP to the DID opts back in."""
        outbox = Outbox(store, Policy(country="GB"))
        async with harness(store) as h:
            await h.inbox.receive(CUSTOMER, OWN, word, gateway="classound")
            assert (await outbox.submit(SubmitRequest([CUSTOMER], "a", user=ALICE))).ids == []
            assert len((await outbox.submit(SubmitRequest([CUSTOMER], "b", user=BOB))).ids) == 1
            await h.inbox.receive(CUSTOMER, OWN, "unstop", gateway="classound")
            assert len((await outbox.submit(SubmitRequest([CUSTOMER], "c", user=ALICE))).ids) == 1

    async def test_stop_to_an_unknown_did_holds_for_every_sender(self, store: Store) -> None:
        """A STOP whose DID is unknown (a modem without its own number) refuses every sender,
        and a message with no sender DID is refused after any STOP."""
        outbox = Outbox(store, Policy(country="GB"))
        async with harness(store) as h:
            await h.inbox.receive(CUSTOMER, None, "STOP", gateway="gsm")
            for user in (ALICE, BOB):
                res = await outbox.submit(SubmitRequest([CUSTOMER], "x", user=user))
                assert res.ids == [] and "SMS from this PBX" in res.refused[0].reason
            await h.inbox.receive(CUSTOMER, OWN, "START", gateway="classound")
            assert len((await outbox.submit(SubmitRequest([CUSTOMER], "y", user=ALICE))).ids) == 1
            await h.inbox.receive(CUSTOMER, OWN, "STOP", gateway="classound")
            res = await outbox.submit(SubmitRequest([CUSTOMER], "z"))  # no user: no DID
            assert res.ids == [] and OWN in res.refused[0].reason
