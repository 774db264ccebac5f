"""Modem driver throughput: sends/s and CPU per send against the simulator.

The simulated modems (smsd/simulator/modem.py, 0 ms latency) run in a child
process so that time.process_time() in this process measures the driver
alone: channel, framing, AT parsing and the PDU hand-off.  Printed, never
asserted: speed is not a test.

    python bench/modem_bench.py [--sends 300] [--modems 16] [--latency-ms 20]

It runs twice: at 0 ms simulator latency (the issue's setting: every modem
answers at once, so 16 modems are bound by the machine's cores, and the ratio
says more about the cores than the driver: bench/pty_floor.py measures what
the bare exchange in C reaches on the same machine), and
at ``--latency-ms`` per command, where a modem's own round trips bound its
rate as on real hardware (seconds per SMS) and the ratio shows whether the
driver serialises modems.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import structlog

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smsd.codec import pdu  # noqa: E402  (after the sys.path line)
from smsd.modem.device import Modem  # noqa: E402
from smsd.modem.spec import ModemSpec  # noqa: E402

# The child: a SimulatorFarm that prints READY once its links exist.
CHILD = """
import asyncio, logging, sys
import structlog
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
from smsd.simulator.farm import SimulatorFarm
async def main():
    farm = SimulatorFarm(int(sys.argv[1]), link=sys.argv[2], latency_ms=float(sys.argv[3]),
                         auto_report=False)
    await farm.start()
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await farm.stop()
asyncio.run(main())
"""
# Starting N simulators and their boot URCs; generous for 16 modems on a slow box.
CHILD_START_TIMEOUT = 30.0


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of all cores together, kernel workers included."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    tick = os.sysconf("SC_CLK_TCK")
    total = sum(v)
    return (total - v[3] - v[4]) / tick, total / tick


def child_cpu(pid: int) -> float:
    """User+system CPU seconds of a child process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class NullEvents:
    async def sms_received(self, modem: str, sms: object) -> None:
        return None

    async def status_report(self, modem: str, report: object) -> None:
        return None

    def modem_state(self, modem: str, state: str, detail: str | None) -> None:
        return None


async def run(count: int, sends: int, workdir: str, latency_ms: float) -> float:
    """Returns sends/s."""
    link = os.path.join(workdir, f"bench{count}-{latency_ms:g}-")
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(count), link, str(latency_ms),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        cwd=str(ROOT))
    assert child.stdout is not None and child.stdin is not None
    try:
        async with asyncio.timeout(CHILD_START_TIMEOUT):
            line = await child.stdout.readline()
        if not line.startswith(b"READY"):
            raise SystemExit("simulator child did not start")
        # Keep draining the child's stdout: a full pipe would freeze the simulators.
        drain = asyncio.create_task(child.stdout.read())
        links = [link] if count == 1 else [f"{link}{i}" for i in range(count)]
        modems = [Modem(ModemSpec(f"m{i}", p), NullEvents(), registration_s=10)  # type: ignore[arg-type]
                  for i, p in enumerate(links)]
        for m in modems:
            await m.open()
        await asyncio.gather(*(m.initialise() for m in modems))
        part = pdu.encode_submit("+447700900123", "Benchmark message", request_report=False)[0]

        async def pump(m: Modem) -> None:
            for _ in range(sends):
                await m.send_pdu(part)

        sim0, (busy0, all0) = child_cpu(child.pid), machine_cpu()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(pump(m) for m in modems))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        sim = child_cpu(child.pid) - sim0
        busy1, all1 = machine_cpu()
        busy, share = busy1 - busy0, (busy1 - busy0) / max(all1 - all0, 1e-9)
        total = sends * count
        print(f"{count:>2} modem(s), {latency_ms:g} ms: {total} single-part sends in "
              f"{wall:.2f} s = {total / wall:,.0f} sends/s; "
              f"driver CPU {cpu * 1000 / total:.3f} ms/send, "
              f"simulator CPU {sim * 1000 / total:.3f} ms/send; machine CPU "
              f"{busy * 1000 / total:.3f} ms/send, cores {share:.0%} busy")
        for m in modems:
            await m.close()
        drain.cancel()
        return total / wall
    finally:
        child.stdin.close()
        try:
            async with asyncio.timeout(10):
                await child.wait()
        except TimeoutError:
            child.kill()
            await child.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sends", type=int, default=300, help="sends per modem")
    ap.add_argument("--modems", type=int, default=16)
    ap.add_argument("--latency-ms", type=float, default=20.0,
                    help="simulator latency per command for the second run")
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(f"driver: smsd.modem.device.Modem; peer: smsd.simulator.modem (child process); "
          f"{os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as workdir:
        for latency, sends in ((0.0, args.sends), (args.latency_ms, max(20, args.sends // 10))):
            one = asyncio.run(run(1, sends, workdir, latency))
            many = asyncio.run(run(args.modems, sends, workdir, latency))
            print(f"   scaling at {latency:g} ms: {args.modems} modems = "
                  f"{many / one:.1f} x one modem (target >= 12)")
    print("the same 0 ms exchange in bare C on this machine: bench/pty_floor.py")


if __name__ == "__main__":
    main()
