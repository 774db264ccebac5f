"""One SQL text for both backends: smsd's statements, as PostgreSQL reads them.

smsd's statements are written once, in the SQL that SQLite and PostgreSQL
share (``ON CONFLICT``, ``RETURNING``, ``TRUE``/``FALSE``, ``CAST``); what
still differs is mechanical and is rewritten here, once per distinct
statement (the result is cached):

* parameters: SQLite's ``?`` and ``:name`` become ``$1, $2 ...`` (asyncpg
  takes positional arguments only; a name used twice is one ``$n``);
* the column ``user`` (of messages, conversations ...) is a reserved word in
  PostgreSQL, where a bare ``user`` silently means ``current_user``: every
  bare ``user`` becomes ``"user"``.  smsd never wants the role name.

String literals, quoted identifiers and comments are copied untouched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from smsd.errors import SmsdError


@dataclass(frozen=True, slots=True)
class Statement:
    """A statement as PostgreSQL reads it and how to order its arguments."""

    sql: str
    # For ``:name`` statements: the name behind $1, $2 ...; None for ``?`` ones.
    names: tuple[str, ...] | None
    count: int  # how many $n (for ``?`` statements: how many ? were seen)

    def args(self, params: Sequence[Any] | Mapping[str, Any]) -> list[Any]:
        """The positional arguments for asyncpg, checked against the statement."""
        if self.names is None:
            if isinstance(params, Mapping):
                raise SmsdError(f"statement takes ? parameters, got names: {self.sql[:80]}")
            values = list(params)
            if len(values) != self.count:
                raise SmsdError(
                    f"statement takes {self.count} parameters, got {len(values)}: {self.sql[:80]}"
                )
            return values
        if not isinstance(params, Mapping):
            if not self.names:
                return []
            raise SmsdError(f"statement takes named parameters: {self.sql[:80]}")
        return [params[n] for n in self.names]


def _is_ident_start(c: str) -> bool:
    return c.isalpha() or c == "_"


def _is_ident(c: str) -> bool:
    return c.isalnum() or c == "_"


@lru_cache(maxsize=2048)
def translate(sql: str) -> Statement:
    """``sql`` (SQLite spelling) as PostgreSQL reads it; cached per distinct text."""
    out: list[str] = []
    names: list[str] = []
    positional = 0
    named = False
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "'" or c == '"':  # literal or quoted identifier: copy to its end
            j = i + 1
            while j < n:
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:  # doubled quote inside
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i : j + 1])
            i = j + 1
        elif c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(sql[i:j])
            i = j
        elif c == "?":
            positional += 1
            out.append(f"${positional}")
            i += 1
        elif (c == ":" and i + 1 < n and _is_ident_start(sql[i + 1])
              and (i == 0 or sql[i - 1] != ":")):
            j = i + 1
            while j < n and _is_ident(sql[j]):
                j += 1
            name = sql[i + 1 : j]
            if name not in names:
                names.append(name)
            out.append(f"${names.index(name) + 1}")
            named = True
            i = j
        elif _is_ident_start(c) and (i == 0 or not (_is_ident(sql[i - 1]) or sql[i - 1] == "$")):
            j = i + 1
            while j < n and _is_ident(sql[j]):
                j += 1
            word = sql[i:j]
            out.append('"user"' if word.lower() == "user" else word)
            i = j
        else:
            out.append(c)
            i += 1
    if named and positional:
        raise SmsdError(f"statement mixes ? and :name parameters: {sql[:80]}")
    if named:
        return Statement("".join(out), tuple(names), len(names))
    return Statement("".join(out), None, positional)


def returns_rows(sql: str) -> bool:
    """Whether asyncpg should fetch (SELECT, WITH, VALUES, RETURNING) or just execute."""
    head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
    return head in ("SELECT", "WITH", "VALUES") or "RETURNING" in sql.upper()


def status_count(status: str | None) -> int:
    """Rows touched, from PostgreSQL's command tag ("UPDATE 3", "INSERT 0 1")."""
    if not status:
        return -1
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else -1
