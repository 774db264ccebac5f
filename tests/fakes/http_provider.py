"""A local HTTP SMS provider for the curl gateway tests.

It behaves like the typical provider APIs the curl template targets: an HTTP
endpoint that takes the number, text and sender as form or query parameters,
answers a status line in the body ("OK <id>" on success), and may answer
errors (5xx), refuse input (400), or hang.  It listens on 127.0.0.1 with an
ephemeral port and records every request it parsed, so tests assert on what
the provider actually received rather than on what the client meant to send.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class ReceivedRequest:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpProvider:
    status: int = 200
    answer: str = "OK 1"
    hang: bool = False  # never answer (until the client gives up)
    requests: list[ReceivedRequest] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None)
        assert sockets
        self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        form: dict[str, str] = {}
        if request.content_type == "application/x-www-form-urlencoded":
            form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append(
            ReceivedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                form=form,
                headers=dict(request.headers),
                body=body,
            )
        )
        if self.hang:
            await self._release.wait()
        return web.Response(status=self.status, text=self.answer)
