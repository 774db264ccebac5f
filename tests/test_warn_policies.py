"""A "warn" policy warns: through the JSON API, AGI and the CLI, in the log and history.

One real daemon process with `link_policy = "warn"`, `sender_id_policy = "warn"`
(France needs a registered sender) and a user whose sender ID is an Italian
given name; a simulated modem in its own process sends what is accepted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_rig import Rig, wait_for
from tests.fakes.asterisk_agi import FakeAsteriskAgi

ITALY = "+393471234567"
FRANCE = "+33612345678"
UK = "+447700900123"
LINK_TEXT = "see https://example.com/x"
POLICY = (
    'link_policy = "warn"\n'
    'sender_id_policy = "warn"\n'
    'registered_sender_countries = ["FR"]\n'
)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path, 1, policy=POLICY, user_name="Marco Rossi")
    try:
        r.start_sim()
        r.start_daemon()
        yield r
    finally:
        r.close()


def call(rig: Rig, method: str, path: str, body: Any = None, form: bool = False) -> tuple[int, Any]:
    headers = {"Authorization": "Basic " + base64.b64encode(b"bulk:pw").decode()}
    data = None
    if body is not None:
        if form:
            data = urllib.parse.urlencode(body).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
    req = urllib.request.Request(rig.base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def history_details(rig: Rig, mid: int) -> list[str]:
    status, view = call(rig, "GET", f"/api/v1/sms/{mid}")
    assert status == 200, view
    return [str(h.get("detail")) for h in view["history"]]


@pytest.mark.timeout(120)
class TestWarnPolicies:
    def test_json_api_returns_logs_and_keeps_warnings(self, rig: Rig) -> None:
        """POST /api/v1/sms answers "warnings"; the log and each message's history keep them.

        1. a link to an Italian number from "Marco Rossi": the link warning and
           the Italian given-name warning, and 201 (accepted);
        2. the same message's history holds both as "warning: ..." rows;
        3. the daemon log has an `outbox.warning` event;
        4. a plain message to the UK answers `"warnings": []`.
        """
        status, answer = call(rig, "POST", "/api/v1/sms", {"to": [ITALY], "text": LINK_TEXT})
        assert status == 201, answer
        warnings = answer["warnings"]
        assert any("link" in w for w in warnings), warnings
        assert any("Italian" in w and "Marco" in w for w in warnings), warnings
        (mid,) = answer["ids"]
        details = history_details(rig, mid)
        assert sum(d.startswith("warning: ") for d in details) == 2, details
        wait_for("outbox.warning logged", lambda: "outbox.warning" in rig.log.read_text(), rig.log)

        status, answer = call(rig, "POST", "/api/v1/sms", {"to": [UK], "text": "plain"})
        assert status == 201 and answer["warnings"] == [], answer

    def test_unregistered_sender_warns_only_that_recipient(self, rig: Rig) -> None:
        """France needs a registered sender: its message warns (history too), the UK one not."""
        status, answer = call(rig, "POST", "/api/v1/sms", {"to": [FRANCE, UK], "text": "hello"})
        assert status == 201, answer
        assert len(answer["warnings"]) == 1 and "registered" in answer["warnings"][0]
        fr, uk = answer["ids"]
        assert any("registered" in d for d in history_details(rig, fr))
        assert not any(d.startswith("warning: ") for d in history_details(rig, uk))

    def test_agi_sets_sms_warning(self, rig: Rig) -> None:
        """sms-send sets SMS_WARNING to the warnings, "; "-separated, and still queues."""
        fake = FakeAsteriskAgi(
            rig.agi_port, f"sms-send?to={FRANCE}&from=100&body=see%20https://example.com/x"
        )
        asyncio.run(fake.run())
        assert fake.variables["SMS_STATUS"] == "QUEUED", fake.variables
        warning = fake.variables["SMS_WARNING"]
        assert "link" in warning and "registered" in warning, warning
        plain = FakeAsteriskAgi(rig.agi_port, f"sms-send?to={UK}&from=100&body=plain")
        asyncio.run(plain.run())
        assert plain.variables["SMS_STATUS"] == "QUEUED"
        assert plain.variables["SMS_WARNING"] == ""

    def test_cli_send_prints_warnings_on_stderr(self, rig: Rig) -> None:
        """`smsd send` prints "queued N" on stdout, each warning on stderr, and exits 0."""
        done = subprocess.run(
            [
                sys.executable, "-m", "smsd", "send", "--url", rig.base, "--user", "bulk",
                "--to", ITALY, "--text", LINK_TEXT,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "SMSD_PASSWORD": "pw"},
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("queued "), done.stdout
        lines = done.stderr.splitlines()
        assert any(ln.startswith("warning: ") and "link" in ln for ln in lines), lines
        assert any(ln.startswith("warning: ") and "Italian" in ln for ln in lines), lines

    def test_originate_keeps_its_exact_success_shape(self, rig: Rig) -> None:
        """The Wildix originate call answers exactly its success JSON although a warning applies."""
        req = urllib.request.Request(
            rig.base + "/api/v1/originate/sms",
            data=urllib.parse.urlencode({"number": ITALY, "message": "see example.com"}).encode(),
            headers={"Authorization": "Basic " + base64.b64encode(b"bulk:pw").decode()},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.read() == b'{"type":"result","result":"Success"}'
