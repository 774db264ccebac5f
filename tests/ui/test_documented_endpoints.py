"""The console uses only documented endpoints.

Every target the console can reach (each form's method and action, each link,
the script's fetch and EventSource calls, and the literal paths in the
console's source and templates) must be an operation of /api/v1/openapi.json.
The pages come from a crawl of ``smsd run --demo`` as its admin, with a
conversation, a sent message, a blocked number and an opt-out in place so
that every kind of form is on some page.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_daemon import DELIVERY_DEADLINE_S, DemoDaemon, running_demo
from tests.ui.conftest import ConsoleClient

pytestmark = pytest.mark.timeout(180)
UI = Path(__file__).resolve().parents[2] / "smsd" / "ui"
# A crawl that finds more pages than this is following a loop.
MAX_PAGES = 300


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoDaemon]:
    with running_demo(tmp_path_factory.mktemp("documented")) as d:
        for sender, text in (("+447700900123", "Hello"), ("+447700900124", "STOP")):
            subprocess.run([sys.executable, "-m", "smsd", "modem", "inject", "--control",
                            str(d.state_dir / "modem.sock"), "--from", sender, "--text", text],
                           check=True, capture_output=True, timeout=60)
        status, _ = d.request("POST", "/api/v1/blocklist", b'{"number": "+447700900666"}',
                              content_type="application/json")
        assert status == 201
        status, _ = d.request("POST", "/api/v1/originate/sms",
                              b"number=%2B447700900125&message=Hi")
        assert status == 200
        deadline = time.monotonic() + DELIVERY_DEADLINE_S
        while not (d.get_json("/api/v1/conversations")["conversations"]
                   and d.get_json("/api/v1/blocklist").get("opted_out")):
            assert time.monotonic() < deadline, d.log_text()
            time.sleep(0.1)
        yield d


def _operations(spec: dict[str, object]) -> list[tuple[re.Pattern[str], set[str]]]:
    paths = spec["paths"]
    assert isinstance(paths, dict)
    return [(re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(p)) + "$"),
             {m.lower() for m in ops}) for p, ops in paths.items()]


def _described(ops: list[tuple[re.Pattern[str], set[str]]], method: str, target: str) -> bool:
    path = urllib.parse.urlsplit(target).path
    return any(rx.match(path) and method in methods for rx, methods in ops)


def _is_endpoint(target: str) -> bool:
    return target.startswith("/") and not target.startswith("/ui/static/")


def crawl(client: ConsoleClient, seeds: list[str]) -> tuple[set[tuple[str, str]], int]:
    """Every (method, target) the pages reachable from ``seeds`` point at; pages seen."""
    targets: set[tuple[str, str]] = set()
    queue, seen = list(seeds), set(seeds)
    while queue:
        path = queue.pop(0)
        kind, body = client.fetch(path)
        if kind != "text/html":
            continue
        for form in re.finditer(r"<form\b([^>]*)>", body):
            attrs = dict(re.findall(r'(\w+)="([^"]*)"', form.group(1)))
            action = html.unescape(attrs.get("action", path))
            targets.add((attrs.get("method", "get").lower(), action))
        for href in re.findall(r'href="([^"]+)"', body):
            href = html.unescape(href)
            if not _is_endpoint(href):
                continue
            targets.add(("get", href))
            if href.startswith("/ui/") and href not in seen and len(seen) < MAX_PAGES:
                seen.add(href)
                queue.append(href)
    return targets, len(seen)


def source_targets() -> set[tuple[str, str]]:
    """The script's calls and the literal paths written in the console's source."""
    js = (UI / "static" / "console.js").read_text()
    found = {("get", t) for t in re.findall(r'new EventSource\("([^"]+)"', js)}
    for target, options in re.findall(r'fetch\("([^"]+)",\s*\{([^}]*)', js):
        method = re.search(r'method:\s*"(\w+)"', options)
        found.add((method.group(1).lower() if method else "get", target))
    assert ("post", "/ui/send/batch") in found and ("get", "/ui/events") in found
    for source in [*UI.glob("*.py"), *(UI / "templates").glob("*.html")]:
        text = source.read_text()
        for attr, target in re.findall(r'(action|href)="(/[^"$]*)', text):
            if _is_endpoint(target) and source.name not in ("openapi_console.py",):
                found.add(("post" if attr == "action" else "get", target))
    return found


def test_every_target_of_the_console_is_described(demo: DemoDaemon) -> None:
    """Each form, link and script call of the console names a path and method of the
    OpenAPI description (so the console stands only on documented endpoints)."""
    ops = _operations(json.loads(demo.request("GET", "/api/v1/openapi.json")[1]))
    client = ConsoleClient(demo.base)
    targets, pages = crawl(client, ["/ui/conversations", "/ui/search?q=%2B447700900123",
                                    "/ui/search?q=demo", "/ui/messages?state=delivered"])
    assert pages > 10, "the crawl should reach the conversations, messages and admin pages"
    for kind in ("/ui/conversations/", "/ui/messages/", "/ui/modems/", "/ui/blocklist/"):
        assert any(t.startswith(kind) for _, t in targets), kind
    everything = targets | source_targets()
    missing = sorted(f"{m.upper()} {t}" for m, t in everything if not _described(ops, m, t))
    assert not missing, f"console targets not in openapi.json: {missing}"


def test_the_check_sees_an_undocumented_target() -> None:
    """The matcher is strict: a path not in the description, or the wrong method,
    is reported (guards the test above against matching everything)."""
    ops = _operations({"paths": {"/ui/conversations/{id}/reply": {"post": {}},
                                 "/ui/send": {"get": {}}}})
    assert _described(ops, "post", "/ui/conversations/12/reply")
    assert _described(ops, "get", "/ui/send?to=%2B447700900123")
    assert not _described(ops, "get", "/ui/conversations/12/reply")
    assert not _described(ops, "post", "/ui/conversations/12/archive")
    assert not _described(ops, "post", "/ui/conversations/12/reply/x")
