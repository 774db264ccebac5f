"""fuzz/fuzz_smsd.py, the atheris harness for long runs, kept working by a short run here.

Each target gets hypothesis-made bytes (no atheris needed): a target that
raises anything but its contract's exception fails here as it would crash
under libFuzzer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz.fuzz_smsd import TARGETS

HARNESS = Path(__file__).resolve().parent.parent / "fuzz" / "fuzz_smsd.py"


@pytest.mark.parametrize("name", sorted(TARGETS))
@given(data=st.binary(max_size=400))
def test_target_survives_random_bytes(name: str, data: bytes) -> None:
    """Every target ends in a value or its own error type for any input."""
    TARGETS[name](data)


def test_seed_inputs_reach_the_interesting_paths() -> None:
    """A real PDU, AT reply, AGI block and config go through their targets."""
    TARGETS["pdu"](b"\x01" + bytes.fromhex(
        "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07"))
    TARGETS["framing"](b'\r\n+CMTI: "SM",1\r\n\xfe\r\nOK\r\n')
    TARGETS["agi-environment"](b"agi_network_script: sms-send?to=+44\nagi_arg_1: hi\n")
    TARGETS["agi-reply"](b"520-Invalid\nusage\n520 End of proper usage.\n200 result=1 (x)")
    TARGETS["originate"](b"+447700900123, 447700900124\x00it's \"ok\"\x0001/01/2030 10:00")
    TARGETS["config"](b'[http]\nport = 8080\n[policy]\ncountry = "GB"\n')


def test_cli_lists_targets_and_needs_atheris_only_to_fuzz() -> None:
    """`--list` names every target; a run without atheris says how to get it."""
    r = subprocess.run([sys.executable, str(HARNESS), "--list"], capture_output=True,
                       text=True, timeout=60, cwd=HARNESS.parent.parent)
    assert r.returncode == 0 and all(t in r.stderr for t in TARGETS)
    try:
        import atheris  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        r = subprocess.run([sys.executable, str(HARNESS), "pdu", "-runs=1"],
                           capture_output=True, text=True, timeout=60,
                           cwd=HARNESS.parent.parent)
        assert r.returncode == 2 and "pip install atheris" in r.stderr
