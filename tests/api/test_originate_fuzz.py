"""The originate API's parameters under hypothesis, down to the running daemon.

The pure helpers first (number splitting, text sanitising, postpone), then
the whole endpoint: `smsd run --demo` as a subprocess is asked with arbitrary
`number`, `message` and `postpone`, and must always answer one of the three
documented JSON shapes, never a 5xx, and store messages only when it says so.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smsd.api.originate import parse_postpone, split_numbers
from smsd.errors import BadTime
from smsd.numbers import parse_e164
from smsd.text import sanitize_originate_text
from tests.test_daemon import DemoDaemon, running_demo

E164 = st.from_regex(r"\+44770090[0-9]{4}", fullmatch=True)
JUNK = st.text(max_size=20)
NUMBER = st.lists(st.one_of(E164, JUNK), max_size=4).map(",".join)
MESSAGE = st.one_of(
    st.text(max_size=320),
    st.text(alphabet="ab '\"\\/€{}\n", min_size=1, max_size=301),
)
POSTPONE = st.one_of(st.none(), st.text(max_size=20),
                     st.from_regex(r"[0-3][0-9]/[01][0-9]/20[2-9][0-9] [0-2][0-9]:[0-5][0-9]",
                                   fullmatch=True))


class TestPureParameters:
    @given(st.text(max_size=80), st.lists(st.from_regex(r"[0-9]{6,15}", fullmatch=True),
                                          max_size=3))
    def test_split_numbers(self, raw: str, digits: list[str]) -> None:
        """Items are never empty nor padded; a plus lost to form decoding comes back."""
        for item in split_numbers(raw):
            assert item and item == item.strip()
        decoded = ",".join(" " + d for d in digits)   # "+44..." after form decoding
        assert split_numbers(decoded) == ["+" + d for d in digits]

    @given(st.text(max_size=400))
    def test_sanitize_keeps_length_and_drops_the_four(self, text: str) -> None:
        """' \" \\ / become spaces, one for one; nothing else changes."""
        out = sanitize_originate_text(text)
        assert len(out) == len(text)
        assert not set("'\"\\/") & set(out)
        assert all(a == b or a in "'\"\\/" for a, b in zip(text, out, strict=True))

    @given(st.text(max_size=30))
    def test_postpone_value_or_value_error(self, raw: str) -> None:
        """Any postpone text parses to an aware time or raises BadTime, nothing else."""
        try:
            when = parse_postpone(raw, "Europe/London")
        except BadTime:
            return
        assert when.tzinfo is not None


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoDaemon]:
    with running_demo(tmp_path_factory.mktemp("originate-fuzz")) as d:
        yield d


def stored(d: DemoDaemon) -> int:
    return len(d.get_json("/api/v1/sms?limit=1000")["messages"])


@pytest.mark.timeout(300)
class TestOriginateEndpointFuzz:
    @settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(number=NUMBER, message=MESSAGE, postpone=POSTPONE, as_get=st.booleans())
    def test_always_a_documented_answer(self, demo: DemoDaemon, number: str, message: str,
                                        postpone: str | None, as_get: bool) -> None:
        """Success/warning (200) or error (400) JSON, never 5xx; an error stores nothing."""
        params = {"number": number, "message": message}
        if postpone is not None:
            params["postpone"] = postpone
        body = urllib.parse.urlencode(params).encode()
        before = stored(demo)
        if as_get:
            status, raw = demo.request("GET", "/api/v1/originate/sms?" + body.decode())
        else:
            status, raw = demo.request("POST", "/api/v1/originate/sms", body)
        answer = json.loads(raw)
        assert status in (200, 400), (status, answer)
        assert answer["type"] in ("result", "warning", "error"), answer
        after = stored(demo)
        if answer["type"] == "error":
            assert status == 400 and answer["result"] is None and answer["reason"]
            assert after == before
        elif answer["type"] == "warning":
            assert all(r in split_numbers(number) for r in answer["result"])
            assert after > before
        else:
            assert answer == {"type": "result", "result": "Success"}
            assert after - before == len({parse_e164(n) for n in split_numbers(number)})
