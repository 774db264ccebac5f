"""MMS on the HTTP API: ``POST /api/v1/sms`` as multipart/form-data, and inbound MMS files.

Sending (US/Canadian DIDs only): form fields ``to`` (repeated, or comma
separated), ``text`` (optional) and one file part per attachment.  The rules
of smsd/core/mms.py decide what goes as media; the media go at once to the
CLASSOUND trunk's MMS upload (the ``http`` transport), one MMS per
recipient, before anything is stored, so a refused upload leaves nothing
behind; then the text (and text files) are queued as ordinary SMS.  The
answer lists the SMS ids, each MMS's carrier id, and every dropped file
with the reason.

Inbound MMS files (from the carrier's webhook) are kept under
``<state_dir>/mms/<key>/`` and served at ``GET /api/v1/mms/<key>/<file>`` to
API users only (basic auth): the link the conversation participants get.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import re
from pathlib import Path
from typing import Any

import structlog
from aiohttp import BodyPartReader, web

from smsd.api.common import SERVICES, api_error, json_response, require_user
from smsd.config import Config, User
from smsd.core.mms import MAX_FILES, MAX_TOTAL_BYTES, Attachment, plan_mms, safe_filename
from smsd.core.outbox import SubmitRequest
from smsd.errors import GatewayError, InvalidNumber, NotAllowed, ValidationError
from smsd.gateways.classound.http import HttpTrunk, MediaFile
from smsd.numbers import country_of, is_mms_country, parse_e164

log = structlog.get_logger(__name__)

# One upload: every file may be up to the MMS total (bigger ones are dropped
# unread past that), plus room for the form fields.
MAX_UPLOAD_BYTES = (MAX_FILES + 2) * MAX_TOTAL_BYTES
MAX_PARTS = 40
MAX_FIELD_CHARS = 20_000
TEXT_CHARS = 670  # SEED-NOTES: text sent with attachments, same limit as any SMS
TEXT_FILE_CHARS = 4500  # a text file's SMS pieces (core/mms.py splits at this)
_KEY = re.compile(r"^[0-9a-f]{32}$")


class _Upload:
    def __init__(self) -> None:
        self.to: list[str] = []
        self.text: str | None = None
        self.files: list[Attachment] = []
        self.too_big: list[tuple[str, str]] = []


async def _read_upload(request: web.Request) -> _Upload | web.Response:
    up = _Upload()
    total = 0
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError) as exc:  # e.g. no boundary in the Content-Type
        return api_error(400, f"body is not valid multipart/form-data: {exc}")
    for _ in range(MAX_PARTS + 1):
        part = await reader.next()
        if part is None:
            return up
        if not isinstance(part, BodyPartReader):
            return api_error(400, "nested multipart is not accepted")
        if part.filename:
            data = bytearray()
            while chunk := await part.read_chunk():
                data += chunk
                total += len(chunk)
                if total > MAX_UPLOAD_BYTES:
                    return api_error(413, f"upload over {MAX_UPLOAD_BYTES:,} bytes")
            name = safe_filename(part.filename, len(up.files) + 1)
            ctype = part.headers.get("Content-Type") or mimetypes.guess_type(name)[0] or ""
            up.files.append(Attachment(name, ctype, bytes(data)))
            continue
        value = (await part.read()).decode("utf-8", "replace")
        if len(value) > MAX_FIELD_CHARS:
            return api_error(400, f"field {part.name!r} is too long")
        if part.name == "to":
            up.to += [n.strip() for n in value.split(",") if n.strip()]
        elif part.name == "text":
            up.text = value
        else:
            return api_error(400, f"unknown field {part.name!r} (to, text, files)")
    return api_error(400, f"more than {MAX_PARTS} parts")


async def send_multipart(request: web.Request, user: User) -> web.Response:
    up = await _read_upload(request)
    if isinstance(up, web.Response):
        return up
    if not up.to:
        return api_error(400, "'to' must name at least one E.164 number")
    bad = []
    for number in up.to:
        try:
            parse_e164(number)
        except InvalidNumber as exc:
            bad.append({"number": number, "reason": exc.reason})
    if bad:
        return api_error(400, "some numbers are not valid E.164 numbers", invalid=bad)
    services = request.app[SERVICES]
    cfg = services.config
    did = user.office_number
    if did is None or not is_mms_country(country_of(did)):
        return api_error(400, "MMS needs a US or Canadian DID as the user's office number")
    types = cfg.classound.mms_types if cfg.classound is not None else ()
    plan = plan_mms(up.text, up.files, types)
    if up.text and len(up.text.strip()) > TEXT_CHARS:
        return api_error(400, f"text has {len(up.text.strip())} characters, the limit is "
                              f"{TEXT_CHARS}")
    sent: list[dict[str, Any]] = []
    if plan.media:
        trunk = services.trunk
        if not isinstance(trunk, HttpTrunk) or not trunk.available():
            return api_error(503, "no MMS-capable gateway is up (MMS goes through the "
                                  "CLASSOUND trunk with mode = 'http')")
        media = [MediaFile(f.filename, f.content_type, f.data) for f in plan.media]
        for number in up.to:
            ref = hashlib.sha256(f"{user.username}:{number}:{len(sent)}".encode()).hexdigest()
            try:
                answer = await trunk.send_mms(f"smsd-mms-{ref[:16]}", did, number, media)
            except GatewayError as exc:
                log.info("api.mms_failed", user=user.username, error=str(exc), sent=len(sent))
                return api_error(502, f"MMS to {number} not accepted: {exc}",
                                 mms=sent)
            sent.append({"to": number, "carrier_id": answer.get("id"),
                         "files": [f.filename for f in plan.media]})
    ids: list[int] = []
    refused: list[dict[str, str]] = []
    for i, text in enumerate(plan.texts):
        typed = i == 0 and bool(up.text and up.text.strip())
        req = SubmitRequest(recipients=up.to, text=text, user=user, origin="api",
                            max_chars=TEXT_CHARS if typed else TEXT_FILE_CHARS)
        try:
            result = await services.outbox.submit(req)
        except NotAllowed as exc:
            return api_error(403, str(exc), mms=sent)
        except ValidationError as exc:
            return api_error(400, str(exc), mms=sent)
        ids += result.ids
        refused += [{"number": r.number, "reason": r.reason} for r in result.refused]
    answer_body: dict[str, Any] = {
        "ids": ids, "mms": sent,
        "dropped": [{"file": d.filename, "reason": d.reason} for d in plan.dropped],
    }
    if refused:
        answer_body["refused"] = refused
    log.info("api.mms_submitted", user=user.username, mms=len(sent), sms=len(ids),
             dropped=len(plan.dropped))
    return json_response(answer_body, 201 if ids or sent else 400)


# --- inbound files ---------------------------------------------------------------------


def media_dir(config: Config) -> Path:
    return config.state_dir / "mms"


def store_inbound_media(config: Config, carrier_id: str, media: list[Any]) -> list[str]:
    """Write a webhook's inline media files; returns their link paths.

    The directory is named from the carrier's id, so a retried webhook writes
    the same files again instead of new ones.  Raises ValueError on bad items.
    """
    key = hashlib.sha256(carrier_id.encode()).hexdigest()[:32]
    folder = media_dir(config) / key
    folder.mkdir(parents=True, exist_ok=True, mode=0o750)
    links: list[str] = []
    for i, item in enumerate(media[:MAX_FILES], start=1):
        if not isinstance(item, dict) or not isinstance(item.get("data"), str):
            raise ValueError("each media item needs base64 'data'")
        try:
            data = base64.b64decode(item["data"], validate=True)
        except ValueError:
            raise ValueError(f"media item {i}: 'data' is not base64") from None
        raw_name = item.get("filename") if isinstance(item.get("filename"), str) else ""
        name = f"{i}-{safe_filename(str(raw_name), i)}"
        (folder / name).write_bytes(data)
        links.append(f"/api/v1/mms/{key}/{name}")
    return links


def public_base(config: Config) -> str:
    trunk = config.classound
    if trunk is not None and trunk.media_url:
        return trunk.media_url.rstrip("/")
    return f"http://{config.http}"


async def get_media(request: web.Request) -> web.StreamResponse:
    user = await require_user(request)
    if isinstance(user, web.Response):
        return user
    key, name = request.match_info["key"], request.match_info["name"]
    if not _KEY.match(key) or safe_filename(name, 0) != name:
        return api_error(404, "no such file")
    path = media_dir(request.app[SERVICES].config) / key / name
    if not path.is_file():
        return api_error(404, "no such file")
    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return web.FileResponse(path, headers={"Content-Type": ctype})


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/mms/{key}/{name}", get_media)]
