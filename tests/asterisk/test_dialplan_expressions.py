"""Every ``$[...]`` in asterisk-conf/ parses the way Asterisk 20's expression parser
parses it, with the values the dialplan really puts there (issue 16, defect 2).

A syntax error inside ``$[...]`` is silent at run time: Asterisk logs a WARNING and
the expression is the text before the error, i.e. true.  The old ``[sms-out]``
compared the CURL reply (JSON) inside ``$[...]`` and so took every error reply for
"queued" (tests/asterisk/data/sms-out-curl-fallback.log, from the lab Asterisk
20.20.1).  The parser model in ``tests/asterisk/ast_expr.py`` is checked against
what that Asterisk said about good and bad expressions
(``data/ast-expr-verdicts.json``: AMI ``Getvar EVAL($[...])`` plus its log).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.asterisk.ast_expr import ExprSyntaxError, check, expressions, is_valid, substitute

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "asterisk-conf"
DATA = Path(__file__).parent / "data"
VERDICTS = json.loads((DATA / "ast-expr-verdicts.json").read_text("utf-8"))

# What smsd's originate API answers (DESIGN "The originate API"): what a CURL() in
# the dialplan stores.
ORIGINATE_REPLIES = (
    '{"type":"result","result":"Success"}',
    '{"type":"warning","reason":"Unable to add a SMS to the queue","result":["0123"]}',
    '{"type":"error","reason":"Number should not be empty","result":null}',
    "",   # smsd not reachable: CURL() gives nothing
)
_CURL_SET = re.compile(r"Set\((\w+)=\$\{CURL\(")


def _dialplan_lines() -> list[tuple[str, int, str]]:
    out = []
    for path in sorted(CONF.glob("*.conf")):
        for no, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
            code = line.split(";", 1)[0] if not line.lstrip().startswith(";") else ""
            if code.strip():
                out.append((path.name, no, code))
    return out


@pytest.mark.parametrize("verdict", VERDICTS, ids=[v["expression"] or "<empty>" for v in VERDICTS])
def test_parser_agrees_with_asterisk(verdict: dict[str, object]) -> None:
    """For each expression the lab Asterisk 20.20.1 evaluated, the model calls it a
    syntax error exactly when Asterisk logged one (quotes, JSON, commas, colons, ...)."""
    assert is_valid(str(verdict["expression"])) is not verdict["syntax_error"], verdict


def test_every_sample_expression_parses() -> None:
    """Every $[...] of asterisk-conf/*.conf is valid once substituted: plain variables
    by a word, and a variable set from CURL() by each reply smsd's API can give."""
    lines = _dialplan_lines()
    from_curl = {m.group(1) for _, _, code in lines for m in _CURL_SET.finditer(code)}
    checked = 0
    problems = []
    for name, no, code in lines:
        for expr in expressions(code):
            for reply in ORIGINATE_REPLIES:
                text = substitute(expr, dict.fromkeys(from_curl, reply))
                try:
                    check(text)
                except ExprSyntaxError as exc:
                    problems.append(f"{name}:{no}: $[{expr}] with {reply!r}: {exc}")
                checked += 1
    assert checked > 0
    assert problems == []


def test_the_old_curl_check_is_caught() -> None:
    """The check catches the shipped defect: a JSON reply compared inside $[...]."""
    old = '"${SMSD_REPLY}" = "{\\"type\\":\\"result\\",\\"result\\":\\"Success\\"}"'
    for reply in ORIGINATE_REPLIES:
        assert not is_valid(substitute(old, {"SMSD_REPLY": reply}))
    assert not is_valid(substitute('"${SMSD_REPLY}" = "x"', {"SMSD_REPLY": ORIGINATE_REPLIES[2]}))


def test_expressions_are_found_nested() -> None:
    """$[...] bodies are cut at their own bracket, nested brackets included."""
    assert expressions('GotoIf($["${A}" = "B"]?x)') == ['"${A}" = "B"']
    assert expressions("Set(X=$[$[1 + 2] * 3])") == ["$[1 + 2] * 3", "1 + 2"]
    assert substitute('"${A}" = ${B(${C})}', {"A": "va"}) == '"va" = x'
