"""A Mail2SMS e-mail -> a request, or a MailRejected naming what is wrong.  Pure.

The vendor's format (SEED-NOTES "Mail2SMS") is plain text with one field per
line::

    SENDSMS: TRUE
    FROMNUMBER: 100
    TONUMBER: +447700900123
    CCNUMBER: +447700900124, +447700900125
    SMSPASSWORD: secret
    MESSAGE: the text, which may go on
    over several lines.

Mail clients wrap that text in every way a MIME message allows, so the body is
taken from the ``text/plain`` part (``multipart/alternative`` from a client
that also writes HTML), with its transfer encoding (quoted-printable, base64)
and charset decoded by the standard library.  Field names are matched without
regard to case; ``MESSAGE:`` takes the rest of its line and every line after
it, up to a signature separator (``-- ``).  Nothing here checks the password:
that needs the stored hash and runs off the event loop (smsd.mail2sms.service).
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass, field
from email.message import EmailMessage, Message

from smsd.errors import InvalidNumber, MailRejected
from smsd.numbers import parse_e164

# One field line: a name of letters, a colon, the value.
_FIELD = re.compile(r"^\s*([A-Za-z]+)\s*:\s?(.*)$")
FIELDS = ("SENDSMS", "FROMNUMBER", "TONUMBER", "CCNUMBER", "SMSPASSWORD", "MESSAGE")
# A conventional signature separator ends the MESSAGE: text (RFC 3676 4.3).
_SIGNATURE = "-- "


@dataclass(frozen=True)
class MailRequest:
    """One Mail2SMS request: who sends what to whom, and the password it claims."""

    extension: str
    recipients: tuple[str, ...]  # E.164, TONUMBER first, then CCNUMBER, no duplicates
    text: str
    password: str = field(repr=False)
    subject: str | None = None


def message_from_bytes(raw: bytes) -> EmailMessage:
    """Parse raw RFC 5322 bytes with the modern policy (decoded headers and bodies)."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def plain_text(msg: Message) -> str:
    """The decoded ``text/plain`` body of ``msg``; MailRejected when there is none."""
    if not isinstance(msg, EmailMessage):
        raise MailRejected("the e-mail could not be read as a MIME message")
    part = msg.get_body(preferencelist=("plain",))
    if part is None:
        raise MailRejected(
            "the e-mail has no text/plain part (send plain text, or multipart/alternative "
            "with a text/plain part)"
        )
    try:
        content = part.get_content()
    except (LookupError, ValueError) as exc:  # unknown charset, broken base64
        raise MailRejected(f"the text/plain part cannot be decoded: {exc}") from None
    if not isinstance(content, str):
        raise MailRejected("the text/plain part is not text")
    return content


def _numbers(raw: str, key: str) -> list[str]:
    out: list[str] = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            out.append(parse_e164(item))
        except InvalidNumber as exc:
            raise MailRejected(f"{key}: {item!r} is not an E.164 number ({exc.reason})") from None
    return out


def parse_fields(body: str) -> dict[str, str]:
    """Field name (upper case) -> value; MESSAGE takes every line after it too."""
    fields: dict[str, str] = {}
    lines = body.replace("\r\n", "\n").split("\n")
    for i, line in enumerate(lines):
        m = _FIELD.match(line)
        if m is None:
            continue
        name = m.group(1).upper()
        if name not in FIELDS:
            continue
        if name in fields:
            raise MailRejected(f"{name}: appears twice")
        if name == "MESSAGE":
            rest = [m.group(2)]
            for more in lines[i + 1:]:
                if more == _SIGNATURE or more == _SIGNATURE.strip():
                    break
                rest.append(more)
            fields[name] = "\n".join(rest).strip()
            break
        fields[name] = m.group(2).strip()
    return fields


def parse_request(msg: Message) -> MailRequest:
    """The Mail2SMS request in ``msg``; MailRejected says which line is missing or wrong."""
    fields = parse_fields(plain_text(msg))
    if fields.get("SENDSMS", "").upper() != "TRUE":
        raise MailRejected("not a Mail2SMS request: the line 'SENDSMS: TRUE' is missing")
    for key in ("FROMNUMBER", "TONUMBER", "SMSPASSWORD", "MESSAGE"):
        if not fields.get(key):
            raise MailRejected(f"the line '{key}:' is missing or empty")
    extension = fields["FROMNUMBER"]
    if not re.fullmatch(r"[0-9A-Za-z*#+_.-]+", extension):
        raise MailRejected(f"FROMNUMBER: {extension!r} is not an extension")
    recipients: list[str] = []
    for key in ("TONUMBER", "CCNUMBER"):
        for number in _numbers(fields.get(key, ""), key):
            if number not in recipients:
                recipients.append(number)
    if not recipients:
        raise MailRejected("TONUMBER: no number given")
    subject = msg.get("Subject")
    return MailRequest(
        extension=extension,
        recipients=tuple(recipients),
        text=fields["MESSAGE"],
        password=fields["SMSPASSWORD"],
        subject=str(subject) if subject is not None else None,
    )
