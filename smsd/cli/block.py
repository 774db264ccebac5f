"""``smsd block add|remove|list [NUMBER]``: the blocklist, through the daemon (admins).

``smsd block NUMBER`` (= ``block add``) and ``smsd unblock NUMBER`` (= ``block
remove``) are kept for scripts written before the sub-verbs.
"""

from __future__ import annotations

import argparse
import urllib.parse

from smsd.cli import common
from smsd.cli.client import CliError

ACTIONS = ("add", "remove", "list")


def cmd_block(args: argparse.Namespace) -> int:
    words = list(args.words)
    if args.command == "unblock":
        action = "remove"
    elif words and words[0] in ACTIONS:
        action = words.pop(0)
    else:
        action = "add"
    if action == "list":
        if words:
            raise CliError("smsd block list takes no number", 2)
        return _list(args)
    if len(words) != 1:
        raise CliError(f"smsd block {action} takes one E.164 number", 2)
    number = words[0]
    client = common.client(args, need_auth=True)
    if action == "add":
        body = {"number": number}
        if args.reason is not None:
            body["reason"] = args.reason
        answer = client.call("POST", "/api/v1/blocklist", body)
        print(f"blocked {answer.get('blocked', number)}")
        return 0
    answer = client.call("DELETE", "/api/v1/blocklist/" + urllib.parse.quote(number, safe=""))
    number = answer.get("unblocked", number)
    if answer.get("was_blocked") is False:
        # Exit 0: the number is not blocked, which is what was asked (like rm -f);
        # the line says nothing changed.
        print(f"{number} was not blocked")
    else:
        print(f"unblocked {number}")
    return 0


def _list(args: argparse.Namespace) -> int:
    answer = common.client(args, need_auth=True).call("GET", "/api/v1/blocklist")
    for row in answer.get("blocked", []):
        print(f"blocked    {row['number']:<16} {row.get('created_at', '')[:19]:<20} "
              f"{row.get('by') or '-':<12} {row.get('reason', '')}")
    for row in answer.get("opted_out", []):
        did = row.get("did") or "any number"
        print(f"opted out  {row['number']:<16} {row.get('created_at', '')[:19]:<20} "
              f"{row.get('keyword', '')} to {did}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "block", help="block list: add NUMBER, remove NUMBER, list (admins)",
        usage="smsd block {add,remove} NUMBER [--reason TEXT] | smsd block list",
    )
    p.add_argument("words", nargs="+", metavar="add|remove|list NUMBER",
                   help="the action and the E.164 number (a bare NUMBER means add)")
    p.add_argument(
        "--reason",
        help='why (kept in the store; default "blocked by admin", '
        "or the stored reason when the number is already blocked)",
    )
    common.add_client_args(p)
    p.set_defaults(func=cmd_block)
    u = sub.add_parser("unblock", help="= smsd block remove NUMBER")
    u.add_argument("words", nargs=1, metavar="NUMBER", help="E.164 number")
    common.add_client_args(u)
    u.set_defaults(func=cmd_block)
