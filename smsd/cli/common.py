"""What every ``smsd`` verb shares: the one-line failure, config loading and the
daemon-client arguments.

Every failure ends with a one-line reason on stderr and a non-zero exit
status: 1 = the request failed, 2 = usage or config error.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from smsd.cli.client import NEED_CREDENTIALS, ApiClient, CliError
from smsd.config import DEFAULT_CONFIG_PATH, Config, Listen, load_config, parse_listen
from smsd.errors import ConfigError


def listen_arg(text: str) -> Listen:
    try:
        return parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


RUN_HINT = "give --config FILE, or try `smsd run --demo`"


def load(path: str | None, *, required: bool, hint: str = RUN_HINT) -> Config | None:
    """The config at ``path`` (or the default when it exists).

    ``hint`` ends the "no config" error: what this verb can do instead
    (only ``smsd run`` can offer the demo).
    """
    if path is None:
        if not DEFAULT_CONFIG_PATH.exists():
            if required:
                raise CliError(
                    f"no config: {DEFAULT_CONFIG_PATH} does not exist ({hint})",
                    2,
                )
            return None
        path = str(DEFAULT_CONFIG_PATH)
    try:
        return load_config(path)
    except ConfigError as exc:
        raise CliError(config_problems(exc), 2) from None


def config_problems(exc: ConfigError) -> str:
    lines = [f"{exc.file or 'config'}: {len(exc.problems)} problem(s):"]
    lines += [f"  {key}: {reason}" for key, reason in exc.problems]
    return "\n".join(lines)


def client(args: argparse.Namespace, *, need_auth: bool) -> ApiClient:
    base = args.url
    if base is None:
        cfg = load(args.config, required=False)
        listen = cfg.http if cfg else Listen("127.0.0.1", 8080)
        host = f"[{listen.host}]" if ":" in listen.host else listen.host
        base = f"http://{host}:{listen.port}"
    user = args.user or os.environ.get("SMSD_USER")
    password = os.environ.get("SMSD_PASSWORD")
    if args.password_file:
        try:
            lines = Path(args.password_file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise CliError(f"--password-file {args.password_file}: {exc.strerror}", 2) from None
        password = lines[0] if lines else ""
    if need_auth and (not user or password is None):
        raise CliError(NEED_CREDENTIALS, 2)
    return ApiClient(base, user, password)


def add_client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="daemon API base URL (default: from the config's [http])")
    p.add_argument("--config", help=f"config file (default {DEFAULT_CONFIG_PATH} if present)")
    p.add_argument("--user", help="API user (default $SMSD_USER)")
    p.add_argument(
        "--password-file", help="file whose first line is the password (default $SMSD_PASSWORD)"
    )
