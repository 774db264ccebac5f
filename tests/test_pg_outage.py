"""PostgreSQL stopped for 10 s under a running daemon (issue 18), with real processes.

``smsd run --config`` on a PostgreSQL database of its own cluster (stopping it
must not disturb the other tests' server), two simulated modems in their own
process.  The server is stopped with ``pg_ctl stop -m fast`` while messages
are being sent, kept down for ten seconds and started again.  Meanwhile:

* the API answers 503 and acknowledges nothing;
* an SMS arriving at a modem stays on the SIM (the store could not take it);

and afterwards, without restarting the daemon:

* every message acknowledged before or after the outage reaches a modem and
  ends 'sent' (none lost);
* the SMS kept on the SIM is stored, once, and leaves the SIM.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from smsd.codec import pdu
from tests.daemon_rig import STEP_DEADLINE_S, Rig, control, db_rows, wait_for
from tests.fakes.postgres import PgCluster, remove_cluster, start_cluster, why_unavailable

# The length of the outage the issue asks for (the scenario, not a margin).
OUTAGE_S = 10.0
# Each simulated SMS takes this long on the network, so that sending is still
# under way when the server stops.
SEND_MS = 150
BEFORE = 40
AFTER = 20
INBOUND_FROM = "+447700900777"
INBOUND_TEXT = "sent while the database was down"
GRANTS = Path(__file__).resolve().parents[1] / "examples" / "postgresql-grants.sql"


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    """A cluster for this test alone: it is stopped mid-test."""
    reason = why_unavailable()
    if reason is not None:
        pytest.skip(reason)
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        remove_cluster(cluster)


def least_privilege_database(cluster: PgCluster) -> str:
    """The README's set-up: database ``smsd`` owned by ``smsd_owner``, migrated by it,
    the grants of examples/postgresql-grants.sql; the daemon's DSN, as role ``smsd``."""
    owner_pw, run_pw = secrets.token_hex(8), secrets.token_hex(8)
    cluster.psql(f"CREATE ROLE smsd_owner LOGIN PASSWORD '{owner_pw}'")
    cluster.psql(f"CREATE ROLE smsd LOGIN PASSWORD '{run_pw}'")
    cluster.psql("CREATE DATABASE smsd OWNER smsd_owner")
    migrated = subprocess.run(
        [sys.executable, "-m", "smsd", "db", "migrate", "--database",
         f"postgresql://smsd_owner:{owner_pw}@127.0.0.1:{cluster.port}/smsd"],
        capture_output=True, text=True, timeout=STEP_DEADLINE_S, check=False)
    assert migrated.returncode == 0, migrated.stderr
    sql = "\n".join(line for line in GRANTS.read_text().splitlines()
                    if not line.startswith("--"))
    for statement in sql.split(";"):
        if statement.strip():
            cluster.psql(statement, database="smsd")
    return f"postgresql://smsd:{run_pw}@127.0.0.1:{cluster.port}/smsd"


def post_sms(base: str, numbers: list[str]) -> tuple[int, dict[str, Any]]:
    """POST /api/v1/sms; (status, JSON body).  A refused connection is status 0."""
    req = urllib.request.Request(
        base + "/api/v1/sms",
        data=json.dumps({"to": numbers, "text": "outage"}).encode(),
        headers={"Content-Type": "application/json",
                 "Authorization": "Basic " + base64.b64encode(b"bulk:pw").decode()},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")
    except OSError:
        return 0, {}


def get_json(base: str, path: str) -> tuple[int, dict[str, Any]]:
    """GET ``path`` as the test's user; (status, JSON body)."""
    req = urllib.request.Request(
        base + path,
        headers={"Authorization": "Basic " + base64.b64encode(b"bulk:pw").decode()},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def numbers(start: int, count: int) -> list[str]:
    """Recipients from ``start`` on, never the farm's own numbers (+447700900001,
    ...): an SMS to one of them would come back as an inbound SMS on its SIM,
    racing the outage that the test's own inbound SMS is meant to meet."""
    return [f"+4477009{n:05d}" for n in range(100 + start, 100 + start + count)]


def logged(rig: Rig, event: str) -> int:
    return sum(1 for e in rig.log_events() if e.get("event") == event)


def on_sim(rig: Rig) -> list[str]:
    """The texts of the received SMS stored on modem 0's SIM (reports left out)."""
    texts = []
    for entry in control(rig.sock, {"cmd": "stored", "modem": 0})["stored"]:
        decoded = pdu.decode(entry["pdu"])
        if isinstance(decoded, pdu.DeliverPdu):
            texts.append(decoded.text)
    return texts


@pytest.mark.timeout(300)
class TestPostgresOutage:
    def test_outage_answers_503_loses_nothing_and_resumes(
            self, own_cluster: PgCluster, tmp_path: Path) -> None:
        """0. the daemon runs as a role with only the README's grants;
        1. the daemon sends 40 acknowledged messages on two modems;
        2. PostgreSQL stops mid-run: every submit meanwhile is answered 503 and
           stored nowhere ("nothing was stored"), a read is answered 503 "try
           again later"; an SMS arriving at modem 0 stays on its SIM;
        3. PostgreSQL starts again 10 s later: new submits are acknowledged;
        4. without a restart (systemd's watchdog kept being pinged), every
           acknowledged message reaches a modem once and ends 'sent' (or
           'delivered'), the SMS from the SIM is stored once and deleted from
           the SIM, and the node-name lock is held again;
        5. the daemon's log is one JSON event per line throughout: the pool's
           failed reconnects are ``store.pg_connection_lost`` events with a
           reason (no plain-text traceback), and the password never appears."""
        dsn = least_privilege_database(own_cluster)
        rig = Rig(tmp_path, 2, sim_args=("--send-ms", str(SEND_MS)), database=dsn)
        # systemd's watchdog, as the unit sets it: a ping every second.
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(tmp_path / "notify.sock"))
        try:
            rig.start_sim()
            daemon = rig.start_daemon({"NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
                                       "WATCHDOG_USEC": "2000000"})
            acked: list[str] = []
            status, body = post_sms(rig.base, numbers(0, BEFORE))
            assert status == 201, body
            acked += numbers(0, BEFORE)
            wait_for("a few messages on the air", lambda: len(rig.submitted()) >= 4, rig.log)

            # --- 2. the outage -------------------------------------------------
            own_cluster.stop()
            down_at = time.monotonic()
            refused: list[str] = []
            statuses: list[int] = []
            control(rig.sock, {"cmd": "deliver", "modem": 0, "from": INBOUND_FROM,
                               "text": INBOUND_TEXT})
            wait_for("the inbound SMS refused by the store",
                     lambda: any("sms_received" in e.get("exception", "")
                                 for e in rig.log_events()
                                 if e.get("event") == "modem.consumer_failed"), rig.log)
            assert on_sim(rig) == [INBOUND_TEXT], "kept on the SIM"
            # The watchdog keeps pinging: a restart would not bring the server back.
            wait_for("the watchdog's probe failing",
                     lambda: logged(rig, "daemon.database_unreachable") >= 1, rig.log)
            notify.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while True:
                    notify.recv(4096)
            notify.settimeout(STEP_DEADLINE_S)
            while notify.recv(4096) != b"WATCHDOG=1":
                pass
            batch = 0
            while time.monotonic() - down_at < OUTAGE_S or batch < 3:
                to = numbers(1000 + 10 * batch, 2)
                status, body = post_sms(rig.base, to)
                statuses.append(status)
                refused += to
                batch += 1
                time.sleep(0.5)
            assert set(statuses) == {503}, statuses
            # A read is told to try again, not that "nothing was stored".
            status, body = get_json(rig.base, "/api/v1/sms?limit=1")
            assert status == 503, body
            assert body["error"].startswith("the database is unavailable; try again later: ")
            status, body = post_sms(rig.base, numbers(900, 1))
            refused += numbers(900, 1)
            assert status == 503, body
            assert body["error"].startswith("the database is unavailable, nothing was stored: ")
            assert daemon.poll() is None, rig.log.read_text()[-3000:]
            # The pool's failed reconnects: structured events with the reason.
            wait_for("the pool's lost connection logged as an event",
                     lambda: logged(rig, "store.pg_connection_lost") >= 1, rig.log)

            # --- 3. back -------------------------------------------------------
            own_cluster.start_server()
            deadline = time.monotonic() + STEP_DEADLINE_S
            after = numbers(2000, AFTER)
            while True:
                status, body = post_sms(rig.base, after)
                if status == 201:
                    acked += after
                    break
                assert status == 503, (status, body)
                refused += after   # an answer 503 stored nothing: a new number next time
                after = numbers(2000 + len(refused), AFTER)
                assert time.monotonic() < deadline, rig.log.read_text()[-3000:]
                time.sleep(0.2)

            # --- 4. nothing lost, sending resumed, the SIM emptied -------------
            wait_for("every acknowledged message final", rig.all_final, rig.log)
            states = rig.states()
            assert sorted(states) == sorted(acked), "only acknowledged messages are stored"
            not_sent = {n: s for n, s in states.items() if s[0] not in ("sent", "delivered")}
            assert not_sent == {}
            received = rig.received()
            assert set(received) == set(acked)
            assert {n: c for n, c in received.items() if c > 1} == {}, "none sent twice"
            assert not set(received) & set(refused)
            wait_for("the SMS kept on the SIM stored",
                     lambda: db_rows(rig.db, "SELECT COUNT(*) FROM inbound WHERE text = ?",
                                     (INBOUND_TEXT,))[0][0] == 1, rig.log)
            wait_for("the SIM emptied", lambda: on_sim(rig) == [], rig.log)
            # The node name's lock went with its session: held again.
            wait_for("the node lock taken again",
                     lambda: logged(rig, "store.pg.node_relocked") == 1, rig.log)
            assert db_rows(rig.db, "SELECT COUNT(*) FROM pg_locks "
                                   "WHERE locktype = 'advisory' AND granted")[0][0] == 1
            rows = db_rows(rig.db, "SELECT sender, text FROM inbound")
            assert rows == [(INBOUND_FROM, INBOUND_TEXT)]
            assert daemon.poll() is None, "the daemon kept running through the outage"
            assert logged(rig, "daemon.task_failed") == 0
            assert rig.stop_daemon() == 0
            # 5. the log stayed one JSON event per line (no plain-text tracebacks
            #    from asyncpg's pool), with a reason, never the password.
            assert [e["line"] for e in rig.log_events() if e["event"] == "unparsed"] == []
            lost = [e for e in rig.log_events() if e["event"] == "store.pg_connection_lost"]
            assert all(e.get("reason") for e in lost), lost
            password = urlsplit(dsn).password
            assert password and password not in rig.log.read_text()
        finally:
            rig.close()
            notify.close()
