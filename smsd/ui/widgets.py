"""Pieces several pages share: the text box with its SMS counter, delivery ticks, times."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp.web import FileField

from smsd.codec import gsm7
from smsd.ui.render import Html, esc, h

# Conversation and JSON API input at most 670 characters (SEED-NOTES "Message limits").
MAX_TEXT_CHARS = 670

# The counter's script reads the alphabet from the page, so the browser counts
# with the same table as the encoder (smsd.codec.gsm7) and never disagrees with it.
_GSM_BASIC = "".join(ch for ch in gsm7._DEFAULT if ch != "\x1b")
_GSM_EXT = "".join(gsm7._EXTENSION)

TICKS = {
    "queued": ("queued", "◷"),
    "scheduled": ("scheduled", "◷"),
    "sending": ("sending", "◷"),
    "submitting": ("sending", "◷"),
    "sent": ("sent", "✓"),
    "delivered": ("delivered", "✓✓"),
    "failed": ("failed", "✗"),
    "expired": ("failed", "✗"),
}


def text_box(name: str = "text", label: str = "Message", value: str = "",
             limit: int = MAX_TEXT_CHARS) -> Html:
    """A textarea with a live counter: characters, GSM-7 or UCS-2, parts, the limit."""
    return h(
        '<label for="$name">$label</label>'
        '<textarea id="$name" name="$name" rows="3" maxlength="$limit" required '
        'data-counter="$name-count">$value</textarea>'
        '<output id="$name-count" class="counter" for="$name" aria-live="polite" '
        'data-gsm="$basic" data-gsm-ext="$ext" data-limit="$limit">'
        '0 / $limit characters</output>',
        name=name, label=label, value=value, limit=limit, basic=_GSM_BASIC, ext=_GSM_EXT)


def tick(state: str, error: str | None = None) -> Html:
    label, mark = TICKS.get(state, (state, "?"))
    reason = h(": $e", e=error) if error and label == "failed" else Html("")
    return h('<span class="tick $cls" title="$state"><span aria-hidden="true">$mark</span> '
             '$label$reason</span>', cls=label, state=state, mark=mark, label=label,
             reason=reason)


def when(value: str | datetime | None, tz: str) -> Html:
    """A stored UTC time shown in the daemon's zone, with the exact time for machines."""
    if value is None or value == "":
        return Html("")
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    local = dt.astimezone(ZoneInfo(tz))
    return h('<time datetime="$iso">$shown</time>', iso=dt.isoformat(),
             shown=local.strftime("%Y-%m-%d %H:%M"))


def select(name: str, label: str, options: list[tuple[str, str]], selected: str = "",
           *, blank: str | None = None) -> Html:
    opts = [h('<option value="">$b</option>', b=blank)] if blank is not None else []
    for value, text in options:
        sel = Html(" selected") if value == selected else Html("")
        opts.append(h('<option value="$v"$sel>$t</option>', v=value, sel=sel, t=text))
    return h('<label for="$name">$label</label><select id="$name" name="$name">$opts</select>',
             name=name, label=label, opts=Html("".join(opts)))


def upload_text(value: Any) -> str:
    """The text of an uploaded file field ("" when none was sent); a BOM is dropped."""
    if isinstance(value, FileField):
        data: bytes = value.file.read()
        return data.decode("utf-8-sig", errors="replace")
    return ""


def short(text: str, n: int = 60) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= n else one_line[: n - 1] + "…"


__all__ = ["MAX_TEXT_CHARS", "esc", "select", "short", "text_box", "tick", "when"]
