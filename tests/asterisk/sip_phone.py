"""A minimal SIP phone over UDP for the real-Asterisk checks (tests/asterisk/test_real_asterisk.py).

It does what a desk phone does for SMS and nothing else: REGISTER and
MESSAGE with digest authentication (RFC 3261 / RFC 2617 MD5, qop=auth), and
answering the MESSAGEs Asterisk sends it with 200 OK.  Loopback only.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from dataclasses import dataclass, field

# A transaction on loopback is answered at once; 5 s covers a loaded box.
SIP_TIMEOUT_S = 5.0


@dataclass
class SipMsg:
    first: str
    headers: list[tuple[str, str]]
    body: str

    def get(self, name: str) -> str:
        low = name.lower()
        return next((v for k, v in self.headers if k.lower() == low), "")

    @property
    def status(self) -> int:
        return int(self.first.split()[1]) if self.first.startswith("SIP/2.0") else 0


def parse(data: bytes) -> SipMsg:
    head, _, body = data.decode("utf-8", "replace").partition("\r\n\r\n")
    first, *lines = head.split("\r\n")
    headers = [(k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in lines)]
    return SipMsg(first, headers, body)


@dataclass
class _Proto(asyncio.DatagramProtocol):
    inbox: asyncio.Queue[SipMsg] = field(default_factory=asyncio.Queue)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.inbox.put_nowait(parse(data))


class SipPhone:
    """One phone (``user``/``password``) talking to Asterisk at ``server``."""

    def __init__(self, user: str, password: str, server: tuple[str, int]) -> None:
        self.user, self.password, self.server = user, password, server
        self._proto = _Proto()
        self.port = 0
        self.received: list[SipMsg] = []      # MESSAGEs Asterisk sent us
        self._got = asyncio.Event()
        self._responses: asyncio.Queue[SipMsg] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None
        self._cseq = 0

    async def start(self) -> SipPhone:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self._proto, local_addr=("127.0.0.1", 0))
        assert self._proto.transport is not None
        self.port = self._proto.transport.get_extra_info("sockname")[1]
        self._pump = asyncio.create_task(self._run())
        return self

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        if self._proto.transport is not None:
            self._proto.transport.close()

    async def _run(self) -> None:
        while True:
            msg = await self._proto.inbox.get()
            if msg.first.startswith("MESSAGE "):
                self._answer(msg)
                if msg.get("Call-ID") not in {m.get("Call-ID") for m in self.received}:
                    self.received.append(msg)
                    self._got.set()
            elif msg.first.startswith("SIP/2.0"):
                self._responses.put_nowait(msg)

    def _answer(self, req: SipMsg) -> None:
        lines = ["SIP/2.0 200 OK"]
        for name in ("Via", "From", "To", "Call-ID", "CSeq"):
            for k, v in req.headers:
                if k.lower() == name.lower():
                    lines.append(f"{name}: {v};tag=p{self.port}" if name == "To"
                                 and "tag=" not in v else f"{name}: {v}")
        self._send("\r\n".join([*lines, "Content-Length: 0", "", ""]))

    def _send(self, text: str) -> None:
        assert self._proto.transport is not None
        self._proto.transport.sendto(text.encode("utf-8"), self.server)

    async def wait_message(self, count: int, within_s: float) -> list[SipMsg]:
        async with asyncio.timeout(within_s):
            while len(self.received) < count:
                self._got.clear()
                await self._got.wait()
        return self.received

    # --- requests with digest auth ---------------------------------------------------

    async def register(self, expires: int = 300) -> int:
        host = f"{self.server[0]}:{self.server[1]}"
        return await self._request("REGISTER", f"sip:{host}", f"<sip:{self.user}@{self.server[0]}>",
                                   [f"Contact: <sip:{self.user}@127.0.0.1:{self.port}>",
                                    f"Expires: {expires}"], "")

    async def unregister_all(self) -> int:
        """Remove every contact of this account (``Contact: *``): the phone is off."""
        host = f"{self.server[0]}:{self.server[1]}"
        return await self._request("REGISTER", f"sip:{host}", f"<sip:{self.user}@{self.server[0]}>",
                                   ["Contact: *", "Expires: 0"], "")

    async def message(self, to: str, body: str) -> int:
        host = f"{self.server[0]}:{self.server[1]}"
        return await self._request("MESSAGE", f"sip:{to}@{host}", f"<sip:{to}@{host}>",
                                   ["Content-Type: text/plain"], body)

    async def _request(self, method: str, uri: str, to: str, extra: list[str], body: str) -> int:
        call_id = secrets.token_hex(8)
        tag = secrets.token_hex(4)
        auth: str | None = None
        for _ in range(2):
            self._cseq += 1
            branch = "z9hG4bK" + secrets.token_hex(8)
            lines = [f"{method} {uri} SIP/2.0",
                     f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport",
                     f"From: <sip:{self.user}@{self.server[0]}>;tag={tag}", f"To: {to}",
                     f"Call-ID: {call_id}", f"CSeq: {self._cseq} {method}", "Max-Forwards: 70",
                     *extra, *([f"Authorization: {auth}"] if auth else []),
                     f"Content-Length: {len(body.encode('utf-8'))}", "", body]
            self._send("\r\n".join(lines))
            while True:
                resp = await asyncio.wait_for(self._responses.get(), SIP_TIMEOUT_S)
                if resp.get("Call-ID") == call_id and resp.status >= 200:
                    break
            if resp.status != 401 or auth is not None:
                return resp.status
            auth = self._digest(method, uri, resp.get("WWW-Authenticate"))
        return resp.status

    def _digest(self, method: str, uri: str, challenge: str) -> str:
        params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
        realm, nonce = params["realm"], params["nonce"]
        ha1 = hashlib.md5(f"{self.user}:{realm}:{self.password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
        cnonce, nc = secrets.token_hex(4), "00000001"
        resp = hashlib.md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
        opaque = f', opaque="{params["opaque"]}"' if "opaque" in params else ""
        return (f'Digest username="{self.user}", realm="{realm}", nonce="{nonce}", uri="{uri}",'
                f' response="{resp}", algorithm=MD5, cnonce="{cnonce}", qop=auth, nc={nc}'
                f"{opaque}")
