"""at.py parsers against capture tables (tests/data/at/<vendor-model>/cases.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from smsd.modem import at
from smsd.modem.quirks import choose_profile
from smsd.modem.urcs import urc_name

DATA = Path(__file__).parent.parent / "data" / "at"
CASES = [
    pytest.param(case, id=f"{device.name}-{i}-{case['parser']}")
    for device in sorted(DATA.iterdir())
    for i, case in enumerate(json.loads((device / "cases.json").read_text())["cases"])
]


def run_parser(name: str, lines: list[str]) -> Any:
    line = lines[0]
    if name == "csq":
        s = at.parse_csq(line)
        return {"rssi": s.rssi, "dbm": s.dbm, "bars": s.bars}
    if name in ("creg", "creg_urc"):
        r = at.parse_creg(line, solicited=name == "creg")
        return {"stat": r.stat, "registered": r.registered, "roaming": r.roaming,
                "denied": r.denied, "lac": r.lac, "ci": r.ci, "act": r.act}
    if name == "cops":
        o = at.parse_cops(line)
        return {"mode": o.mode, "name": o.name, "act": o.act}
    if name == "cpin":
        return at.parse_cpin(line)
    if name == "cpms":
        return [[s.mem, s.used, s.total] for s in at.parse_cpms(line)]
    if name == "cmgs":
        return at.parse_cmgs(lines)
    if name == "csca":
        return at.parse_csca(line)
    if name == "cnum":
        return at.parse_cnum(lines)
    if name == "cmgl":
        return [[e.index, e.stat, e.length] for e in at.parse_cmgl(lines)]
    if name == "cmgr":
        e = at.parse_cmgr(lines)
        assert e is not None
        return [e.index, e.stat, e.length]
    if name in ("cusd", "cusd_packed"):
        u = at.parse_cusd(line, packed=name == "cusd_packed")
        return {"status": u.status, "text": u.text, "dcs": u.dcs}
    if name == "cms":
        code = at.error_code(line)
        return {"code": code, "temporary": at.cms_temporary(code)}
    if name == "cme":
        return at.error_code(line)
    if name == "urc":
        return urc_name(line)
    if name == "index_urc":
        return list(at.parse_index_urc(line))
    if name == "info":
        return at.parse_info(lines, "+CGMM")
    raise AssertionError(f"unknown parser {name}")


@pytest.mark.parametrize("case", CASES)
def test_capture(case: dict[str, Any]) -> None:
    """Each captured device response parses to the documented values."""
    got = run_parser(case["parser"], case["input"])
    expect = case["expect"]
    if isinstance(expect, dict) and isinstance(got, dict):
        got = {k: got[k] for k in expect}
    assert got == expect


class TestFinalCodes:
    @pytest.mark.parametrize("line", ["OK", "ERROR", "+CME ERROR: 10", "+CMS ERROR: 500",
                                      "NO CARRIER"])
    def test_finals(self, line: str) -> None:
        """The V.250/27.007 final result codes are recognised as whole lines."""
        assert at.is_final(line)

    @pytest.mark.parametrize("line", ['+COPS: 0,0,"NO ERROR"', "OK?", " ERROR X", "+CMTI: 1",
                                      "ERRORS"])
    def test_not_finals(self, line: str) -> None:
        """A line merely containing a result code is not final."""
        assert not at.is_final(line)


class TestBuilders:
    def test_pin_validated(self) -> None:
        """Only 4-8 digits reach AT+CPIN; quotes or commands are refused."""
        assert at.build_cpin("1234") == 'AT+CPIN="1234"'
        for bad in ('12"4', "12", "1234;+CMGD=1", "123456789"):
            with pytest.raises(ValueError):
                at.build_cpin(bad)

    def test_cmgs_length_bounds(self) -> None:
        """AT+CMGS takes a TPDU length 1..176 (TS 23.040 maximum SUBMIT size)."""
        assert at.build_cmgs(23) == "AT+CMGS=23"
        with pytest.raises(ValueError):
            at.build_cmgs(177)

    def test_ussd_and_csca(self) -> None:
        """USSD codes and SMSC numbers carry only their own characters."""
        assert at.build_cusd("*100#") == 'AT+CUSD=1,"*100#",15'
        # Huawei example in its AT manual: *100# packed is AA180C3602
        assert at.build_cusd("*100#", packed=True) == 'AT+CUSD=1,"AA180C3602",15'
        assert at.build_csca("+447785016005") == 'AT+CSCA="+447785016005",145'
        with pytest.raises(ValueError):
            at.build_cusd('*100#";ATD1')
        with pytest.raises(ValueError):
            at.build_csca("+44 7785")

    def test_pdu_hex_checked(self) -> None:
        """Only hex ever follows the prompt."""
        assert at.check_pdu_hex("00ab") == "00AB"
        with pytest.raises(ValueError):
            at.check_pdu_hex("00\x1a")

    def test_malformed_raise_value_error(self) -> None:
        """Malformed responses raise ValueError (callers log), never IndexError & co."""
        for fn, arg in ((at.parse_csq, "+CSQ: x"), (at.parse_cmgs, ["+CMGS: 300"]),
                        (at.parse_cmgl, ["+CMGL: 1,0,,5", "zz"]), (at.parse_cusd, "+CUSD: "),
                        (at.parse_cmgl, ["+CMGL: ", "00"]),           # noise ate the rest
                        (at.parse_cmgr, ["+CMGR: 0,,25", "zz"]), (at.parse_index_urc, "+CMTI: 3")):
            with pytest.raises(ValueError):
                fn(arg)  # type: ignore[operator]


class TestProfiles:
    @pytest.mark.parametrize(("cgmi", "cgmm", "name"), [
        ("huawei", "E3372", "huawei"), ("Quectel", "EC25", "quectel"),
        ("SIMCOM INCORPORATED", "SIMCOM_SIM7600E-H", "simcom"),
        ("Sierra Wireless, Incorporated", "MC7304", "sierra"), ("ACME", "M1", "generic")])
    def test_auto(self, cgmi: str, cgmm: str, name: str) -> None:
        """profile=auto picks the vendor profile from +CGMI/+CGMM."""
        assert choose_profile("auto", cgmi, cgmm).name == name

    def test_explicit_wins(self) -> None:
        """An explicit profile in the spec overrides detection."""
        assert choose_profile("generic", "huawei", "E3372").name == "generic"
        assert choose_profile("huawei", None, None).init_extra == ("AT^CURC=0",)


def test_spec_repr_hides_pin() -> None:
    """A ModemSpec in a log line never shows the PIN."""
    from smsd.modem.spec import ModemSpec
    text = repr(ModemSpec("gsm0", "/dev/ttyUSB2", pin="8642"))
    assert "8642" not in text and "***" in text
