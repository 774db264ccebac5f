"""The best 16-modem scaling any driver can reach on this machine.

Compiles ``bench/pty_floor.c`` (a C driver and a C modem doing the bare
AT+CMGS exchange of ``modem_bench.py`` over real ptys, no parsing) and runs it
with one and with sixteen modems.  Every real driver does at least this work
per send, and more CPU per send only lowers the ratio, so the ratio printed
here is an upper bound for ``modem_bench.py``'s "16 modems = N x one modem"
at 0 ms latency on the same machine.  Printed, never asserted.

    python bench/pty_floor.py [--runs 5] [--modems 16]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "pty_floor.c"
# Sends per modem: enough for a steady rate, a second or so per run.
SENDS_ONE = 20000
SENDS_EACH = 5000


def build(workdir: str) -> str:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("pty_floor needs a C compiler (cc or gcc)")
    binary = os.path.join(workdir, "pty_floor")
    subprocess.run([cc, "-O2", "-o", binary, str(SOURCE), "-lutil"], check=True)
    return binary


def run(binary: str, modems: int, sends: int) -> tuple[float, float, float]:
    """(sends/s, driver µs/send, modem µs/send)."""
    out = subprocess.run([binary, str(modems), str(sends)], check=True,
                         capture_output=True, text=True, timeout=120).stdout.split()
    return float(out[1]), float(out[2]), float(out[3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--modems", type=int, default=16)
    args = ap.parse_args()
    print(f"pty floor (C driver + C modem, bare AT+CMGS exchange); {os.cpu_count()} CPUs")
    ratios = []
    with tempfile.TemporaryDirectory() as workdir:
        binary = build(workdir)
        for _ in range(args.runs):
            one = run(binary, 1, SENDS_ONE)
            many = run(binary, args.modems, SENDS_EACH)
            ratios.append(many[0] / one[0])
            print(f"  1 modem {one[0]:>8,.0f} sends/s ({one[1]:.1f}+{one[2]:.1f} µs CPU/send); "
                  f"{args.modems} modems {many[0]:>8,.0f} sends/s "
                  f"({many[1]:.1f}+{many[2]:.1f} µs); ratio {ratios[-1]:.1f}")
    print(f"median ratio {statistics.median(ratios):.1f} x, best {max(ratios):.1f} x "
          "(the ceiling for modem_bench.py at 0 ms on this machine)")


if __name__ == "__main__":
    sys.exit(main())
