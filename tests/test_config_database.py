"""The database keys: a SQLite path or a PostgreSQL URL (issue 18), and the node name."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from smsd.config import config_from_dict
from smsd.errors import ConfigError

URL = "postgresql://smsd:s3cret@db.example:5432/smsd"


def problems_of(data: dict[str, object], file: str | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, file)
    return dict(info.value.problems)


class TestDatabaseKey:
    def test_a_path_stays_sqlite(self) -> None:
        """database = a file name is the SQLite file in state_dir; no URL, node = host name."""
        cfg = config_from_dict({"state_dir": "/var/lib/x", "database": "a.sqlite3"})
        assert cfg.database == Path("/var/lib/x/a.sqlite3")
        assert cfg.database_url is None
        assert cfg.node == socket.gethostname()

    def test_a_url_selects_postgresql_and_is_not_shown(self) -> None:
        """database = postgresql://... selects PostgreSQL; repr(config) never shows the password."""
        cfg = config_from_dict({"database": URL, "node": "pbx-a"})
        assert cfg.database_url == URL
        assert cfg.node == "pbx-a"
        assert "s3cret" not in repr(cfg)

    def test_url_without_a_database_name_is_refused(self) -> None:
        """A URL naming no database is a problem of `database`."""
        assert "names no database" in problems_of({"database": "postgresql://u@h:5432"})["database"]

    def test_bad_node_name_is_refused(self) -> None:
        """A node name with spaces or slashes is refused with the allowed characters."""
        assert "letters, digits" in problems_of({"node": "pbx a/1"})["node"]


class TestUrlFile:
    def test_private_file_is_read(self, tmp_path: Path) -> None:
        """database_url_file (mode 0640) gives the URL; relative to the config's directory."""
        f = tmp_path / "db.url"
        f.write_text(URL + "\n")
        f.chmod(0o640)
        cfg = config_from_dict({"database_url_file": "db.url"}, str(tmp_path / "smsd.toml"))
        assert cfg.database_url == URL

    def test_world_readable_file_is_refused(self, tmp_path: Path) -> None:
        """A password file every user can read is refused, naming the key and the fix."""
        f = tmp_path / "db.url"
        f.write_text(URL + "\n")
        f.chmod(0o644)
        reason = problems_of({"database_url_file": str(f)})["database_url_file"]
        assert "chmod o-rwx" in reason
        assert "s3cret" not in reason

    def test_both_keys_are_refused(self, tmp_path: Path) -> None:
        """database and database_url_file together: one of them must go."""
        f = tmp_path / "db.url"
        f.write_text(URL)
        f.chmod(0o600)
        assert "not both" in problems_of(
            {"database": "x.sqlite3", "database_url_file": str(f)})["database_url_file"]

    def test_file_without_a_url_is_refused(self, tmp_path: Path) -> None:
        """A file holding something else than a postgresql:// URL is refused."""
        f = tmp_path / "db.url"
        f.write_text("/var/lib/smsd/smsd.sqlite3\n")
        f.chmod(0o600)
        reason = problems_of({"database_url_file": str(f)})["database_url_file"]
        assert "postgresql:// URL" in reason


class TestDaemonOnPostgres:
    def _run(self, tmp_path: Path, url: str) -> subprocess.CompletedProcess[str]:
        state = tmp_path / "state"
        conf = tmp_path / "smsd.toml"
        conf.write_text(f'state_dir = "{state}"\ndatabase = "{url}"\n')
        return subprocess.run(
            [sys.executable, "-m", "smsd.cli.main", "run", "--config", str(conf),
             "--http", "127.0.0.1:0", "--agi", "127.0.0.1:0"],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": os.getcwd()}, check=False,
        )

    def test_unreachable_server_exits_2_without_the_password(self, tmp_path: Path) -> None:
        """`smsd run` against a PostgreSQL nobody listens for exits 2 naming the database
        (password shown as ***), and never falls back to a SQLite file."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # bound, not listening: connections are refused
            proc = self._run(tmp_path, f"postgresql://smsd:s3cret@127.0.0.1:{port}/smsd")
        assert proc.returncode == 2, proc.stderr
        assert "cannot start" in proc.stderr and "***" in proc.stderr
        assert "s3cret" not in proc.stderr + proc.stdout
        assert not list((tmp_path / "state").glob("*.sqlite3"))

    def test_unmigrated_database_is_refused_with_the_fix(
        self, tmp_path: Path, pg_dsn: str
    ) -> None:
        """A database smsd db migrate never ran on: the daemon refuses it (exit 2) and says
        to run `smsd db migrate`; it does not migrate a shared database by itself."""
        proc = self._run(tmp_path, pg_dsn)
        assert proc.returncode == 2, proc.stderr
        assert "smsd db migrate" in proc.stderr
