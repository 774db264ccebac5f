"""The AGI scripts smsd serves: ``sms-send``, ``sms-receive``, ``kite-sms``.

Handlers are thin: they read their inputs from the query, the arguments or
the message channel, call one service, and report the outcome in channel
variables the dialplan can test (``SMS_STATUS``, ``SMS_ID``, ``SMS_ERROR``,
``SMS_CONVERSATION``).  Asterisk runs message contexts one message at a time,
so a handler does one commit and returns; it never waits on a gateway.

Status values: ``QUEUED`` / ``RECEIVED`` (committed), ``REFUSED`` (bad input,
nothing stored), ``ERROR`` (our fault, e.g. the database is unavailable; the
dialplan may retry).  ``kite-sms`` adds ``ROUTED`` / ``UNROUTED``.
"""

from __future__ import annotations

from collections.abc import Awaitable

import structlog

from smsd.agi.inbound import kite_sms, sms_receive
from smsd.agi.outbound import sms_send
from smsd.agi.ports import AgiServices, Handler, report
from smsd.agi.session import AgiSession
from smsd.errors import AgiProtocolError
from smsd.store import StoreError

log = structlog.get_logger(__name__)


def build_handlers(services: AgiServices) -> dict[str, Handler]:
    """The script-name -> handler registry the server routes on."""

    async def send(session: AgiSession) -> None:
        await _guarded(session, sms_send(session, services))

    async def receive(session: AgiSession) -> None:
        await _guarded(session, sms_receive(session, services))

    async def kite(session: AgiSession) -> None:
        await _guarded(session, kite_sms(session, services))

    return {"sms-send": send, "sms-receive": receive, "kite-sms": kite}


async def _guarded(session: AgiSession, work: Awaitable[None]) -> None:
    """Turn a service failure into ``SMS_STATUS=ERROR`` for the dialplan.

    Protocol errors propagate: the connection is broken and the server logs
    them.  Cancellation is a BaseException and is never caught here.
    """
    try:
        await work
    except AgiProtocolError:
        raise
    except StoreError as exc:   # the database is unreachable: nothing was stored
        log.warning("agi.store_unavailable", script=session.env.script,
                    uniqueid=session.env.uniqueid, error=str(exc))
        await report(session, SMS_STATUS="ERROR", SMS_ID="",
                     SMS_ERROR="the database is unavailable, nothing was stored")
    except Exception as exc:
        log.exception(
            "agi.handler_failed",
            script=session.env.script,
            uniqueid=session.env.uniqueid,
            error=type(exc).__name__,
        )
        await report(
            session, SMS_STATUS="ERROR", SMS_ID="", SMS_ERROR="internal error, see the smsd log"
        )
