"""Config keys of the service features: [smtp] password_hash, [policy] quota_hard_cap,
[[users]] admin."""

from __future__ import annotations

import pytest

from smsd.config import config_from_dict
from smsd.errors import ConfigError
from smsd.passwords import hash_password

HASH = hash_password("pw", n=2**4)


class TestServiceKeys:
    def test_defaults(self) -> None:
        """No [smtp]: no Mail2SMS; billing continues beyond the package; nobody is admin."""
        cfg = config_from_dict({"users": [{"extension": "100", "name": "A"}]})
        assert not cfg.mail2sms_enabled and cfg.smtp_password_hash is None
        assert cfg.policy.quota_hard_cap is False
        assert cfg.users[0].admin is False

    def test_values(self) -> None:
        """The keys are read as written."""
        cfg = config_from_dict({
            "smtp": {"password_hash": HASH},
            "policy": {"quota_hard_cap": True},
            "users": [{"extension": "100", "name": "A", "admin": True}],
        })
        assert cfg.mail2sms_enabled and cfg.smtp_password_hash == HASH
        assert cfg.policy.quota_hard_cap and cfg.users[0].admin

    @pytest.mark.parametrize(
        ("smtp", "key", "needle"),
        [
            ({"password_hash": "plain"}, "smtp.password_hash", "scrypt$"),
            ({"password_hash": HASH, "password": "x"}, "smtp.password", "not both"),
            ({}, "smtp.password_hash", "required"),
        ],
    )
    def test_smtp_problems(self, smtp: dict[str, object], key: str, needle: str) -> None:
        """A malformed hash, two passwords, or none with Mail2SMS on: named problems."""
        with pytest.raises(ConfigError) as info:
            config_from_dict({"smtp": smtp})
        problems = dict(info.value.problems)
        assert needle in problems[key]

    def test_listener_off_keeps_the_pipe(self) -> None:
        """enabled = false with a password: no SMTP listener, Mail2SMS still configured."""
        cfg = config_from_dict({"smtp": {"enabled": False, "password_hash": HASH}})
        assert not cfg.mail2sms_enabled and cfg.smtp_password_hash == HASH
