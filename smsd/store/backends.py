"""Which store a config names: a SQLite file, or the shared PostgreSQL database.

``database = "postgresql://..."`` (or ``database_url_file``) selects
PostgreSQL; anything else is a SQLite path.  Everything above the store asks
this module for "the store" and never which one it got.
"""

from __future__ import annotations

from pathlib import Path

from smsd.store.store import Store


async def open_database(
    path: Path, url: str | None, *, readonly: bool = False
) -> Store:
    """The store: PostgreSQL when ``url`` is set, else the SQLite file at ``path``.

    SQLite is migrated on open (the daemon owns its file).  A shared
    PostgreSQL database is only checked: ``smsd db migrate`` upgrades it, once,
    for every node.
    """
    if url is not None:
        from smsd.store.pg.store import PgStore

        return await PgStore.open_url(url, readonly=readonly, apply_migrations=False)
    return await Store.open(path, readonly=readonly)
