"""``smsd mail2sms``: the e-mail on stdin as SMS (a Postfix or Exim pipe transport)."""

from __future__ import annotations

import argparse

from smsd.cli.client import CliError
from smsd.config import DEFAULT_CONFIG_PATH


def cmd_mail2sms(args: argparse.Namespace) -> int:
    raise CliError("Mail2SMS is not implemented yet in this build; nothing was sent", 2)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("mail2sms", help="send the e-mail on stdin as SMS (Mail2SMS pipe)")
    p.add_argument("--config", help=f"config file (default {DEFAULT_CONFIG_PATH})")
    p.set_defaults(func=cmd_mail2sms)
