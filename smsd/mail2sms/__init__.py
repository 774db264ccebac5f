"""Mail2SMS: e-mail to SMS (SEED-NOTES "Mail2SMS").

``parse`` (pure: an e-mail -> a request), ``service`` (password check and
submit through the outbox), ``smtp`` (the aiosmtpd listener).  The pipe mode
is ``smsd mail2sms`` (smsd/cli/mail2sms.py), which hands the mail to the
running daemon's ``POST /api/v1/mail2sms``.
"""
