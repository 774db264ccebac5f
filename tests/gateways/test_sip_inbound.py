"""Inbound MESSAGE on the trunk's port: SIPp as the carrier's UAC, raw sockets for bad input."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from smsd.gateways.classound.sip import MAX_INBOUND_IN_FLIGHT
from smsd.gateways.classound.sipmsg import SipResponse, parse
from tests.core.polling import eventually
from tests.fakes.sipp import SIPP, free_port, start_sipp
from tests.gateways.conftest import RecordingInbox, running_trunk, sip_config

pytestmark = pytest.mark.timeout(60)

CUSTOMER = "+15550001111"
DID = "+15551234567"
TEXT = "Réponse: oui ✓"


def message(call_id: str = "abc123@127.0.0.1", *, cseq: int = 1, body: bytes = TEXT.encode(),
            content_type: str = "text/plain;charset=UTF-8", method: str = "MESSAGE",
            extra: str = "", length: int | None = None, port: int = 5999) -> bytes:
    head = (
        f"{method} sip:{DID}@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id[:6]}{cseq};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{CUSTOMER}@carrier.test>;tag=f1\r\n"
        f"To: <sip:{DID}@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"{extra}"
        f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
    )
    return head.encode() + body


class UdpClient(asyncio.DatagramProtocol):
    """A carrier socket on 127.0.0.1 that keeps every datagram answered to it."""

    def __init__(self) -> None:
        self.answers: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.answers.put_nowait(data)

    @classmethod
    async def open(cls, host: str = "127.0.0.1") -> UdpClient:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(cls, local_addr=(host, 0))
        return proto

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, ("127.0.0.1", port))

    async def answer(self) -> SipResponse:
        resp = parse(await self.answers.get())
        assert isinstance(resp, SipResponse)
        return resp

    def close(self) -> None:
        assert self.transport is not None
        self.transport.close()


async def until_answered(client: UdpClient, data: bytes, port: int) -> SipResponse:
    """Send like a UAC on UDP: again every T1 (0.5 s) until an answer arrives."""
    while True:
        client.send(data, port)
        try:
            return await asyncio.wait_for(client.answer(), 0.5)
        except TimeoutError:
            continue


@pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed")
class TestFromSipp:
    @pytest.mark.parametrize("transport", ["udp", "tcp"])
    async def test_message_from_the_carrier_reaches_the_inbox_then_200(
        self, tmp_path: Path, transport: str
    ) -> None:
        """SIPp sends MESSAGE to the trunk's port: the text, sender and DID are committed to
        the inbox (gateway classound, keyed by Call-ID/CSeq) and SIPp gets 200 OK."""
        inbox = RecordingInbox()
        cfg = sip_config(free_port(), sip_transport=transport)
        async with running_trunk(cfg, inbox) as trunk:
            sipp = await start_sipp(
                "uac_message.xml", tmp_path, transport=transport,
                keys={"from": CUSTOMER, "to": DID, "body": TEXT},
                remote=("127.0.0.1", trunk.local_port),
            )
            try:
                assert await sipp.wait() == 0, sipp.output()
            finally:
                await sipp.stop()
        [got] = inbox.messages
        assert (got.sender, got.recipient, got.text, got.gateway) == (
            CUSTOMER, DID, TEXT, "classound")
        assert got.dedupe_key is not None and got.dedupe_key.endswith("/1")


class TestInboundRules:
    async def test_retransmission_gets_the_same_answer_and_one_message(self) -> None:
        """The same MESSAGE twice (our 200 was lost): one inbox entry, two identical 200s."""
        inbox = RecordingInbox()
        async with running_trunk(sip_config(free_port()), inbox) as trunk:
            client = await UdpClient.open()
            try:
                client.send(message(), trunk.local_port)
                first = await client.answer()
                client.send(message(), trunk.local_port)
                second = await client.answer()
            finally:
                client.close()
        assert first.status == second.status == 200
        assert first.encode() == second.encode()
        assert len(inbox.messages) == 1

    async def test_same_call_id_new_cseq_is_a_new_message(self) -> None:
        """Call-ID with a higher CSeq is another request: both reach the inbox."""
        inbox = RecordingInbox()
        async with running_trunk(sip_config(free_port()), inbox) as trunk:
            client = await UdpClient.open()
            try:
                client.send(message(cseq=1), trunk.local_port)
                client.send(message(cseq=2, body=b"second"), trunk.local_port)
                answers = [await client.answer(), await client.answer()]
            finally:
                client.close()
        assert [a.status for a in answers] == [200, 200]
        assert sorted(m.text for m in inbox.messages) == sorted([TEXT, "second"])

    async def test_unknown_source_is_forbidden(self) -> None:
        """Only configured carrier addresses may deliver: another source gets 403, no SMS."""
        inbox = RecordingInbox()
        cfg = sip_config(free_port(), sip_carrier_addresses=("127.0.0.2",))
        async with running_trunk(cfg, inbox) as trunk:
            client = await UdpClient.open()
            try:
                client.send(message(), trunk.local_port)
                resp = await client.answer()
            finally:
                client.close()
        assert resp.status == 403 and inbox.messages == []

    @pytest.mark.parametrize(
        ("raw", "status", "header"),
        [
            (message(content_type="text/html"), 415, ("Accept", "text/plain")),
            (message(content_type="text/plain;charset=ISO-8859-1"), 415, ("Accept", "text/plain")),
            (message(body=b"\xff\xfe bad"), 400, None),
            (message(method="INVITE"), 405, ("Allow", "MESSAGE, OPTIONS")),
            (message(extra="Require: 100rel\r\n"), 420, ("Unsupported", "100rel")),
            (message(body=b"x" * 9000), 413, None),
            (message(length=200), 400, None),  # truncated: body shorter than announced
            (message().replace(b"CSeq: 1 MESSAGE", b"CSeq: one MESSAGE"), 400, None),
            (message().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), 505, None),
            (message(extra="X-Pad: " + "a" * 60_000 + "\r\n"), 513, None),
        ],
        ids=["html", "latin1", "not-utf8", "invite", "require", "big-body", "truncated",
             "bad-cseq", "sip3", "64k-header"],
    )
    async def test_bad_requests_get_their_4xx_and_store_nothing(
        self, raw: bytes, status: int, header: tuple[str, str] | None
    ) -> None:
        """Each malformed or unsupported request is answered with its own status (with
        Accept/Allow/Unsupported where RFC 3261 asks for them) and nothing is stored."""
        inbox = RecordingInbox()
        async with running_trunk(sip_config(free_port()), inbox) as trunk:
            client = await UdpClient.open()
            try:
                client.send(raw, trunk.local_port)
                resp = await client.answer()
            finally:
                client.close()
        assert resp.status == status, resp.encode()[:300]
        if header is not None:
            assert resp.get(header[0]) == header[1]
        assert inbox.messages == []

    async def test_options_keepalive_is_answered_200(self) -> None:
        """Carriers probe trunks with OPTIONS: 200 with Allow and Accept."""
        async with running_trunk(sip_config(free_port()), RecordingInbox()) as trunk:
            client = await UdpClient.open()
            try:
                client.send(message(method="OPTIONS", body=b""), trunk.local_port)
                resp = await client.answer()
            finally:
                client.close()
        assert resp.status == 200 and resp.get("Allow") == "MESSAGE, OPTIONS"

    async def test_store_failure_answers_500_and_a_retry_is_handled_afresh(self) -> None:
        """When the inbox cannot commit, the carrier gets 500 + Retry-After (it will try
        again), and its retry, once the store works, is stored and answered 200."""
        inbox = RecordingInbox(fail=True)
        async with running_trunk(sip_config(free_port()), inbox) as trunk:
            client = await UdpClient.open()
            try:
                client.send(message(), trunk.local_port)
                first = await client.answer()
                inbox.fail = False
                client.send(message(), trunk.local_port)
                second = await client.answer()
            finally:
                client.close()
        assert (first.status, first.get("Retry-After")) == (500, "30")
        assert second.status == 200 and len(inbox.messages) == 1


class GatedInbox(RecordingInbox):
    """An inbox whose commits wait until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def receive(self, sender: str, recipient: str | None, text: str, *, gateway: str,
                      modem: str | None = None, dedupe_key: str | None = None) -> int:
        await self.gate.wait()
        return await super().receive(sender, recipient, text, gateway=gateway,
                                     dedupe_key=dedupe_key)


async def test_too_many_requests_in_progress_get_503() -> None:
    """While MAX_INBOUND_IN_FLIGHT messages wait for the store, one more is answered 503
    with Retry-After (memory stays bounded); once the store moves, all those are stored
    and answered."""
    inbox = GatedInbox()
    async with running_trunk(sip_config(free_port()), inbox) as trunk:
        client = await UdpClient.open()
        try:
            for i in range(MAX_INBOUND_IN_FLIGHT):
                # one at a time: a burst would overrun the socket's receive buffer
                client.send(message(f"c{i}"), trunk.local_port)
                await eventually(lambda n=i + 1: len(trunk._tasks) == n)  # type: ignore[misc]
            client.send(message("one-more"), trunk.local_port)
            busy = await client.answer()
            inbox.gate.set()
            await eventually(lambda: len(inbox.messages) == MAX_INBOUND_IN_FLIGHT)
            first = await client.answer()  # the 256 answers burst: the client may miss some
        finally:
            client.close()
    assert (busy.status, busy.call_id, busy.get("Retry-After")) == (503, "one-more", "1")
    assert first.status == 200


class TestGarbage:
    async def test_garbage_datagrams_are_dropped_and_the_port_still_serves(self) -> None:
        """Random bytes, a request cut inside its headers, an empty datagram and a
        request without Via are dropped without an answer (nothing can route one); the
        next valid MESSAGE is still stored and answered."""
        inbox = RecordingInbox()
        async with running_trunk(sip_config(free_port()), inbox) as trunk:
            client = await UdpClient.open()
            try:
                rnd = os.urandom(2048)
                for junk in (rnd, message()[:60], b"\r\n\r\n", b"\x00" * 100,
                             message().replace(b"Via:", b"Xia:")):
                    client.send(junk, trunk.local_port)
                client.send(message("after-garbage"), trunk.local_port)
                resp = await client.answer()
            finally:
                client.close()
        assert resp.status == 200 and resp.call_id == "after-garbage"
        assert [m.text for m in inbox.messages] == [TEXT]
        assert trunk.endpoint.drops.count >= 3

    async def test_tcp_garbage_and_64k_header_close_only_that_connection(self) -> None:
        """On TCP a 64 KiB header section cannot be framed: it is answered 513 where its
        head is readable and that connection closed; random bytes end their connection;
        another connection is served as before."""
        inbox = RecordingInbox()
        cfg = sip_config(free_port(), sip_transport="tcp")
        async with running_trunk(cfg, inbox) as trunk:
            port = trunk.local_port
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(message(extra="X-Pad: " + "a" * 65_536 + "\r\n"))
            data = await reader.read()  # until the trunk closes the connection
            writer.close()
            assert parse(data.split(b"\r\n\r\n")[0] + b"\r\n\r\n").status == 513  # type: ignore[union-attr]

            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(os.urandom(40_000))
            assert await reader.read() == b""
            writer.close()

            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(message("fine") + message("fine2")[:30])  # a second one cut short
            resp = parse(await reader.readuntil(b"\r\n\r\n"))
            writer.close()
        assert resp.status == 200  # type: ignore[union-attr]
        assert [m.text for m in inbox.messages] == [TEXT]

    async def test_tcp_garbage_framed_by_a_blank_line_closes_its_connection(self) -> None:
        """Random bytes may hold a blank line, which frames them as a header section:
        unreadable and unanswerable, it is dropped and its connection closed at once,
        not left waiting for more (where the next message starts is unknown).  The
        bytes after it are never read as a message; another connection is served."""
        inbox = RecordingInbox()
        async with running_trunk(sip_config(free_port(), sip_transport="tcp"), inbox) as trunk:
            port = trunk.local_port
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"\xff\xfe\x00garbage\n\n" + b"\x01" * 100)
            async with asyncio.timeout(10):   # only bounds the old behaviour's wait
                assert await reader.read() == b""
            writer.close()
            assert trunk.endpoint.drops.count == 1

            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(message("fine"))
            resp = parse(await reader.readuntil(b"\r\n\r\n"))
            writer.close()
        assert resp.status == 200  # type: ignore[union-attr]
        assert [m.text for m in inbox.messages] == [TEXT]

    async def test_udp_socket_survives_a_flood(self) -> None:
        """A thousand random datagrams in a row do not stop the socket.  The flood may
        overrun the kernel's receive buffer, so the carrier's message is retransmitted
        the way a carrier would (RFC 3261 Timer E) until it is answered."""
        inbox = RecordingInbox()
        async with running_trunk(sip_config(free_port()), inbox) as trunk:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for _ in range(1000):
                sock.sendto(os.urandom(300), ("127.0.0.1", trunk.local_port))
            sock.close()
            client = await UdpClient.open()
            try:
                resp = await until_answered(client, message("after-flood"), trunk.local_port)
            finally:
                client.close()
        assert resp.status == 200 and len(inbox.messages) == 1
