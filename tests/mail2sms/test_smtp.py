"""The Mail2SMS SMTP listener on a loopback port, driven by Python's smtplib."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator

import pytest

from smsd.mail2sms.smtp import SmtpListener
from tests.mail2sms.conftest import CC, TO, MailRig, body, plain_mail

# smtplib's own socket timeout: the listener answers a loopback DATA within
# milliseconds; this only bounds a test that would otherwise hang on a bug.
SMTPLIB_TIMEOUT_S = 30.0


@pytest.fixture
async def listener(rig: MailRig) -> AsyncIterator[SmtpListener]:
    srv = SmtpListener(rig.mail, "127.0.0.1", 0)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


def _send(port: int, text: str) -> dict[str, tuple[int, bytes]]:
    """Send one mail with smtplib (blocking: run in a thread); the refused-recipient map."""
    with smtplib.SMTP("127.0.0.1", port, timeout=SMTPLIB_TIMEOUT_S) as client:
        return client.send_message(plain_mail(text))


class TestSmtpListener:
    async def test_one_sms_per_tonumber_and_ccnumber(
        self, rig: MailRig, listener: SmtpListener
    ) -> None:
        """A plain-text Mail2SMS mail queues one SMS per TONUMBER and CCNUMBER, from the user."""
        assert listener.port is not None
        await asyncio.to_thread(_send, listener.port, body())
        assert await rig.queued() == [TO, *CC]
        row = await rig.store.fetchone("SELECT user, text FROM messages LIMIT 1")
        assert row is not None and row["user"] == "alice"
        assert row["text"] == "Your order has shipped."

    async def test_wrong_password_is_a_5xx_and_queues_nothing(
        self, rig: MailRig, listener: SmtpListener
    ) -> None:
        """A wrong SMSPASSWORD is answered 550 naming the password; no SMS is queued."""
        assert listener.port is not None
        with pytest.raises(smtplib.SMTPDataError) as info:
            await asyncio.to_thread(_send, listener.port, body(password="guess"))
        assert info.value.smtp_code == 550
        assert b"SMSPASSWORD" in info.value.smtp_error
        assert await rig.queued() == []

    async def test_malformed_mail_is_a_5xx_and_queues_nothing(
        self, rig: MailRig, listener: SmtpListener
    ) -> None:
        """A mail with a bad number is refused 550 with the reason; nothing is queued."""
        assert listener.port is not None
        with pytest.raises(smtplib.SMTPDataError) as info:
            await asyncio.to_thread(_send, listener.port, body(cc=("12345",)))
        assert info.value.smtp_code == 550
        assert b"12345" in info.value.smtp_error
        assert await rig.queued() == []

    async def test_unknown_extension_and_no_licence_are_refused(
        self, rig: MailRig, listener: SmtpListener
    ) -> None:
        """FROMNUMBER must be a user's extension, and that user must be allowed to send."""
        assert listener.port is not None
        for ext, needle in (("999", b"999"), ("102", b"licence")):
            text = body().replace("FROMNUMBER: 100", f"FROMNUMBER: {ext}")
            with pytest.raises(smtplib.SMTPDataError) as info:
                await asyncio.to_thread(_send, listener.port, text)
            assert info.value.smtp_code == 550 and needle in info.value.smtp_error
        assert await rig.queued() == []
