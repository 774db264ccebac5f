"""Benchmark: inbound SMS latency, modem indication -> AMI MessageSend.

Prints numbers, asserts nothing.  Target (Asterisk integration issue): p50 and
p99 under 50 ms.

Set-up, the same as tests/e2e: the real daemon (``smsd run --config``) as a
subprocess with its real wiring; two simulated modems (SimulatedModem, in this
process, on real ptys) and the fake Asterisk manager (tests/fakes/asterisk_ami.py,
in this process, on loopback) which plays the [kite-sms] dialplan and runs the
daemon's FastAGI kite-sms script as res_agi would.

What is measured, per message (messages one after the other, not overlapped):

  t0  just before ``SimulatedModem.deliver()``: it stores the SMS-DELIVER on
      the simulated SIM and writes the new-message indication (+CMTI, as the
      daemon's AT+CNMI asks) to the pty, synchronously;
  t1  the fake AMI has parsed the first ``MessageSend`` action for that text
      (before it answers);
  tN  ... the last expected ``MessageSend`` (both call-group members).

So ``first`` = t1 - t0 covers: the daemon reading +CMTI, AT+CMGR over the pty,
PDU decode, the inbox commit (SQLite WAL, synchronous=FULL: an fsync), AT+CMGD,
the event bus, ShowDialPlan over AMI, Originate, the fake Asterisk calling
FastAGI kite-sms, the claim, the conversation commit and MessageSend.  With
``--route directory`` the DID has no kite-sms extension: one ShowDialPlan
then the directory (one member, no Originate/AGI).

The split ``to commit`` comes from the daemon's own ``sms.received`` log event
(its ISO timestamp, same host clock): t0 -> the part is committed and
reassembled in the inbox; ``commit->AMI`` is the rest.  It is printed as a
rough breakdown only (log timestamps are taken after the commit returns).

    python bench/inbound_latency_bench.py [--count 200] [--route dialplan|directory]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smsd.simulator.farm import SimulatorFarm
from tests.e2e.conftest import (
    AMI_SECRET,
    AMI_USER,
    CUSTOMER,
    DID,
    DID_OTHER,
    DaemonProc,
    kite_sms_dialplan,
    write_config,
)
from tests.fakes.asterisk_ami import FakeAmi

# One message normally takes tens of ms; 10 s only bounds a stuck run.
PER_MESSAGE_DEADLINE_S = 10.0
# Modem init over the pty takes about a second after the daemon is ready.
WARMUP_DEADLINE_S = 30.0
WARMUP_MESSAGES = 5


class TimedAmi(FakeAmi):
    """The fake AMI, noting when each MessageSend was parsed (wall clock)."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.arrivals: dict[str, list[float]] = {}
        self.changed = asyncio.Event()

    def _message_send(self, a, ok, err):  # type: ignore[no-untyped-def]
        now = time.time()
        before = len(self.messages)
        super()._message_send(a, ok, err)
        if len(self.messages) > before:
            self.arrivals.setdefault(self.messages[-1].body, []).append(now)
            self.changed.set()


async def wait_arrivals(ami: TimedAmi, text: str, expected: int, limit_s: float) -> list[float]:
    end = time.monotonic() + limit_s
    while len(ami.arrivals.get(text, [])) < expected:
        left = end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{text!r}: {len(ami.arrivals.get(text, []))}/{expected} "
                               "MessageSend within the deadline")
        ami.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ami.changed.wait(), left)
    return ami.arrivals[text]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def line(name: str, values_s: list[float]) -> str:
    ms = [v * 1000 for v in values_s]
    return (f"  {name:<14} p50 {pct(ms, 50):7.2f} ms   p99 {pct(ms, 99):7.2f} ms   "
            f"mean {statistics.fmean(ms):7.2f}   max {max(ms):7.2f}")


async def run(count: int, route: str) -> None:
    with tempfile.TemporaryDirectory(prefix="smsd-inbound-bench-") as tmp_name:
        tmp = Path(tmp_name)
        ami = TimedAmi(username=AMI_USER, secret=AMI_SECRET)
        await ami.start()
        farm = SimulatorFarm(2, link=str(tmp / "modem"), own_number=DID_OTHER,
                             auto_report=False)
        await farm.start()
        config = write_config(tmp, ami_port=ami.port, ami_secret=AMI_SECRET,
                              modem_paths=list(farm.links), own_numbers=[DID_OTHER, DID])
        daemon = DaemonProc(tmp, config)
        try:
            await daemon.start()
            ami.dialplan.update(kite_sms_dialplan(daemon.agi_port))
            modem = farm.modems[1] if route == "dialplan" else farm.modems[0]
            expected = 2 if route == "dialplan" else 1
            for i in range(WARMUP_MESSAGES):
                text = f"warm-up {i}"
                await modem.deliver(CUSTOMER, text)
                await wait_arrivals(ami, text, expected, WARMUP_DEADLINE_S)
            starts: dict[str, float] = {}
            first: list[float] = []
            last: list[float] = []
            wall = time.monotonic()
            for i in range(count):
                text = f"bench {i}"
                starts[text] = time.time()
                await modem.deliver(CUSTOMER, text)
                arrived = await wait_arrivals(ami, text, expected, PER_MESSAGE_DEADLINE_S)
                first.append(min(arrived) - starts[text])
                last.append(max(arrived) - starts[text])
            wall = time.monotonic() - wall
            commit = _commit_times(daemon, starts)
        finally:
            await daemon.stop()
            await farm.stop()
            await ami.stop()

    print(f"inbound latency, route={route}, {count} messages "
          f"(+{WARMUP_MESSAGES} warm-up), {count / wall:.1f} msg/s sequential")
    print("  measured from SimulatedModem.deliver() (+CMTI written to the pty)")
    print(line("first AMI", first))
    if expected > 1:
        print(line("last AMI", last))
    if commit:
        to_commit = [c for c, _ in commit]
        rest = [f - c for c, f in zip(to_commit, first[-len(commit):], strict=True)]
        print(line("to commit", to_commit))
        print(line("commit->AMI", rest))
    target = "met" if pct([f * 1000 for f in first], 99) < 50 else "NOT met"
    print(f"  target p99 < 50 ms (first MessageSend): {target}")


def _commit_times(daemon: DaemonProc, starts: dict[str, float]) -> list[tuple[float, float]]:
    """(t_commit - t0, t0) per bench message, from the daemon's sms.received events.

    Inbound ids are sequential; the warm-up messages took the first ones.
    """
    events = daemon.events("sms.received")
    ordered = list(starts.values())
    received = [datetime.fromisoformat(e["timestamp"]).timestamp()
                for e in events if "timestamp" in e][WARMUP_MESSAGES:]
    if len(received) != len(ordered):
        return []
    return [(r - t0, t0) for r, t0 in zip(received, ordered, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--route", choices=("dialplan", "directory"), default="dialplan")
    args = parser.parse_args()
    asyncio.run(run(args.count, args.route))


if __name__ == "__main__":
    main()
