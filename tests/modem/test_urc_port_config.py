"""The ``urc_port`` key of a [[gateways.gsm.modems]] table: read, checked, explained."""

from __future__ import annotations

from pathlib import Path

import pytest

from smsd.config import config_from_dict, load_config
from smsd.errors import ConfigError

pytestmark = pytest.mark.timeout(10)


def _modems(*tables: dict[str, object]) -> dict[str, object]:
    return {"gateways": {"gsm": {"modems": list(tables)}}}


def test_values_are_read() -> None:
    """Each Quectel port name is accepted; leaving the key out means "from sysfs"."""
    cfg = config_from_dict(_modems(
        {"id": "a", "path": "socket://127.0.0.1:7000", "urc_port": "usbat"},
        {"id": "b", "path": "/dev/ttyUSB3", "urc_port": "usbmodem", "profile": "quectel"},
        {"id": "c", "path": "/dev/ttyS1", "urc_port": "uart1"},
        {"id": "d", "path": "/dev/ttyUSB2"}))
    assert cfg.gsm is not None
    assert [m.urc_port for m in cfg.gsm.modems] == ["usbat", "usbmodem", "uart1", None]


@pytest.mark.parametrize("value", ["ttyUSB3", "USBAT", "all", ""])
def test_unknown_port_is_a_clear_error(value: str) -> None:
    """Anything but usbat/usbmodem/uart1 is refused, naming the key, the choices and
    the value given."""
    with pytest.raises(ConfigError) as info:
        config_from_dict(_modems({"path": "/dev/ttyUSB3", "urc_port": value}))
    problems = dict(info.value.problems)
    reason = problems["gateways.gsm.modems[0].urc_port"]
    assert "usbat, usbmodem, uart1" in reason and repr(value) in reason


def test_wrong_type_is_refused() -> None:
    """A number is not a port name."""
    with pytest.raises(ConfigError) as info:
        config_from_dict(_modems({"path": "/dev/ttyUSB3", "urc_port": 3}))
    assert "string" in dict(info.value.problems)["gateways.gsm.modems[0].urc_port"]


@pytest.mark.parametrize("profile", ["generic", "huawei", "simcom", "sierra"])
def test_meaningless_for_other_vendors(profile: str) -> None:
    """Only Quectel chooses a URC port: with another fixed profile the key is an error
    that says so, rather than being silently ignored."""
    with pytest.raises(ConfigError) as info:
        config_from_dict(_modems({"path": "/dev/ttyUSB2", "urc_port": "usbat",
                                  "profile": profile}))
    reason = dict(info.value.problems)["gateways.gsm.modems[0].urc_port"]
    assert "Quectel" in reason and profile in reason


def test_toml_file(tmp_path: Path) -> None:
    """From a TOML file, the value reaches the ModemSpec (and its repr)."""
    path = tmp_path / "smsd.toml"
    path.write_text('[[gateways.gsm.modems]]\npath = "socket://127.0.0.1:7000"\n'
                    'urc_port = "usbmodem"\n')
    cfg = load_config(path)
    assert cfg.gsm is not None and cfg.gsm.modems[0].urc_port == "usbmodem"
    assert "urc_port='usbmodem'" in repr(cfg.gsm.modems[0])
