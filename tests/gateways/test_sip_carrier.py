"""The sip transport against SIPp playing the carrier, on loopback UDP and TCP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from smsd.core.router import Router
from smsd.errors import GatewayError
from smsd.gateways.base import OutboundJob
from smsd.gateways.classound import digest
from smsd.gateways.classound.sip import SipTrunk
from tests.core.gateways import FakeGateway
from tests.fakes.sipp import SCENARIOS, SIPP, free_port, parse_headers, start_sipp
from tests.gateways.conftest import (
    PASSWORD,
    RECIPIENT,
    SENDER,
    USER,
    Hooks,
    LossyRelay,
    running_trunk,
    sip_config,
)

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed"),
]

TEXT = "Héllo from smsd ✓ 100% sure"
JOB = OutboundJob(41, RECIPIENT, TEXT, SENDER, None, 2, "ucs2")
AUTH_KEYS = {"user": USER, "password": PASSWORD}


class TestAuthenticatedMessage:
    @pytest.mark.parametrize("transport", ["udp", "tcp"])
    async def test_401_challenge_then_202_marks_every_part_sent(
        self, tmp_path: Path, transport: str
    ) -> None:
        """The carrier challenges with 401; the repeated MESSAGE carries valid digest
        credentials (SIPp verifies them), From/To/Request-URI name sender and recipient,
        the body is the UTF-8 text, and both parts are reported submitting, then sent."""
        sipp = await start_sipp("uas_auth_202.xml", tmp_path, transport=transport,
                                keys=AUTH_KEYS)
        hooks = Hooks()
        try:
            async with running_trunk(sip_config(sipp.port, sip_transport=transport)) as trunk:
                await trunk.send(JOB, hooks)
            assert await sipp.wait() == 0, sipp.output()
        finally:
            await sipp.stop()
        assert hooks.log == [("submitting", 1), ("submitting", 2), ("sent", 1), ("sent", 2)]
        first, second = sipp.received()
        assert "authorization" not in parse_headers(first)[1]
        start, headers, body = parse_headers(second)
        assert start == f"MESSAGE sip:{RECIPIENT}@classound.test SIP/2.0"
        assert headers["from"].startswith(f"<sip:{SENDER}@classound.test>;tag=")
        assert headers["to"] == f"<sip:{RECIPIENT}@classound.test>"
        assert headers["content-type"] == "text/plain;charset=UTF-8"
        assert body.encode() == TEXT.encode("utf-8")
        ch = digest.parse_challenge(headers["authorization"])
        assert ch is not None and ch.realm == "classound.test"
        assert f'username="{USER}"' in headers["authorization"]
        assert "qop=auth" in headers["authorization"]
        assert parse_headers(first)[1]["call-id"] == headers["call-id"]
        assert headers["cseq"] == "2 MESSAGE"

    async def test_proxy_407_then_registrar_401_both_answered(self, tmp_path: Path) -> None:
        """A 407 from the proxy, then a 401 from the registrar: the third MESSAGE carries
        Proxy-Authorization and Authorization (the registrar's checked by SIPp) and is
        accepted."""
        sipp = await start_sipp("uas_407_401_202.xml", tmp_path, keys=AUTH_KEYS)
        hooks = Hooks()
        try:
            async with running_trunk(sip_config(sipp.port)) as trunk:
                await trunk.send(JOB, hooks)
            assert await sipp.wait() == 0, sipp.output()
        finally:
            await sipp.stop()
        assert hooks.log[-1] == ("sent", 2)
        third = parse_headers(sipp.received()[2])[1]
        assert 'realm="proxy.classound.test"' in third["proxy-authorization"]
        assert 'realm="classound.test"' in third["authorization"]
        assert third["cseq"] == "3 MESSAGE"

    async def test_stale_nonce_is_answered_again(self, tmp_path: Path) -> None:
        """A second 401 with stale=true is not a refusal: the new nonce is answered and
        the MESSAGE accepted; its Authorization carries nonce B, nc=00000001."""
        sipp = await start_sipp("uas_stale_202.xml", tmp_path, keys=AUTH_KEYS)
        hooks = Hooks()
        try:
            async with running_trunk(sip_config(sipp.port)) as trunk:
                await trunk.send(JOB, hooks)
            assert await sipp.wait() == 0, sipp.output()
        finally:
            await sipp.stop()
        assert hooks.log[-1] == ("sent", 2)
        auth = parse_headers(sipp.received()[2])[1]["authorization"]
        assert 'nonce="B' in auth and "nc=00000001" in auth

    async def test_a_second_challenge_without_stale_is_refused_credentials(
        self, tmp_path: Path
    ) -> None:
        """The same scenario without the stale flag is what a carrier does with wrong
        credentials: smsd stops after one answer and reports a temporary failure (our
        configuration, not the message), never looping on challenges."""
        scenario = tmp_path / "uas_401_twice.xml"
        scenario.write_text((SCENARIOS / "uas_stale_202.xml").read_text()
                            .replace(", stale=true", ""))
        sipp = await start_sipp(str(scenario), tmp_path, keys=AUTH_KEYS)
        try:
            async with running_trunk(sip_config(sipp.port)) as trunk:
                with pytest.raises(GatewayError) as err:
                    await trunk.send(JOB, Hooks())
        finally:
            await sipp.stop()
        assert err.value.temporary and "401" in str(err.value)
        assert len(sipp.received()) == 2  # one answer, then no third try

    async def test_wrong_password_is_refused_by_the_carrier(self, tmp_path: Path) -> None:
        """With a wrong secret SIPp's digest check fails and it answers 403: the
        credentials really are checked (a test that passes with any password proves nothing)."""
        sipp = await start_sipp("uas_auth_202.xml", tmp_path, keys=AUTH_KEYS)
        try:
            async with running_trunk(sip_config(sipp.port, secret="wrong")) as trunk:
                with pytest.raises(GatewayError, match="403"):
                    await trunk.send(JOB, Hooks())
            await sipp.wait()
        finally:
            await sipp.stop()

    async def test_next_message_answers_the_known_challenge_up_front(
        self, tmp_path: Path
    ) -> None:
        """After one challenge, the next MESSAGE carries credentials from the start
        with the nonce count moved on (nc=00000002); a fresh 401 is still answered."""
        sipp = await start_sipp("uas_auth_202.xml", tmp_path, calls=2, keys=AUTH_KEYS)
        try:
            async with running_trunk(sip_config(sipp.port)) as trunk:
                await trunk.send(JOB, Hooks())
                await trunk.send(JOB, Hooks())
            assert await sipp.wait() == 0, sipp.output()
        finally:
            await sipp.stop()
        third = parse_headers(sipp.received()[2])[1]
        assert "nc=00000002" in third["authorization"]


class TestCarrierAnswers:
    async def test_503_is_temporary_and_the_router_falls_back(self, tmp_path: Path) -> None:
        """503 from the carrier is temporary: the router hands the message to the next
        gateway in its order, which sends it."""
        sipp = await start_sipp("uas_503.xml", tmp_path)
        after = FakeGateway("gsm")
        try:
            async with running_trunk(sip_config(sipp.port)) as trunk:
                router = Router([trunk, after], ("classound", "gsm"))
                assert await router.send(JOB, Hooks()) == "gsm"
            assert await sipp.wait() == 0, sipp.output()
        finally:
            await sipp.stop()
        assert [j.message_id for j in after.calls] == [JOB.message_id]

    async def test_503_when_last_is_a_temporary_router_failure(self, tmp_path: Path) -> None:
        """With the trunk last in the order a 503 leaves a temporary failure, which the
        dispatcher retries later (never a permanent one)."""
        sipp = await start_sipp("uas_503.xml", tmp_path)
        try:
            async with running_trunk(sip_config(sipp.port)) as trunk:
                router = Router([trunk], ("curl", "gsm", "classound"))
                with pytest.raises(GatewayError) as err:
                    await router.send(JOB, Hooks())
            await sipp.wait()
        finally:
            await sipp.stop()
        assert err.value.temporary and "503" in str(err.value)

    async def test_404_is_permanent(self, tmp_path: Path) -> None:
        """404 refuses this message: permanent, so no other gateway is tried."""
        sipp = await start_sipp("uas_404.xml", tmp_path)
        after = FakeGateway("gsm")
        try:
            async with running_trunk(sip_config(sipp.port)) as trunk:
                router = Router([trunk, after], ("classound", "gsm"))
                with pytest.raises(GatewayError) as err:
                    await router.send(JOB, Hooks())
            await sipp.wait()
        finally:
            await sipp.stop()
        assert not err.value.temporary and after.calls == []

    async def test_lost_requests_are_retransmitted(self, tmp_path: Path) -> None:
        """The path loses the first two copies of the MESSAGE: Timer E retransmits the
        same request (same branch) until the carrier's 202 comes back."""
        sipp = await start_sipp("uas_202.xml", tmp_path)
        relay = await LossyRelay.start(("127.0.0.1", sipp.port), lose=2)
        hooks = Hooks()
        try:
            cfg = sip_config(relay.port, sip_t1_ms=50, username=None, secret=None)
            async with running_trunk(cfg) as trunk:
                await trunk.send(JOB, hooks)
            assert await sipp.wait() == 0, sipp.output()
        finally:
            relay.close()
            await sipp.stop()
        assert relay.lost == 2
        assert hooks.log[-1] == ("sent", 2)
        got = sipp.received()
        assert len(got) == 1  # only the third copy got through
        assert "branch=" in parse_headers(got[0])[1]["via"]

    async def test_no_answer_is_a_temporary_timeout(self, tmp_path: Path) -> None:
        """Nobody answers (every copy lost): Timer F ends the transaction, temporary."""
        relay = await LossyRelay.start(("127.0.0.1", free_port()), lose=10_000)
        try:
            cfg = sip_config(relay.port, sip_t1_ms=50, timeout_s=0.6)
            trunk = SipTrunk(cfg, None)
            await trunk.start()
            with pytest.raises(GatewayError) as err:
                await trunk.send(JOB, Hooks())
            await trunk.close()
        finally:
            relay.close()
        assert err.value.temporary and "no final response" in str(err.value)
        assert relay.lost >= 3  # retransmitted at 50, 100, 200 ms ...

    async def test_tcp_connection_refused_is_temporary(self) -> None:
        """No carrier listening on TCP: a temporary failure, not a crash."""
        cfg = sip_config(free_port(), sip_transport="tcp")
        async with running_trunk(cfg) as trunk:
            with pytest.raises(GatewayError) as err:
                await trunk.send(JOB, Hooks())
        assert err.value.temporary


    async def test_tcp_carrier_closing_fails_the_request_at_once(self) -> None:
        """The carrier reads the MESSAGE and closes the connection: the transaction fails
        then (temporary), not at Timer F."""
        got = asyncio.Event()

        async def close_after_request(reader: asyncio.StreamReader,
                                      writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            got.set()
            writer.close()

        server = await asyncio.start_server(close_after_request, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            cfg = sip_config(port, sip_transport="tcp", timeout_s=3600)
            async with running_trunk(cfg) as trunk:
                with pytest.raises(GatewayError) as err:
                    await trunk.send(JOB, Hooks())
        finally:
            server.close()
        assert got.is_set() and err.value.temporary and "closed" in str(err.value)


class TestRegistration:
    async def test_register_with_challenge_refresh_and_unregister(self, tmp_path: Path) -> None:
        """REGISTER is challenged and answered with credentials; the registrar's granted
        lifetime is kept; the trunk is unavailable until registered; closing removes
        the binding with Expires: 0."""
        sipp = await start_sipp("uas_register.xml", tmp_path, keys=AUTH_KEYS)
        try:
            trunk = SipTrunk(sip_config(sipp.port, sip_register=True,
                                        sip_register_expires=600), None)
            await trunk.start()
            assert not trunk.available()
            granted = await trunk.register(600)
            assert granted == 120 and trunk.available()
            await trunk.close()
            assert await sipp.wait() == 0, sipp.output()
        finally:
            await sipp.stop()
        got = [parse_headers(m) for m in sipp.received()]
        assert [h["expires"] for _, h, _ in got] == ["600", "600", "0"]
        assert got[1][1]["contact"] == f"<sip:{USER}@127.0.0.1:{trunk.local_port};transport=udp>"
        assert "authorization" in got[1][1] and "authorization" in got[2][1]
        assert got[0][0] == "REGISTER sip:classound.test SIP/2.0"
        assert len({h["call-id"] for _, h, _ in got}) == 1  # RFC 3261 10.2.4
