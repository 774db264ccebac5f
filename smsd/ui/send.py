"""Send SMS: one or many numbers, postponed or now, and a CSV file for bulk.

The same rules as ``POST /api/v1/sms`` (the outbox decides; origin "api", the
670-character limit), except that numbers are judged one by one: the refused
ones are listed with their reason and the rest are queued, which is what a
person uploading 5,000 numbers wants.  With the script, a CSV is posted in
batches of 200 to ``/ui/send/batch`` so the page can show a progress bar.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from smsd.api.common import SERVICES
from smsd.config import User
from smsd.core.outbox import SubmitRequest, SubmitResult
from smsd.errors import MessageTooLong, NotAllowed, ValidationError
from smsd.services import Services
from smsd.ui.render import EMPTY, Html, h, hidden_csrf, join, notice, page
from smsd.ui.session import current
from smsd.ui.widgets import MAX_TEXT_CHARS, text_box, upload_text

PREFIX = "/ui/send"
# Numbers in one CSV upload at most: a bigger list is a job for the API.
MAX_BULK_NUMBERS = 50_000


def split_numbers(raw: str) -> list[str]:
    """Numbers separated by commas, semicolons, spaces or new lines; a header "number" skipped."""
    out = []
    for row in csv.reader(io.StringIO(raw)):
        for cell in row:
            for item in cell.replace(";", " ").split():
                item = item.strip().strip('"')
                if item and item.lower() not in ("number", "numbers", "phone"):
                    out.append(item)
    return out


def parse_send_at(raw: str, tz: str) -> datetime | None:
    """A ``datetime-local`` value in the daemon's time zone; None when empty."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationError(f"postpone time {raw!r} is not a date and time") from None
    return value if value.tzinfo else value.replace(tzinfo=ZoneInfo(tz))


async def submit(services: Services, user: User, numbers: list[str], text: str,
                 send_at_raw: str) -> SubmitResult:
    if not numbers:
        raise ValidationError("give at least one number")
    if len(numbers) > MAX_BULK_NUMBERS:
        raise ValidationError(f"at most {MAX_BULK_NUMBERS} numbers at once")
    if not text.strip():
        raise ValidationError("the message is empty")
    send_at = parse_send_at(send_at_raw, services.config.policy.timezone)
    return await services.outbox.submit(SubmitRequest(
        recipients=numbers, text=text, user=user, send_at=send_at, origin="api",
        max_chars=MAX_TEXT_CHARS))


def _result(result: SubmitResult) -> Html:
    refused = [h("<li>$n: $r</li>", n=r.number, r=r.reason) for r in result.refused]
    warnings = join(notice(w) for w in result.warnings)
    listed = h('<ul class="refused">$items</ul>', items=join(refused)) if refused else EMPTY
    return h('<div id="send-result">$status$warnings$listed</div>',
             status=notice(f"{len(result.ids)} queued, {len(result.refused)} refused."),
             warnings=warnings, listed=listed)


def _send_at(name: str) -> Html:
    return h('<label for="$n">Postpone until (optional, local time)</label>'
             '<input id="$n" name="$n" type="datetime-local">', n=name)


def _forms(csrf: str, to: str = "", text: str = "", message: Html = EMPTY) -> Html:
    single = h(
        '<form class="card" method="post" action="$action">$csrf'
        '<label for="to">To (one or more numbers, comma separated)</label>'
        '<input id="to" name="to" value="$to" required inputmode="tel" autocomplete="off" '
        'placeholder="+447700900123, +447700900124">$box$send_at'
        '<p><button type="submit">Send SMS</button></p></form>',
        action=PREFIX, csrf=hidden_csrf(csrf), to=to, box=text_box("text", "Message", text),
        send_at=_send_at("send_at"))
    bulk = h(
        '<form id="bulk-form" class="card" method="post" action="$action" '
        'enctype="multipart/form-data">$csrf<h2>Bulk from a CSV file</h2>'
        '<label for="file">CSV file (one number per line, or a "number" column)</label>'
        '<input id="file" name="file" type="file" accept=".csv,text/csv,text/plain" required>'
        '$box$send_at<p><button type="submit">Upload and send</button></p>'
        '<progress id="bulk-progress" value="0" max="1" hidden aria-label="Upload progress">'
        '</progress><div id="bulk-result" aria-live="polite"></div></form>',
        action=PREFIX + "/bulk", csrf=hidden_csrf(csrf),
        box=text_box("bulk-text", "Message"), send_at=_send_at("bulk-send_at"))
    return h("$message$single$bulk", message=message, single=single, bulk=bulk)


async def form(request: web.Request) -> web.StreamResponse:
    user, sess = current(request)
    to = request.query.get("to", "")
    return page("Send SMS", _forms(sess.csrf, to), user=user, csrf=sess.csrf, active=PREFIX)


async def _run(request: web.Request, numbers: list[str], text: str, send_at: str,
               to: str) -> web.StreamResponse:
    user, sess = current(request)
    try:
        result = await submit(request.app[SERVICES], user, numbers, text, send_at)
    except (MessageTooLong, NotAllowed, ValidationError) as exc:
        return page("Send SMS", _forms(sess.csrf, to, text, notice(str(exc), "error")),
                    user=user, csrf=sess.csrf, active=PREFIX, status=400)
    return page("Send SMS", _forms(sess.csrf, message=_result(result)), user=user,
                csrf=sess.csrf, active=PREFIX)


async def send(request: web.Request) -> web.StreamResponse:
    data = await request.post()
    to = str(data.get("to", ""))
    return await _run(request, split_numbers(to), str(data.get("text", "")),
                      str(data.get("send_at", "")), to)


def _field(data: Any, *names: str) -> str:
    for n in names:
        value = data.get(n)
        if isinstance(value, str) and value:
            return value
    return ""


async def bulk(request: web.Request) -> web.StreamResponse:
    """The no-script path: the whole file in one request."""
    data = await request.post()
    raw = upload_text(data.get("file"))
    return await _run(request, split_numbers(raw), _field(data, "bulk-text", "text"),
                      _field(data, "bulk-send_at", "send_at"), "")


async def batch(request: web.Request) -> web.StreamResponse:
    """One batch of the script's bulk upload; JSON with accepted and refused numbers."""
    user, _ = current(request)
    data = await request.post()
    try:
        result = await submit(request.app[SERVICES], user, split_numbers(_field(data, "to")),
                              _field(data, "text"), _field(data, "send_at"))
    except (MessageTooLong, NotAllowed, ValidationError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({
        "accepted": len(result.ids),
        "refused": [{"number": r.number, "reason": r.reason} for r in result.refused]})


def routes() -> list[web.RouteDef]:
    return [
        web.get(PREFIX, form, allow_head=False),
        web.post(PREFIX, send),
        web.post(PREFIX + "/bulk", bulk),
        web.post(PREFIX + "/batch", batch),
    ]
