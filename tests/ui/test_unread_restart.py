"""Unread counts are stored: a daemon restart keeps what each user has read.

Against ``smsd run --demo`` as a subprocess; the inbound SMS come from the
simulated network (the demo's modem), the pages over HTTP with the session
cookie, as a browser without script would.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_daemon import DELIVERY_DEADLINE_S, DemoDaemon
from tests.ui.conftest import ConsoleClient

CUSTOMER = "+447700900123"
pytestmark = pytest.mark.timeout(180)


def inject(demo: DemoDaemon, text: str) -> None:
    subprocess.run([sys.executable, "-m", "smsd", "modem", "inject", "--control",
                    str(demo.state_dir / "modem.sock"), "--from", CUSTOMER, "--text", text],
                   check=True, capture_output=True, timeout=60)


def wait_messages(demo: DemoDaemon, count: int) -> int:
    """The id of the customer's conversation once it holds ``count`` inbound SMS."""
    deadline = time.monotonic() + DELIVERY_DEADLINE_S
    while time.monotonic() < deadline:
        for conv in demo.get_json("/api/v1/conversations")["conversations"]:
            if conv["external"] == CUSTOMER:
                items = demo.get_json(f"/api/v1/conversations/{conv['id']}/messages")
                if sum(m["direction"] == "in" for m in items["messages"]) >= count:
                    return int(conv["id"])
        time.sleep(0.1)
    raise AssertionError(f"no conversation with {count} inbound SMS\n{demo.log_text()}")


def unread_label(page: str, conv_id: int) -> str | None:
    row = re.search(rf'<tr data-conversation="{conv_id}">.*?</tr>', page)
    assert row, page
    found = re.search(r'aria-label="(\d+) unread"', row.group(0))
    return found.group(1) if found else None


def test_unread_count_survives_a_restart(tmp_path: Path) -> None:
    """1. two SMS arrive: the list shows 2 unread; 2. opening the thread clears it;
    3. a third SMS makes it 1; 4. after SIGTERM and a new daemon on the same state,
    the list still shows 1 unread (not 3: the mark was stored, not kept in memory)."""
    demo = DemoDaemon(tmp_path / "state", tmp_path / "daemon.log")
    demo.start()
    try:
        inject(demo, "first")
        inject(demo, "second")
        conv_id = wait_messages(demo, 2)
        client = ConsoleClient(demo.base)
        assert unread_label(client.get("/ui/conversations"), conv_id) == "2"
        assert "second" in client.get(f"/ui/conversations/{conv_id}")
        assert unread_label(client.get("/ui/conversations"), conv_id) is None
        inject(demo, "third")
        wait_messages(demo, 3)
        assert unread_label(client.get("/ui/conversations"), conv_id) == "1"
        assert demo.stop() == 0
    finally:
        demo.kill()
    again = DemoDaemon(demo.state_dir, tmp_path / "daemon2.log")
    again.start()
    try:
        client = ConsoleClient(again.base)
        assert unread_label(client.get("/ui/conversations"), conv_id) == "1"
    finally:
        assert again.stop() == 0
