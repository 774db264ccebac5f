"""``smsd status`` and ``smsd ussd``: what the running daemon reports."""

from __future__ import annotations

import argparse
import json
import urllib.parse

from smsd.cli import common
from smsd.cli.client import USSD_HTTP_TIMEOUT_S, CliError


def cmd_status(args: argparse.Namespace) -> int:
    client = common.client(args, need_auth=False)
    health = client.call("GET", "/healthz", auth=False)
    print(f"status: {health.get('status')}")
    for p in health.get("problems", []):
        print(f"  problem: {p}")
    for name, gw in health.get("gateways", {}).items():
        print(f"gateway {name}: {'available' if gw.get('available') else 'unavailable'}")
    for m in health.get("modems", []):
        signal = f"{m['signal_dbm']} dBm" if m.get("signal_dbm") is not None else "signal ?"
        line = (
            f"modem {m['id']}: {m['state']} {m.get('operator') or ''} {signal} "
            f"number {m.get('own_number') or '?'} sent today {m.get('sent_today', 0)}"
        )
        if m.get("daily_cap"):
            line += f"/{m['daily_cap']}"
        if m.get("limit"):
            line += f" ({m['limit']})"
        if m.get("last_error"):
            line += f" last error: {m['last_error']}"
        print(line)
    for n in health.get("nodes", []):   # the shared PostgreSQL store only
        state = "alive" if n.get("alive") else "DEAD"
        this = " (this node)" if n.get("this") else ""
        print(f"node {n.get('name')}: {state}{this} version {n.get('version') or '?'} "
              f"last heartbeat {n.get('heartbeat_at') or 'never'}")
    queue = health.get("queue", {})
    print("queue: " + (", ".join(f"{k} {v}" for k, v in sorted(queue.items())) or "empty"))
    if client.user and client.password is not None:
        failed = client.call("GET", "/api/v1/sms?state=failed&limit=5")
        for msg in failed.get("messages", []):
            print(
                f"failed {msg['id']} to {msg['recipient']} at {msg['updated_at']}: "
                f"{msg.get('error')}"
            )
    return 0 if health.get("status") == "ok" else 1


def cmd_ussd(args: argparse.Namespace) -> int:
    """A USSD request through the daemon's modem (the daemon holds the port)."""
    from smsd.modem.at import USSD_ANSWERED, Ussd, is_ussd_code

    code = args.code
    if not is_ussd_code(code):
        raise CliError(f"USSD code {code!r}: only digits, * and #, e.g. '*100#'; nothing sent", 2)
    client = common.client(args, need_auth=True)
    path = "/api/v1/modems/" + urllib.parse.quote(args.modem_id, safe="") + "/ussd"
    answer = client.call("POST", path, {"code": code}, timeout_s=USSD_HTTP_TIMEOUT_S)
    status = answer.get("status")
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
    else:
        print("\n".join(Ussd(status, answer.get("text"), None).report_lines()))
    return 0 if status in USSD_ANSWERED else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="gateways, modems, queue and recent failures")
    common.add_client_args(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("ussd", help="USSD request (balance check) through the daemon's modem")
    p.add_argument("modem_id", help="the modem's id, as `smsd status` lists it (e.g. gsm0)")
    p.add_argument("code", help="the USSD code: digits, * and #, e.g. '*100#' (quote it)")
    p.add_argument("--json", action="store_true", help="print the daemon's JSON answer")
    common.add_client_args(p)
    p.set_defaults(func=cmd_ussd)

