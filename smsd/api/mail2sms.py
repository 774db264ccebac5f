"""``POST /api/v1/mail2sms``: the pipe mode's way into the daemon.

``smsd mail2sms < message.eml`` (a Postfix or Exim pipe transport) posts the
raw e-mail here because the daemon is the only database writer.  There is no
HTTP basic auth: like the SMTP listener, the mail's own ``SMSPASSWORD:`` line
is the credential, checked against the stored hash.  Answers: 201 with the
ids (and any refused numbers), 400 for a malformed mail, 403 for a wrong
password or a user who may not send, 404 when Mail2SMS is not configured.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from smsd.api.common import SERVICES, api_error, json_response
from smsd.errors import MailPasswordWrong, NotAllowed, ValidationError
from smsd.mail2sms.service import MAX_MAIL_BYTES


async def mail2sms(request: web.Request) -> web.Response:
    mail = request.app[SERVICES].mail2sms
    if mail is None:
        return api_error(404, "Mail2SMS is not configured (set [smtp] password_hash)")
    raw = await request.read()
    if len(raw) > MAX_MAIL_BYTES:
        return api_error(413, f"the e-mail is larger than {MAX_MAIL_BYTES} bytes")
    try:
        outcome = await mail.submit_raw(raw, via="pipe")
    except (MailPasswordWrong, NotAllowed) as exc:
        return api_error(403, f"{exc}; nothing was sent")
    except ValidationError as exc:
        return api_error(400, f"{exc}; nothing was sent")
    result = outcome.result
    answer: dict[str, Any] = {"ids": result.ids}
    if result.refused:
        answer["refused"] = [{"number": r.number, "reason": r.reason} for r in result.refused]
    if result.warnings:
        answer["warnings"] = result.warnings
    return json_response(answer, 201 if result.ids else 400)


def routes() -> list[web.RouteDef]:
    return [web.post("/api/v1/mail2sms", mail2sms)]
