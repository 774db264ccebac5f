"""MMS rules (SEED-NOTES "MMS"): what of a user's message goes as MMS, what as SMS, what is dropped.

Pure: the API hands in the text and the files, and gets back a plan.  In
order:

1. a text file (``text/plain``) is not sent as media: its UTF-8 text becomes
   SMS text, in pieces of at most TEXT_FILE_SMS_CHARS characters;
2. a file whose type is not in the configured list is dropped;
3. files beyond MAX_FILES are dropped (the last ones given);
4. while the rest are over MAX_TOTAL_BYTES together, the largest is dropped
   (fewest files lost; among equal sizes the later one);
5. the text typed with the attachments goes as its own SMS, first.

Every dropped file is named with the reason, for the API's answer.  MMS is
only for US and Canadian DIDs (``numbers.is_mms_country``); the caller checks
the sender before planning.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from smsd.config import DEFAULT_MMS_TYPES

MAX_FILES = 10
# 3.5 MB, decimal as carriers count it.
MAX_TOTAL_BYTES = 3_500_000
TEXT_FILE_SMS_CHARS = 4500
TEXT_TYPE = "text/plain"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Dropped:
    filename: str
    reason: str


@dataclass(frozen=True)
class MmsPlan:
    media: tuple[Attachment, ...]
    texts: tuple[str, ...]  # each one SMS, in sending order
    dropped: tuple[Dropped, ...]


def safe_filename(name: str, index: int) -> str:
    """A name that is safe on disk and in a URL; keeps the extension when it can."""
    base = _UNSAFE.sub("_", name.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]).strip("._")
    return (base or f"file{index}")[:80]


def split_text(text: str, limit: int = TEXT_FILE_SMS_CHARS) -> list[str]:
    """Pieces of at most ``limit`` characters, cut at a line or word end when there is one."""
    out: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = max(rest.rfind("\n", 0, limit + 1), rest.rfind(" ", 0, limit + 1))
        if cut <= limit // 2:
            cut = limit
        out.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        out.append(rest)
    return out


def plan_mms(text: str | None, files: Sequence[Attachment],
             allowed_types: Collection[str] = DEFAULT_MMS_TYPES) -> MmsPlan:
    allowed = {t.lower() for t in allowed_types}
    dropped: list[Dropped] = []
    texts: list[str] = [text.strip()] if text and text.strip() else []
    media: list[Attachment] = []
    for f in files:
        ctype = f.content_type.split(";", 1)[0].strip().lower()
        if ctype == TEXT_TYPE and TEXT_TYPE in allowed:
            try:
                texts += split_text(f.data.decode("utf-8-sig"))
            except UnicodeDecodeError:
                dropped.append(Dropped(f.filename, "text file is not UTF-8"))
            continue
        if ctype not in allowed:
            dropped.append(Dropped(f.filename, f"type {ctype or 'unknown'} is not accepted"))
            continue
        media.append(f)
    for f in media[MAX_FILES:]:
        dropped.append(Dropped(f.filename, f"more than {MAX_FILES} files"))
    media = media[:MAX_FILES]
    while sum(len(f.data) for f in media) > MAX_TOTAL_BYTES:
        largest = max(reversed(range(len(media))), key=lambda i: len(media[i].data))
        f = media.pop(largest)
        dropped.append(Dropped(f.filename, f"files together over {MAX_TOTAL_BYTES:,} bytes"))
    return MmsPlan(tuple(media), tuple(texts), tuple(dropped))
