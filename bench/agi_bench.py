"""Benchmark of the FastAGI server: sms-send sessions against the real Outbox.

Prints, does not assert.  Target (issue): p99 handler latency under 5 ms on
top of the store commit, with 200 concurrent sessions.

The server runs in this process with the real Store (temporary SQLite file,
WAL, synchronous=FULL) and the real Outbox; the fake Asterisk clients
(tests/fakes/asterisk_agi.py) run in a child process so that their CPU does
not queue in front of the server's event loop.

    python bench/agi_bench.py [--sessions 2000] [--concurrency 200] [--fake-outbox]
    python bench/agi_bench.py --pipeline 100     # second number: modem -> MessageSend

Reported (per session, measured inside the server):
  handler (wall)         environment read -> handler returned
  of which submit        Outbox.submit (validation + commit, incl. the writer-lock wait)
  of which round trips   time inside AgiSession.command, i.e. waiting for the peer
  handler minus submit   everything but the commit
  AGI layer own time     handler minus submit minus round trips: our parsing, quoting,
                         lookups and scheduling, the number the 5 ms target is about
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog

from smsd.agi.handlers import build_handlers
from smsd.agi.ports import AgiServices, Handler, OutboxPort
from smsd.agi.protocol import AgiReply
from smsd.agi.server import AgiServer
from smsd.agi.session import AgiSession
from smsd.config import Licence, Policy, User
from smsd.core.outbox import SubmitRequest, SubmitResult

ALICE = User(
    extension="100", name="Alice", username="alice", office_number="+15551234567",
    licence=Licence.UC_BUSINESS, endpoint="pjsip:100",
)


class Directory:
    def user_by_extension(self, ext: str) -> User | None:
        return ALICE if ext == "100" else None

    def user_by_username(self, name: str) -> User | None:
        return ALICE if name == "alice" else None

    def user_by_endpoint(self, endpoint: str) -> User | None:
        return ALICE if endpoint.lower() == "pjsip:100" else None


class NoInbox:
    async def receive(
        self, sender: str, recipient: str | None, text: str, *, gateway: str,
        modem: str | None = None,
    ) -> int:
        raise NotImplementedError


class FakeOutbox:
    def __init__(self) -> None:
        self.n = 0

    async def submit(self, req: SubmitRequest) -> SubmitResult:
        self.n += 1
        return SubmitResult(ids=[self.n], refused=[])


@dataclass
class Sample:
    """One session, as seen by the server."""

    handler: float = 0.0  # handler wall time
    submit: float = 0.0  # inside Outbox.submit
    waiting: float = 0.0  # inside AgiSession.command (mostly waiting for the peer)
    commands: int = 0


# Each connection runs in its own task, hence its own context: the sample of
# the session being served.
CURRENT: contextvars.ContextVar[Sample] = contextvars.ContextVar("CURRENT")


class TimedOutbox:
    def __init__(self, inner: OutboxPort) -> None:
        self.inner = inner

    async def submit(self, req: SubmitRequest) -> SubmitResult:
        t0 = time.perf_counter()
        result = await self.inner.submit(req)
        CURRENT.get().submit += time.perf_counter() - t0
        return result


def timed(handler: Handler, out: list[Sample]) -> Handler:
    async def run(session: AgiSession) -> None:
        sample = Sample()
        CURRENT.set(sample)
        command = session.command

        async def timed_command(verb: str, *args: str) -> AgiReply:
            t0 = time.perf_counter()
            try:
                return await command(verb, *args)
            finally:
                sample.waiting += time.perf_counter() - t0
                sample.commands += 1

        session.command = timed_command  # type: ignore[method-assign]
        t0 = time.perf_counter()
        await handler(session)
        sample.handler = time.perf_counter() - t0
        out.append(sample)

    return run


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def client_main(port: int, sessions: int, concurrency: int) -> None:
    from tests.fakes.asterisk_agi import FakeAsteriskAgi

    sem = asyncio.Semaphore(concurrency)
    failures = 0

    async def one(i: int) -> None:
        nonlocal failures
        async with sem:
            fake = FakeAsteriskAgi.message_pjsip(
                port, "sms-send", from_='"Alice" <sip:100@127.0.0.1>',
                to=f"pjsip:+1555765{i % 10000:04d}@127.0.0.1", body=f"bench message {i}\nline 2",
                extension=f"+1555765{i % 10000:04d}", context="sms-out", endpoint="100",
            )
            await fake.run()
            if fake.variables.get("SMS_STATUS") != "QUEUED":
                failures += 1

    await asyncio.gather(*(one(i) for i in range(sessions)))
    print(f"client: {sessions} sessions, {failures} not QUEUED", file=sys.stderr)


async def run_clients(port: int, sessions: int, concurrency: int) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--client", str(port), "--sessions", str(sessions),
        "--concurrency", str(concurrency),
    )
    rc = await proc.wait()
    if rc != 0:
        raise SystemExit(f"client process failed with {rc}")


async def bench(sessions: int, concurrency: int, fake_outbox: bool) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    handler_samples: list[Sample] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = None
        if fake_outbox:
            inner: OutboxPort = FakeOutbox()
            label = "FAKE outbox (no store)"
        else:
            from smsd.core.outbox import Outbox
            from smsd.store import Store

            store = await Store.open(Path(tmp) / "bench.sqlite3")
            inner = Outbox(store, Policy())
            label = "real Outbox + Store (temp SQLite, WAL, synchronous=FULL)"
        outbox = TimedOutbox(inner)
        services = AgiServices(outbox=outbox, inbox=NoInbox(), directory=Directory())
        handlers = {k: timed(h, handler_samples) for k, h in build_handlers(services).items()}
        srv = AgiServer(handlers, "127.0.0.1", 0)
        await srv.start()
        try:
            t0 = time.perf_counter()
            await run_clients(srv.port, sessions, concurrency)
            wall = time.perf_counter() - t0
        finally:
            await srv.close()
            if store is not None:
                await store.close()
    handler = [s.handler for s in handler_samples]
    submit = [s.submit for s in handler_samples]
    waiting = [s.waiting for s in handler_samples]
    beyond_commit = [s.handler - s.submit for s in handler_samples]
    own = [s.handler - s.submit - s.waiting for s in handler_samples]
    ms = 1000.0

    def line(name: str, values: list[float], note: str = "") -> None:
        p50, p99 = pct(values, 0.5) * ms, pct(values, 0.99) * ms
        print(f"  {name:<30} p50 {p50:8.2f} ms   p99 {p99:8.2f} ms{note}")

    print(f"AGI sms-send bench: {label}")
    print(f"  sessions: {len(handler)} of {sessions}, concurrency {concurrency}, "
          f"{handler_samples[0].commands if handler_samples else 0} AGI commands each")
    print(f"  sessions/s: {len(handler) / wall:,.0f}")
    line("handler (wall)", handler)
    line("  of which Outbox.submit", submit)
    line("  of which AGI round trips", waiting, "  (fake Asterisk in a child process)")
    line("handler minus submit", beyond_commit)
    line("AGI layer own time", own, "  <- target p99 < 5 ms on top of the commit")
    if handler:
        print(f"  mean handler: {statistics.fmean(handler) * ms:.2f} ms")


# --- second number: modem -> MessageSend, the whole inbound pipeline -------------------
#
# A real Daemon (store, modem pool, inbox, kite-sms procedure, AMI client, AGI
# server) with one SimulatedModem on a pseudo-terminal and the fake Asterisk
# manager (tests/fakes/asterisk_ami.py), whose tiny dialplan runs
# [kite-sms] <DID> -> Answer(), AGI(agi://.../kite-sms?members=100\,201) against
# the daemon's FastAGI server, exactly as Asterisk would.  Measured: from the
# moment the simulator queues the +CMTI for the SMS to the MessageSend action
# for its first participant arriving at the fake AMI.

PIPELINE_DID = "+447700900001"
# Bounded wait for each message to come out as a MessageSend.
PIPELINE_MESSAGE_TIMEOUT_S = 30.0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def pipeline(messages: int) -> None:
    from smsd.config import Ami, GsmGateway, Listen
    from smsd.config import Config as SmsdConfig
    from smsd.daemon import Daemon
    from smsd.modem.spec import ModemSpec
    from smsd.simulator.modem import SimulatedModem
    from tests.fakes.asterisk_ami import FakeAmi

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    agi_port = _free_port()
    ami = await FakeAmi(
        dialplan={"kite-sms": {PIPELINE_DID: [
            "Answer()", f"AGI(agi://127.0.0.1:{agi_port}/kite-sms?members=100\\,201)"]}},
    ).start()
    users = tuple(
        User(extension=ext, name=name, username=name.lower(), office_number=PIPELINE_DID,
             licence=Licence.UC_BUSINESS, endpoint=f"pjsip:{ext}")
        for ext, name in (("100", "Alice"), ("201", "Bob"))
    )
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        modem = SimulatedModem(own_number=PIPELINE_DID, latency_ms=0, seed=1)
        await modem.start(str(state / "ttyGSM0"))
        config = SmsdConfig(
            state_dir=state, database=state / "smsd.sqlite3", users=users,
            gsm=GsmGateway((ModemSpec(id="gsm0", path=str(state / "ttyGSM0"),
                                      own_number=PIPELINE_DID),)),
            routing=("gsm",), policy=Policy(country="GB"),
            http=Listen("127.0.0.1", _free_port()), agi=Listen("127.0.0.1", agi_port),
            ami=Ami(enabled=True, host="127.0.0.1", port=ami.port, username="smsd",
                    secret="smsd-secret"),
        )
        daemon = Daemon(config)
        task = asyncio.create_task(daemon.serve())
        latencies: list[float] = []
        try:
            deadline = time.monotonic() + 30
            while daemon.agi_port is None or not ami.logged_in:
                if time.monotonic() > deadline or task.done():
                    raise SystemExit("daemon did not start (or AMI did not log in)")
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # let the modem initialise
            for i in range(messages):
                text = f"pipeline message {i}."

                def copies(text: str = text) -> int:
                    return sum(1 for m in ami.messages if text in m.body)

                ami.message_arrived.clear()
                t0 = time.perf_counter()
                await modem.deliver(f"+4477009{i % 100000:05d}", text)
                async with asyncio.timeout(PIPELINE_MESSAGE_TIMEOUT_S):
                    while copies() == 0:
                        await ami.message_arrived.wait()
                        ami.message_arrived.clear()
                    latencies.append(time.perf_counter() - t0)
                    # Both participants served before the next SMS: no overlap.
                    while copies() < len(users):
                        await ami.message_arrived.wait()
                        ami.message_arrived.clear()
            await asyncio.wait_for(asyncio.gather(*(r.done.wait() for r in ami.agi_runs)), 10)
            runs = [r.variables.get("SMS_STATUS") for r in ami.agi_runs]
            targets = sorted({m.to for m in ami.messages})
        finally:
            daemon.request_stop("bench done")
            await asyncio.wait_for(task, 30)
            await modem.stop()
            await ami.stop()
    ms = 1000.0
    print("Inbound pipeline bench: SimulatedModem -> pool -> inbox -> kite-sms (AMI Originate"
          " -> FastAGI) -> conversation -> AMI MessageSend")
    print(f"  messages: {len(latencies)} (one at a time); kite-sms AGI runs: {len(runs)}, "
          f"statuses {sorted(set(map(str, runs)))}; MessageSend to {targets}")
    print(f"  modem->MessageSend  p50 {pct(latencies, .5) * ms:8.2f} ms   "
          f"p99 {pct(latencies, .99) * ms:8.2f} ms   max {max(latencies) * ms:8.2f} ms")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--fake-outbox", action="store_true", help="measure without the store")
    ap.add_argument("--pipeline", type=int, metavar="N", default=0,
                    help="instead: N inbound SMS through the whole daemon, modem->MessageSend")
    ap.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.client:
        asyncio.run(client_main(args.client, args.sessions, args.concurrency))
        return
    if args.pipeline:
        asyncio.run(pipeline(args.pipeline))
        return
    asyncio.run(bench(args.sessions, args.concurrency, args.fake_outbox))


if __name__ == "__main__":
    main()
