"""`smsd send --to-file` (issue 15 defect 9): bulk from a file or stdin, as a real subprocess
against the real HTTP API, with a progress bar on a terminal and a summary of refused numbers."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.cli.api_rig import Rig, rig, send

__all__ = ["rig"]


def numbers(n: int, start: int = 0) -> list[str]:
    return [f"+4477009{i:05d}" for i in range(start, start + n)]


class TestBulkSend:
    async def test_ten_thousand_numbers_from_stdin(self, rig: Rig) -> None:
        """10,000 numbers (too many for a command line) come from stdin and are all queued."""
        listed = numbers(10_000)
        r = await send(rig, "--to-file", "-", "--text", "Sale today",
                       stdin="\n".join(listed).encode())
        assert r.code == 0, r.stderr
        assert "queued 10000 SMS" in r.stdout
        assert await rig.recipients() == listed

    async def test_csv_file_with_refusals_summarised(self, rig: Rig, tmp_path: Path) -> None:
        """A CSV with a header, a bad line, a duplicate and an opted-out number: the rest are
        queued, and the summary names every refused number with its reason (exit 1)."""
        async with rig.store.transaction() as db:
            await db.execute(
                "INSERT INTO opt_outs (number, did, keyword, created_at) "
                "VALUES ('+447700900003', '', 'STOP', '2026-11-25 13:00Z')"
            )
        f = tmp_path / "numbers.csv"
        f.write_text("name,number\nAnn,+447700900001\nBob,07700 900002\n# skipped\n"
                     "Cy,+447700900003\nDee,+447700900001\n\nEd,+447700900005\n")
        r = await send(rig, "--to-file", str(f), "--text", "hello")
        assert r.code == 1
        assert await rig.recipients() == ["+447700900001", "+447700900005"]
        assert "queued 2 SMS for 5 numbers read; 2 refused" in r.stdout
        assert "refused 07700 900002 (line 3):" in r.stderr
        assert "refused +447700900003: the recipient opted out" in r.stderr

    async def test_progress_bar_on_a_terminal_only(self, rig: Rig, tmp_path: Path) -> None:
        """On a terminal stderr shows a bar that reaches the total; piped, there is none."""
        f = tmp_path / "numbers.txt"
        f.write_text("\n".join(numbers(1200)) + "\n")
        r = await send(rig, "--to-file", str(f), "--text", "hi", tty=True)
        assert r.code == 0, r.stderr
        assert "\r[" in r.stderr and "1200/1200" in r.stderr
        r = await send(rig, "--to-file", str(f), "--text", "hi")
        assert r.code == 0 and "\r" not in r.stderr

    async def test_daemon_gone_midway_says_where_it_stopped(self, tmp_path: Path) -> None:
        """No daemon: nothing is queued and the error names the first line not sent."""
        f = tmp_path / "numbers.txt"
        f.write_text("\n".join(numbers(3)) + "\n")
        pw = tmp_path / "pw"
        pw.write_text("x\n")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = Rig(f"http://127.0.0.1:{s.getsockname()[1]}", None, pw)  # type: ignore[arg-type]
            r = await send(dead, "--to-file", str(f), "--text", "hi")
        assert r.code == 1
        assert "cannot reach the daemon" in r.stderr and "line 1" in r.stderr
