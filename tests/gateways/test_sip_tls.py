"""The sip transport over TLS (sip_transport = "tls"), against a TLS carrier on loopback.

SIPp as packaged in Debian is built without TLS, so the carrier here is a
small TLS server that frames and answers with the production SIP codec, and a
certificate made by openssl for 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from smsd.errors import GatewayError
from smsd.gateways.base import OutboundJob
from smsd.gateways.classound.framing import StreamFramer
from smsd.gateways.classound.sipmsg import SipRequest, SipResponse, parse, response_to
from tests.fakes.sipp import free_port
from tests.gateways.conftest import RECIPIENT, SENDER, Hooks, RecordingInbox, running_trunk
from tests.gateways.conftest import sip_config as base_config

pytestmark = pytest.mark.timeout(60)

JOB = OutboundJob(8, RECIPIENT, "over TLS ✓", SENDER, None, 1, "ucs2")


@dataclass
class Cert:
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return Cert(d / "cert.pem", d / "key.pem")


@dataclass
class TlsCarrier:
    """Answers every MESSAGE 202 on a TLS socket; keeps what it received."""

    received: list[SipRequest] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = StreamFramer()
        while data := await reader.read(65536):
            for raw in framer.feed(data):
                req = parse(raw, stream=True)
                assert isinstance(req, SipRequest)
                self.received.append(req)
                writer.write(response_to(req, 202, "Accepted", to_tag="t1").encode())
        writer.close()


@pytest.fixture
async def carrier(cert: Cert) -> AsyncIterator[TlsCarrier]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert.cert, cert.key)
    c = TlsCarrier()
    server = await asyncio.start_server(c.handle, "127.0.0.1", 0, ssl=ctx)
    c.port = server.sockets[0].getsockname()[1]
    try:
        yield c
    finally:
        server.close()


class TestTls:
    async def test_message_over_tls_to_a_verified_carrier(
        self, carrier: TlsCarrier, cert: Cert
    ) -> None:
        """With the carrier's CA configured, the MESSAGE goes over TLS (Via .../TLS) and the
        202 marks it sent."""
        cfg = base_config(carrier.port, sip_transport="tls", sip_tls_ca_file=str(cert.cert),
                          username=None, secret=None)
        hooks = Hooks()
        async with running_trunk(cfg) as trunk:
            await trunk.send(JOB, hooks)
        [req] = carrier.received
        assert (req.get("Via") or "").startswith("SIP/2.0/TLS 127.0.0.1:")
        assert req.body == JOB.text.encode() and hooks.log[-1] == ("sent", 1)

    async def test_untrusted_certificate_is_a_temporary_failure(
        self, carrier: TlsCarrier
    ) -> None:
        """Without the CA (system trust only) the self-signed carrier is refused: nothing
        is sent in clear, and the router hears a temporary failure."""
        cfg = base_config(carrier.port, sip_transport="tls", username=None, secret=None)
        async with running_trunk(cfg) as trunk:
            with pytest.raises(GatewayError) as err:
                await trunk.send(JOB, Hooks())
        assert err.value.temporary and "certificate" in str(err.value).lower()
        assert carrier.received == []

    async def test_inbound_message_over_tls(self, cert: Cert) -> None:
        """With our certificate configured the trunk listens for TLS: a MESSAGE from the
        carrier over TLS reaches the inbox and is answered 200 on that connection."""
        inbox = RecordingInbox()
        cfg = base_config(free_port(), sip_transport="tls", sip_tls_cert_file=str(cert.cert),
                          sip_tls_key_file=str(cert.key))
        async with running_trunk(cfg, inbox) as trunk:
            ctx = ssl.create_default_context(cafile=str(cert.cert))
            reader, writer = await asyncio.open_connection("127.0.0.1", trunk.local_port,
                                                           ssl=ctx)
            msg = (
                f"MESSAGE sip:{SENDER}@127.0.0.1 SIP/2.0\r\n"
                "Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKtls1\r\n"
                f"From: <sip:{RECIPIENT}@carrier>;tag=a\r\nTo: <sip:{SENDER}@127.0.0.1>\r\n"
                "Call-ID: tls-1\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\n"
                "Content-Length: 5\r\n\r\nhello"
            ).encode()
            writer.write(msg)
            resp = parse(await reader.readuntil(b"\r\n\r\n"))
            writer.close()
        assert isinstance(resp, SipResponse) and resp.status == 200
        assert [(m.sender, m.text) for m in inbox.messages] == [(RECIPIENT, "hello")]
