"""Asterisk's ``$[...]`` expression syntax, as main/ast_expr2.fl and ast_expr2.y have it.

The dialplan samples cannot be run in CI, and asterisklint does not parse
expressions, yet a syntax error there is silent at run time: Asterisk logs a
WARNING and the expression evaluates to the text before the error, a non-empty
string, i.e. *true* (issue 16: the ``[sms-out]`` CURL check took every reply
for success).  This module tokenises and parses the text Asterisk would see
*after* variable substitution, so a test can check every ``$[...]`` of
asterisk-conf/.  ``tests/asterisk/data/ast-expr-verdicts.json`` holds what a
real Asterisk 20.20.1 said about each sample expression; the tests check that
this parser agrees with every verdict.

Lexer (ast_expr2.fl): operators ``| & = == || && =~ ~~ > < >= <= != + , - * / % ? !
: :: ( )``; a double-quoted string is ``"[^"]*"`` (no escapes: ``\\"`` ends
it); a word is any run of ``[a-zA-Z0-9.';\\\\_^#@]``, bytes >= 0x80 and ``$``
not followed by ``{``; blanks separate.  Anything else (``{``, ``}``, ``[``,
``]``, ``~`` alone, a ``"`` with no closing one) is skipped (flex's default
rule; the lab showed ``{"a":1}`` parsing as ``"a" : 1``).  Grammar (ast_expr2.y): an expression
is a word, a function call ``WORD(args, ...)``, ``( expr )``, ``- expr``,
``! expr``, two expressions joined by a binary operator, or ``a ? b :: c``;
two words in a row are a syntax error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_OPERATORS = ("||", "&&", "==", "=~", "~~", ">=", "<=", "!=", "::",
              "|", "&", "=", ">", "<", "+", ",", "-", "*", "/", "%", "?", "!", ":", "(", ")")
_BINARY = {"||", "&&", "==", "=~", "~~", ">=", "<=", "!=", "|", "&", "=", ">", "<", "+", "-",
           "*", "/", "%", ":"}
_WORD = re.compile(r"(?:[a-zA-Z0-9.';\\_^#@]|[\x80-\U0010ffff]|\$(?!\{))+")


class ExprSyntaxError(ValueError):
    """The text Asterisk would reject, with the position of the error."""

    def __init__(self, text: str, pos: int, why: str) -> None:
        self.text = text
        self.pos = pos
        super().__init__(f"{why} at {pos}: {text[:pos]}<HERE>{text[pos:]}")


@dataclass(frozen=True)
class _Tok:
    kind: str   # "word" or the operator itself
    pos: int


def tokens(text: str) -> list[_Tok]:
    """Tokenise substituted expression text as the flex scanner does."""
    out: list[_Tok] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
            continue
        if ch == '"' and text.find('"', i + 1) >= 0:
            out.append(_Tok("word", i))
            i = text.find('"', i + 1) + 1
            continue
        op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
        if op is not None:
            out.append(_Tok(op, i))
            i += len(op)
            continue
        m = _WORD.match(text, i)
        if m is None:
            # flex's default rule: a character no rule matches ("{", "}", a quote
            # without its closing one, ...) is skipped, not an error by itself.
            i += 1
            continue
        out.append(_Tok("word", i))
        i = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokens(text)
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i].kind if self.i < len(self.toks) else None

    def fail(self, why: str) -> ExprSyntaxError:
        pos = self.toks[self.i].pos if self.i < len(self.toks) else len(self.text)
        return ExprSyntaxError(self.text, pos, why)

    def take(self, kind: str) -> None:
        if self.peek() != kind:
            raise self.fail(f"expected {kind!r}, found {self.peek()!r}")
        self.i += 1

    def expr(self) -> None:
        self.unary()
        while self.peek() in _BINARY:
            self.i += 1
            self.unary()
        if self.peek() == "?":
            self.i += 1
            self.expr()
            self.take("::")
            self.expr()

    def unary(self) -> None:
        kind = self.peek()
        if kind in ("-", "!"):
            self.i += 1
            self.unary()
        elif kind == "(":
            self.i += 1
            self.expr()
            self.take(")")
        elif kind == "word":
            self.i += 1
            if self.peek() == "(":      # function call: WORD ( expr , ... )
                self.i += 1
                self.expr()
                while self.peek() == ",":
                    self.i += 1
                    self.expr()
                self.take(")")
        else:
            raise self.fail(f"unexpected {kind!r}")


def check(text: str) -> None:
    """Raise ExprSyntaxError when Asterisk's parser would reject ``text`` (substituted)."""
    parser = _Parser(text)
    if not parser.toks:
        return                              # $[] is the empty string, not an error
    parser.expr()
    if parser.peek() is not None:
        raise parser.fail("unexpected token, expecting end")


def is_valid(text: str) -> bool:
    try:
        check(text)
    except ExprSyntaxError:
        return False
    return True


# --- finding expressions in a dialplan file --------------------------------------------


def _closing(text: str, start: int, open_: str, close: str) -> int:
    """Index of the bracket closing the one at ``start`` (nesting counted), or -1."""
    depth = 0
    for j in range(start, len(text)):
        if text[j] == open_:
            depth += 1
        elif text[j] == close:
            depth -= 1
            if depth == 0:
                return j
    return -1


def expressions(line: str) -> list[str]:
    """The bodies of every ``$[...]`` in one dialplan line (nested ones included)."""
    out: list[str] = []
    i = line.find("$[")
    while i >= 0:
        end = _closing(line, i + 1, "[", "]")
        if end < 0:
            raise ExprSyntaxError(line, i, "unclosed $[")
        out.append(line[i + 2:end])
        i = line.find("$[", i + 2)
    return out


def substitute(expr: str, values: dict[str, str], default: str = "x") -> str:
    """Replace each ``${...}`` as pbx_substitute_variables would, with the given values.

    A variable named in ``values`` takes that value (e.g. what CURL() stored);
    everything else (other variables, function calls) becomes ``default``.
    """
    out: list[str] = []
    i = 0
    while i < len(expr):
        if expr.startswith("${", i):
            end = _closing(expr, i + 1, "{", "}")
            if end < 0:
                raise ExprSyntaxError(expr, i, "unclosed ${")
            name = expr[i + 2:end]
            out.append(values.get(name, default))
            i = end + 1
        else:
            out.append(expr[i])
            i += 1
    return "".join(out)
