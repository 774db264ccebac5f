"""The CLASSOUND carrier's REST API, as the http transport's peer, on 127.0.0.1.

It checks every request the way the carrier would (bearer token, JSON fields
and types, Idempotency-Key, multipart parts) and refuses anything else with
400/401, so a client bug shows up as a refused request rather than as a test
that passes against a lenient fake.  ``script`` lists the status to answer
for the next requests (then 201); ``hang`` makes it never answer.  Every
accepted-for-inspection request is kept in ``requests``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

TOKEN = "carrier-token-123"


@dataclass
class CarrierRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    files: list[tuple[str, str, bytes]] = field(default_factory=list)  # name, type, data


@dataclass
class ClassoundCarrier:
    script: list[int] = field(default_factory=list)
    retry_after: str | None = None
    hang: bool = False
    requests: list[CarrierRequest] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _refuse(self, status: int, why: str) -> web.Response:
        self.refused.append(why)
        return web.json_response({"error": why}, status=status)

    async def _answer(self, req: CarrierRequest) -> web.Response:
        self.requests.append(req)
        if self.hang:
            await self._release.wait()
        status = self.script.pop(0) if self.script else 201
        headers = {"Retry-After": self.retry_after} if self.retry_after and status >= 400 else {}
        if status >= 300:
            return web.json_response({"error": "scripted"}, status=status, headers=headers)
        return web.json_response({"id": f"cl-{len(self.requests)}", "status": "queued"},
                                 status=status)

    def _check_auth(self, request: web.Request) -> str | None:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return "bad token"
        if not request.headers.get("Idempotency-Key", "").startswith("smsd-"):
            return "no Idempotency-Key"
        return None

    async def messages(self, request: web.Request) -> web.Response:
        if (why := self._check_auth(request)) is not None:
            return self._refuse(401, why)
        if request.content_type != "application/json":
            return self._refuse(400, f"content type {request.content_type}")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return self._refuse(400, "not JSON")
        if set(body) != {"from", "to", "text", "reference"} or not all(
            isinstance(v, str) for v in body.values()
        ):
            return self._refuse(400, f"fields {sorted(body)}")
        if body["reference"] != request.headers["Idempotency-Key"]:
            return self._refuse(400, "reference differs from Idempotency-Key")
        return await self._answer(CarrierRequest("/v1/messages", dict(request.headers), body))

    async def mms(self, request: web.Request) -> web.Response:
        if (why := self._check_auth(request)) is not None:
            return self._refuse(401, why)
        if request.content_type != "multipart/form-data":
            return self._refuse(400, f"content type {request.content_type}")
        body: dict[str, Any] = {}
        files: list[tuple[str, str, bytes]] = []
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, aiohttp.BodyPartReader):
                return self._refuse(400, "nested multipart")
            if part.name == "media":
                files.append((part.filename or "", part.headers.get("Content-Type", ""),
                              await part.read()))
            elif part.name in ("from", "to", "reference"):
                body[part.name] = (await part.read()).decode()
            else:
                return self._refuse(400, f"unknown part {part.name}")
        if set(body) != {"from", "to", "reference"} or not files:
            return self._refuse(400, f"parts {sorted(body)} with {len(files)} files")
        return await self._answer(CarrierRequest("/v1/mms", dict(request.headers), body, files))

    async def start(self) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/mms", self.mms)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
