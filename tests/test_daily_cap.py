"""A modem's daily cap survives a restart and says why nothing more is sent.

Real processes: `smsd modem simulate` outlives two `smsd run` daemons on one
database.  The cap exists so an operator does not bar the SIM; forgetting the
day's count at a restart defeats it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.daemon_rig import Rig, control, db_rows, wait_for

CAP = 3
CAPPED = f"daily cap reached ({CAP})"


def midday_zone() -> str:
    """A fixed-offset zone where it is now about noon: the test never straddles midnight."""
    offset = max(-12, min(14, 12 - datetime.now(UTC).hour))
    return f"Etc/GMT{-offset:+d}"    # POSIX sign: Etc/GMT-2 is UTC+2


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(
        tmp_path,
        1,
        modem_extra=f"daily_cap = {CAP}\n",
        policy=f'timezone = "{midday_zone()}"\n',
    )
    try:
        yield r
    finally:
        r.close()


def submitted(rig: Rig) -> list[dict[str, object]]:
    return list(control(rig.sock, {"cmd": "submitted", "modem": 0})["submitted"])  # type: ignore[arg-type]


def healthz(rig: Rig) -> dict[str, object]:
    try:
        with urllib.request.urlopen(rig.base + "/healthz", timeout=10) as r:
            return dict(json.loads(r.read()))
    except urllib.error.HTTPError as e:     # 503 while unhealthy is still the report
        return dict(json.loads(e.read()))


@pytest.mark.timeout(240)
def test_cap_survives_a_restart_and_is_reported(rig: Rig) -> None:
    """daily_cap = 3: three sent, restart, and nothing more goes out that day.

    1. the first daemon sends three messages (the simulator received three);
    2. it stops (SIGTERM) and a second daemon starts on the same database;
    3. two more messages stay queued: their history says "daily cap reached (3)"
       and the simulator still received only three;
    4. /healthz reports the modem's limit and the problem, `smsd status`
       prints it, /metrics has smsd_modem_daily_cap_reached 1.
    """
    rig.start_sim()
    daemon = rig.start_daemon()
    first = rig.send([f"+4477009001{i:02d}" for i in range(CAP)])
    sent_sql = "SELECT COUNT(*) FROM messages WHERE state IN ('sent', 'delivered')"
    wait_for(f"{CAP} sent", lambda: db_rows(rig.db, sent_sql)[0][0] == CAP, rig.log)
    assert len(first) == CAP and len(submitted(rig)) == CAP
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(30) == 0

    rig.start_daemon()
    more = rig.send(["+447700900201", "+447700900202"])
    capped_sql = (
        "SELECT COUNT(DISTINCT message_id) FROM message_history "
        f"WHERE detail LIKE '%{CAPPED}%' AND message_id IN ({','.join(map(str, more))})"
    )
    wait_for("the cap in both histories", lambda: db_rows(rig.db, capped_sql)[0][0] == 2, rig.log)
    assert db_rows(rig.db, sent_sql)[0][0] == CAP
    assert len(submitted(rig)) == CAP

    health = healthz(rig)
    (modem,) = health["modems"]  # type: ignore[misc]
    assert modem["limit"] == CAPPED and modem["sent_today"] == CAP, modem
    assert f"modem gsm0: {CAPPED}" in health["problems"], health  # type: ignore[operator]

    status = subprocess.run(
        [sys.executable, "-m", "smsd", "status", "--url", rig.base],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    )
    assert CAPPED in status.stdout, status.stdout + status.stderr

    with urllib.request.urlopen(rig.base + "/metrics", timeout=10) as r:
        metrics = r.read().decode()
    assert 'smsd_modem_daily_cap_reached{modem="gsm0"} 1' in metrics
    assert f'smsd_modem_daily_cap{{modem="gsm0"}} {CAP}' in metrics
