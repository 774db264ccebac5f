"""The package's rooms import only downwards, and no module imports itself back.

docs/internals.md draws the map; these tests keep the code to it.  Every
import counts, including those under ``TYPE_CHECKING`` and inside functions:
a type-only import upwards is still a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "smsd"

# Lower numbers sit lower.  A module may import its own room and rooms with a
# smaller number, never a larger one.
RANKS: dict[str, int] = {
    "errors": 0,
    "codec": 1,
    "numbers": 1,
    "passwords": 1,
    "logging": 1,
    "sdnotify": 1,
    "config_reader": 1,
    "turns": 1,
    "text": 2,
    "modem": 2,
    "simulator": 3,
    "config": 3,
    "config_types": 3,
    "config_sections": 3,
    "config_database": 3,
    "store": 4,
    "gateways": 5,
    "core": 6,
    "asterisk": 7,
    "dialplan": 8,
    "mail2sms": 8,
    "services": 9,
    "api": 10,
    "agi": 10,
    "ui": 11,
    "demo": 11,
    "cluster": 11,
    "startup": 12,
    "daemon": 12,
    "cli": 13,
    "__main__": 14,
    "__init__": 0,
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Every smsd module that ``path`` imports (resolved to a module, not a package attribute)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_pkg else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for t in targets:
            if not t.startswith("smsd"):
                continue
            # "from smsd.codec import pdu" names a module; "from smsd.store import Store" a package
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    graph = {m: _imports(p, m, known) for m, p in mods.items()}
    # A package's __init__ re-exporting its own modules is not a dependency of
    # those modules on the package: drop edges from a module to its own package.
    for m, deps in graph.items():
        graph[m] = {d for d in deps if not m.startswith(d + ".")}
    return graph


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


class TestImportGraph:
    def test_every_room_has_a_rank(self) -> None:
        """A new room is placed on the map on purpose, not by accident."""
        rooms = {_room(m) for m in _modules()}
        assert rooms - set(RANKS) == set()

    def test_imports_point_down(self) -> None:
        """No module imports a room ranked above its own."""
        upward = [
            f"{m} -> {d}"
            for m, deps in _graph().items()
            for d in deps
            if RANKS[_room(d)] > RANKS[_room(m)]
        ]
        assert upward == []

    def test_no_import_cycles(self) -> None:
        """The module graph is acyclic (Tarjan: every strongly connected part is one module)."""
        graph = _graph()
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        cycles: list[list[str]] = []
        counter = [0]

        def visit(v: str) -> None:
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on_stack.add(v)
            for w in graph.get(v, ()):
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    cycles.append(sorted(comp))

        sys.setrecursionlimit(10_000)
        for v in graph:
            if v not in index:
                visit(v)
        assert cycles == []

    def test_rooms_form_no_cycle(self) -> None:
        """Rooms, not only modules, are acyclic: codec never reaches back into the driver."""
        edges = {(_room(m), _room(d)) for m, deps in _graph().items() for d in deps}
        mutual = sorted((a, b) for a, b in edges if a < b and (b, a) in edges)
        assert mutual == []


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("smsd.codec", ("smsd.modem", "smsd.core", "smsd.store", "smsd.simulator")),
        ("smsd.codec.pdu", ("smsd.modem", "smsd.core", "smsd.store", "smsd.simulator")),
        ("smsd.core.outbox", ("smsd.simulator", "smsd.cli", "smsd.api", "smsd.daemon")),
        ("smsd.core.dispatcher", ("smsd.simulator", "smsd.cli", "smsd.api", "smsd.daemon")),
        ("smsd.modem.pool", ("smsd.core", "smsd.store", "smsd.simulator", "smsd.cli")),
        # the store's typed functions (issue 18) serve core; they never need it
        *[(f"smsd.store.{m}", ("smsd.core", "smsd.dialplan", "smsd.api", "smsd.daemon"))
          for m in ("submits", "claims", "attempts", "recovery", "inbound", "deliveries",
                    "conversations", "stats")],
    ],
)
def test_importing_a_room_loads_nothing_above_it(module: str, forbidden: tuple[str, ...]) -> None:
    """Importing a low room in a fresh interpreter loads no module of the rooms above it."""
    code = (
        f"import sys, {module}\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('smsd'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert [m for m in out if m.startswith(forbidden)] == []


def test_no_wait_for_in_the_daemon() -> None:
    """No ``asyncio.wait_for`` in smsd: on Python 3.11 it drops a cancel that
    arrives as the awaited thing finishes (CPython gh-86296), which once left
    the AMI client reconnecting after the daemon cancelled it.
    ``async with asyncio.timeout(...)`` has the same deadline without that."""
    offenders = [f"{path}:{n}" for path in _modules().values()
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if "wait_for(" in line and not line.lstrip().startswith("#")]
    assert offenders == []
