"""[gateways.classound] keys: defaults, and every problem named by key."""

from __future__ import annotations

from pathlib import Path

import pytest

from smsd.config import config_from_dict
from smsd.errors import ConfigError


def trunk(**kw: object) -> dict[str, object]:
    return {"state_dir": "/tmp/x", "gateways": {"classound": kw}}


def test_sip_defaults() -> None:
    """A minimal sip trunk: UDP, RFC T1, no registration, carrier addresses from sip_host."""
    cfg = config_from_dict(trunk(mode="sip", sip_host="127.0.0.1")).classound
    assert cfg is not None
    assert (cfg.sip_transport, cfg.sip_t1_ms, cfg.sip_register, cfg.sip_carrier_addresses) == (
        "udp", 500, False, ())


def test_secrets_from_files(tmp_path: Path) -> None:
    """secret_file and webhook_secret_file are read relative to the config file."""
    (tmp_path / "tok").write_text("t0ken\n")
    (tmp_path / "hook").write_text("h00k\n")
    cfg = config_from_dict(
        trunk(mode="http", url="https://api.example.net/v1", secret_file="tok",
              webhook_secret_file="hook"),
        file=str(tmp_path / "smsd.toml"),
    ).classound
    assert cfg is not None and (cfg.secret, cfg.webhook_secret) == ("t0ken", "h00k")
    assert "t0ken" not in repr(cfg) and "h00k" not in repr(cfg)


@pytest.mark.parametrize(("section", "key"), [
    (dict(mode="sip"), "sip_host"),
    (dict(mode="http"), "url"),
    (dict(mode="http", url="ftp://x"), "url"),
    (dict(mode="sip", sip_host="h", sip_carrier_addresses=["carrier.example"]),
     "sip_carrier_addresses[0]"),
    (dict(mode="sip", sip_host="h", sip_register=True), "sip_register"),
    (dict(mode="sip", sip_host="h", sip_t1_ms=5), "sip_t1_ms"),
    (dict(mode="sip", sip_host="h", sip_transport="sctp"), "sip_transport"),
    (dict(mode="sip", sip_host="h", sip_register_expires=10), "sip_register_expires"),
    (dict(mode="sip", sip_host="h", sip_transport="tls", sip_tls_ca_file="/nonexistent.pem"),
     "sip_tls_ca_file"),
    (dict(mode="sip", sip_host="h", sip_transport="tls", sip_tls_cert_file="/etc/hostname"),
     "sip_tls_cert_file"),
    (dict(mode="http", url="https://x", mms_types=["Image/JPEG"]), "mms_types[0]"),
    (dict(mode="http", url="https://x", media_url="pbx.example"), "media_url"),
])
def test_problems_name_the_key(section: dict[str, object], key: str) -> None:
    """Each bad or missing value is reported under its own key."""
    with pytest.raises(ConfigError) as err:
        config_from_dict(trunk(**section))
    assert any(k == f"gateways.classound.{key}" for k, _ in err.value.problems), err.value.problems
