"""Security settings: HTTPS on the API, secret files' permissions, loopback listeners."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from smsd.config import Listen, config_from_dict, load_config
from smsd.errors import ConfigError
from smsd.startup import is_loopback, warn_if_exposed
from tests.backend import database_toml
from tests.daemon_process import ConfigDaemon
from tests.fakes.ports import free_port

pytestmark = pytest.mark.timeout(120)


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made with the openssl CLI, key mode 0600."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is not installed (Debian: apt-get install openssl)")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", "/CN=smsd-test", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    key.chmod(0o600)
    return cert, key


class TestHttps:
    def test_api_speaks_tls_with_the_configured_certificate(self, tmp_path: Path) -> None:
        """1. [http] tls_cert/tls_key set; 2. a client trusting that certificate gets answers;
        3. plain HTTP on the same port gets none."""
        cert, key = self_signed(tmp_path)
        port = free_port()
        cfg = tmp_path / "smsd.toml"
        cfg.write_text(f'state_dir = "state"\n{database_toml()}[http]\nport = {port}\n'
                       f'tls_cert = "{cert.name}"\ntls_key = "{key.name}"\n'
                       f"[agi]\nport = {free_port()}\n")
        trust = ssl.create_default_context(cafile=str(cert))
        d = ConfigDaemon(cfg, tmp_path / "daemon.log", http_port=port, scheme="https",
                         ssl_context=trust)
        d.start()
        try:
            status, body, _ = d.request("GET", "/healthz")
            assert status == 503 and b"no gateway configured" in body  # answered over TLS
            with pytest.raises((urllib.error.URLError, ConnectionError)):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10)
            listening = [json.loads(line) for line in d.log_text().splitlines()
                         if '"http.listening"' in line]
            assert [e["tls"] for e in listening] == [True]
            assert d.stop() == 0
        finally:
            d.kill()

    def test_half_a_tls_setting_is_a_config_error(self, tmp_path: Path) -> None:
        """tls_cert without tls_key (or a missing file) names the key; nothing starts."""
        cert, _ = self_signed(tmp_path)
        with pytest.raises(ConfigError) as info:
            config_from_dict({"http": {"tls_cert": str(cert)}})
        assert "http.tls_key" in str(info.value)
        with pytest.raises(ConfigError) as info:
            config_from_dict({"http": {"tls_cert": str(cert), "tls_key": "/nonexistent.pem"}})
        assert "http.tls_key" in str(info.value)


class TestSecretFiles:
    def write(self, tmp_path: Path, mode: int, inline: bool = False) -> Path:
        secret = tmp_path / "ami.secret"
        secret.write_text("ami-S3cret-91\n")
        secret.chmod(mode)
        cfg = tmp_path / "smsd.toml"
        line = 'secret = "ami-S3cret-91"' if inline else f'secret_file = "{secret.name}"'
        cfg.write_text(f'[ami]\nusername = "smsd"\n{line}\n')
        cfg.chmod(0o644 if inline else 0o600)
        return cfg

    def test_world_readable_secret_file_is_warned_about(self, tmp_path: Path) -> None:
        """A secret file readable by others: one warning naming key, file and fix, no secret."""
        cfg = self.write(tmp_path, 0o644)
        with capture_logs() as logs:
            assert load_config(cfg).ami.secret == "ami-S3cret-91"
        warned = [e for e in logs if e["event"] == "config.secret_file_world_readable"]
        assert len(warned) == 1 and warned[0]["log_level"] == "warning"
        assert warned[0]["key"] == "ami.secret_file" and warned[0]["mode"] == "0644"
        assert "chmod o-rwx" in warned[0]["fix"]
        assert "ami-S3cret-91" not in repr(logs)

    def test_private_secret_file_is_quiet(self, tmp_path: Path) -> None:
        """Mode 0640 (root:smsd as the docs advise): no warning."""
        cfg = self.write(tmp_path, 0o640)
        with capture_logs() as logs:
            load_config(cfg)
        assert [e for e in logs if e["event"].startswith("config.secret")] == []

    def test_inline_secret_in_world_readable_config_is_warned_about(
        self, tmp_path: Path
    ) -> None:
        """``secret = ...`` in a config every user can read: the warning names the key."""
        cfg = self.write(tmp_path, 0o600, inline=True)
        with capture_logs() as logs:
            load_config(cfg)
        warned = [e for e in logs if e["event"] == "config.secret_file_world_readable"]
        assert [e["key"] for e in warned] == ["ami.secret"]
        assert "ami-S3cret-91" not in repr(logs)


class TestLoopback:
    def test_every_listener_defaults_to_loopback(self) -> None:
        """HTTP, FastAGI and SMTP bind 127.0.0.1 and AGI admits only loopback peers by default."""
        cfg = config_from_dict({})
        assert {cfg.http.host, cfg.agi.host, cfg.smtp.host} == {"127.0.0.1"}
        assert set(cfg.agi_allow) == {"127.0.0.1", "::1"}
        assert all(is_loopback(h) for h in ("127.0.0.1", "::1", "localhost", "127.0.0.2"))
        assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "pbx.example.net"))

    def test_a_configured_public_listener_is_warned_about(self) -> None:
        """0.0.0.0 is honoured but logged, with the advice that fits the listener."""
        with capture_logs() as logs:
            warn_if_exposed("http", Listen("0.0.0.0", 8080), encrypted=False)
            warn_if_exposed("http", Listen("127.0.0.1", 8080), encrypted=False)
        assert [e["event"] for e in logs] == ["listener.not_loopback"]
        assert "tls_cert" in logs[0]["advice"]
