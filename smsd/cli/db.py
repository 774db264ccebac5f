"""``smsd db migrate`` and ``smsd db copy``: the database itself, SQLite or PostgreSQL.

``migrate`` brings a database to this smsd's schema version (several nodes
may run it at once on PostgreSQL: versions are applied under a lock, once).
``copy`` moves a single host's SQLite file into a freshly migrated, empty
PostgreSQL database, the step from one host to several (README, "Several
hosts").  A URL's password is never printed; prefer ``--config`` with
``database_url_file`` to a password on the command line (``ps`` shows it).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from smsd.cli import common
from smsd.cli.client import CliError
from smsd.config_database import is_postgres_url
from smsd.errors import SmsdError


def _target(args: argparse.Namespace, flag: str) -> str:
    """The database named by ``flag`` or, without it, by the config."""
    given: str | None = getattr(args, flag)
    if given:
        return given
    cfg = common.load(args.config, required=True)
    assert cfg is not None
    return cfg.database_url or str(cfg.database)


async def _migrate(target: str) -> str:
    if is_postgres_url(target):
        from smsd.store.pg import migrate, redact
        from smsd.store.pg.connect import connect

        conn = await connect(target)
        try:
            version = await migrate(conn, redact(target))
        finally:
            await conn.close()
        return f"{redact(target)}: schema version {version}"
    from smsd.store import Store

    path = Path(target)
    if not path.parent.is_dir():
        raise CliError(f"{path.parent} is not a directory", 2)
    store = await Store.open(path)
    try:
        version = await store.schema_version()
    finally:
        await store.close()
    return f"{path}: schema version {version}"


def cmd_migrate(args: argparse.Namespace) -> int:
    target = _target(args, "database")
    try:
        print(asyncio.run(_migrate(target)))
    except SmsdError as exc:
        raise CliError(str(exc)) from None
    return 0


def cmd_copy(args: argparse.Namespace) -> int:
    from smsd.store.pg import redact
    from smsd.store.pg.copy import copy_sqlite_to_pg

    target = _target(args, "to")
    if not is_postgres_url(target):
        raise CliError("--to must be a postgresql:// URL (or --config naming one)", 2)
    source = Path(args.source)
    if is_postgres_url(args.source):
        raise CliError("--from is the SQLite file of a single host", 2)
    try:
        counts = asyncio.run(copy_sqlite_to_pg(source, target))
    except SmsdError as exc:
        raise CliError(str(exc)) from None
    width = max(len(t) for t, _ in counts)
    for table, rows in counts:
        print(f"{table:<{width}}  {rows:>9}  ok")
    print(f"copied {sum(n for _, n in counts)} rows of {len(counts)} tables from {source} "
          f"to {redact(target)}; every count checked")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("db", help="migrate the database, copy SQLite to PostgreSQL")
    verbs = p.add_subparsers(dest="db_command", metavar="VERB", required=True)
    m = verbs.add_parser("migrate", help="apply schema migrations and print the version")
    where = m.add_mutually_exclusive_group()
    where.add_argument("--config", help="config file naming the database")
    where.add_argument("--database", metavar="URL_OR_PATH",
                       help="a postgresql:// URL or a SQLite file")
    m.set_defaults(func=cmd_migrate)
    c = verbs.add_parser("copy", help="copy a single-node SQLite database into empty PostgreSQL")
    c.add_argument("--from", dest="source", required=True, metavar="FILE",
                   help="the SQLite database (opened read-only)")
    to = c.add_mutually_exclusive_group()
    to.add_argument("--to", metavar="URL", help="the migrated, empty PostgreSQL database")
    to.add_argument("--config",
                    help="config file whose database (or database_url_file) is the target")
    c.set_defaults(func=cmd_copy)
