"""systemd/60-smsd-modems.rules: valid for udev, and right for each modem it names.

Two checks.  udev's own rules parser (`udevadm test`, run in a private mount
namespace where the rules file is the only one in /etc/udev/rules.d) must
report nothing about the file: Debian 12's udev (252) has no `udevadm verify`
(it came in systemd 253).  Then a small evaluator of the subset of the rules
language the file uses runs it against the properties udev's usb_id builtin
gives each port of a modem, so the links and tags are checked per model
without hardware.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from smsd.modem.quirks import PROFILES

RULES = Path(__file__).resolve().parent.parent / "systemd" / "60-smsd-modems.rules"

_TOKEN = re.compile(r'\s*([A-Z_]+)(?:\{([^}]*)\})?\s*(==|!=|\+=|-=|:=|=)\s*"([^"]*)"\s*(,|$)')
MATCH_KEYS = {"ACTION", "SUBSYSTEM", "SUBSYSTEMS", "ENV", "ATTRS", "KERNEL", "DRIVERS"}
ASSIGN_KEYS = {"ENV", "GOTO", "LABEL", "GROUP", "MODE", "TAG", "SYMLINK", "IMPORT"}


@dataclass
class Rule:
    line: int
    tokens: list[tuple[str, str | None, str, str]]


def parse_rules(text: str) -> list[Rule]:
    """Rules of the file; AssertionError naming the line on anything udev would reject."""
    rules: list[Rule] = []
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tokens, pos = [], 0
        while pos < len(line):
            m = _TOKEN.match(line, pos)
            assert m, f"line {no}: cannot parse at {line[pos:]!r}"
            key, attr, op, value, _ = m.groups()
            if op in ("==", "!="):
                assert key in MATCH_KEYS, f"line {no}: {key} is not a match key"
            else:
                assert key in ASSIGN_KEYS, f"line {no}: {key} cannot be assigned"
            tokens.append((key, attr, op, value))
            pos = m.end()
        rules.append(Rule(no, tokens))
    labels = [v for r in rules for k, _, _, v in r.tokens if k == "LABEL"]
    for r in rules:
        for k, _, _, v in r.tokens:
            if k == "GOTO":
                assert v in labels, f"line {r.line}: GOTO {v!r} has no LABEL"
    return rules


@dataclass
class Port:
    """One tty of a USB modem, as udev sees it after the usb_id builtin."""

    vendor: str
    product: str
    interface: str
    serial: str = ""
    busnum: str = "1"
    devpath: str = "1.4"
    env: dict[str, str] = field(default_factory=dict)
    symlinks: list[str] = field(default_factory=list)
    group: str | None = None
    mode: str | None = None

    def __post_init__(self) -> None:
        self.env.update({"ID_VENDOR_ID": self.vendor, "ID_MODEL_ID": self.product,
                         "ID_USB_INTERFACE_NUM": self.interface})
        if self.serial:
            self.env["ID_SERIAL_SHORT"] = self.serial


def _subst(value: str, port: Port) -> str:
    value = re.sub(r"\$env\{([^}]*)\}", lambda m: port.env.get(m.group(1), ""), value)
    attrs = {"busnum": port.busnum, "devpath": port.devpath}
    return re.sub(r"\$attr\{([^}]*)\}", lambda m: attrs[m.group(1)], value)


def _matches(key: str, attr: str | None, pattern: str, port: Port) -> bool:
    actual = {
        "ACTION": "add", "SUBSYSTEM": "tty", "SUBSYSTEMS": "usb",
    }.get(key)
    if key == "ENV":
        actual = port.env.get(attr or "", "")
    elif key == "ATTRS":
        actual = {"busnum": port.busnum, "devpath": port.devpath}.get(attr or "", "")
    assert actual is not None, f"the evaluator does not know {key}"
    if key == "SUBSYSTEMS":
        return fnmatch.fnmatchcase("usb", pattern) or fnmatch.fnmatchcase("tty", pattern)
    return any(fnmatch.fnmatchcase(actual, alt) for alt in pattern.split("|"))


def evaluate(rules: list[Rule], port: Port) -> Port:
    """Run the rules over ``port`` the way udev does (in order, GOTO jumps forward)."""
    skip_to: str | None = None
    for rule in rules:
        if skip_to is not None:
            if any(k == "LABEL" and v == skip_to for k, _, _, v in rule.tokens):
                skip_to = None
            continue
        matched = all(
            _matches(k, a, v, port) == (op == "==")
            for k, a, op, v in rule.tokens if op in ("==", "!=")
        )
        if not matched:
            continue
        for k, a, op, v in rule.tokens:
            if op in ("==", "!="):
                continue
            value = _subst(v, port)
            if k == "ENV":
                port.env[a or ""] = value
            elif k == "SYMLINK":
                port.symlinks.append(value)
            elif k == "GROUP":
                port.group = value
            elif k == "MODE":
                port.mode = value
            elif k == "GOTO":
                skip_to = value
    return port


@pytest.fixture(scope="module")
def rules() -> list[Rule]:
    return parse_rules(RULES.read_text())


def at_port_rules(rules: list[Rule]) -> list[tuple[str, str, str]]:
    """(vid, pid alternatives, interface) of every rule that marks an AT port."""
    out = []
    for r in rules:
        env = {a: v for k, a, op, v in r.tokens if k == "ENV" and op == "=="}
        if any(k == "ENV" and a == ".SMSD_AT" and op == "=" for k, a, op, _ in r.tokens):
            out.append((env["ID_VENDOR_ID"], env["ID_MODEL_ID"], env["ID_USB_INTERFACE_NUM"]))
    return out


class TestRulesBehaviour:
    @pytest.mark.parametrize(
        ("vendor", "product", "at_if", "name"),
        [
            ("12d1", "1506", "02", "huawei"),     # E3372 stick mode
            ("12d1", "1001", "02", "huawei"),     # E1550
            ("2c7c", "0125", "02", "quectel"),    # EC25
            ("2c7c", "0296", "02", "quectel"),    # BG96
            ("1e0e", "9001", "02", "simcom"),     # SIM7600
            ("1199", "68c0", "03", "sierra"),     # MC7304
            ("1199", "9071", "03", "sierra"),     # EM7455
        ],
    )
    def test_at_port_gets_the_link_other_ports_only_the_tags(
        self, rules: list[Rule], vendor: str, product: str, at_if: str, name: str
    ) -> None:
        """Only the AT interface gets /dev/smsd/<vendor>-<serial>-at; MM ignores every port."""
        for interface in ("00", "01", "02", "03", "04"):
            port = evaluate(rules, Port(vendor, product, interface, serial="SN123"))
            assert port.env.get("ID_MM_DEVICE_IGNORE") == "1", interface
            assert (port.group, port.mode) == ("dialout", "0660"), interface
            want = [f"smsd/{name}-SN123-at"] if interface == at_if else []
            assert port.symlinks == want, (interface, port.symlinks)

    def test_no_serial_number_uses_the_usb_port_path(self, rules: list[Rule]) -> None:
        """A modem without a USB serial is named by bus and port path, still stable per socket."""
        port = evaluate(rules, Port("2c7c", "0125", "02", serial="", busnum="3", devpath="2.1"))
        assert port.symlinks == ["smsd/quectel-usb3-2.1-at"]

    def test_unknown_vendor_is_left_alone(self, rules: list[Rule]) -> None:
        """A USB serial adapter (FTDI) gets no tag, group or link from these rules."""
        port = evaluate(rules, Port("0403", "6001", "00", serial="FT1"))
        assert "ID_MM_DEVICE_IGNORE" not in port.env
        assert (port.group, port.symlinks) == (None, [])

    def test_unknown_model_of_known_vendor_is_tagged_without_link(
        self, rules: list[Rule]
    ) -> None:
        """A Huawei the file does not list: ModemManager keeps off, but no AT link is guessed."""
        port = evaluate(rules, Port("12d1", "14db", "02", serial="X"))
        assert port.env.get("ID_MM_DEVICE_IGNORE") == "1"
        assert port.symlinks == []

    def test_every_quirks_profile_has_a_vendor_block(self, rules: list[Rule]) -> None:
        """Each vendor profile of smsd/modem/quirks.py has at least one model's AT port here."""
        named = {
            v for r in rules for k, a, op, v in r.tokens
            if k == "ENV" and a == ".SMSD_VENDOR" and op == "="
        }
        vendors = set(PROFILES) - {"generic"}
        assert vendors <= named, vendors - named
        marked = {vid for vid, _, _ in at_port_rules(rules)}
        by_name = {
            v: dict((a, val) for k, a, op, val in r.tokens if op == "==")["ID_VENDOR_ID"]
            for r in rules for k, a, op, v in r.tokens
            if k == "ENV" and a == ".SMSD_VENDOR" and op == "="
        }
        assert {by_name[v] for v in vendors} <= marked


class TestUdevParser:
    def test_the_evaluator_rejects_what_udev_rejects(self) -> None:
        """The parser above is strict enough to fail: bad key, bad operator, missing label."""
        for bad in ('BOGUS=="x"', 'ATTRS{x}+="y"', 'GOTO="nowhere"', 'ENV{A}=="1" GROUP="x"'):
            with pytest.raises(AssertionError):
                parse_rules(bad)

    def test_udevadm_reports_nothing_about_the_file(self, tmp_path: Path) -> None:
        """udev 252's own parser (udevadm test) reads the file without a complaint.

        It needs a private mount namespace (root, unshare) to put the file in
        /etc/udev/rules.d without touching the host; scripts/test installs udev.
        """
        udevadm = shutil.which("udevadm")
        unshare = shutil.which("unshare")
        if udevadm is None or unshare is None or os.geteuid() != 0:
            pytest.skip("needs root, unshare and udevadm (apt-get install udev)")
        tty = next((p for p in ("/sys/class/tty/tty0", "/sys/class/tty/ttyS0")
                    if Path(p).exists()), None)
        if tty is None:
            pytest.skip("no tty in /sys to run udevadm test on")
        rules_dir = tmp_path / "rules.d"
        rules_dir.mkdir()
        shutil.copy(RULES, rules_dir / RULES.name)
        script = (f"mkdir -p /etc/udev/rules.d && mount --bind {rules_dir} /etc/udev/rules.d "
                  f"&& {udevadm} test --action=add {tty}")
        r = subprocess.run([unshare, "-m", "sh", "-c", script],
                           capture_output=True, text=True, timeout=60)
        out = r.stdout + r.stderr
        if "Reading rules file" not in out:
            # unshare or mount refused (an unprivileged container): udev never ran
            pytest.skip(f"no private mount namespace here: {r.stderr.strip()[:200]}")
        assert f"Reading rules file: /etc/udev/rules.d/{RULES.name}" in out, out[-2000:]
        about = [ln for ln in out.splitlines()
                 if RULES.name in ln and not ln.startswith("Reading rules file")]
        assert about == [], about
