"""The config loader: every problem named by key and reason, all at once."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from smsd.config import Licence, Listen, config_from_dict, load_config, parse_listen
from smsd.core.directory import Directory
from smsd.errors import ConfigError
from smsd.passwords import hash_password, verify
from smsd.services import build_services
from tests.asterisk.conftest import CUSTOMER, DID, add_inbound, make_config
from tests.backend import open_store
from tests.core.polling import eventually
from tests.fakes.asterisk_ami import FakeAmi

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "smsd.toml"


def problems_of(data: dict[str, object]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    return dict(info.value.problems)


class TestDefaults:
    def test_empty_file_gives_loopback_defaults(self) -> None:
        """An empty config is valid and every listener stays on loopback (invariant 5)."""
        cfg = config_from_dict({})
        assert cfg.http == Listen("127.0.0.1", 8080)
        assert cfg.agi == Listen("127.0.0.1", 4573)
        assert cfg.smtp == Listen("127.0.0.1", 2525)
        assert cfg.routing == ("curl", "gsm", "classound")
        assert cfg.policy.monthly_package == 200
        assert cfg.policy.sender_id_max == 11
        assert cfg.database == cfg.state_dir / "smsd.sqlite3"
        assert not cfg.ami.enabled

    def test_example_config_is_valid(self) -> None:
        """The shipped, commented examples/smsd.toml loads without a problem."""
        cfg = load_config(EXAMPLE)
        assert cfg.users and cfg.gsm is not None and cfg.gsm.modems
        assert cfg.call_groups[0].members


class TestProblems:
    def test_several_problems_reported_at_once(self) -> None:
        """One load lists every bad key with its reason, not just the first."""
        probs = problems_of(
            {
                "prot": 8080,
                "http": {"port": 70000},
                "policy": {"timezone": "Mars/Olympus", "link_policy": "maybe"},
                "users": [{"extension": "100", "licence": "gold", "office_number": "0123"}],
            }
        )
        assert probs["prot"] == "unknown key"
        assert "0..65535" in probs["http.port"]
        assert "IANA" in probs["policy.timezone"]
        assert "allow, warn, refuse" in probs["policy.link_policy"]
        assert probs["users[0].name"] == "is required"
        assert "uc-business" in probs["users[0].licence"]
        assert "E.164" in probs["users[0].office_number"]

    def test_error_message_names_file_and_key(self, tmp_path: Path) -> None:
        """The ConfigError text names the file, the key and why."""
        f = tmp_path / "smsd.toml"
        f.write_text('[http]\nport = "eighty"\n')
        with pytest.raises(ConfigError) as info:
            load_config(f)
        assert str(f) in str(info.value)
        assert "http.port: must be an integer" in str(info.value)

    def test_toml_syntax_error(self, tmp_path: Path) -> None:
        """A TOML syntax error is a ConfigError, not a traceback."""
        f = tmp_path / "smsd.toml"
        f.write_text("[http\n")
        with pytest.raises(ConfigError) as info:
            load_config(f)
        assert info.value.problems[0][0] == "(syntax)"

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is reported with its path."""
        with pytest.raises(ConfigError) as info:
            load_config(tmp_path / "nope.toml")
        assert "cannot read" in info.value.problems[0][1]

    def test_modem_problems_keyed_by_index_and_pin_not_echoed(self) -> None:
        """Modem keys carry their index; a bad PIN is reported without its value."""
        probs = problems_of(
            {
                "gateways": {
                    "gsm": {
                        "modems": [
                            {"path": "/dev/ttyUSB0", "pin": "12x4", "profile": "nokia"},
                            {"id": "gsm0", "baudrate": 0},
                        ]
                    }
                }
            }
        )
        assert "12x4" not in probs["gateways.gsm.modems[0].pin"]
        assert "generic" in probs["gateways.gsm.modems[0].profile"]
        assert probs["gateways.gsm.modems[1].path"] == "is required"
        assert "300" in probs["gateways.gsm.modems[1].baudrate"]
        assert "used twice" in probs["gateways.gsm.modems[1].id"]

    def test_secret_of_the_wrong_type_is_not_echoed(self) -> None:
        """An unquoted PIN or secret (a TOML integer) is refused by type, never by value."""
        data = {
            "gateways": {"gsm": {"modems": [{"path": "/dev/ttyUSB0", "pin": 4711}]}},
            "ami": {"username": "smsd", "secret": 90210},
            "smtp": {"password": 31337},
        }
        with pytest.raises(ConfigError) as info:
            config_from_dict(data)
        text = str(info.value)
        for key, secret in (
            ("gateways.gsm.modems[0].pin", "4711"),
            ("ami.secret", "90210"),
            ("smtp.password", "31337"),
        ):
            assert (key, "must be a string, got int") in info.value.problems
            assert secret not in text
        # Other keys still show the value that is wrong, which helps the admin.
        assert "8080" in problems_of({"http": {"host": 8080}})["http.host"]

    def test_users_and_groups_cross_checked(self) -> None:
        """Duplicate extensions and call-group members that are not users are refused."""
        probs = problems_of(
            {
                "users": [
                    {"extension": "100", "name": "A"},
                    {"extension": "100", "name": "B", "username": "b"},
                ],
                "call_groups": [{"name": "Sales", "number": "+15551230000", "members": ["999"]}],
            }
        )
        assert "used twice" in probs["users[1].extension"]
        assert "'999'" in probs["call_groups[0].members[0]"]

    def test_ussd_users_must_be_usernames(self) -> None:
        """[gateways.gsm] ussd_users lists usernames of [[users]]; a typo is refused
        instead of silently locking the intended user out; a listed user is kept."""
        gsm = {"ussd_users": ["alice", "bob"], "modems": [{"id": "gsm0", "path": "/dev/ttyUSB2"}]}
        probs = problems_of({"users": [{"extension": "100", "name": "A", "username": "alice"}],
                             "gateways": {"gsm": gsm}})
        assert probs == {"gateways.gsm.ussd_users[1]":
                         "'bob' is not the username of a [[users]] entry"}
        gsm["ussd_users"] = ["alice"]
        cfg = config_from_dict({"users": [{"extension": "100", "name": "A", "username": "alice"}],
                                "gateways": {"gsm": gsm}})
        assert cfg.gsm is not None and cfg.gsm.ussd_users == ("alice",)

    def test_bad_password_hash_and_routing(self) -> None:
        """A malformed password hash and an unknown gateway in routing are named."""
        probs = problems_of(
            {
                "users": [{"extension": "100", "name": "A", "password_hash": "plain"}],
                "routing": ["gsm", "pigeon", "gsm"],
            }
        )
        assert "smsd passwd" in probs["users[0].password_hash"]
        assert "pigeon" in probs["routing[1]"]
        assert "twice" in probs["routing[2]"]

    def test_ami_requires_credentials(self, tmp_path: Path) -> None:
        """An enabled [ami] without username/secret, or an unreadable secret_file, is refused."""
        probs = problems_of({"ami": {}})
        assert "ami.username" in probs and "ami.secret" in probs
        probs = problems_of({"ami": {"username": "smsd", "secret_file": str(tmp_path / "x")}})
        assert "cannot read" in probs["ami.secret_file"]

    def test_ami_from_host_and_relogin(self) -> None:
        """[ami] message_from_host defaults to none (Asterisk fills the From host) and
        must be a host; relogin_interval_s defaults to 60 and is at least 1 (issue 16)."""
        cfg = config_from_dict({"ami": {"username": "smsd", "secret": "s"}})
        assert cfg.ami.message_from_host is None and cfg.ami.relogin_interval_s == 60.0
        cfg = config_from_dict({"ami": {"username": "smsd", "secret": "s",
                                        "message_from_host": "pbx.example.com",
                                        "relogin_interval_s": 5}})
        assert cfg.ami.message_from_host == "pbx.example.com"
        assert cfg.ami.relogin_interval_s == 5.0
        probs = problems_of({"ami": {"username": "smsd", "secret": "s",
                                     "message_from_host": "a b>", "relogin_interval_s": 0}})
        assert "host name" in probs["ami.message_from_host"]
        assert "ami.relogin_interval_s" in probs


class TestTimings:
    def test_defaults(self) -> None:
        """Without the keys, the timings are the built-in ones (24 h, 300 s, 15 s)."""
        cfg = config_from_dict({"ami": {"username": "smsd", "secret": "s"}})
        assert cfg.policy.expire_after_hours == 24.0
        assert cfg.policy.kite_sms_claim_timeout_s == 15.0
        assert cfg.ami.auth_retry_s == 300.0

    def test_values(self) -> None:
        """The keys are read from [policy] and [ami]; 0 hours (never expire) is allowed."""
        cfg = config_from_dict(
            {
                "policy": {"expire_after_hours": 0, "kite_sms_claim_timeout_s": 2.5},
                "ami": {"username": "smsd", "secret": "s", "auth_retry_s": 60},
            }
        )
        assert cfg.policy.expire_after_hours == 0.0
        assert cfg.policy.kite_sms_claim_timeout_s == 2.5
        assert cfg.ami.auth_retry_s == 60.0

    def test_example_sets_them(self) -> None:
        """The shipped example documents the keys with their default values."""
        cfg = load_config(EXAMPLE)
        assert cfg.policy.expire_after_hours == 24.0
        assert cfg.policy.kite_sms_claim_timeout_s == 15.0
        assert cfg.ami.auth_retry_s == 300.0

    def test_bad_values_named_with_reason(self) -> None:
        """Negative, non-finite, too large, too short or non-numeric timings are refused."""
        probs = problems_of(
            {
                "policy": {"expire_after_hours": -1, "kite_sms_claim_timeout_s": 0.5},
                "ami": {"username": "smsd", "secret": "s", "auth_retry_s": "soon"},
            }
        )
        assert probs["policy.expire_after_hours"] == "must be at least 0, got -1"
        assert probs["policy.kite_sms_claim_timeout_s"] == "must be at least 1, got 0.5"
        assert probs["ami.auth_retry_s"] == "must be a number, got str 'soon'"
        probs = problems_of(
            {
                "policy": {"expire_after_hours": float("inf"), "kite_sms_claim_timeout_s": True},
                "ami": {"username": "smsd", "secret": "s", "auth_retry_s": 0},
            }
        )
        assert probs["policy.expire_after_hours"] == "must be a finite number, got inf"
        assert probs["policy.kite_sms_claim_timeout_s"] == "must be a number, not a boolean"
        assert probs["ami.auth_retry_s"] == "must be at least 1, got 0"
        probs = problems_of({"policy": {"expire_after_hours": 100000, "fee_per_sms": float("nan")}})
        assert probs["policy.expire_after_hours"] == "must be at most 8784, got 100000"
        assert probs["policy.fee_per_sms"] == "must be a finite number, got nan"


class TestValues:
    def test_users_groups_gateways(self, tmp_path: Path) -> None:
        """A full config maps onto typed values; secrets come from files."""
        (tmp_path / "ami.secret").write_text("s3cret\n")
        cfg = load_config_text(
            tmp_path,
            """
            state_dir = "state"
            [[users]]
            extension = 100
            name = "Alice Example"
            licence = "UC-Business"
            office_number = "+447700900001"
            [[call_groups]]
            name = "Support"
            number = "+447700900001"
            members = ["100"]
            [gateways.curl]
            url = "http://127.0.0.1:9/send"
            headers = { "X-Key" = "k" }
            [[gateways.gsm.modems]]
            path = "/dev/ttyUSB2"
            own_number = "+447700900001"
            [ami]
            username = "smsd"
            secret_file = "ami.secret"
            """,
        )
        u = cfg.users[0]
        assert (u.extension, u.username, u.endpoint) == ("100", "100", "pjsip:100")
        assert u.licence is Licence.UC_BUSINESS and u.licence.can_two_way
        assert cfg.state_dir == tmp_path / "state"
        assert cfg.curl is not None and cfg.curl.headers == (("X-Key", "k"),)
        assert cfg.gsm is not None and cfg.gsm.modems[0].id == "gsm0"
        assert cfg.ami.enabled and cfg.ami.secret == "s3cret"
        assert "s3cret" not in repr(cfg)

    def test_licence_rights(self) -> None:
        """UC-Essential may send; two-way needs UC-Business or above."""
        assert not Licence.NONE.can_send
        assert Licence.UC_ESSENTIAL.can_send and not Licence.UC_ESSENTIAL.can_two_way
        assert Licence.UC_PREMIUM.can_two_way

    def test_parse_listen(self) -> None:
        """HOST:PORT and [v6]:PORT parse; a missing port is an error."""
        assert parse_listen("127.0.0.1:0") == Listen("127.0.0.1", 0)
        assert parse_listen("[::1]:8080") == Listen("::1", 8080)
        with pytest.raises(ValueError):
            parse_listen("127.0.0.1")


class TestPasswords:
    def test_round_trip(self) -> None:
        """A hash verifies its password and nothing else; a garbled hash never verifies."""
        h = hash_password("demo", n=2**4)
        assert h.startswith("scrypt$16$8$1$")
        assert verify("demo", h)
        assert not verify("Demo", h)
        assert not verify("demo", h[:-4] + "AAAA")
        assert not verify("demo", "scrypt$x")


def load_config_text(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    import textwrap

    f = tmp_path / "smsd.toml"
    f.write_text(textwrap.dedent(text))
    return load_config(f)


@pytest.mark.timeout(30)
class TestWiring:
    """The timing keys reach the live objects that services.build_services makes."""

    async def test_ami_auth_retry_from_config(self, tmp_path: Path) -> None:
        """[ami] auth_retry_s is the wait after Asterisk refuses the login."""
        fake = await FakeAmi(secret="the-right-one").start()
        base = make_config(tmp_path, ami_port=fake.port)
        cfg = dataclasses.replace(base, ami=dataclasses.replace(base.ami, auth_retry_s=7.0))
        store = await open_store(cfg)
        services = await build_services(cfg, store, Directory(cfg))
        assert services.ami is not None
        task = asyncio.create_task(services.ami.run())
        try:
            await eventually(lambda: services.ami is not None and services.ami.next_retry_s)
            assert services.ami.next_retry_s == 7.0
            assert not services.ami.connected
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await fake.stop()
            await store.close()

    async def test_kite_sms_claim_timeout_from_config(self, tmp_path: Path) -> None:
        """[policy] kite_sms_claim_timeout_s bounds the wait for the dialplan's claim."""
        fake = await FakeAmi().start()
        probe = await FakeAmi().start()
        dead_port = probe.port
        await probe.stop()
        # Answered, but the AGI server is unreachable: nobody ever claims.
        fake.dialplan.setdefault("kite-sms", {})[DID] = [
            "Answer()", f"AGI(agi://127.0.0.1:{dead_port}/kite-sms?members=100)", "Hangup()"]
        base = make_config(tmp_path, ami_port=fake.port)
        cfg = dataclasses.replace(
            base, policy=dataclasses.replace(base.policy, kite_sms_claim_timeout_s=1.0))
        store = await open_store(cfg)
        services = await build_services(cfg, store, Directory(cfg))
        assert services.ami is not None and services.procedure is not None
        task = asyncio.create_task(services.ami.run())
        try:
            assert await services.ami.wait_connected(10)
            sms = await add_inbound(store, CUSTOMER, DID, "anyone?")
            with capture_logs() as logs:
                assert await services.procedure.route(sms.id) == "routed"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await fake.stop()
            await store.close()
        waits = [e for e in logs if e["event"] == "kite_sms.claim_timeout"]
        assert [e["timeout_s"] for e in waits] == [1.0]
