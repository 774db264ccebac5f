"""The sample Asterisk configuration in asterisk-conf/ is valid and says what
smsd relies on: asterisklint accepts the dialplan (as an #include, the way an
admin installs it), the fixed context names exist, AGI results are checked,
and the AMI user has exactly the rights smsd uses."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from smsd.asterisk.calls import CALL_EVENTS

pytestmark = pytest.mark.timeout(60)

CONF = Path(__file__).resolve().parent.parent / "asterisk-conf"
WRAPPER = """[general]
static=yes
writeprotect=yes

[globals]
SMSD_API_USERPWD=dialplan:change-me

#include smsd-extensions.conf
"""


def asterisklint(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # The console script installed beside this interpreter (a venv's bin/ need
    # not be on PATH), else one on PATH; the package has no __main__.
    beside = Path(sys.executable).parent / "asterisklint"
    exe = str(beside) if beside.exists() else shutil.which("asterisklint")
    assert exe, "asterisklint is not installed (it is in the [test] extra)"
    cmd = [exe]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=50)


def installed(tmp_path: Path, text: str | None = None) -> Path:
    """extensions.conf as an admin has it: own [general]/[globals], then #include ours."""
    (tmp_path / "smsd-extensions.conf").write_text(
        text if text is not None else (CONF / "extensions.conf").read_text())
    (tmp_path / "extensions.conf").write_text(WRAPPER)
    return tmp_path


def sections(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Asterisk .conf sections -> (key, value) pairs, comments stripped."""
    out: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in path.read_text().splitlines():
        line = re.sub(r"(?<!\\);.*", "", raw).strip()
        if not line:
            continue
        m = re.fullmatch(r"\[([^\]]+)\](\([^)]*\))?", line)
        if m:
            current = m.group(1)
            out.setdefault(current, [])
            continue
        key, _, value = line.partition("=")
        value = value.lstrip(">").strip()
        out.setdefault(current, []).append((key.strip(), value))
    return out


class TestDialplan:
    def test_asterisklint_passes(self, tmp_path: Path) -> None:
        """asterisklint dialplan-check reports nothing for the included sample."""
        res = asterisklint("dialplan-check", "extensions.conf", cwd=installed(tmp_path))
        # asterisklint's function table predates JSON_DECODE (func_json, Asterisk
        # 16.24+), which [sms-out] needs to read the CURL reply (issue 16): that
        # one report is expected, anything else is a finding.
        findings = [line for line in res.stderr.splitlines()
                    if line.strip() and "function 'JSON_DECODE' does not exist" not in line]
        assert res.stdout.strip() == "" and findings == [], res.stdout + res.stderr

    def test_lint_catches_a_broken_copy(self, tmp_path: Path) -> None:
        """The lint really reads the included file: an unbalanced call is reported."""
        broken = (CONF / "extensions.conf").read_text().replace(
            "same => n,Hangup()", "same => n,Hangup(", 1)
        res = asterisklint("dialplan-check", "extensions.conf", cwd=installed(tmp_path, broken))
        assert res.returncode != 0

    def test_contexts_and_agi_scripts(self, tmp_path: Path) -> None:
        """The three fixed contexts exist with the fixed FastAGI scripts and ports."""
        res = asterisklint("dialplan-show", "extensions.conf", cwd=installed(tmp_path))
        assert res.returncode == 0, res.stderr
        shown = res.stdout
        for ctx in ("kite-sms", "sms-out", "sms-in"):
            assert f"[ Context '{ctx}' created by 'pbx_config' ]" in shown
        assert "'+15551234567' =>" in shown                 # DID with its '+', exact
        assert "AGI(agi://127.0.0.1:4573/kite-sms?members=100\\,201)" in shown
        assert "AGI(agi://127.0.0.1:4573/sms-send)" in shown
        assert "AGI(agi://127.0.0.1:4573/sms-receive)" in shown
        assert "CURL(http://127.0.0.1:8080/api/v1/originate/sms," in shown
        assert "CURLOPT(userpwd)" in shown

    def test_every_agi_result_is_checked(self) -> None:
        """Each AGI() is followed by a GotoIf on AGISTATUS: a failed hand-over is never silent."""
        lines = [ln.strip() for ln in (CONF / "extensions.conf").read_text().splitlines()]
        agi_lines = [i for i, ln in enumerate(lines) if ",AGI(" in ln]
        assert len(agi_lines) == 4
        for i in agi_lines:
            assert "GotoIf(" in lines[i + 1] and "AGISTATUS" in lines[i + 1], lines[i + 1]
        text = "\n".join(lines)
        assert text.count("Log(ERROR,") == 2                # sms-out and sms-in keep evidence
        assert "UserEvent(SmsdLost," in text


class TestManager:
    def test_least_privilege(self) -> None:
        """The AMI user reads only call and system events, filtered to OriginateResponse,
        ContactStatus and PeerStatus (a phone back: its missed SMS, issue 16), and
        writes only what smsd sends; no config/command/agent/all rights (the dialplan
        lookup is ShowDialPlan under 'reporting'); loopback only."""
        pairs = sections(CONF / "manager.conf")["smsd"]
        smsd = dict(pairs)
        assert set(smsd["read"].split(",")) == {"call", "system"}
        assert set(smsd["write"].split(",")) == {"originate", "message", "user", "reporting"}
        assert [v for k, v in pairs if k == "eventfilter"] == [
            "Event: OriginateResponse", "Event: ContactStatus", "Event: PeerStatus",
            *(f"Event: {name}" for name in CALL_EVENTS)]
        assert smsd["deny"] == "0.0.0.0/0.0.0.0"
        assert smsd["permit"].startswith("127.0.0.1/")
        text = (CONF / "manager.conf").read_text()
        for right in ("originate", "message", "user", "reporting", "call", "system"):
            assert re.search(rf";\s+{right}\s+-", text), f"{right} is not justified"
        # Why not the broader classes that would also allow ShowDialPlan:
        assert "UpdateConfig" in text and "core stop now" in text


class TestPjsip:
    def test_message_contexts(self) -> None:
        """Phones send into [sms-out]; the CLASSOUND trunk receives into [sms-in]."""
        conf = CONF / "pjsip.conf"
        text = conf.read_text()
        assert re.search(r"\[phone-template\]\(!\)", text)
        secs = sections(conf)
        assert ("message_context", "sms-out") in secs["phone-template"]
        trunk = [kv for kv in secs["classound"]]
        assert ("message_context", "sms-in") in trunk
        assert ("type", "endpoint") in trunk and ("type", "identify") in trunk


def test_readme_walks_through_each_file() -> None:
    """The README names every file and the config keys the admin must set."""
    readme = (CONF / "README.md").read_text()
    for needle in ("extensions.conf", "manager.conf", "pjsip.conf", "#include",
                   "secret_file", "SMSD_API_USERPWD", "message_context = sms-out",
                   "message_context = sms-in", "members=100\\,201"):
        assert needle in readme, needle
