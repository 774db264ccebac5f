"""``smsd stats`` and ``smsd report``: usage and message lists, read-only from the database.

Both open the daemon's database read-only (the daemon stays the only writer),
so they work while it runs and after it stopped.

- ``smsd stats [--month YYYY-MM] [--user EXT] [--format table|csv|json]``:
  sent, delivered, failed, received, parts, included and billable per user,
  per gateway and per day (smsd.core.monthly).  ``--csv`` is the older
  spelling of ``smsd report --format csv`` and still prints the message rows.
- ``smsd report [--month M | --since T --until T] [--user EXT] [--to NUMBER]
  [--state S] [--gateway G] [--format table|csv|json]``: one row per message
  (time, user, from, to, gateway, parts, state, cost); CSV for export.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from smsd.cli import common
from smsd.cli.client import CliError
from smsd.config import DEFAULT_CONFIG_PATH, Config, Policy, config_from_dict

STATS_HINT = "give --config FILE, or --database FILE to read a database with policy defaults"

T = TypeVar("T")
FORMATS = ("table", "csv", "json")
STAT_COLUMNS = ("messages", "sent", "delivered", "failed", "received", "parts", "included",
                "billable", "cost")


def _config(args: argparse.Namespace) -> Config:
    """The config; or, with only ``--database``, the policy defaults (and a note saying so).

    A database alone is enough: the reports are read from it; the config only
    brings the policy (time zone, package, fee) and the users.
    """
    cfg = common.load(args.config, required=args.database is None, hint=STATS_HINT)
    if cfg is not None:
        return cfg
    policy = Policy()
    print(
        f"smsd {args.command}: no config, so policy defaults (time zone {policy.timezone}, "
        f"{policy.monthly_package} SMS included, fee {policy.fee_per_sms:g}); "
        "give --config FILE for yours",
        file=sys.stderr,
    )
    return config_from_dict({})


def _username(cfg: Config, ext: str | None) -> str | None:
    """``--user`` takes an extension (or a username); the store keys messages by username."""
    if ext is None:
        return None
    for u in cfg.users:
        if ext in (u.extension, u.username):
            return u.username
    raise CliError(f"--user {ext!r}: no [[users]] entry has that extension or username", 2)


def _month(cfg: Config, month: str | None) -> tuple[datetime, datetime]:
    from smsd.core.stats import month_bounds

    try:
        return month_bounds(month, cfg.policy.timezone, datetime.now(ZoneInfo("UTC")))
    except ValueError as exc:
        raise CliError(str(exc), 2) from None


def _with_store(cfg: Config, database: str | None, fn: Callable[[Any], Awaitable[T]]) -> T:
    from smsd.store import Store, StoreError

    path = Path(database) if database else cfg.database
    if not path.exists():
        raise CliError(f"no database at {path} (has the daemon run yet?)")

    async def run() -> T:
        try:
            store = await Store.open(path, readonly=True)
        except StoreError as exc:
            raise CliError(str(exc)) from None
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(run())


def cmd_stats(args: argparse.Namespace) -> int:
    from smsd.core.monthly import month_report
    from smsd.core.stats import report_csv

    cfg = _config(args)
    start, end = _month(cfg, args.month)
    user = _username(cfg, args.user)
    if args.csv:
        text = _with_store(cfg, args.database,
                           lambda store: report_csv(store, start, end, cfg.policy))
        sys.stdout.write(text)
        return 0
    did = next((u.office_number for u in cfg.users if u.username == user), None)
    report = _with_store(
        cfg, args.database,
        lambda store: month_report(store, start, end, cfg.policy, user=user, user_did=did),
    )
    data = report.to_json()
    if args.format == "json":
        print(json.dumps(data, indent=2))
    elif args.format == "csv":
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(("group", "key", *STAT_COLUMNS))
        w.writerow(("total", data["month"], *(data["total"][c] for c in STAT_COLUMNS)))
        for group, key in (("user", "user"), ("gateway", "gateway"), ("day", "day")):
            for row in data[f"by_{group}"]:
                w.writerow((group, row[key], *(row[c] for c in STAT_COLUMNS)))
        sys.stdout.write(out.getvalue())
    else:
        sys.stdout.write(_table(data))
    return 0


def _table(data: dict[str, Any]) -> str:
    t = data["total"]
    lines = [
        f"{data['month']} ({data['timezone']}): outgoing {t['messages']} messages "
        f"({t['parts']} parts, {t['sent']} sent, {t['delivered']} delivered, "
        f"{t['failed']} failed), incoming {t['received']}; "
        f"{data['monthly_package']} included per user, then {data['fee_per_sms']:g} per SMS",
    ]
    head = f"{'':<16}" + "".join(f"{c:>10}" for c in STAT_COLUMNS)
    for group, key, title in (("user", "user", "per user"), ("gateway", "gateway", "per gateway"),
                              ("day", "day", "per day")):
        rows = data[f"by_{group}"]
        if not rows:
            continue
        lines += ["", title, head]
        for row in rows:
            cells = "".join(
                f"{row[c]:>10.2f}" if c == "cost" else f"{row[c]:>10}" for c in STAT_COLUMNS
            )
            lines.append(f"{(row[key] or '-')[:15]:<16}{cells}")
    return "\n".join(lines) + "\n"


def _time(raw: str | None, key: str, tz: ZoneInfo) -> datetime | None:
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise CliError(f"{key} {raw!r}: expected an ISO date or time (2026-11-25[T14:00])",
                       2) from None
    return value if value.tzinfo else value.replace(tzinfo=tz)


def cmd_report(args: argparse.Namespace) -> int:
    from smsd.core.reports import ReportFilter, write_report

    cfg = _config(args)
    tz = ZoneInfo(cfg.policy.timezone)
    if args.month and (args.since or args.until):
        raise CliError("give --month or --since/--until, not both", 2)
    since: datetime | None
    until: datetime | None
    if args.month or not (args.since or args.until):
        since, until = _month(cfg, args.month)
    else:
        since, until = _time(args.since, "--since", tz), _time(args.until, "--until", tz)
    flt = ReportFilter(since=since, until=until, user=_username(cfg, args.user),
                       recipient=args.to, state=args.state, gateway=args.gateway)
    _with_store(cfg, args.database,
                lambda store: write_report(store, cfg.policy, flt, sys.stdout, args.format))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("stats", help="monthly statistics per user, gateway and day (read-only)")
    p.add_argument("--config", help=f"config file (default {DEFAULT_CONFIG_PATH})")
    p.add_argument(
        "--database", help="database file (default: from the config; needs no config)"
    )
    p.add_argument("--month", help="YYYY-MM (default: this month, in [policy] timezone)")
    p.add_argument("--user", help="only this user (extension or username)")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format")
    p.add_argument("--csv", action="store_true",
                   help="print the month's message rows as CSV (= smsd report --format csv)")
    p.set_defaults(func=cmd_stats)

    r = sub.add_parser("report", help="list messages (time, user, from, to, gateway, parts, "
                                      "state, cost) with filters; CSV for export")
    r.add_argument("--config", help=f"config file (default {DEFAULT_CONFIG_PATH})")
    r.add_argument("--database", help="database file (default: from the config)")
    r.add_argument("--month", help="YYYY-MM (default: this month unless --since/--until)")
    r.add_argument("--since", help="from this time (ISO 8601; [policy] timezone if no offset)")
    r.add_argument("--until", help="before this time (ISO 8601)")
    r.add_argument("--user", help="only this user (extension or username)")
    r.add_argument("--to", help="only this recipient (E.164)")
    r.add_argument("--state", help="only this state (queued, sent, delivered, failed, ...)")
    r.add_argument("--gateway", help="only this gateway (curl, gsm, classound)")
    r.add_argument("--format", choices=FORMATS, default="table", help="output format")
    r.set_defaults(func=cmd_report)
