"""``smsd`` command line: one parser, one module per verb group.

Every failure ends with a one-line reason on stderr and a non-zero exit
status: 1 = the request failed, 2 = usage or config error.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
from collections.abc import Sequence

from smsd import __version__
from smsd.cli import block, mail2sms, run, send, stats, status
from smsd.cli.client import CliError


def _no_modem_tools(args: argparse.Namespace) -> int:
    raise CliError("the modem tools (smsd.cli.modem) are not part of this build", 2)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smsd", description="SMS gateway daemon for Asterisk")
    parser.add_argument("--version", action="version", version=f"smsd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run.register(sub)
    send.register(sub)
    status.register(sub)
    stats.register(sub)
    block.register(sub)
    try:
        from smsd.cli.modem import add_modem_parser
    except ImportError:  # a build without the modem tools still runs the daemon
        p = sub.add_parser("modem", help="modem tools (not available in this build)")
        p.set_defaults(func=_no_modem_tools)
    else:
        add_modem_parser(sub)

    mail2sms.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in ("run", "modem"):
        from smsd.logging import setup_logging

        # Reports go to stdout; library events must not mix into them.
        setup_logging("warning", stream=sys.stderr)
    try:
        code = int(args.func(args))
        sys.stdout.flush()      # a closed pipe shows here, inside the try, not at exit
        return code
    except BrokenPipeError:
        if not _stdout_closed():
            raise               # a socket, not our reader: a real failure
        # The reader of our output went away (`smsd send ... | head -1`).  The
        # work is done (we print results only after it), so exit 0 quietly: a
        # wrapper seeing 1 would retry and send twice.
        _silence_stdout()
        return 0
    except CliError as exc:
        print(f"smsd {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


def _stdout_closed() -> bool:
    """True when stdout is a pipe or socket whose reader is gone (POLLERR/POLLHUP)."""
    try:
        fd = sys.__stdout__.fileno() if sys.__stdout__ is not None else 1
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        events = poller.poll(0)
    except (OSError, ValueError):
        return True
    return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in events)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
