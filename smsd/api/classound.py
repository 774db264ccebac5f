"""``POST /api/v1/classound/webhook``: the carrier's webhooks for the ``http`` trunk.

Not behind a user's basic auth: the carrier signs each request with
HMAC-SHA256 over the raw body (``X-Classound-Signature: sha256=<hex>``, the
shared ``webhook_secret``).  A request that is unsigned, wrongly signed, or
arrives while no secret is configured is refused with 401 and changes
nothing.  JSON bodies:

- ``{"type": "message", "id": "<carrier id>", "from": "+1...", "to": "+1...",
  "text": "..."}``: an inbound SMS, committed to the inbox (the carrier id is
  the dedupe key, so a webhook retried by the carrier is stored once) and
  answered ``{"id": <inbound id>}`` only after the commit;
- ``{"type": "status", "reference": "smsd-<id>", "status": "delivered" |
  "failed" | "expired", "error": "..."}``: the delivery report of a message
  the trunk sent (the ``reference`` smsd gave it).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from smsd.api.common import SERVICES, api_error, json_response
from smsd.errors import ValidationError
from smsd.gateways.classound.http import SIGNATURE_HEADER, message_id_of, verify_signature

GATEWAY = "classound"
# A webhook is a small JSON object; an SMS body is at most a few KiB.
MAX_WEBHOOK_BYTES = 64 * 1024


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
        try:
            sms_id = await services.inbox.receive(
                body["from"], to, body["text"], gateway=GATEWAY,
                dedupe_key=f"http:{body['id']}",
            )
        except ValidationError as exc:
            return api_error(400, str(exc))
        return json_response({"id": sms_id})
    if kind == "status":
        ref, state = body.get("reference"), body.get("status")
        mid = message_id_of(ref) if isinstance(ref, str) else None
        if mid is None or state not in ("delivered", "failed", "expired"):
            return api_error(400, "a status needs 'reference' smsd-<id> and 'status' "
                                  "delivered, failed or expired")
        error = body.get("error")
        detail = f"carrier: {error}" if isinstance(error, str) and error else f"carrier: {state}"
        changed = await services.inbox.gateway_report(mid, gateway=GATEWAY, state=state,
                                                      detail=detail[:200])
        return json_response({"applied": changed})
    return api_error(400, "'type' must be 'message' or 'status'")


def routes() -> list[web.RouteDef]:
    return [web.post("/api/v1/classound/webhook", webhook)]
