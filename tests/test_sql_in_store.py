"""Every SQL statement of the daemon lives in smsd/store/ (issue 18).

The store is the one room that knows the tables: the rest of the package calls
its typed functions.  A statement written anywhere else would dodge both
backends' tests of the store and the dialect translation's review, so this
test reads every string of the package (not comments, not docstrings) and
names each one that looks like SQL outside smsd/store/.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "smsd"

# The statements smsd writes, as SQL spells them (upper case, as every
# statement of the package is written); prose in log events and errors is
# lower case and never matches.
SQL = re.compile(
    r"\bSELECT\b|\bINSERT\s+INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b"
    r"|\bPRAGMA\b|\bON\s+CONFLICT\b|\bGROUP\s+BY\b|\bORDER\s+BY\b"
)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are docstrings (module, class, function)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every string literal but docstrings; an f-string's fields read as x."""
    skip = _docstrings(tree)
    inner: set[int] = set()
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = ""
            for v in node.values:
                inner.add(id(v))
                text += v.value if isinstance(v, ast.Constant) else "x"
            found.append((node.lineno, text))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in skip and id(node) not in inner:
            found.append((node.lineno, node.value))
    return found


def sql_outside_store(package: Path = PACKAGE) -> list[str]:
    """``file:line: text`` of every string literal outside ``package``/store/ that holds SQL."""
    store = package / "store"
    hits: list[str] = []
    for path in sorted(package.rglob("*.py")):
        if store in path.parents:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, text in sorted(_strings(tree)):
            if SQL.search(text):
                hits.append(f"{path.relative_to(package.parent)}:{line}: {text[:70]!r}")
    return hits


def test_no_sql_outside_the_store() -> None:
    """No module outside smsd/store/ holds a SQL statement: it calls a typed store function."""
    hits = sql_outside_store()
    assert hits == [], (
        "SQL outside smsd/store/ (move it behind a typed function there):\n" + "\n".join(hits)
    )


def test_the_check_sees_sql(tmp_path: Path) -> None:
    """The scan finds a statement in code (also in an f-string) and ignores docstrings."""
    pkg = tmp_path / "smsd"
    (pkg / "store").mkdir(parents=True)
    (pkg / "store" / "q.py").write_text('Q = "SELECT id FROM messages"\n')
    (pkg / "core.py").write_text(
        '"""Claims with SELECT ... FOR UPDATE SKIP LOCKED."""\n'
        'def f(t: str) -> str:\n'
        '    """UPDATE messages SET x in prose."""\n'
        '    q = f"UPDATE {t} SET state = ?"\n'
        '    return q + "DELETE FROM opt_outs"\n'
    )
    hits = sql_outside_store(pkg)
    assert [h.split(":")[:2] for h in hits] == [["smsd/core.py", "4"], ["smsd/core.py", "5"]]
