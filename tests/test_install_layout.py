"""README "Production install (Debian 12)" gives a layout systemd accepts.

The steps' files are put in a scratch root exactly where the README puts them
(the venv's `smsd` is this test run's own), then `systemd-analyze verify
--root` checks the unit against that root: its executables exist, its
directives parse, its dependencies resolve.  Skipped where systemd-analyze is
missing (scripts/test installs systemd on Debian).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT_DIR = Path(__file__).resolve().parent.parent
README = ROOT_DIR / "README.md"
UNIT = ROOT_DIR / "systemd" / "smsd.service"
# The host's own units (sysinit.target, ...) the verify resolves dependencies against.
HOST_UNITS = Path("/usr/lib/systemd/system")
VERIFY_TIMEOUT_S = 120

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or not HOST_UNITS.is_dir(),
    reason="systemd-analyze (Debian package systemd) is not installed",
)

# What the README's steps install: (source in this tree, path on the host).
INSTALLED = [
    ("systemd/smsd.sysusers", "/usr/lib/sysusers.d/smsd.conf"),
    ("systemd/smsd.tmpfiles", "/usr/lib/tmpfiles.d/smsd.conf"),
    ("examples/smsd.toml", "/etc/smsd/smsd.toml"),
    ("systemd/60-smsd-modems.rules", "/etc/udev/rules.d/"),
    ("systemd/smsd.service", "/etc/systemd/system/smsd.service"),
    ("README.md", "/usr/local/share/doc/smsd/README.md"),
]
VENV_SMSD = "/opt/smsd/bin/smsd"
PATH_SMSD = "/usr/local/bin/smsd"


def install_section() -> str:
    text = README.read_text()
    start = text.index("## Production install (Debian 12)")
    return text[start : text.index("\n## ", start + 1)]


def this_runs_smsd() -> Path:
    """The `smsd` console script of the environment running the tests."""
    found = Path(sys.executable).parent / "smsd"
    if not found.exists():
        pytest.skip("no smsd console script next to this Python (not pip-installed)")
    return found


def build_root(root: Path) -> None:
    """Follow the README's steps inside ``root`` (no apt, no users: files only)."""
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    venv_bin = root / VENV_SMSD.lstrip("/")
    venv_bin.parent.mkdir(parents=True)
    # A copy, not a link: systemd resolves links inside the root, and the
    # script's shebang names this run's Python, so it runs as installed.
    shutil.copy2(this_runs_smsd(), venv_bin)
    on_path = root / PATH_SMSD.lstrip("/")
    on_path.parent.mkdir(parents=True)
    on_path.symlink_to(VENV_SMSD)          # ln -sf /opt/smsd/bin/smsd /usr/local/bin/smsd
    for source, target in INSTALLED:
        dest = root / target.lstrip("/")
        if target.endswith("/"):
            dest = dest / Path(source).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT_DIR / source, dest)
    os.chmod(root / "etc/smsd/smsd.toml", 0o640)


def verify(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "--man=no",
         str(root / "etc/systemd/system/smsd.service")],
        capture_output=True, text=True, timeout=VERIFY_TIMEOUT_S,
    )


@pytest.mark.timeout(240)
class TestInstallLayout:
    def test_readme_steps_name_every_installed_path(self) -> None:
        """Each file this test installs, and the venv and PATH entry, is in the README's steps."""
        section = install_section()
        for _source, target in INSTALLED:
            assert target in section, target
        assert "python3 -m venv /opt/smsd" in section
        assert f"ln -sf {VENV_SMSD} {PATH_SMSD}" in section
        assert "smsd passwd" in section and "systemctl enable --now smsd" in section
        steps = re.findall(r"^(\d+)\. ", section, flags=re.M)
        assert steps == [str(i) for i in range(1, len(steps) + 1)] and len(steps) >= 6

    def test_systemd_analyze_verify_accepts_the_layout(self, tmp_path: Path) -> None:
        """In a root built by the README's steps the unit verifies cleanly.

        1. files at the README's paths, `/usr/local/bin/smsd` -> the venv;
        2. `systemd-analyze verify --root` exits 0 and prints nothing;
        3. the unit's Documentation= file and ExecStart binary exist there;
        4. the unit's ExecStartPre (`smsd check-config`) passes on the copied config;
        5. without `/usr/local/bin/smsd` the same verify fails (it does check).
        """
        root = tmp_path / "root"
        build_root(root)
        done = verify(root)
        assert done.returncode == 0 and not done.stderr.strip(), done.stderr

        unit = UNIT.read_text()
        docs = re.findall(r"^Documentation=file:(\S+)$", unit, flags=re.M)
        assert docs and all((root / d.lstrip("/")).is_file() for d in docs), docs
        (pre,) = re.findall(r"^ExecStartPre=(.+)$", unit, flags=re.M)
        exe, *args = pre.split()
        assert exe == PATH_SMSD
        args = [str(root / a.lstrip("/")) if a.startswith("/etc/") else a for a in args]
        # The PATH entry links to /opt/smsd/... inside the root: follow it there.
        target = os.readlink(root / exe.lstrip("/"))
        check = subprocess.run(
            [str(root / target.lstrip("/")), *args], capture_output=True, text=True, timeout=60
        )
        assert check.returncode == 0, check.stderr

        (root / PATH_SMSD.lstrip("/")).unlink()
        broken = verify(root)
        assert broken.returncode != 0 and PATH_SMSD in broken.stderr
