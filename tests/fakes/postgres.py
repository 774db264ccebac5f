"""A throw-away PostgreSQL cluster for tests: Debian's real server, not a fake.

``initdb`` in a fresh temp directory, the server on a unix socket in that
directory plus 127.0.0.1 on a free port (never another address), fsync and
synchronous_commit on (the settings the README asks production to keep), and
``pg_ctl stop -m fast`` at the end.  PostgreSQL refuses to run as root, so when
the tests run as root every server command runs as the ``postgres`` system user
(Debian's package creates it) and the directory is handed to that user.

The superuser (``smsd_admin``) connects only over the unix socket (trust, as
the socket sits in a private directory); every database the tests use is owned
by a least-privilege login role with a password, reached over TCP with
SCRAM, as smsd would reach a production server.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.fakes.ports import free_port

# initdb writes a few dozen MB and fsyncs them: seconds on a busy 2-core box.
INITDB_TIMEOUT_S = 120.0
# How long the server may take to accept connections after pg_ctl start
# (crash recovery is impossible on a fresh cluster; this is start-up on a
# loaded machine).  Readiness itself is an event we poll for with pg_isready.
READY_DEADLINE_S = 60.0
# Interval between pg_isready probes while waiting for the server.
READY_POLL_S = 0.05
# psql / pg_ctl stop: each a few hundred ms normally.
COMMAND_TIMEOUT_S = 60.0

ADMIN = "smsd_admin"
APP_ROLE = "smsd_app"


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<major>/bin holding initdb and pg_ctl, or None."""
    found: list[tuple[int, Path]] = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        p = Path(d)
        if (p / "initdb").is_file() and (p / "pg_ctl").is_file() and (p / "pg_isready").is_file():
            try:
                found.append((int(p.parent.name), p))
            except ValueError:
                continue
    return max(found)[1] if found else None


def why_unavailable() -> str | None:
    """A reason to skip PostgreSQL tests, or None when a cluster can be started."""
    if find_bindir() is None:
        return ("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin "
                "(scripts/test installs Debian's postgresql)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
    return None


@dataclass
class PgCluster:
    """One running cluster; ``new_database()`` gives each test a fresh, empty database."""

    bindir: Path
    base: Path
    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_hex(16))
    _as_postgres: list[str] = field(default_factory=list)
    _count: int = 0
    _template: str | None = None
    started_s: float = 0.0  # how long start() took: reported by the suite

    @property
    def data(self) -> Path:
        return self.base / "data"

    def _run(self, *argv: str, timeout: float = COMMAND_TIMEOUT_S) -> str:
        proc = subprocess.run(
            [*self._as_postgres, *argv], capture_output=True, text=True, timeout=timeout,
            cwd=self.base, check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def start(self) -> None:
        t0 = time.monotonic()
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
            self._as_postgres = ["runuser", "-u", "postgres", "--"]
        os.chmod(self.base, 0o700)
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", ADMIN,
            "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8",
            "--locale=C", "--no-instructions",
            timeout=INITDB_TIMEOUT_S,
        )
        self.port = free_port()
        self.start_server()
        self.psql(
            f"CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
            f"PASSWORD '{self.password}'"
        )
        self.started_s = time.monotonic() - t0

    def start_server(self) -> None:
        """``pg_ctl start`` on the cluster's port and socket; returns once it accepts."""
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.base} -c fsync=on -c synchronous_commit=on "
            "-c max_connections=50"
        )
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.base / "server.log"), "-o", opts, "-W", "start")
        deadline = time.monotonic() + READY_DEADLINE_S
        while True:
            probe = subprocess.run(
                [str(self.bindir / "pg_isready"), "-q", "-h", str(self.base), "-p", str(self.port)],
                check=False, timeout=COMMAND_TIMEOUT_S,
            )
            if probe.returncode == 0:
                break
            if time.monotonic() > deadline:
                log = (self.base / "server.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"PostgreSQL not ready after {READY_DEADLINE_S}s:\n{log}")
            time.sleep(READY_POLL_S)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one statement as the superuser over the unix socket; its output."""
        return self._run(
            str(self.bindir / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
            "-h", str(self.base), "-p", str(self.port), "-U", ADMIN, "-d", database, "-c", sql,
        )

    def new_database(self, template: str | None = None) -> str:
        """A fresh database owned by the least-privilege role; its DSN (TCP).

        Empty, or a copy of ``template`` (much faster than migrating each one).
        """
        self._count += 1
        name = f"smsd_test_{self._count}"
        source = f" TEMPLATE {template}" if template else ""
        self.psql(f"CREATE DATABASE {name} OWNER {APP_ROLE}{source}")
        return self.dsn(name)

    def dsn(self, name: str) -> str:
        return f"postgresql://{APP_ROLE}:{self.password}@127.0.0.1:{self.port}/{name}"

    def migrated_template(self) -> str:
        """The name of a database with smsd's schema applied, made once per cluster."""
        if self._template is None:
            name = "smsd_migrated"
            self.psql(f"CREATE DATABASE {name} OWNER {APP_ROLE}")
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
            subprocess.run(
                [sys.executable, "-m", "smsd", "db", "migrate", "--database", self.dsn(name)],
                check=True, capture_output=True, timeout=INITDB_TIMEOUT_S, env=env,
            )
            self._template = name
        return self._template

    def stop(self, mode: str = "fast", *, wait: bool = True) -> None:
        """Stop the server: "fast" (clean, with a shutdown checkpoint) or "immediate"."""
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode,
                      "-w" if wait else "-W", "stop")


def start_cluster() -> PgCluster:
    bindir = find_bindir()
    assert bindir is not None
    base = Path(tempfile.mkdtemp(prefix="smsd-pg-"))
    cluster = PgCluster(bindir, base)
    try:
        cluster.start()
    except BaseException:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)
        raise
    return cluster


def remove_cluster(cluster: PgCluster) -> None:
    """Stop the server and delete its files, without keeping the last test waiting.

    Thrown away, so no shutdown checkpoint; and the files (a copy of the
    template per test: gigabytes after a whole run on PostgreSQL) are removed
    by a detached ``rm``, since deleting them can outlast the last test's
    timeout on a busy machine.
    """
    try:
        cluster.stop("immediate", wait=False)
    finally:
        subprocess.Popen(
            ["rm", "-rf", "--", str(cluster.base)], start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
