"""The files in systemd/: the unit checks with systemd's own tools and says what the docs promise.

`systemd-analyze verify` and `systemd-sysusers`/`systemd-tmpfiles` run against
a scratch root laid out as README's install steps lay out a server, so the
test never touches this machine's /etc.  scripts/test installs Debian's
`systemd` package when they are missing.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "systemd"
UNIT = SYSTEMD / "smsd.service"
# systemd-analyze loads the unit's whole dependency closure (sysinit.target,
# basic.target, ...) from the root it is given: these come from the host.
HOST_UNITS = Path("/usr/lib/systemd/system")
# The executables the unit names, as pip (/usr/local/bin) and Debian (/bin) install them.
UNIT_EXECUTABLES = ("usr/local/bin/smsd", "bin/kill")


def unit_directives(path: Path) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit file, by key (a key may repeat), comments dropped."""
    out: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a Key=value line: {raw!r}"
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: apt-get install systemd (scripts/test does)")
    return found


def scratch_root(tmp_path: Path) -> Path:
    """A root with the unit, sysusers and tmpfiles installed where the docs put them."""
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system/smsd.service")
    for rel in UNIT_EXECUTABLES:
        exe = root / rel
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(0o755)
    (root / "usr/lib/sysusers.d").mkdir(parents=True)
    shutil.copy(SYSTEMD / "smsd.sysusers", root / "usr/lib/sysusers.d/smsd.conf")
    (root / "usr/lib/tmpfiles.d").mkdir(parents=True)
    shutil.copy(SYSTEMD / "smsd.tmpfiles", root / "usr/lib/tmpfiles.d/smsd.conf")
    # Debian's base passwd: dialout exists (GID 20) before smsd is installed.
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\ndialout:x:20:\n")
    if HOST_UNITS.is_dir():
        shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    return root


class TestUnitContents:
    """What issue 12 asks of smsd.service, directive by directive."""

    def test_lifecycle_directives(self) -> None:
        """Type=notify with a watchdog, restart on failure, and reload by SIGHUP."""
        d = unit_directives(UNIT)
        assert d["Type"] == ["notify"]
        assert d["NotifyAccess"] == ["main"]
        assert d["WatchdogSec"] and d["WatchdogSec"][0].endswith("s")
        assert d["Restart"] == ["on-failure"]
        assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
        assert d["KillSignal"] == ["SIGTERM"]

    def test_user_and_directories(self) -> None:
        """A dedicated user in dialout, with systemd-managed state and config directories."""
        d = unit_directives(UNIT)
        assert d["User"] == ["smsd"]
        assert d["SupplementaryGroups"] == ["dialout"]
        assert d["StateDirectory"] == ["smsd"]
        assert d["ConfigurationDirectory"] == ["smsd"]

    def test_hardening(self) -> None:
        """The sandbox of issue 12: read-only system, serial devices only, syscall filter."""
        d = unit_directives(UNIT)
        for key in ("NoNewPrivileges", "PrivateTmp", "ProtectKernelTunables",
                    "ProtectKernelModules", "ProtectKernelLogs"):
            assert d[key] == ["yes"], key
        assert d["ProtectSystem"] == ["strict"]
        assert d["DevicePolicy"] == ["closed"]
        assert {"char-ttyUSB rw", "char-ttyACM rw"} <= set(d["DeviceAllow"])
        families = d["RestrictAddressFamilies"][0].split()
        assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)
        assert "AF_PACKET" not in families
        assert "@system-service" in d["SystemCallFilter"]

    def test_sysusers_puts_smsd_in_dialout(self) -> None:
        """sysusers.d creates the system user and adds it to dialout (modems' group)."""
        lines = [ln.split() for ln in (SYSTEMD / "smsd.sysusers").read_text().splitlines()
                 if ln.strip() and not ln.startswith("#")]
        assert ["m", "smsd", "dialout"] in lines
        assert any(ln[:2] == ["u", "smsd"] for ln in lines)


class TestSystemdTools:
    """systemd's own tools accept the files, in a scratch root."""

    def test_systemd_analyze_verify_is_clean(self, tmp_path: Path) -> None:
        """`systemd-analyze verify` exits 0 and prints nothing (a bad value is only a warning)."""
        analyze = tool("systemd-analyze")
        root = scratch_root(tmp_path)
        r = subprocess.run(
            [analyze, "verify", "--man=no", f"--root={root}",
             "/etc/systemd/system/smsd.service"],
            capture_output=True, text=True, timeout=60,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr

    def test_verify_catches_a_broken_unit(self, tmp_path: Path) -> None:
        """The check above can fail: a unit naming a missing executable is reported."""
        analyze = tool("systemd-analyze")
        root = scratch_root(tmp_path)
        (root / "usr/local/bin/smsd").unlink()
        r = subprocess.run(
            [analyze, "verify", "--man=no", f"--root={root}",
             "/etc/systemd/system/smsd.service"],
            capture_output=True, text=True, timeout=60,
        )
        assert "/usr/local/bin/smsd" in r.stderr

    def test_sysusers_and_tmpfiles_create_user_and_directories(self, tmp_path: Path) -> None:
        """systemd-sysusers makes user smsd (in dialout); systemd-tmpfiles makes the 0750 dirs."""
        root = scratch_root(tmp_path)
        r = subprocess.run([tool("systemd-sysusers"), f"--root={root}"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        passwd = {ln.split(":")[0]: ln.split(":") for ln in
                  (root / "etc/passwd").read_text().splitlines()}
        groups = {ln.split(":")[0]: ln.split(":") for ln in
                  (root / "etc/group").read_text().splitlines()}
        assert passwd["smsd"][5:] == ["/var/lib/smsd", "/usr/sbin/nologin"]
        assert groups["dialout"][2] == "20"
        assert "smsd" in groups["dialout"][3].split(",")
        if os.geteuid() != 0:
            return  # chown to smsd needs root; the user and group are proven above
        r = subprocess.run([tool("systemd-tmpfiles"), f"--root={root}", "--create"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        uid = int(passwd["smsd"][2])
        for rel, owner in (("etc/smsd", 0), ("var/lib/smsd", uid)):
            st = (root / rel).stat()
            assert stat.S_IMODE(st.st_mode) == 0o750, rel
            assert (st.st_uid, st.st_gid) == (owner, int(groups["smsd"][2])), rel
