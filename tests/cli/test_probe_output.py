"""What `smsd modem probe` prints for a report: the fields, then OK or each problem.

The report is built by smsd.modem.probe; cli_device only renders it, so these
checks use reports written out by hand (the subprocess tests in
test_cli_acceptance.py cover the whole command against the simulator).
"""

from __future__ import annotations

import json

import pytest

from smsd.cli.modem_device import format_probe, render_probe
from smsd.modem.probe import ProbeReport

pytestmark = pytest.mark.timeout(10)


def _ready() -> ProbeReport:
    return ProbeReport(device="/dev/ttyUSB2", responding=True, manufacturer="Quectel",
                       model="EC25", firmware="EC25EFAR06A06M4G", imei="356938035643809",
                       imsi="234150999999999", iccid="8944100000000000018", sim="READY",
                       operator="ACME UK", registration=5, registered=True, roaming=True,
                       signal_dbm=-73, signal_bars=4, smsc="+447785016005",
                       storage=[{"memory": "SM", "used": 3, "total": 30}],
                       own_number=None)


def test_text_lists_every_field_and_says_ok() -> None:
    """Each field on its own line in words; a missing one is '-'; an OK report says so."""
    lines = format_probe(_ready()).splitlines()
    assert lines[0] == "device:       /dev/ttyUSB2"
    assert "ICCID:        8944100000000000018" in lines
    assert "registration: registered (roaming)" in lines
    assert "signal:       -73 dBm (4/4 bars)" in lines
    assert "storage:      SM 3/30" in lines
    assert "own number:   -" in lines
    assert lines[-1] == "status:       OK, ready for SMS"


def test_text_lists_each_problem_instead_of_ok() -> None:
    """A report with problems prints one PROBLEM line each and never 'OK'."""
    r = ProbeReport(device="/dev/ttyUSB2", responding=True, sim="SIM PIN",
                    problems=["PIN needed: x", "no network: y"])
    text = format_probe(r)
    assert "OK, ready" not in text
    assert text.splitlines()[-2:] == ["PROBLEM:      PIN needed: x",
                                      "PROBLEM:      no network: y"]
    assert "registration: -" in text and "signal:       -" in text


def test_json_is_one_object_with_ok() -> None:
    """--json output parses as one object holding every report field and 'ok'."""
    r = _ready()
    r.problems.append("no SMS centre on the SIM: set smsc in the modem's config")
    out = json.loads(render_probe(r, as_json=True))
    assert out["ok"] is False and out["problems"] == r.problems
    assert out["iccid"] == "8944100000000000018" and out["roaming"] is True
    assert set(out) == set(r.to_json())
    assert render_probe(r, as_json=False) == format_probe(r)
