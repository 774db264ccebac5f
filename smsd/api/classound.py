"""``POST /api/v1/classound/webhook``: the carrier's webhooks for the ``http`` trunk.

Not behind a user's basic auth: the carrier signs each request with
HMAC-SHA256 over the raw body (``X-Classound-Signature: sha256=<hex>``, the
shared ``webhook_secret``).  A request that is unsigned, wrongly signed, or
arrives while no secret is configured is refused with 401 and changes
nothing.  JSON bodies:

- ``{"type": "message", "id": "<carrier id>", "from": "+1...", "to": "+1...",
  "text": "..."}``: an inbound SMS, committed to the inbox (the carrier id is
  the dedupe key, so a webhook retried by the carrier is stored once) and
  answered ``{"id": <inbound id>}`` only after the commit.  An MMS adds
  ``"media": [{"filename", "data": base64}]``: the files are kept under the
  state directory and the text gets one authenticated link per file
  (smsd/api/mms.py), which is what the conversation participants receive;
- ``{"type": "status", "reference": "smsd-<id>", "status": "delivered" |
  "failed" | "expired", "error": "..."}``: the delivery report of a message
  the trunk sent (the ``reference`` smsd gave it).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from smsd.api.common import SERVICES, api_error, json_response
from smsd.api.mms import public_base, store_inbound_media
from smsd.errors import ValidationError
from smsd.gateways.classound.http import SIGNATURE_HEADER, message_id_of, verify_signature

GATEWAY = "classound"
# A webhook is a small JSON object, or an MMS with its files inline (base64:
# 4/3 of the 3.5 MB an MMS may carry, plus the envelope).
MAX_WEBHOOK_BYTES = 5 * 1024 * 1024


async def webhook(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    trunk = services.config.classound
    secret = trunk.webhook_secret if trunk is not None else None
    raw = await request.content.read(MAX_WEBHOOK_BYTES + 1)
    if len(raw) > MAX_WEBHOOK_BYTES:
        return api_error(413, f"webhook body over {MAX_WEBHOOK_BYTES} bytes")
    if not secret or not verify_signature(secret, raw, request.headers.get(SIGNATURE_HEADER)):
        return api_error(401, f"missing or wrong {SIGNATURE_HEADER}")
    try:
        body: Any = json.loads(raw)
    except ValueError:
        return api_error(400, "body is not JSON")
    if not isinstance(body, dict):
        return api_error(400, "body must be a JSON object")
    kind = body.get("type")
    if kind == "message":
        fields = [body.get(k) for k in ("id", "from", "text")]
        to = body.get("to")
        if not all(isinstance(f, str) and f for f in fields[:2]) or not isinstance(
            fields[2], str
        ) or (to is not None and not isinstance(to, str)):
            return api_error(400, "a message needs string 'id', 'from', 'text' (and 'to')")
        text = body["text"]
        media = body.get("media")
        if media is not None:
            if not isinstance(media, list):
                return api_error(400, "'media' must be a list")
            try:
                links = await asyncio.to_thread(store_inbound_media, services.config,
                                                body["id"], media)
            except ValueError as exc:
                return api_error(400, str(exc))
            base = public_base(services.config)
            text = "\n".join([text, *(base + link for link in links)]).strip()
        try:
            sms_id = await services.inbox.receive(
                body["from"], to, text, gateway=GATEWAY,
                dedupe_key=f"http:{body['id']}",
            )
        except ValidationError as exc:
            return api_error(400, str(exc))
        return json_response({"id": sms_id})
    if kind == "status":
        ref, state = body.get("reference"), body.get("status")
        if not isinstance(ref, str) or state not in ("delivered", "failed", "expired"):
            return api_error(400, "a status needs 'reference' smsd-<id> and 'status' "
                                  "delivered, failed or expired")
        mid = message_id_of(ref)
        if mid is None:  # an MMS reference (smsd-mms-...): MMS are not tracked in the store
            return json_response({"applied": False})
        error = body.get("error")
        detail = f"carrier: {error}" if isinstance(error, str) and error else f"carrier: {state}"
        changed = await services.inbox.gateway_report(mid, gateway=GATEWAY, state=state,
                                                      detail=detail[:200])
        return json_response({"applied": changed})
    return api_error(400, "'type' must be 'message' or 'status'")


def routes() -> list[web.RouteDef]:
    return [web.post("/api/v1/classound/webhook", webhook)]
