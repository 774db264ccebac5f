"""``smsd`` command line: run the daemon, and talk to a running one.

The daemon is the only writer of the database, so every command that changes
something (send, block) goes through its HTTP API; reports read the database
read-only.  Every failure ends with a one-line reason on stderr and a
non-zero exit status: 1 = the request failed, 2 = usage or config error.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from smsd import __version__
from smsd.config import DEFAULT_CONFIG_PATH, Config, Listen, load_config, parse_listen
from smsd.errors import ConfigError

# The daemon answers on loopback within milliseconds; 30 s covers an originate
# with 10,000 numbers on a slow disk (synchronous=FULL commit).
HTTP_TIMEOUT_S = 30.0
# A USSD request: the daemon waits up to 35 s for the modem to take AT+CUSD and
# 35 s more for the network's answer (modem/device.py USSD_TIMEOUT), so the
# daemon's own 504 arrives before this client gives up.
USSD_HTTP_TIMEOUT_S = 80.0
POSTPONE_FORMAT = "%d/%m/%Y %H:%M"
NEED_CREDENTIALS = (
    "credentials needed: give --user and --password-file (or set SMSD_USER and SMSD_PASSWORD)"
)


class CliError(Exception):
    """A failure to report in one line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        self.code = code
        super().__init__(message)


# --- helpers -----------------------------------------------------------------


def _listen_arg(text: str) -> Listen:
    try:
        return parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _load(path: str | None, *, required: bool) -> Config | None:
    """The config at ``path`` (or the default when it exists)."""
    if path is None:
        if not DEFAULT_CONFIG_PATH.exists():
            if required:
                raise CliError(
                    f"no config: {DEFAULT_CONFIG_PATH} does not exist "
                    "(give --config FILE, or try `smsd run --demo`)",
                    2,
                )
            return None
        path = str(DEFAULT_CONFIG_PATH)
    try:
        return load_config(path)
    except ConfigError as exc:
        raise CliError(_config_problems(exc), 2) from None


def _config_problems(exc: ConfigError) -> str:
    lines = [f"{exc.file or 'config'}: {len(exc.problems)} problem(s):"]
    lines += [f"  {key}: {reason}" for key, reason in exc.problems]
    return "\n".join(lines)


class ApiClient:
    """A tiny synchronous client for the daemon's loopback API."""

    def __init__(self, base: str, user: str | None, password: str | None) -> None:
        self.base = base.rstrip("/")
        self.user = user
        self.password = password

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        auth: bool = True,
        timeout_s: float = HTTP_TIMEOUT_S,
    ) -> Any:
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if auth:
            if not self.user or self.password is None:
                raise CliError(NEED_CREDENTIALS, 2)
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raw = exc.read().decode("utf-8", "replace")
            try:
                payload = json.loads(raw)
            except json.JSONDecodeError:
                payload = None
            if exc.code == 503 and isinstance(payload, dict):
                return payload  # /healthz: unhealthy is still an answer
            reason = (
                payload.get("error") or payload.get("reason") if isinstance(payload, dict) else raw
            )
            detail = ""
            if isinstance(payload, dict) and payload.get("invalid"):
                detail = ": " + ", ".join(
                    f"{b['number']} ({b['reason']})" for b in payload["invalid"]
                )
            raise CliError(f"daemon answered {exc.code}: {reason}{detail}") from None
        except urllib.error.URLError as exc:
            raise CliError(
                f"cannot reach the daemon at {self.base}: {exc.reason} (is `smsd run` running?)"
            ) from None
        except (TimeoutError, ConnectionError) as exc:
            raise CliError(f"cannot reach the daemon at {self.base}: {exc}") from None


def _client(args: argparse.Namespace, *, need_auth: bool) -> ApiClient:
    base = args.url
    if base is None:
        cfg = _load(args.config, required=False)
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


def _add_client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="daemon API base URL (default: from the config's [http])")
    p.add_argument("--config", help=f"config file (default {DEFAULT_CONFIG_PATH} if present)")
    p.add_argument("--user", help="API user (default $SMSD_USER)")
    p.add_argument(
        "--password-file", help="file whose first line is the password (default $SMSD_PASSWORD)"
    )


# --- commands ----------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from smsd.daemon import apply_overrides, demo_config, run_daemon
    from smsd.logging import setup_logging

    setup_logging(args.log_level)
    state_dir = Path(args.state_dir) if args.state_dir else None
    if args.demo:
        if args.config:
            raise CliError("--demo needs no config; drop --config or --demo", 2)
        cfg = demo_config(state_dir or Path("smsd-demo"), args.http, args.agi)
    else:
        loaded = _load(args.config, required=True)
        assert loaded is not None
        cfg = apply_overrides(loaded, state_dir=state_dir, http=args.http, agi=args.agi)
    return run_daemon(cfg, demo=args.demo)


def cmd_check_config(args: argparse.Namespace) -> int:
    path = args.file or args.config or str(DEFAULT_CONFIG_PATH)
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(_config_problems(exc), file=sys.stderr)
        return 1
    gateways = [g for g in cfg.routing if getattr(cfg, g) is not None]
    modems = len(cfg.gsm.modems) if cfg.gsm else 0
    print(
        f"{path}: OK ({len(cfg.users)} users, {len(cfg.call_groups)} call groups, "
        f"gateways {', '.join(gateways) or 'none'}, {modems} modems; "
        f"HTTP {cfg.http}, AGI {cfg.agi})"
    )
    return 0


def cmd_passwd(args: argparse.Namespace) -> int:
    from smsd.passwords import hash_password

    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Again: "):
            raise CliError("the passwords differ; nothing printed")
    else:
        first = sys.stdin.readline().rstrip("\r\n")
    if not first:
        raise CliError("empty password refused")
    print(hash_password(first))
    return 0


def _send_at(raw: str | None, client: ApiClient) -> str | None:
    if raw is None:
        return None
    try:
        naive = datetime.strptime(raw.strip(), POSTPONE_FORMAT)
    except ValueError:
        raise CliError(f"--at {raw!r}: expected dd/mm/yyyy HH:MM", 2) from None
    health = client.call("GET", "/healthz", auth=False)
    tz = ZoneInfo(str(health.get("timezone") or "UTC"))
    return naive.replace(tzinfo=tz).isoformat()


def cmd_send(args: argparse.Namespace) -> int:
    client = _client(args, need_auth=True)
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
    for r in answer.get("refused", []):
        print(f"refused {r['number']}: {r['reason']}", file=sys.stderr)
    return 1 if answer.get("refused") else 0


def cmd_status(args: argparse.Namespace) -> int:
    client = _client(args, need_auth=False)
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
        if m.get("last_error"):
            line += f" last error: {m['last_error']}"
        print(line)
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


def cmd_block(args: argparse.Namespace) -> int:
    client = _client(args, need_auth=True)
    if args.command == "block":
        client.call("POST", "/api/v1/blocklist", {"number": args.number, "reason": args.reason})
        print(f"blocked {args.number}")
    else:
        client.call("DELETE", "/api/v1/blocklist/" + urllib.parse.quote(args.number, safe=""))
        print(f"unblocked {args.number}")
    return 0


def cmd_ussd(args: argparse.Namespace) -> int:
    """A USSD request through the daemon's modem (the daemon holds the port)."""
    from smsd.modem.at import USSD_ANSWERED, Ussd, is_ussd_code

    code = args.code
    if not is_ussd_code(code):
        raise CliError(f"USSD code {code!r}: only digits, * and #, e.g. '*100#'; nothing sent", 2)
    client = _client(args, need_auth=True)
    path = "/api/v1/modems/" + urllib.parse.quote(args.modem_id, safe="") + "/ussd"
    answer = client.call("POST", path, {"code": code}, timeout_s=USSD_HTTP_TIMEOUT_S)
    status = answer.get("status")
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
    else:
        print("\n".join(Ussd(status, answer.get("text"), None).report_lines()))
    return 0 if status in USSD_ANSWERED else 1


def cmd_stats(args: argparse.Namespace) -> int:
    import asyncio

    from smsd.core.stats import month_bounds

    cfg = _load(args.config, required=True)
    assert cfg is not None
    database = Path(args.database) if args.database else cfg.database
    if not database.exists():
        raise CliError(f"no database at {database} (has the daemon run yet?)")
    try:
        start, end = month_bounds(args.month, cfg.policy.timezone, datetime.now(ZoneInfo("UTC")))
    except ValueError as exc:
        raise CliError(str(exc), 2) from None
    print(asyncio.run(_stats(cfg, database, start, end, args.csv)), end="")
    return 0


async def _stats(cfg: Config, database: Path, start: datetime, end: datetime, as_csv: bool) -> str:
    from smsd.core.stats import monthly_usage, report_csv, totals
    from smsd.store import Store, StoreError

    try:
        store = await Store.open(database, readonly=True)
    except StoreError as exc:
        raise CliError(str(exc)) from None
    try:
        if as_csv:
            return await report_csv(store, start, end, cfg.policy)
        t = await totals(store, start, end)
        usage = await monthly_usage(store, start, end, cfg.policy)
    finally:
        await store.close()
    lines = [
        f"{start:%Y-%m} ({cfg.policy.timezone}): outgoing {t.outgoing} messages "
        f"({t.outgoing_parts} parts, {t.delivered} delivered, {t.failed} failed), "
        f"incoming {t.incoming}",
        f"{'user':<16}{'messages':>9}{'parts':>7}{'included':>9}{'billable':>9}{'fee':>10}",
    ]
    for u in usage:
        lines.append(
            f"{u.user:<16}{u.messages:>9}{u.parts:>7}{u.included:>9}{u.billable:>9}{u.fee:>10.2f}"
        )
    return "\n".join(lines) + "\n"


def _no_modem_tools(args: argparse.Namespace) -> int:
    raise CliError("the modem tools (smsd.cli.modem) are not part of this build", 2)


def cmd_mail2sms(args: argparse.Namespace) -> int:
    raise CliError("Mail2SMS is not implemented yet in this build; nothing was sent", 2)


# --- parser ------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smsd", description="SMS gateway daemon for Asterisk")
    parser.add_argument("--version", action="version", version=f"smsd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="run the daemon")
    p.add_argument("--config", help=f"config file (default {DEFAULT_CONFIG_PATH})")
    p.add_argument(
        "--demo",
        action="store_true",
        help="no config, no hardware: one simulated modem, user demo/demo",
    )
    p.add_argument("--state-dir", help="state directory (demo default ./smsd-demo)")
    p.add_argument("--http", type=_listen_arg, metavar="HOST:PORT", help="HTTP API listener")
    p.add_argument("--agi", type=_listen_arg, metavar="HOST:PORT", help="FastAGI listener")
    p.add_argument(
        "--log-level",
        default=os.environ.get("SMSD_LOG_LEVEL", "info"),
        choices=("debug", "info", "warning", "error"),
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("send", help="send an SMS through the running daemon")
    p.add_argument("--to", required=True, help="E.164 number(s), comma-separated")
    p.add_argument("--text", required=True, help="message text")
    p.add_argument("--at", help='send later: "dd/mm/yyyy HH:MM" in the daemon\'s time zone')
    _add_client_args(p)
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("status", help="gateways, modems, queue and recent failures")
    _add_client_args(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("check-config", help="validate a config file and list every problem")
    p.add_argument("file", nargs="?", help=f"default {DEFAULT_CONFIG_PATH}")
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("passwd", help="print a password hash for [[users]] password_hash")
    p.set_defaults(func=cmd_passwd)

    p = sub.add_parser("stats", help="monthly usage and SMS report rows (read-only)")
    p.add_argument("--config", help=f"config file (default {DEFAULT_CONFIG_PATH})")
    p.add_argument("--database", help="database file (default: from the config)")
    p.add_argument("--month", help="YYYY-MM (default: this month)")
    p.add_argument("--csv", action="store_true", help="print the report rows as CSV")
    p.set_defaults(func=cmd_stats)

    for verb, text in (("block", "block a number"), ("unblock", "unblock a number")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("number", help="E.164 number")
        if verb == "block":
            p.add_argument("--reason", default="blocked by admin", help="why (kept in the store)")
        _add_client_args(p)
        p.set_defaults(func=cmd_block)

    p = sub.add_parser("ussd", help="USSD request (balance check) through the daemon's modem")
    p.add_argument("modem_id", help="the modem's id, as `smsd status` lists it (e.g. gsm0)")
    p.add_argument("code", help="the USSD code: digits, * and #, e.g. '*100#' (quote it)")
    p.add_argument("--json", action="store_true", help="print the daemon's JSON answer")
    _add_client_args(p)
    p.set_defaults(func=cmd_ussd)

    try:
        from smsd.cli.modem import add_modem_parser
    except ImportError:  # a build without the modem tools still runs the daemon
        p = sub.add_parser("modem", help="modem tools (not available in this build)")
        p.set_defaults(func=_no_modem_tools)
    else:
        add_modem_parser(sub)

    p = sub.add_parser("mail2sms", help="send the e-mail on stdin as SMS (Mail2SMS pipe)")
    p.add_argument("--config", help=f"config file (default {DEFAULT_CONFIG_PATH})")
    p.set_defaults(func=cmd_mail2sms)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in ("run", "modem"):
        from smsd.logging import setup_logging

        # Reports go to stdout; library events must not mix into them.
        setup_logging("warning", stream=sys.stderr)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"smsd {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
