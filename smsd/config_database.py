"""The ``database``, ``database_url_file`` and ``node`` keys of the config.

``database`` is a SQLite path (relative to state_dir) unless it is a
``postgresql://`` URL, which selects the shared PostgreSQL store (issue 18).
A URL with a password belongs in ``database_url_file``: a file that only the
daemon's user (and its group) may read, refused when others can.
"""

from __future__ import annotations

import re
import socket
import stat
from pathlib import Path
from urllib.parse import urlsplit

from smsd.config_reader import Section

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# A node name: what an admin types in `node = ...` and sees in /api/v1/nodes.
_NODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def is_postgres_url(value: str) -> bool:
    return value.startswith(POSTGRES_SCHEMES)


def _url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"is not a valid PostgreSQL URL ({exc})"
    if not parts.path.strip("/"):
        return "names no database (postgresql://user@host/DATABASE)"
    return None


def _url_from_file(root: Section, raw: str, base: Path | None) -> str | None:
    key = "database_url_file"
    p = Path(raw)
    if base is not None and not p.is_absolute():
        p = base / p
    try:
        mode = p.stat().st_mode
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        root.problem(key, f"cannot read {str(p)!r}: {exc.strerror or exc}")
        return None
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        root.problem(key, f"{str(p)!r} holds a password and is readable or writable by "
                          "every user; chmod o-rwx it")
        return None
    url = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not is_postgres_url(url):
        root.problem(key, f"{str(p)!r} must hold one postgresql:// URL")
        return None
    return url


def read_database(
    root: Section, state_dir: Path, base: Path | None, default: str
) -> tuple[Path, str | None, str]:
    """(SQLite path, PostgreSQL URL or None, node name) from the top-level keys."""
    raw = root.text("database", default)
    url_file = root.text("database_url_file", None)
    url: str | None = None
    if url_file is not None:
        if raw != default:
            root.problem("database_url_file", "give database or database_url_file, not both")
        url = _url_from_file(root, url_file, base)
    elif is_postgres_url(raw):
        url = raw
    if url is not None and (problem := _url_problem(url)):
        root.problem("database_url_file" if url_file else "database", problem)
        url = None
    db_path = Path(default if url is not None or url_file else raw)
    database = db_path if db_path.is_absolute() else state_dir / db_path
    node = root.text("node", None) or socket.gethostname()
    if not _NODE.match(node):
        root.problem("node", f"{node!r}: 1-63 letters, digits, '.', '_' or '-'")
    return database, url, node
