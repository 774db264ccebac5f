"""`smsd stats` and `smsd report` as subprocesses over a database the real outbox filled
(issue 9: 200 SMS included per user and calendar month, the rest billable)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from smsd.config import load_config
from smsd.core.outbox import Outbox, SubmitRequest
from tests.backend import open_store

NOV = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
DEC = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)  # 01:30 in Paris: December there
CONFIG = """\
state_dir = "{state}"
[policy]
country = "GB"
timezone = "Europe/Paris"
fee_per_sms = 0.05
[[users]]
extension = "100"
name = "Alice Example"
username = "alice"
office_number = "+447700900001"
licence = "uc-business"
[[users]]
extension = "101"
name = "Bob Example"
username = "bob"
office_number = "+447700900002"
licence = "uc-essential"
"""


def smsd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "smsd", *args], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="module")
def cfg_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """205 SMS for alice in November 2026, 3 in December (one failed), 2 for bob.

    Built once for the module (the tests only read it), on its own event loop.
    """
    tmp = tmp_path_factory.mktemp("stats")
    path = tmp / "smsd.toml"
    path.write_text(CONFIG.format(state=tmp))
    asyncio.run(_fill(path))
    return path


async def _fill(path: Path) -> None:
    cfg = load_config(path)
    alice, bob = cfg.users
    store = await open_store(cfg)
    now = [NOV]
    outbox = Outbox(store, cfg.policy, clock=lambda: now[0])
    try:
        for i in range(205):
            now[0] = NOV + timedelta(minutes=i)
            await outbox.submit(SubmitRequest([f"+4477009{i:05d}"], "offer", user=alice))
        await outbox.submit(SubmitRequest(["+447700911111", "+447700911112"], "hi", user=bob))
        now[0] = DEC
        dec = await outbox.submit(
            SubmitRequest(["+447700922221", "+447700922222", "+447700922223"], "hi", user=alice)
        )
        async with store.transaction() as db:
            # What the dispatcher and delivery reports would have done.
            await db.execute("UPDATE messages SET gateway = 'gsm', state = 'sent' WHERE id <= 100")
            await db.execute("UPDATE messages SET state = 'delivered' WHERE id <= 40")
            await db.execute("UPDATE messages SET gateway = 'gsm', state = 'failed' WHERE id = ?",
                             (dec.ids[0],))
    finally:
        await store.close()


def stats_json(cfg: Path, *args: str) -> dict[str, object]:
    r = smsd("stats", "--config", str(cfg), "--format", "json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


class TestStats:
    def test_205_in_november_200_included_5_billable(self, cfg_path: Path) -> None:
        """Alice's 205 one-part SMS in November: 200 included, 5 billable at the fee."""
        data = stats_json(cfg_path, "--month", "2026-11")
        users = {u["user"]: u for u in data["by_user"]}  # type: ignore[attr-defined]
        alice = users["alice"]
        assert (alice["messages"], alice["parts"], alice["included"], alice["billable"]) == (
            205, 205, 200, 5)
        assert alice["cost"] == pytest.approx(0.25)
        assert (users["bob"]["included"], users["bob"]["billable"]) == (2, 0)
        total = data["total"]  # type: ignore[index]
        assert (total["sent"], total["delivered"], total["included"], total["billable"]) == (
            100, 40, 202, 5)
        gws = {g["gateway"]: g["messages"] for g in data["by_gateway"]}  # type: ignore[attr-defined]
        assert gws == {"gsm": 100, "": 107}
        days = {d["day"]: d["messages"] for d in data["by_day"]}  # type: ignore[attr-defined]
        assert days == {"2026-11-03": 207}

    def test_december_starts_again(self, cfg_path: Path) -> None:
        """December (in the policy's zone) counts from zero; a failed SMS uses nothing."""
        data = stats_json(cfg_path, "--month", "2026-12", "--user", "100")
        [alice] = data["by_user"]  # type: ignore[misc]
        assert (alice["user"], alice["messages"], alice["failed"], alice["included"],
                alice["billable"]) == ("alice", 3, 1, 2, 0)

    def test_table_csv_and_the_old_csv_flag(self, cfg_path: Path) -> None:
        """--format table and csv show the same figures; --csv still prints message rows."""
        r = smsd("stats", "--config", str(cfg_path), "--month", "2026-11")
        assert r.returncode == 0 and "per user" in r.stdout and "alice" in r.stdout
        r = smsd("stats", "--config", str(cfg_path), "--month", "2026-11", "--format", "csv")
        rows = list(csv.DictReader(io.StringIO(r.stdout)))
        alice = next(x for x in rows if x["group"] == "user" and x["key"] == "alice")
        assert (alice["included"], alice["billable"]) == ("200", "5")
        r = smsd("stats", "--config", str(cfg_path), "--month", "2026-11", "--csv")
        assert r.stdout.splitlines()[0] == "time,user,from,to,gateway,parts,status,cost"
        assert len(r.stdout.splitlines()) == 1 + 207
        r = smsd("stats", "--config", str(cfg_path), "--user", "999")
        assert r.returncode == 2 and "999" in r.stderr


class TestReport:
    def test_filters_and_csv_export(self, cfg_path: Path) -> None:
        """`smsd report` filters by user, state and gateway; CSV has one row per message with
        the cost of billable SMS."""
        r = smsd("report", "--config", str(cfg_path), "--month", "2026-11", "--user", "alice",
                 "--format", "csv")
        assert r.returncode == 0, r.stderr
        rows = list(csv.DictReader(io.StringIO(r.stdout)))
        assert len(rows) == 205
        assert [x["cost"] for x in rows[-6:]] == ["0.0000"] + ["0.0500"] * 5
        r = smsd("report", "--config", str(cfg_path), "--month", "2026-11", "--state",
                 "delivered", "--format", "json")
        assert len(json.loads(r.stdout)) == 40
        r = smsd("report", "--config", str(cfg_path), "--month", "2026-12", "--gateway", "gsm")
        lines = r.stdout.splitlines()
        assert len(lines) == 2 and "failed" in lines[1] and "+447700922221" in lines[1]
