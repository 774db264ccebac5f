"""Every SEED-NOTES sender and policy rule as one table each (issue 9): the sender-ID
characters with the seed's own examples, registered-sender countries, Italian given
names, links, verified toll-free numbers, US bulk, and two-way by the DID's country."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from smsd.config import Config, Licence, Policy
from smsd.core.conversations import Conversations
from smsd.core.directory import Directory
from smsd.core.outbox import Outbox, SubmitRequest
from smsd.core.senders import Refused, _user_senders, choose_sender
from smsd.errors import NotAllowed
from smsd.store import Store
from smsd.text import sender_id_from_name

from .conftest import make_user

pytestmark = pytest.mark.timeout(30)

GB_DID = "+447700900100"
DE_DID = "+4915112345678"
US_DID = "+12025550143"
US_TOLL_FREE = "+18005550143"


class TestSenderIdCharacters:
    @pytest.mark.parametrize(
        ("name", "max_len", "sender"),
        [
            pytest.param("Öskar Nilsson", 11, "öskar Nilss", id="seed: Ö -> ö, then cut to 11"),
            pytest.param("Jâne Doe", 11, "Jane Doe", id="seed: â -> a (nearest letter)"),
            pytest.param("Bartholomew Smith", 11, "Bartholomew", id="seed: cut at 11"),
            pytest.param("Bartholomew Smith", 10, "Bartholome", id="seed: the limit of 10"),
            pytest.param("Anna Maria Rossi", 11, "Anna Maria", id="spaces count; none at the end"),
            pytest.param("Ça$h & Co", 11, "Ça$h & Co", id="allowed punctuation kept"),
            pytest.param("Zoë O'Hara", 11, "Zoe O?Hara", id="no such letter -> nearest or ?"),
            pytest.param("ΣΩΚΡΑΤΗΣ", 11, "ΣΩKPATHΣ", id="Greek capitals in GSM stay"),
        ],
    )
    def test_table(self, name: str, max_len: int, sender: str) -> None:
        """The full name becomes a sender ID by the SEED-NOTES character and length rules."""
        assert sender_id_from_name(name, max_len) == sender


def _choose(recipient: str, *, office: str | None = GB_DID, name: str = "Alice Smith",
            licence: Licence = Licence.UC_ESSENTIAL, bulk: bool = False,
            **policy: object) -> tuple[str | None, str | None]:
    """(sender, warning) chosen for one recipient; Refused propagates."""
    pol = replace(Policy(country="GB"), **policy)  # type: ignore[arg-type]
    user = make_user(name=name, office=office, licence=licence)
    choice = choose_sender(recipient, _user_senders(user, pol), pol, bulk=bulk)
    return choice.sender, choice.warning


class TestSenderChoice:
    @pytest.mark.parametrize(
        ("case", "kwargs", "recipient", "sender", "warning"),
        [
            # Two-way: the DID is the sender when replies can come back to it.
            ("two-way GB DID", {"licence": Licence.UC_BUSINESS}, "+447700900123", GB_DID, None),
            ("one-way DE DID", {"office": DE_DID, "licence": Licence.UC_BUSINESS},
             "+447700900123", "Alice Smith", None),
            ("Essential: never two-way", {}, "+447700900123", "Alice Smith", None),
            # Registered sender countries: the DID if any, else refuse or warn.
            ("registered: DID instead", {"registered_sender_countries": ("FR",)},
             "+33612345678", GB_DID, None),
            ("registered: ID is registered",
             {"registered_sender_countries": ("FR",), "registered_senders": ("Alice Smith",)},
             "+33612345678", "Alice Smith", None),
            ("registered: warn", {"office": None, "registered_sender_countries": ("FR",),
                                  "sender_id_policy": "warn"},
             "+33612345678", "Alice Smith", "requires a registered sender ID"),
            # Italian given names towards +39.
            ("Italian name, no DID", {"office": None, "name": "Federica Neri"},
             "+393471234567", "Federica Ne", "Italian carriers"),
            ("Italian name, DID instead", {"name": "Marco Polo"}, "+393471234567", GB_DID, None),
            ("Italian name elsewhere", {"office": None, "name": "Marco Polo"},
             "+447700900123", "Marco Polo", None),
            # US: numeric only; toll-free must be verified.
            ("US destination: DID", {"office": US_DID}, "+12025550199", US_DID, None),
            ("US toll-free verified", {"office": US_TOLL_FREE,
                                       "verified_toll_free": (US_TOLL_FREE,)},
             "+12025550199", US_TOLL_FREE, None),
            # US/Canadian bulk: the numeric DID even where a name could go.
            ("US DID bulk to GB", {"office": US_DID, "bulk": True}, "+447700900123", US_DID,
             None),
            ("US DID single to GB", {"office": US_DID}, "+447700900123", "Alice Smith", None),
        ],
    )
    def test_table(self, case: str, kwargs: dict[str, object], recipient: str,
                   sender: str | None, warning: str | None) -> None:
        """The sender each SEED-NOTES rule picks, and the warning it gives."""
        got_sender, got_warning = _choose(recipient, **kwargs)  # type: ignore[arg-type]
        assert got_sender == sender, case
        if warning is None:
            assert got_warning is None, case
        else:
            assert got_warning is not None and warning in got_warning, case

    @pytest.mark.parametrize(
        ("case", "kwargs", "recipient", "reason"),
        [
            ("registered: refuse", {"office": None, "registered_sender_countries": ("FR",)},
             "+33612345678", "requires a registered sender ID"),
            ("US without a DID", {"office": None}, "+12025550199", "numeric sender"),
            ("US toll-free unverified", {"office": US_TOLL_FREE}, "+12025550199",
             "numeric sender"),
            ("bulk from unverified toll-free", {"office": US_TOLL_FREE, "bulk": True},
             "+447700900123", "numeric office number"),
        ],
    )
    def test_refusals(self, case: str, kwargs: dict[str, object], recipient: str,
                      reason: str) -> None:
        """Where no allowed sender exists the recipient is refused with the rule's reason."""
        with pytest.raises(Refused) as info:
            _choose(recipient, **kwargs)  # type: ignore[arg-type]
        assert reason in info.value.reason, case


class TestLinks:
    @pytest.mark.parametrize(
        ("policy", "text", "outcome"),
        [
            ("allow", "see https://example.com/x", "queued"),
            ("warn", "see https://example.com/x", "warned"),
            ("warn", "see you at ten", "queued"),
            ("refuse", "order at www.example.shop", "refused"),
            ("refuse", "bit.ly/3abc is our page", "refused"),
            ("refuse", "no link, just 3.5 MB", "queued"),
        ],
    )
    async def test_table(self, store: Store, policy: str, text: str, outcome: str) -> None:
        """[policy] link_policy allows, warns about or refuses messages with links."""
        outbox = Outbox(store, Policy(country="GB", link_policy=policy))
        req = SubmitRequest(["+447700900123"], text, user=make_user())
        if outcome == "refused":
            with pytest.raises(NotAllowed, match="link"):
                await outbox.submit(req)
            return
        res = await outbox.submit(req)
        assert len(res.ids) == 1
        assert any("link" in w for w in res.warnings) == (outcome == "warned")


class TestTwoWayByCountry:
    @pytest.mark.parametrize(
        ("did", "pbx_country", "two_way", "allowed"),
        [
            ("+447700900100", "GB", True, True),
            ("+12025550143", "GB", True, True),  # a US DID on a UK PBX
            ("+3225551234", "BE", True, True),
            ("+6561234567", "SG", True, True),
            ("+4915112345678", "GB", True, False),  # Germany: outbound-only
            ("+33612345678", "GB", True, False),  # France: outbound-only
            ("+447700900100", "DE", True, False),  # the PBX's own country must be two-way
            ("+447700900100", "GB", False, False),  # switched off in config
        ],
    )
    async def test_table(self, store: Store, tmp_path: Path, did: str, pbx_country: str,
                         two_way: bool, allowed: bool) -> None:
        """Two-way SMS (conversations) only on DIDs of the two-way countries, on a PBX in
        one of them, with two-way switched on."""
        cfg = Config(state_dir=tmp_path, database=tmp_path / "smsd.sqlite3",
                     policy=Policy(country=pbx_country, two_way=two_way))
        conv = Conversations(store, Directory(cfg), cfg)
        assert conv.two_way_allowed(did) is allowed
