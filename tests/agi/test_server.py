"""The FastAGI server: routing, allow-list, deadlines, hangups, serve_agi."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from smsd.agi.handlers import build_handlers
from smsd.agi.server import AgiServer, serve_agi
from smsd.agi.session import AgiSession
from smsd.errors import ConfigError
from tests.agi.conftest import Fakes
from tests.fakes.asterisk_agi import DEAD_CHANNEL, FakeAsteriskAgi

pytestmark = pytest.mark.timeout(30)


async def read_all(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server closes (EOF or reset)."""
    try:
        return await reader.read()
    except ConnectionError:
        return b""


async def test_routes_on_script_name_without_query() -> None:
    """'x?y=+1' reaches handler 'x'; the query is parsed with '+' kept."""
    seen: list[tuple[str, dict[str, str]]] = []

    async def handler(session: AgiSession) -> None:
        seen.append((session.env.script, dict(session.env.query)))
        await session.set_variable("DONE", "1")

    srv = AgiServer({"x": handler}, "127.0.0.1", 0)
    await srv.start()
    try:
        fake = FakeAsteriskAgi(srv.port, "x?y=+1&z=%2B2")
        await fake.run()
    finally:
        await srv.close()
    assert seen == [("x", {"y": "+1", "z": "+2"})]
    assert fake.variables["DONE"] == "1"
    assert fake.closed_by_server


async def test_unknown_script_reports_and_closes(server: AgiServer, fakes: Fakes) -> None:
    """An unknown script touches no service, says so in SMS_STATUS/SMS_ERROR, and closes."""
    fake = FakeAsteriskAgi(server.port, "sms-sned?to=+15557654321")
    await fake.run()
    assert fake.variables["SMS_STATUS"] == "ERROR"
    assert "sms-sned" in fake.variables["SMS_ERROR"]
    assert fakes.outbox.requests == [] and fakes.inbox.received == []
    assert fake.closed_by_server


@pytest.mark.parametrize("allow", [["127.0.0.1"], ["127.0.0.0/8", "::1"]])
async def test_allow_list_admits(fakes: Fakes, allow: list[str]) -> None:
    """A peer inside the allow-list is served."""
    srv = AgiServer(build_handlers(fakes.services()), "127.0.0.1", 0, allow)
    await srv.start()
    try:
        fake = FakeAsteriskAgi(srv.port, "sms-send?to=+15557654321&from=100&body=x")
        await fake.run()
    finally:
        await srv.close()
    assert fake.variables["SMS_STATUS"] == "QUEUED"


async def test_allow_list_refuses_others_at_once(fakes: Fakes) -> None:
    """A peer outside the allow-list is closed without a single command or service call."""
    srv = AgiServer(build_handlers(fakes.services()), "127.0.0.1", 0, ["192.0.2.0/24"])
    await srv.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        data = await read_all(reader)
        writer.close()
    finally:
        await srv.close()
    assert data == b""
    assert fakes.outbox.requests == []


def test_bad_allow_entry_is_a_config_error() -> None:
    """A malformed allow-list entry fails at construction, naming the entry."""
    with pytest.raises(ConfigError) as info:
        AgiServer({}, "127.0.0.1", 0, ["127.0.0.1", "not-an-ip"])
    assert "not-an-ip" in str(info.value)


async def test_hangup_line_mid_session(server: AgiServer, fakes: Fakes) -> None:
    """'HANGUP' arriving between commands is not taken for a reply: the message is still
    submitted and the variables still set (SET VARIABLE works on a dead channel)."""
    fake = FakeAsteriskAgi.message_pjsip(
        server.port, "sms-send", from_='"Alice" <sip:100@127.0.0.1>',
        to="pjsip:+15557654321@127.0.0.1", body="hi", extension="+15557654321",
        callerid_name="Alice Agent", hangup_after=1,
    )
    await fake.run()
    assert len(fakes.outbox.requests) == 1
    assert fake.variables["SMS_STATUS"] == "QUEUED"


class DeadEverything(FakeAsteriskAgi):
    """A peer whose channel is gone and that answers 511 to everything."""

    def answer(self, line: str) -> str:
        return DEAD_CHANNEL if self.dead else super().answer(line)


async def test_511_ends_session_quietly(server: AgiServer, fakes: Fakes) -> None:
    """511 to every command after HANGUP ends the session without a crash; the server
    then serves the next session normally."""
    fake = DeadEverything(server.port, "kite-sms?members=100", hangup_after=0)
    await fake.run()
    assert fakes.procedure.claims == []
    assert fake.replies == [DEAD_CHANNEL]
    ok = FakeAsteriskAgi(server.port, "kite-sms?members=100", variables={"SMS_ID": "3"})
    await ok.run()
    assert ok.variables["SMS_STATUS"] == "ROUTED"


@pytest.mark.parametrize(("close_after", "submitted"), [(0, 0), (1, 1)])
async def test_peer_closes_mid_session(
    server: AgiServer, fakes: Fakes, close_after: int, submitted: int
) -> None:
    """Asterisk closing before answering the message read submits nothing (no half
    data); closing after it only loses the status report.  Neither breaks the server."""
    fake = FakeAsteriskAgi.message_pjsip(
        server.port, "sms-send", from_='"Alice" <sip:100@127.0.0.1>',
        to="pjsip:+15557654321@127.0.0.1", body="hi", extension="+15557654321",
        close_after=close_after, callerid_name="Alice Agent",
    )
    await fake.run()
    for _ in range(50):
        if server.connections == 0:
            break
        await asyncio.sleep(0.01)
    assert len(fakes.outbox.requests) == submitted
    fakes.outbox.requests.clear()
    ok = FakeAsteriskAgi(server.port, "sms-send?to=+15557654321&from=100&body=x")
    await ok.run()
    assert ok.variables["SMS_STATUS"] == "QUEUED"


async def test_command_deadline(fakes: Fakes) -> None:
    """A peer that sends the environment and then never answers is dropped by the
    per-command deadline (the test itself only has pytest-timeout)."""
    srv = AgiServer(build_handlers(fakes.services()), "127.0.0.1", 0, command_timeout=0.2)
    await srv.start()
    try:
        fake = FakeAsteriskAgi(srv.port, "kite-sms")
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(fake.environment())
        data = await read_all(reader)
        writer.close()
    finally:
        await srv.close()
    assert data == b"GET VARIABLE SMS_ID\n"
    assert srv.errors_total == 1


async def test_environment_deadline(fakes: Fakes) -> None:
    """A peer that never finishes the environment is closed by the env deadline."""
    srv = AgiServer(build_handlers(fakes.services()), "127.0.0.1", 0, env_timeout=0.2)
    await srv.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"agi_network: yes\nagi_network_script: sms-send\n")
        data = await read_all(reader)
        writer.close()
    finally:
        await srv.close()
    assert data == b""
    assert srv.connections == 0


async def test_serve_agi_runs_until_cancelled(fakes: Fakes) -> None:
    """serve_agi reports its port through `started`, serves, and closes on cancel."""
    services = SimpleNamespace(
        outbox=fakes.outbox, inbox=fakes.inbox, directory=fakes.directory,
        conversations=fakes.conversations, procedure=fakes.procedure,
        config=SimpleNamespace(policy=SimpleNamespace(country="US")), ami=None,
    )
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve_agi(services, "127.0.0.1", 0, started=port.set_result)  # type: ignore[arg-type]
    )
    bound = await port
    fake = FakeAsteriskAgi(bound, "sms-send?to=+15557654321&from=100&body=x")
    await fake.run()
    assert fake.variables["SMS_STATUS"] == "QUEUED"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", bound)


async def test_close_cancels_running_sessions(fakes: Fakes) -> None:
    """close() ends sessions still waiting on a silent peer instead of hanging."""
    srv = AgiServer(build_handlers(fakes.services()), "127.0.0.1", 0, drain_timeout=0.05)
    await srv.start()
    fake = FakeAsteriskAgi(srv.port, "kite-sms")
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    writer.write(fake.environment())
    assert await reader.readline() == b"GET VARIABLE SMS_ID\n"
    assert srv.connections == 1
    await srv.close()
    assert srv.connections == 0
    assert await read_all(reader) == b""
    writer.close()


class UsageOnSet(FakeAsteriskAgi):
    """A peer that answers SET VARIABLE with res_agi's multi-line 520 usage block."""

    def answer(self, line: str) -> str:
        if line.startswith("SET VARIABLE"):
            return (
                "520-Invalid command syntax.  Proper usage follows:\n"
                " Usage: SET VARIABLE <variablename> <value>\n520 End of proper usage."
            )
        return super().answer(line)


async def test_usage_block_ends_session_cleanly(server: AgiServer, fakes: Fakes) -> None:
    """A 520 usage block is read as one failed reply (not three), the session stops
    there, and the committed message stays committed."""
    fake = UsageOnSet(server.port, "sms-send?to=+15557654321&from=100&body=x")
    await fake.run()
    assert [c for c in fake.commands if c.startswith("SET")] == ["SET VARIABLE SMS_STATUS QUEUED"]
    assert fake.closed_by_server
    assert len(fakes.outbox.requests) == 1


class GarbledRead(FakeAsteriskAgi):
    """A peer whose GET FULL VARIABLE answer is not what BASE64_ENCODE produces."""

    def answer(self, line: str) -> str:
        if line.startswith("GET FULL VARIABLE"):
            return "200 result=1 (not,base64,at,all!,??)"
        return super().answer(line)


async def test_garbled_message_read_submits_nothing(server: AgiServer, fakes: Fakes) -> None:
    """If the message fields cannot be decoded, nothing is submitted and the session ends."""
    fake = GarbledRead.message_pjsip(
        server.port, "sms-send", from_='"Alice" <sip:100@127.0.0.1>',
        to="pjsip:+15557654321@127.0.0.1", body="hi", extension="+15557654321",
        callerid_name="Alice Agent",
    )
    await fake.run()
    assert fakes.outbox.requests == []
    assert fake.closed_by_server
    assert not any(c.startswith("SET") for c in fake.commands)


def _has_ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this host")
async def test_allow_list_ipv6(fakes: Fakes) -> None:
    """Over ::1, an allow-list naming ::1 serves; one naming only 127.0.0.1 refuses."""
    for allow, expect in ((["::1"], "QUEUED"), (["127.0.0.1"], None)):
        srv = AgiServer(build_handlers(fakes.services()), "::1", 0, allow)
        await srv.start()
        try:
            fake = FakeAsteriskAgi(
                srv.port, "sms-send?to=+15557654321&from=100&body=x", host="::1"
            )
            await fake.run()
        finally:
            await srv.close()
        assert fake.variables.get("SMS_STATUS") == expect


async def test_handler_crash_is_contained() -> None:
    """An unexpected exception in a handler ends that connection only, is counted, and
    the next session is served."""
    calls = 0

    async def flaky(session: AgiSession) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        await session.set_variable("OK", "yes")

    srv = AgiServer({"flaky": flaky}, "127.0.0.1", 0)
    await srv.start()
    try:
        first = FakeAsteriskAgi(srv.port, "flaky")
        await first.run()
        second = FakeAsteriskAgi(srv.port, "flaky")
        await second.run()
    finally:
        await srv.close()
    assert first.commands == [] and first.closed_by_server
    assert second.variables["OK"] == "yes"
    assert srv.errors_total == 1


async def test_endless_environment_is_cut(fakes: Fakes) -> None:
    """Megabytes of short lines that never end the environment are cut at the budget:
    the connection is dropped long before the peer finishes sending."""
    srv = AgiServer(build_handlers(fakes.services()), "127.0.0.1", 0)
    await srv.start()
    sent = 0
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        chunk = b"agi_junk: " + b"x" * 50 + b"\n"
        try:
            for _ in range(20_000):  # ~1.2 MB
                writer.write(chunk * 10)
                await writer.drain()
                sent += len(chunk) * 10
        except ConnectionError:
            pass
        assert await read_all(reader) == b""
        writer.close()
    finally:
        await srv.close()
    assert srv.errors_total == 1
    assert srv.sessions_total == 0
    assert sent < 20_000 * 610  # the peer was cut off before it finished
