"""The JSON log reads the same with or without the [fast] extra (orjson).

Under systemd the daemon writes one JSON object per line; with orjson
installed those lines are rendered by orjson, else by the standard json
module.  Tools and tests that read the log must see the same text either way.
"""

from __future__ import annotations

import importlib.util
import io
import re

import pytest
import structlog

from smsd.logging import setup_logging

EXPECTED = '{"tls":true,"port":8443,"who":"Zoë","event":"http.listening","level":"info"}'


def one_line(stream: io.StringIO | io.TextIOWrapper) -> str:
    structlog.get_logger("test").info("http.listening", tls=True, port=8443, who="Zoë")
    if isinstance(stream, io.TextIOWrapper):
        stream.flush()
        text = stream.buffer.getvalue().decode()  # type: ignore[attr-defined]
    else:
        text = stream.getvalue()
    # The timestamp is the one field that differs between two runs.
    return re.sub(r',"timestamp":"[^"]*"', "", text.strip())


@pytest.fixture(autouse=True)
def _restore_structlog() -> object:
    yield None
    structlog.reset_defaults()


def test_standard_json_is_compact_utf8() -> None:
    """Without orjson (a text stream, no byte buffer) an event is compact JSON with
    its non-ASCII text as is: `"tls":true`, `"who":"Zoë"`."""
    out = io.StringIO()
    setup_logging("info", stream=out, json=True)
    assert one_line(out) == EXPECTED


@pytest.mark.skipif(importlib.util.find_spec("orjson") is None,
                    reason="the [fast] extra (orjson) is not installed")
def test_orjson_writes_the_same_line() -> None:
    """With orjson (a stream with a byte buffer) the same event is the same text."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    setup_logging("info", stream=out, json=True)
    assert one_line(out) == EXPECTED


class TestUtcIsoStamper:
    @pytest.mark.parametrize("ns", [
        1_767_225_600_000_000_000,          # a whole second: no fraction, as isoformat
        1_767_225_600_000_001_000,
        1_767_225_659_999_999_999,          # the last microsecond of a minute
        1_767_225_660_123_456_789,          # the next second (the cached text moves on)
        951_782_400_500_000_000,            # 2000-02-29
    ])
    def test_same_text_as_datetime_isoformat(self, ns: int) -> None:
        """The timestamp is what structlog's ISO/UTC stamper writes for that instant:
        datetime's isoformat with Z, microseconds truncated, none on a whole second."""
        from datetime import UTC, datetime

        from smsd.logging import UtcIsoStamper

        stamper = UtcIsoStamper(clock=lambda: ns)
        stamper(None, "info", {})           # a first call fills the per-second cache
        got = stamper(None, "info", {})["timestamp"]
        moment = datetime.fromtimestamp(ns // 10**9, UTC).replace(microsecond=ns % 10**9 // 1000)
        assert got == moment.isoformat().replace("+00:00", "Z")

    def test_emitted_event_carries_it(self) -> None:
        """An event rendered by setup_logging's chain has an ISO UTC timestamp."""
        out = io.StringIO()
        setup_logging("info", stream=out, json=True)
        structlog.get_logger("test").info("x.y")
        assert re.search(r'"timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z"',
                         out.getvalue())
