"""``smsd send``: SMS through the running daemon."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from smsd.cli import bulk, common
from smsd.cli.client import ApiClient, CliError
from smsd.errors import BadTime
from smsd.text import parse_postpone


def _send_at(raw: str | None, client: ApiClient) -> str | None:
    if raw is None:
        return None
    try:
        parse_postpone(raw, "UTC")     # shape and date first: no daemon call for a typo
    except BadTime as exc:
        raise CliError(f"--at {exc.reason}", 2) from None
    health = client.call("GET", "/healthz", auth=False)
    return parse_postpone(raw, str(health.get("timezone") or "UTC")).isoformat()


def cmd_send(args: argparse.Namespace) -> int:
    client = common.client(args, need_auth=True)
    if args.to_file is not None:
        return _send_file(args, client)
    numbers = [n.strip() for n in args.to.split(",") if n.strip()]
    if not numbers:
        raise CliError("--to needs at least one E.164 number", 2)
    body: dict[str, Any] = {"to": numbers, "text": args.text}
    send_at = _send_at(args.at, client)
    if send_at:
        body["send_at"] = send_at
    answer = client.call("POST", "/api/v1/sms", body)
    for mid in answer.get("ids", []):
        print(f"queued {mid}")
    for w in answer.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    for r in answer.get("refused", []):
        print(f"refused {r['number']}: {r['reason']}", file=sys.stderr)
    return 1 if answer.get("refused") else 0


def _send_file(args: argparse.Namespace, client: ApiClient) -> int:
    """Bulk: numbers from a file or stdin, in chunks, with progress and a summary."""
    lines, total = bulk.open_numbers(args.to_file)
    send_at = _send_at(args.at, client)
    result = bulk.send_bulk(client, bulk.read_numbers(lines), args.text, send_at=send_at,
                            total=total)
    bulk.print_summary(result)
    return 1 if result.refused else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("send", help="send an SMS through the running daemon")
    to = p.add_mutually_exclusive_group(required=True)
    to.add_argument("--to", help="E.164 number(s), comma-separated")
    to.add_argument(
        "--to-file", metavar="FILE",
        help="bulk: numbers from FILE (one per line, or CSV with a 'number' column; "
        "'-' = stdin), sent in chunks with a progress bar and a summary of refused numbers",
    )
    p.add_argument("--text", required=True, help="message text")
    p.add_argument("--at", help='send later: "dd/mm/yyyy HH:MM" in the daemon\'s time zone')
    common.add_client_args(p)
    p.set_defaults(func=cmd_send)

