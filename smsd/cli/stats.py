"""``smsd stats``: monthly usage and report rows, read-only from the database."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from smsd.cli import common
from smsd.cli.client import CliError
from smsd.config import DEFAULT_CONFIG_PATH, Policy

STATS_HINT = "give --config FILE, or --database FILE to read a database with policy defaults"


def cmd_stats(args: argparse.Namespace) -> int:
    import asyncio

    from smsd.core.stats import month_bounds

    # A database alone is enough: the reports are read from it; the config
    # only brings the policy (time zone, package, fee).  Without one the
    # defaults apply, and the reader is told so.
    cfg = common.load(args.config, required=args.database is None, hint=STATS_HINT)
    if cfg is None:
        policy = Policy()
        print(
            f"smsd stats: no config, so policy defaults (time zone {policy.timezone}, "
            f"{policy.monthly_package} SMS included, fee {policy.fee_per_sms:g}); "
            "give --config FILE for yours",
            file=sys.stderr,
        )
    else:
        policy = cfg.policy
    database = Path(args.database) if args.database else cfg.database if cfg else None
    assert database is not None
    if not database.exists():
        raise CliError(f"no database at {database} (has the daemon run yet?)")
    try:
        start, end = month_bounds(args.month, policy.timezone, datetime.now(ZoneInfo("UTC")))
    except ValueError as exc:
        raise CliError(str(exc), 2) from None
    print(asyncio.run(_stats(policy, database, start, end, args.csv)), end="")
    return 0


async def _stats(
    policy: Policy, database: Path, start: datetime, end: datetime, as_csv: bool
) -> str:
    from smsd.core.stats import monthly_usage, report_csv, totals
    from smsd.store import Store, StoreError

    try:
        store = await Store.open(database, readonly=True)
    except StoreError as exc:
        raise CliError(str(exc)) from None
    try:
        if as_csv:
            return await report_csv(store, start, end, policy)
        t = await totals(store, start, end)
        usage = await monthly_usage(store, start, end, policy)
    finally:
        await store.close()
    lines = [
        f"{start:%Y-%m} ({policy.timezone}): outgoing {t.outgoing} messages "
        f"({t.outgoing_parts} parts, {t.delivered} delivered, {t.failed} failed), "
        f"incoming {t.incoming}",
        f"{'user':<16}{'messages':>9}{'parts':>7}{'included':>9}{'billable':>9}{'fee':>10}",
    ]
    for u in usage:
        lines.append(
            f"{u.user:<16}{u.messages:>9}{u.parts:>7}{u.included:>9}{u.billable:>9}{u.fee:>10.2f}"
        )
    return "\n".join(lines) + "\n"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("stats", help="monthly usage and SMS report rows (read-only)")
    p.add_argument("--config", help=f"config file (default {DEFAULT_CONFIG_PATH})")
    p.add_argument(
        "--database", help="database file (default: from the config; needs no config)"
    )
    p.add_argument("--month", help="YYYY-MM (default: this month)")
    p.add_argument("--csv", action="store_true", help="print the report rows as CSV")
    p.set_defaults(func=cmd_stats)

