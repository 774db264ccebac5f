"""``smsd run``, ``smsd check-config`` and ``smsd passwd``: the daemon and its configuration."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from smsd.cli import common
from smsd.cli.client import CliError
from smsd.config import DEFAULT_CONFIG_PATH, Config, load_config
from smsd.errors import ConfigError


def cmd_run(args: argparse.Namespace) -> int:
    from smsd.daemon import apply_overrides, run_daemon
    from smsd.demo import demo_config
    from smsd.logging import setup_logging

    setup_logging(args.log_level, cache=True)   # the daemon's process: loggers kept
    state_dir = Path(args.state_dir) if args.state_dir else None
    if args.demo:
        if args.config:
            raise CliError("--demo needs no config; drop --config or --demo", 2)
        cfg = demo_config(state_dir or Path("smsd-demo"), args.http, args.agi)
    else:
        loaded = common.load(args.config, required=True)
        assert loaded is not None
        cfg = apply_overrides(loaded, state_dir=state_dir, http=args.http, agi=args.agi)
        path = args.config or str(DEFAULT_CONFIG_PATH)

        def reread() -> Config:
            """The file again, with the same command-line overrides (SIGHUP)."""
            return apply_overrides(load_config(path), state_dir=state_dir, http=args.http,
                                   agi=args.agi)

        return run_daemon(cfg, reload_config=reread)
    return run_daemon(cfg, demo=args.demo)


def cmd_check_config(args: argparse.Namespace) -> int:
    path = args.file or args.config or str(DEFAULT_CONFIG_PATH)
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(common.config_problems(exc), file=sys.stderr)
        return 1
    gateways = [g for g in cfg.routing if getattr(cfg, g) is not None]
    modems = len(cfg.gsm.modems) if cfg.gsm else 0
    print(
        f"{path}: OK ({len(cfg.users)} users, {len(cfg.call_groups)} call groups, "
        f"gateways {', '.join(gateways) or 'none'}, {modems} modems; "
        f"HTTP {cfg.http}, AGI {cfg.agi})"
    )
    for warning in config_warnings(cfg):
        print(f"{path}: warning: {warning}", file=sys.stderr)
    return 0


def config_warnings(cfg: Config) -> list[str]:
    """Valid but probably not what was meant: the daemon would run and do nothing."""
    out: list[str] = []
    if not cfg.users:
        out.append("no [[users]]: nobody can log in to the API or send SMS "
                   "(add users with password_hash from `smsd passwd`)")
    if not any(getattr(cfg, g) is not None for g in cfg.routing):
        out.append("no gateway configured ([gateways.gsm], [gateways.curl] or "
                   "[gateways.classound]): every message would wait and then expire")
    return out


def cmd_passwd(args: argparse.Namespace) -> int:
    from smsd.passwords import hash_password

    if sys.stdin.isatty():
        try:
            first = getpass.getpass("Password: ")
            if first != getpass.getpass("Again: "):
                raise CliError("the passwords differ; nothing printed")
        except EOFError:
            # Ctrl-D at the prompt: the user changed their mind.
            print(file=sys.stderr)
            raise CliError("no password given (end of input); nothing printed") from None
    else:
        first = sys.stdin.readline().rstrip("\r\n")
    if not first:
        raise CliError("empty password refused")
    print(hash_password(first))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the daemon")
    p.add_argument("--config", help=f"config file (default {DEFAULT_CONFIG_PATH})")
    p.add_argument(
        "--demo",
        action="store_true",
        help="no config, no hardware: one simulated modem, user demo/demo",
    )
    p.add_argument("--state-dir", help="state directory (demo default ./smsd-demo)")
    p.add_argument("--http", type=common.listen_arg, metavar="HOST:PORT", help="HTTP API listener")
    p.add_argument("--agi", type=common.listen_arg, metavar="HOST:PORT", help="FastAGI listener")
    p.add_argument(
        "--log-level",
        default=os.environ.get("SMSD_LOG_LEVEL", "info"),
        choices=("debug", "info", "warning", "error"),
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate a config file and list every problem")
    p.add_argument("file", nargs="?", help=f"default {DEFAULT_CONFIG_PATH}")
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("passwd", help="print a password hash for [[users]] password_hash")
    p.set_defaults(func=cmd_passwd)

