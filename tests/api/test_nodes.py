"""``GET /api/v1/nodes`` on the demo daemon (SQLite: one node, this daemon)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from smsd import __version__
from tests.test_daemon import DemoDaemon, running_demo


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoDaemon]:
    with running_demo(tmp_path) as d:
        yield d


@pytest.mark.timeout(120)
class TestNodes:
    def test_demo_lists_itself_as_the_one_live_node(self, demo: DemoDaemon) -> None:
        """The real demo process answers one node: its host name, alive, this smsd's version,
        its gsm gateway and its simulated modem gsm0; without credentials it answers 401."""
        body = demo.get_json("/api/v1/nodes")
        assert body["backend"] == "sqlite"
        [node] = body["nodes"]
        assert node["name"] == socket.gethostname()
        assert node["alive"] is True and node["this"] is True
        assert node["version"] == __version__
        assert [g["name"] for g in node["gateways"]] == ["gsm"]
        assert [m["id"] for m in node["modems"]] == ["gsm0"]
        status, raw = demo.request("GET", "/api/v1/nodes", auth=False)
        assert status == 401, raw
        assert "credentials" in json.loads(raw)["error"]
