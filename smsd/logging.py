"""structlog set-up: readable console lines on a terminal, JSON lines otherwise.

Under systemd stdout is not a TTY, so journald receives one JSON object per
event that log shippers can parse; a developer at a terminal gets colour.
Context (sms_id, modem, peer) is bound per task with contextvars, so a
connection handler binds once and every event below it carries the fields.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def setup_logging(
    level: str = "info", *, stream: TextIO | None = None, json: bool | None = None
) -> None:
    out = stream if stream is not None else sys.stderr
    as_json = json if json is not None else not out.isatty()
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    if as_json:
        processors += [structlog.processors.format_exc_info]
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Libraries that use stdlib logging (aiohttp, aiosqlite) go the same way.
    logging.basicConfig(
        level=max(numeric, logging.WARNING), stream=out, format="%(name)s %(levelname)s %(message)s"
    )
