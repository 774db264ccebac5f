"""Benchmark: a burst of inbound SMS routed through the kite-sms procedure.

Prints numbers, asserts nothing.  Target (issue 16, defect 5): 30 inbound SMS
routed in under 2 s.  On a real Asterisk 20.20.1 the old serial routing with
the sample's ``Answer()`` took 15.2 s for 30 (about 0.5 s each).

The daemon's own wiring (``build_services``: event bus, kite-sms procedure,
conversations, AMI client) and its FastAGI server on 127.0.0.1:4573 (the
address asterisk-conf/extensions.conf calls); ``COUNT`` SMS from different
customers to one DID are committed as the inbox commits them and published at
once.  The clock runs from the publish to the moment every one of them is
routed (each SMS: ShowDialPlan, Originate Local/<DID>@kite-sms, the dialplan's
AGI kite-sms claim, MessageSend to the members' phones).

Against the fake Asterisk (default) the [kite-sms] dialplan is played by
tests/fakes/asterisk_ami.py.  Against a real one:

    SMSD_ASTERISK=smsd:SECRET@127.0.0.1:5038 python bench/inbound_routing_bench.py

with asterisk-conf/extensions.conf loaded ([kite-sms] routes +15551234567 to
members 100 and 201) and nothing else on 127.0.0.1:4573.  ``--serial`` routes
one SMS at a time, as smsd did before issue 16.

    python bench/inbound_routing_bench.py [--count 30] [--serial]

Measured on the lab Asterisk 20.20.1 (2 shared cores, load average about 9,
phones 100/201 unregistered so each copy is recorded as waiting):

    [kite-sms] as shipped (no Answer()), concurrent     30 SMS in 1.97 s
    [kite-sms] as shipped (no Answer()), --serial       30 SMS in 1.43 s
    old sample with Answer(), concurrent                30 SMS in 2.22 s
    old sample with Answer(), --serial (smsd before)    30 SMS in 16.96 s

Without the Answer() each SMS costs Asterisk little and smsd a few SQLite
commits (fsync), which do not overlap; concurrency is what keeps a slow
dialplan (an Answer(), a database lookup in the AGI) from queueing the burst.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smsd import services as services_mod
from smsd.agi.handlers import build_handlers
from smsd.agi.ports import AgiServices
from smsd.agi.server import AgiServer
from smsd.config import Ami
from smsd.core.directory import Directory
from smsd.store import Store
from tests.asterisk.conftest import DID, add_inbound, make_config
from tests.fakes.asterisk_ami import FakeAmi

AGI_PORT = 4573
# A whole burst normally takes well under the target; 120 s only bounds a stuck run.
BURST_DEADLINE_S = 120.0


def _real_asterisk() -> Ami | None:
    spec = os.environ.get("SMSD_ASTERISK")
    if not spec:
        return None
    creds, _, where = spec.rpartition("@")
    user, _, secret = creds.partition(":")
    host, _, port = where.rpartition(":")
    return Ami(True, host, int(port), user, secret)


async def run(count: int, serial: bool) -> None:
    real = _real_asterisk()
    fake: FakeAmi | None = None
    if real is None:
        fake = await FakeAmi().start()
        fake.dialplan["kite-sms"] = {DID: [
            f"AGI(agi://127.0.0.1:{AGI_PORT}/kite-sms?members=100\\,201)", "Hangup()"]}
    with tempfile.TemporaryDirectory(prefix="smsd-routing-bench-") as tmp_name:
        tmp = Path(tmp_name)
        config = make_config(tmp, ami_port=fake.port if fake else 0)
        if real is not None:
            from dataclasses import replace
            config = replace(config, ami=real)
        if serial:
            services_mod.ROUTING_CONCURRENCY = 1
        store = await Store.open(config.database)
        services = await services_mod.build_services(config, store, Directory(config))
        assert services.ami is not None
        agi = AgiServer(build_handlers(AgiServices.from_services(services)), "127.0.0.1",
                        AGI_PORT)
        await agi.start()
        tasks = [asyncio.create_task(services.bus.run()),
                 asyncio.create_task(services.ami.run())]
        try:
            if not await services.ami.wait_connected(10, hooks=True):
                print("AMI login failed:", services.ami.last_error)
                return
            burst = [await add_inbound(store, f"+1555765{i:04d}", DID, f"burst {i}")
                     for i in range(count)]
            cpu = time.process_time()
            wall = time.monotonic()
            for sms in burst:
                services.bus.publish_inbound(sms)
            await asyncio.wait_for(services.bus.join(), BURST_DEADLINE_S)
            wall = time.monotonic() - wall
            cpu = time.process_time() - cpu
            rows = await store.fetchall(
                "SELECT route_state, COUNT(*) AS n FROM inbound GROUP BY route_state")
            states = {str(r["route_state"]): int(r["n"]) for r in rows}
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await agi.close()
            await store.close()
            if fake is not None:
                await fake.stop()
    where = f"real Asterisk at {real.host}:{real.port}" if real else "fake Asterisk"
    mode = "serial" if serial else f"concurrent ({services_mod.ROUTING_CONCURRENCY} at once)"
    print(f"inbound routing, {count} SMS to {DID}, {where}, {mode}")
    print(f"  all routed in {wall:.2f} s ({wall / count * 1000:.0f} ms per SMS, "
          f"daemon CPU {cpu:.2f} s); route states {states}")
    print(f"  target: {count} SMS in < 2 s: {'met' if wall < 2 else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--serial", action="store_true")
    args = parser.parse_args()
    asyncio.run(run(args.count, args.serial))


if __name__ == "__main__":
    main()
