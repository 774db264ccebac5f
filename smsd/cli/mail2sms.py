"""``smsd mail2sms``: the e-mail on stdin as SMS (a Postfix or Exim pipe transport).

The mail is handed to the running daemon (``POST /api/v1/mail2sms``), which
checks the SMSPASSWORD and commits the SMS: the daemon is the only database
writer.  The exit status follows sysexits.h, which pipe transports read to
decide between bouncing the mail and keeping it for a later try:

- 0 (EX_OK): every SMS queued (refused numbers, if any, are listed on stderr);
- 64 (EX_USAGE): bad arguments;
- 65 (EX_DATAERR): the mail is malformed or no number could be used (bounce);
- 69 (EX_UNAVAILABLE): Mail2SMS is not configured on the daemon (bounce);
- 75 (EX_TEMPFAIL): the daemon is not reachable or failed (the MTA retries);
- 77 (EX_NOPERM): wrong SMSPASSWORD, or the sender may not send (bounce);
- 78 (EX_CONFIG): the config file cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from smsd.cli import common
from smsd.cli.client import CliError
from smsd.config import DEFAULT_CONFIG_PATH, Listen

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78

# The daemon answers a loopback POST within milliseconds; 30 s covers a slow
# disk's commit.  A pipe transport has its own, longer, time limit.
HTTP_TIMEOUT_S = 30.0
# Matches the daemon's limit (smsd.mail2sms.service.MAX_MAIL_BYTES); read one
# byte more to tell "too large" without holding an unbounded mail in memory.
MAX_MAIL_BYTES = 1024 * 1024

_STATUS_EXIT = {400: EX_DATAERR, 413: EX_DATAERR, 403: EX_NOPERM, 401: EX_NOPERM,
                404: EX_UNAVAILABLE}


def _base_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    try:
        cfg = common.load(args.config, required=False)
    except CliError as exc:
        raise CliError(str(exc), EX_CONFIG) from None
    listen = cfg.http if cfg else Listen("127.0.0.1", 8080)
    host = f"[{listen.host}]" if ":" in listen.host else listen.host
    return f"http://{host}:{listen.port}"


def _post(url: str, raw: bytes) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        url, data=raw, method="POST",
        headers={"Content-Type": "message/rfc822", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(
            f"cannot reach the daemon at {url}: {reason} (is `smsd run` running?); "
            "the mail is kept for a later try", EX_TEMPFAIL,
        ) from None
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        payload = {"error": body.decode("utf-8", "replace")[:200]}
    return status, payload if isinstance(payload, dict) else {"error": str(payload)}


def cmd_mail2sms(args: argparse.Namespace) -> int:
    if args.stray:
        raise CliError(
            f"unexpected argument(s) {' '.join(args.stray)}: the e-mail is read from stdin",
            EX_USAGE,
        )
    url = _base_url(args) + "/api/v1/mail2sms"
    raw = sys.stdin.buffer.read(MAX_MAIL_BYTES + 1)
    if len(raw) > MAX_MAIL_BYTES:
        raise CliError(f"the e-mail is larger than {MAX_MAIL_BYTES} bytes; nothing was sent",
                       EX_DATAERR)
    if not raw.strip():
        raise CliError("no e-mail on stdin; nothing was sent", EX_DATAERR)
    status, payload = _post(url, raw)
    for r in payload.get("refused", []) or []:
        print(f"refused {r.get('number')}: {r.get('reason')}", file=sys.stderr)
    if status == 201:
        print(f"queued {len(payload.get('ids', []))} SMS", file=sys.stderr)
        return EX_OK
    reason = str(payload.get("error") or f"HTTP {status}")
    if status in _STATUS_EXIT:
        raise CliError(reason, _STATUS_EXIT[status])
    raise CliError(f"the daemon answered {status}: {reason}; the mail is kept for a later try",
                   EX_TEMPFAIL)


class _SysexitsParser(argparse.ArgumentParser):
    """Usage errors exit 64 (EX_USAGE), as a pipe transport expects, not argparse's 2."""

    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # The subcommand's own parser reports usage errors with EX_USAGE; stray
    # arguments are collected and refused the same way (the top-level parser
    # would otherwise exit 2, which a pipe transport reads as a bounce reason
    # it does not know).
    default_class = sub._parser_class
    sub._parser_class = _SysexitsParser
    try:
        p = sub.add_parser(
            "mail2sms",
            help="send the e-mail on stdin as SMS (Mail2SMS pipe; exit codes per sysexits)",
        )
    finally:
        sub._parser_class = default_class
    p.add_argument("--url", help="daemon API base URL (default: from the config's [http])")
    p.add_argument("--config", help=f"config file (default {DEFAULT_CONFIG_PATH} if present)")
    p.add_argument("stray", nargs="*", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_mail2sms)
