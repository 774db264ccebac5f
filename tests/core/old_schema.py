"""A directory of the migrations before a given one: opens a store as an older smsd left it."""

from __future__ import annotations

import shutil
from pathlib import Path

from smsd.store.sqlite_io import MIGRATIONS_DIR


def migrations_before(tmp_path: Path, number: int) -> Path:
    """A copy of the SQLite migrations numbered below ``number`` (for Store.open's
    ``migrations_dir``): the schema an smsd of that age wrote."""
    old = tmp_path / f"migrations-{number - 1:04d}"
    old.mkdir()
    for f in sorted(MIGRATIONS_DIR.iterdir()):
        if f.name < f"{number:04d}":
            shutil.copy(f, old / f.name)
    return old
