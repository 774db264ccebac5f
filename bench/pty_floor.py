"""What 16 modems versus one can give on this machine, with the least work per send.

Compiles ``bench/pty_floor.c`` (a C driver and a C modem doing the bare
AT+CMGS exchange of ``modem_bench.py`` over real ptys, no parsing, about a
fifteenth of the Python driver's and simulator's CPU per send) and runs it
with one and with sixteen modems.  At 0 ms latency the ratio compares one
modem's round-trip time with the machine's CPU per send spread over its
cores; it says how the machine behaves, not how a driver scales.  If even
this exchange stays far below 12 x, no driver can reach 12 x here.
Printed, never asserted.

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


def run(binary: str, modems: int, sends: int) -> tuple[float, float, float, float, float]:
    """(sends/s, driver µs/send, modem µs/send, machine µs/send, cores busy 0..1)."""
    out = subprocess.run([binary, str(modems), str(sends)], check=True,
                         capture_output=True, text=True, timeout=120).stdout.split()
    return float(out[1]), float(out[2]), float(out[3]), float(out[4]), float(out[5])


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
                  f"({many[1]:.1f}+{many[2]:.1f} µs in the two programs, {many[3]:.1f} µs "
                  f"machine-wide, cores {many[4]:.0%} busy); ratio {ratios[-1]:.1f}")
    print(f"median ratio {statistics.median(ratios):.1f} x, best {max(ratios):.1f} x "
          "(compare modem_bench.py's ratio at 0 ms)")


if __name__ == "__main__":
    sys.exit(main())
