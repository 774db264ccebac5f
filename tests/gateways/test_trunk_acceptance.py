"""Issue 8 acceptance: the real daemon with the CLASSOUND sip trunk and SIPp as the carrier."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from smsd.simulator.farm import SimulatorFarm
from tests.fakes.sipp import SIPP, free_port, parse_headers, start_sipp
from tests.gateways.conftest import PASSWORD as SIP_PASSWORD
from tests.gateways.conftest import USER as SIP_USER
from tests.gateways.trunk_daemon import DID, TrunkDaemon

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed"),
]

CUSTOMER = "+15550001111"
AUTH_KEYS = {"user": SIP_USER, "password": SIP_PASSWORD}


def sip_settings(carrier_port: int, **kw: Any) -> dict[str, Any]:
    return {
        "mode": "sip", "sip_host": "127.0.0.1", "sip_port": carrier_port,
        "username": SIP_USER, "secret": SIP_PASSWORD, "from_domain": "classound.test", **kw,
    }


@pytest.fixture
async def farm(tmp_path: Path) -> AsyncIterator[SimulatorFarm]:
    f = SimulatorFarm(1, link=str(tmp_path / "modem0"), own_number=DID)
    await f.start()
    try:
        yield f
    finally:
        await f.stop()


class TestOutbound:
    async def test_originate_reaches_sipp_authenticated_and_is_sent(self, tmp_path: Path) -> None:
        """Only the trunk configured: POST /api/v1/originate/sms becomes a MESSAGE that the
        carrier challenges, then accepts with valid credentials; From is the user's DID, To
        the number, the body the text; the message ends `sent` through gateway classound."""
        sipp = await start_sipp("uas_auth_202.xml", tmp_path, keys=AUTH_KEYS)
        daemon = TrunkDaemon(tmp_path, sip_settings(sipp.port))
        try:
            await daemon.start()
            status, body = await daemon.request(
                "POST", "/api/v1/originate/sms",
                data={"number": CUSTOMER, "message": "Your table is ready"},
            )
            assert (status, body) == (200, {"type": "result", "result": "Success"})
            assert await sipp.wait() == 0, sipp.output()
            _, listing = await daemon.request("GET", "/api/v1/sms?limit=1")
            [msg] = listing["messages"] if isinstance(listing, dict) else listing
            view = await daemon.wait_state(msg["id"], {"sent", "failed"})
        finally:
            await daemon.stop()
            await sipp.stop()
        assert (view["state"], view["gateway"]) == ("sent", "classound"), daemon.log
        start, headers, text = parse_headers(sipp.received()[1])
        assert start == f"MESSAGE sip:{CUSTOMER}@classound.test SIP/2.0"
        assert headers["from"].startswith(f"<sip:{view['sender']}@classound.test>")
        assert view["sender"] == DID
        assert headers["to"] == f"<sip:{CUSTOMER}@classound.test>"
        assert f'username="{SIP_USER}"' in headers["authorization"]
        assert text == "Your table is ready"

    async def test_gsm_down_goes_through_the_trunk_then_back_to_the_modem(
        self, tmp_path: Path, farm: SimulatorFarm
    ) -> None:
        """Routing curl -> gsm -> classound: while the modem is unplugged a message leaves
        through the trunk; once the modem is back the next one leaves through the modem."""
        sipp = await start_sipp("uas_auth_202.xml", tmp_path, keys=AUTH_KEYS)
        daemon = TrunkDaemon(tmp_path, sip_settings(sipp.port), modem_link=farm.links[0])
        modem = farm.modems[0]
        try:
            await daemon.start()

            async def gsm_up() -> bool:
                _, health = await daemon.request("GET", "/healthz")
                return bool(health["gateways"]["gsm"]["available"])

            await daemon.until(gsm_up)
            await modem.unplug()

            async def gsm_down() -> bool:
                return not await gsm_up()

            await daemon.until(gsm_down)
            _, sent = await daemon.request("POST", "/api/v1/sms",
                                           json={"to": [CUSTOMER], "text": "via trunk"})
            first = await daemon.wait_state(sent["ids"][0], {"sent", "failed"})
            assert await sipp.wait() == 0, sipp.output()

            await modem.replug()
            await daemon.until(gsm_up)
            _, sent = await daemon.request("POST", "/api/v1/sms",
                                           json={"to": [CUSTOMER], "text": "via modem"})
            second = await daemon.wait_state(sent["ids"][0], {"sent", "delivered", "failed"})
        finally:
            await daemon.stop()
            await sipp.stop()
        assert (first["state"], first["gateway"]) == ("sent", "classound"), daemon.log
        assert parse_headers(sipp.received()[-1])[2] == "via trunk"
        assert second["gateway"] == "gsm" and second["state"] in ("sent", "delivered")
        assert [p.text for p in modem.submitted] == ["via modem"]


class TestInbound:
    async def test_message_from_sipp_opens_a_conversation_like_a_modem_sms(
        self, tmp_path: Path
    ) -> None:
        """The carrier (SIPp UAC) sends MESSAGE to the DID: SIPp gets 200, and the SMS is
        routed as a modem's would be: with no Asterisk, the directory gives it to the user
        whose office number is the DID, in a conversation with the sender."""
        daemon = TrunkDaemon(tmp_path, sip_settings(free_port()))
        try:
            await daemon.start()
            sipp = await start_sipp(
                "uac_message.xml", tmp_path,
                keys={"from": CUSTOMER, "to": DID, "body": "Is it open today?"},
                remote=("127.0.0.1", daemon.sip_port),
            )
            try:
                assert await sipp.wait() == 0, sipp.output()
            finally:
                await sipp.stop()

            async def conversations() -> list[dict[str, Any]]:
                _, body = await daemon.request("GET", "/api/v1/conversations")
                return list(body["conversations"])

            convs = await daemon.until(conversations)
        finally:
            await daemon.stop()
        assert [c["external"] for c in convs] == [CUSTOMER], daemon.log
        assert [p["extension"] for p in convs[0]["participants"]] == ["100"]
        assert "sip.inbound_message" in daemon.log


class TestGarbage:
    async def test_garbage_on_the_sip_port_leaves_the_daemon_serving(
        self, tmp_path: Path
    ) -> None:
        """Random bytes, truncated requests and a 64 KB header section on the daemon's SIP
        port (UDP) are answered or dropped; afterwards the HTTP API answers and a MESSAGE
        from SIPp is still accepted with 200."""
        daemon = TrunkDaemon(tmp_path, sip_settings(free_port()))
        try:
            await daemon.start()
            port = daemon.sip_port
            head = (
                f"MESSAGE sip:{DID}@127.0.0.1 SIP/2.0\r\n"
                "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKjunk\r\n"
                f"From: <sip:{CUSTOMER}@x>;tag=1\r\nTo: <sip:{DID}@x>\r\n"
                "Call-ID: junk@x\r\nCSeq: 1 MESSAGE\r\n"
            )
            junk = [
                os.urandom(1400),
                head.encode()[:70],
                (head + "Content-Length: 50\r\n\r\nshort").encode(),
                (head + "X-Pad: " + "a" * 64_000 + "\r\nContent-Length: 0\r\n\r\n").encode(),
                b"\x00" * 10,
            ]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind(("127.0.0.1", 0))
                for data in junk:
                    sock.sendto(data, ("127.0.0.1", port))
                sock.settimeout(30)
                answers = [await asyncio.to_thread(sock.recv, 70_000) for _ in range(2)]
            statuses = sorted(int(a.split(b" ")[1]) for a in answers)
            assert statuses == [400, 513]

            status, _ = await daemon.request("GET", "/healthz")
            assert status in (200, 503)
            sipp = await start_sipp(
                "uac_message.xml", tmp_path,
                keys={"from": CUSTOMER, "to": DID, "body": "still there?"},
                remote=("127.0.0.1", port),
            )
            try:
                assert await sipp.wait() == 0, sipp.output()
            finally:
                await sipp.stop()
            assert daemon.proc is not None and daemon.proc.returncode is None
        finally:
            rc = await daemon.stop()
        assert rc == 0, daemon.log


class TestStartup:
    @pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
    async def test_sip_port_in_use_is_a_clear_start_up_error(
            self, tmp_path: Path, loop: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """Another socket holds the trunk's UDP port: the daemon names it and exits 2
        before READY, instead of running without its inbound trunk; in the same
        words on the standard event loop and on uvloop (the [fast] extra)."""
        if loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
            pytest.skip("the [fast] extra (uvloop) is not installed")
        monkeypatch.setenv("SMSD_EVENT_LOOP", loop)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
            holder.bind(("127.0.0.1", 0))
            taken = holder.getsockname()[1]
            daemon = TrunkDaemon(tmp_path, sip_settings(free_port(), sip_local_port=taken))
            with pytest.raises(AssertionError, match="daemon exited 2"):
                await daemon.start()
            await daemon.stop()
        assert ("smsd: cannot start: CLASSOUND trunk: address already in use (another "
                "smsd, or another service on that port?)\n") in daemon.log
