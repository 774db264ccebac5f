"""``smsd send --to-file FILE`` (or ``-`` for stdin): a bulk send, streamed in chunks.

Ten thousand numbers do not fit on a command line ("Argument list too long"),
so they come from a file: one number per line, or CSV whose ``number``
(``phone``, ``mobile``, ``to``, ``msisdn``) column -- else the first column --
holds them; blank lines and ``#`` comments are skipped.  Numbers are checked
here first (E.164, duplicates), so a bad line is reported by line number and
never makes the daemon refuse a whole chunk; the good ones go to
``POST /api/v1/sms`` with ``"bulk": true`` in chunks of CHUNK numbers, each
chunk committed by the daemon before the next is read.  A progress bar is
drawn on stderr when it is a terminal; the end is a summary of what was
queued and every refused number with its reason.

If the daemon stops answering halfway, the chunks already acknowledged are
queued and the rest is not: the summary says from which line on nothing was
sent, so a rerun with the rest of the file does not send anyone twice.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from smsd.cli.client import ApiClient, CliError
from smsd.errors import InvalidNumber
from smsd.numbers import parse_e164

# Numbers per POST: about 16 kB of JSON and one group commit on the daemon; a
# chunk's answer comes back in well under the client's HTTP timeout, and the
# progress bar moves often enough to watch.
CHUNK = 500
NUMBER_COLUMNS = ("number", "phone", "mobile", "to", "msisdn", "tel")
BAR_WIDTH = 30


@dataclass
class BulkResult:
    read: int = 0
    queued: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)  # (number or line, reason)
    warnings: list[str] = field(default_factory=list)
    stopped_at_line: int | None = None  # first line not sent when the daemon failed


def read_numbers(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """(line number, raw number) from a one-per-line or CSV file."""
    column: int | None = None
    for lineno, row in enumerate(csv.reader(lines), start=1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if column is None:
            names = [c.lower() for c in cells]
            named = [i for i, c in enumerate(names) if c in NUMBER_COLUMNS]
            if named:
                column = named[0]
                continue  # a header row
            column = 0
        if column < len(cells) and cells[column]:
            yield lineno, cells[column]


class _Progress:
    """A one-line bar on stderr, only when stderr is a terminal."""

    def __init__(self, stream: TextIO, total: int | None) -> None:
        self._stream = stream
        self._total = total
        self._on = stream.isatty()

    def update(self, done: int, queued: int, refused: int) -> None:
        if not self._on:
            return
        if self._total:
            filled = BAR_WIDTH * done // self._total
            bar = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{self._total}"
        else:
            bar = f"{done} read"
        self._stream.write(f"\r{bar}  queued {queued}  refused {refused}")
        self._stream.flush()

    def close(self) -> None:
        if self._on:
            self._stream.write("\n")
            self._stream.flush()


def send_bulk(
    client: ApiClient,
    numbers: Iterable[tuple[int, str]],
    text: str,
    *,
    send_at: str | None = None,
    total: int | None = None,
    progress: TextIO = sys.stderr,
) -> BulkResult:
    result = BulkResult()
    bar = _Progress(progress, total)
    seen: set[str] = set()
    chunk: list[tuple[int, str]] = []

    def flush() -> None:
        body: dict[str, Any] = {"to": [n for _, n in chunk], "text": text, "bulk": True}
        if send_at:
            body["send_at"] = send_at
        try:
            answer = client.call("POST", "/api/v1/sms", body, answer_on=(400,))
        except CliError as exc:
            result.stopped_at_line = chunk[0][0]
            raise _Stopped(str(exc)) from None
        if "ids" not in answer:  # a 400 about the request itself (text too long, ...)
            result.stopped_at_line = chunk[0][0]
            raise _Stopped(f"the daemon refused the request: {answer.get('error')}")
        result.queued += len(answer.get("ids", []))
        for r in answer.get("refused", []):
            result.refused.append((r["number"], r["reason"]))
        for w in answer.get("warnings", []):
            if w not in result.warnings:
                result.warnings.append(w)
        chunk.clear()

    try:
        for lineno, raw in numbers:
            result.read += 1
            try:
                number = parse_e164(raw)
            except InvalidNumber as exc:
                result.refused.append((f"{raw} (line {lineno})", exc.reason))
                continue
            if number in seen:
                continue
            seen.add(number)
            chunk.append((lineno, number))
            if len(chunk) >= CHUNK:
                flush()
                bar.update(result.read, result.queued, len(result.refused))
        if chunk:
            flush()
        bar.update(result.read, result.queued, len(result.refused))
    except _Stopped as exc:
        bar.close()
        _summary(result, sys.stderr)
        raise CliError(
            f"{exc}; stopped: {result.queued} SMS were queued, nothing from line "
            f"{result.stopped_at_line} of the file on was sent"
        ) from None
    bar.close()
    return result


class _Stopped(Exception):
    """The daemon failed a chunk; what was queued before stays queued."""


def _summary(result: BulkResult, out: TextIO) -> None:
    for number, reason in result.refused:
        print(f"refused {number}: {reason}", file=out)
    for w in result.warnings:
        print(f"warning: {w}", file=out)


def print_summary(result: BulkResult) -> None:
    """The refused numbers (stderr), then one line of totals (stdout)."""
    _summary(result, sys.stderr)
    print(f"queued {result.queued} SMS for {result.read} numbers read; "
          f"{len(result.refused)} refused")


def open_numbers(path: str) -> tuple[list[str], int]:
    """The file's lines (stdin for ``-``) and how many numbers they hold (for the bar)."""
    try:
        if path == "-":
            lines = sys.stdin.read().splitlines()
        else:
            with open(path, encoding="utf-8-sig", newline="") as f:
                lines = f.read().splitlines()
    except OSError as exc:
        raise CliError(f"--to-file {path}: {exc.strerror or exc}", 2) from None
    except UnicodeDecodeError as exc:
        raise CliError(f"--to-file {path}: not UTF-8 text ({exc.reason})", 2) from None
    total = sum(1 for _ in read_numbers(lines))
    if total == 0:
        raise CliError(f"--to-file {path}: no numbers found", 2)
    return lines, total
