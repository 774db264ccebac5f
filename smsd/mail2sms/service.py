"""Mail2SMS: one e-mail in, its SMS committed through the outbox, or nothing.

Both entry points use this one object: the SMTP listener (smsd.mail2sms.smtp)
and the pipe mode (``smsd mail2sms < message.eml``, which hands the raw
message to the daemon's ``POST /api/v1/mail2sms`` because the daemon is the
only database writer).  The order of checks is fixed so that a wrong password
learns nothing: the mail must parse, then the password is checked against the
stored scrypt hash (constant-time compare, off the event loop), and only then
is FROMNUMBER looked up and anything submitted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from smsd.config import Config, User
from smsd.core.directory import Directory
from smsd.core.outbox import DEFAULT_MAX_CHARS, Outbox, SubmitRequest, SubmitResult
from smsd.errors import MailPasswordWrong, MailRejected
from smsd.mail2sms.parse import MailRequest, message_from_bytes, parse_request
from smsd.passwords import hash_password, verify

log = structlog.get_logger(__name__)

# The largest e-mail accepted (SMTP DATA and the pipe's POST body).  A Mail2SMS
# mail is a few hundred bytes of text; 1 MiB leaves room for an HTML
# alternative and a signature image without letting a sender fill memory.
MAX_MAIL_BYTES = 1024 * 1024
# Password checks running at once.  Each scrypt check costs ~50 ms and 16 MiB
# (smsd.passwords); a sender guessing passwords over many connections waits
# here instead of filling the thread pool and the memory.
MAX_CONCURRENT_CHECKS = 2


@dataclass(frozen=True)
class MailOutcome:
    request: MailRequest
    result: SubmitResult


class Mail2Sms:
    """Checks and submits Mail2SMS e-mails for the daemon."""

    def __init__(
        self,
        outbox: Outbox,
        user_by_extension: Callable[[str], User | None],
        password_hash: str,
        *,
        verify_fn: Callable[[str, str], bool] = verify,
    ) -> None:
        self._outbox = outbox
        self._user = user_by_extension
        self._hash = password_hash
        self._verify = verify_fn
        self._checks = asyncio.Semaphore(MAX_CONCURRENT_CHECKS)

    @classmethod
    def from_config(cls, config: Config, outbox: Outbox, directory: Directory) -> Mail2Sms | None:
        """None when no SMSPASSWORD is configured ([smtp] password_hash or password)."""
        stored = config.smtp_password_hash
        if stored is None and config.smtp_password:
            # A plain password in the config is hashed once at start-up, so every
            # check goes through the same constant-time scrypt comparison.
            stored = hash_password(config.smtp_password)
        if stored is None:
            return None
        return cls(outbox, directory.user_by_extension, stored)

    async def submit_raw(self, raw: bytes, *, via: str) -> MailOutcome:
        """Parse, authenticate and submit ``raw``; MailRejected or ValidationError refuse."""
        if len(raw) > MAX_MAIL_BYTES:
            raise MailRejected(f"the e-mail is larger than {MAX_MAIL_BYTES} bytes")
        request = parse_request(message_from_bytes(raw))
        return await self.submit(request, via=via)

    async def submit(self, request: MailRequest, *, via: str) -> MailOutcome:
        async with self._checks:
            ok = await asyncio.to_thread(self._verify, request.password, self._hash)
        if not ok:
            log.warning("mail2sms.wrong_password", via=via, extension=request.extension)
            raise MailPasswordWrong("wrong SMSPASSWORD: nothing was sent")
        user = self._user(request.extension)
        if user is None:
            raise MailRejected(
                f"FROMNUMBER: {request.extension!r} is not the extension of a user"
            )
        result = await self._outbox.submit(
            SubmitRequest(
                recipients=request.recipients,
                text=request.text,
                user=user,
                origin="mail2sms",
                max_chars=DEFAULT_MAX_CHARS,
            )
        )
        log.info(
            "mail2sms.submitted",
            via=via,
            user=user.username,
            accepted=len(result.ids),
            refused=len(result.refused),
        )
        return MailOutcome(request, result)
