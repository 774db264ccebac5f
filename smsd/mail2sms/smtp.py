"""The Mail2SMS SMTP listener: aiosmtpd on the daemon's own event loop.

Off unless ``[smtp]`` is configured (and ``enabled``), loopback by default
(127.0.0.1:2525): the PBX's MTA relays the Mail2SMS domain here.  The answer
to DATA is the outcome: 250 once every accepted SMS is committed, 5xx when the
mail is malformed or the password is wrong (nothing is sent, and a sender's
MTA bounces the mail with our reason), 451 when the daemon cannot commit now
(the MTA keeps the mail and tries again).

aiosmtpd's ``Controller`` runs its own loop in a thread; the daemon owns one
loop, so the protocol is served with ``loop.create_server`` instead, and the
listener is closed with the other listeners when the daemon stops.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from smsd.errors import MailPasswordWrong, MailRejected, NotAllowed, SmsdError, ValidationError
from smsd.mail2sms.service import MAX_MAIL_BYTES, Mail2Sms

log = structlog.get_logger(__name__)

# An idle SMTP client is dropped after this long.  RFC 5321 4.5.3.2 asks
# servers to wait at least 5 minutes per command; a loopback MTA relays a
# Mail2SMS mail in milliseconds, so 5 minutes costs nothing and is the RFC's.
IDLE_TIMEOUT_S = 300.0
# SMTP reply lines are at most 512 octets (RFC 5321 4.5.3.1.5); keep ours short.
MAX_REPLY_CHARS = 400


def _reply(code: str, text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) > MAX_REPLY_CHARS:
        flat = flat[: MAX_REPLY_CHARS - 3] + "..."
    return f"{code} {flat}"


class Mail2SmsHandler:
    """aiosmtpd handler: DATA -> Mail2Sms.submit_raw -> the SMTP answer."""

    def __init__(self, mail: Mail2Sms) -> None:
        self._mail = mail

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content
        if raw is None:
            content = envelope.content
            raw = content.encode("utf-8") if isinstance(content, str) else (content or b"")
        try:
            outcome = await self._mail.submit_raw(raw, via="smtp")
        except MailPasswordWrong as exc:
            return _reply("550 5.7.1", str(exc))
        except MailRejected as exc:
            return _reply("550 5.6.0", f"{exc}; nothing was sent")
        except NotAllowed as exc:
            return _reply("550 5.7.1", f"{exc}; nothing was sent")
        except ValidationError as exc:
            return _reply("550 5.6.0", f"{exc}; nothing was sent")
        except SmsdError as exc:  # the store could not commit: let the MTA retry later
            log.warning("mail2sms.temporary_failure", error=str(exc))
            return _reply("451 4.3.0", "the SMS service cannot take the mail now; try again later")
        result = outcome.result
        refused = "; ".join(f"{r.number}: {r.reason}" for r in result.refused)
        if not result.ids:
            return _reply("550 5.1.1", f"no SMS queued ({refused})")
        text = f"queued {len(result.ids)} SMS"
        if refused:
            text += f"; refused {refused}"
        return _reply("250 2.0.0", text)

    async def handle_exception(self, error: Exception) -> str:
        log.error("mail2sms.smtp_failed", error=repr(error))
        return "451 4.3.0 local error; try again later"


class SmtpListener:
    """One bound SMTP server; ``port`` is the bound port (useful with port 0)."""

    def __init__(self, mail: Mail2Sms, host: str, port: int) -> None:
        self._handler = Mail2SmsHandler(mail)
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._sessions: set[SMTP] = set()
        self.port: int | None = None

    def _protocol(self) -> SMTP:
        proto = _TrackedSmtp(
            self._sessions,
            self._handler,
            data_size_limit=MAX_MAIL_BYTES,
            hostname=socket.gethostname(),  # not getfqdn(): that may wait on DNS
            ident="smsd Mail2SMS",
            timeout=IDLE_TIMEOUT_S,
        )
        return proto

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self._host, self._port)
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        log.info("smtp.listening", host=self._host, port=self.port)

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for proto in list(self._sessions):
            if proto.transport is not None:
                proto.transport.close()
        await self._server.wait_closed()
        self._server = None


class _TrackedSmtp(SMTP):
    """An SMTP session the listener can close when the daemon stops."""

    def __init__(self, sessions: set[SMTP], handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._registry = sessions

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._registry.add(self)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._registry.discard(self)
        super().connection_lost(exc)
