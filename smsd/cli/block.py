"""``smsd block`` and ``smsd unblock``: the inbound blocklist, through the daemon."""

from __future__ import annotations

import argparse
import urllib.parse

from smsd.cli import common


def cmd_block(args: argparse.Namespace) -> int:
    client = common.client(args, need_auth=True)
    if args.command == "block":
        client.call("POST", "/api/v1/blocklist", {"number": args.number, "reason": args.reason})
        print(f"blocked {args.number}")
    else:
        client.call("DELETE", "/api/v1/blocklist/" + urllib.parse.quote(args.number, safe=""))
        print(f"unblocked {args.number}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for verb, text in (("block", "block a number"), ("unblock", "unblock a number")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("number", help="E.164 number")
        if verb == "block":
            p.add_argument("--reason", default="blocked by admin", help="why (kept in the store)")
        common.add_client_args(p)
        p.set_defaults(func=cmd_block)

