"""``smsd block`` and ``smsd unblock``: the inbound blocklist, through the daemon."""

from __future__ import annotations

import argparse
import urllib.parse

from smsd.cli import common


def cmd_block(args: argparse.Namespace) -> int:
    client = common.client(args, need_auth=True)
    if args.command == "block":
        body = {"number": args.number}
        if args.reason is not None:
            body["reason"] = args.reason
        answer = client.call("POST", "/api/v1/blocklist", body)
        print(f"blocked {answer.get('blocked', args.number)}")
        return 0
    answer = client.call("DELETE", "/api/v1/blocklist/" + urllib.parse.quote(args.number, safe=""))
    number = answer.get("unblocked", args.number)
    if answer.get("was_blocked") is False:
        # Exit 0: the number is not blocked, which is what was asked (like rm -f);
        # the line says nothing changed.
        print(f"{number} was not blocked")
    else:
        print(f"unblocked {number}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for verb, text in (("block", "block a number"), ("unblock", "unblock a number")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("number", help="E.164 number")
        if verb == "block":
            p.add_argument(
                "--reason",
                help='why (kept in the store; default "blocked by admin", '
                "or the stored reason when the number is already blocked)",
            )
        common.add_client_args(p)
        p.set_defaults(func=cmd_block)

