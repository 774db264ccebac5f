"""Reading a message channel (``Message/ast_msg_queue``) over AGI.

chan_sip and PJSIP show the same message differently (captures:
message-transcript.txt, pjsip-message-transcript.txt):

* ``MESSAGE(from)``: ``"Test Sender" <sip:+15557654321@127.0.0.1:5061>``
  (chan_sip keeps the port, PJSIP drops it);
* ``MESSAGE(to)``: ``sip:+15551234567@127.0.0.1:5060`` or
  ``pjsip:+15551234567@127.0.0.1``;
* ``MESSAGE_DATA(SIP_PEERNAME)`` (chan_sip) names the authenticated peer,
  else is empty; ``MESSAGE_DATA(PJSIP_ENDPOINT)`` is NOT the endpoint but its
  caller-ID name (pjsip-phone-sms-out.transcript), read only for the log.

The body is read as base64: a newline in it would break the line protocol.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

import structlog

from smsd.agi.session import AgiSession
from smsd.config import User
from smsd.errors import AgiProtocolError
from smsd.numbers import sip_uri_to_e164

if TYPE_CHECKING:
    from smsd.agi.ports import DirectoryPort

log = structlog.get_logger(__name__)

_USER_PART = re.compile(
    r"""^\s*(?:"(?:[^"\\]|\\.)*"\s*|[^<"]*?\s*)?   # display name
        <?\s*(?:(?:pj)?sips?:|tel:)?              # scheme
        (?P<user>[^@;>?\s]+)                      # user part
    """,
    re.VERBOSE,
)


def uri_user(value: str) -> str | None:
    """The user part of a SIP address as Asterisk shows it (``100``, ``+1555``, ``alice``)."""
    m = _USER_PART.match(value)
    if m is None:
        return None
    user = unquote(m.group("user"), errors="replace").strip()
    return user or None


# Everything a handler needs from a message channel, in one GET FULL VARIABLE
# (Asterisk runs message contexts one message at a time, so round trips are
# throughput).  Each field is base64: values may hold ',' or newlines, the
# base64 alphabet has no ','.  Each value is prefixed with "x" because
# BASE64_ENCODE of an empty argument fails and logs a WARNING on the PBX
# ("missing argument!") for every message without, say, a PJSIP endpoint.
def marked_expression(*inners: str) -> str:
    """One GET FULL VARIABLE expression: each value base64 with its "x" marker."""
    return ",".join("${BASE64_ENCODE(x" + inner + ")}" for inner in inners)


def unmark(part: str, what: str) -> str:
    """Decode one field of a :func:`marked_expression` answer; ``what`` names it in errors."""
    try:
        raw = base64.b64decode(part.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise AgiProtocolError(f"{what} is not base64") from None
    if not raw.startswith(b"x"):
        raise AgiProtocolError(f"{what} lacks its marker")
    return raw[1:].decode("utf-8", errors="replace")


_FIELDS = ("from", "to", "body", "endpoint", "peer")
_EXPRESSION = marked_expression(
    "${MESSAGE(from)}",
    "${MESSAGE(to)}",
    "${MESSAGE(body)}",
    "${MESSAGE_DATA(PJSIP_ENDPOINT)}",
    "${MESSAGE_DATA(SIP_PEERNAME)}",
)


@dataclass(frozen=True)
class ChannelMessage:
    """The message on a ``Message/ast_msg_queue`` channel, decoded."""

    from_: str
    to: str
    body: str
    endpoint: str  # MESSAGE_DATA(PJSIP_ENDPOINT): the endpoint's caller-ID NAME, or ""
    peer: str  # MESSAGE_DATA(SIP_PEERNAME): chan_sip peer, or ""


async def read_message(session: AgiSession) -> ChannelMessage:
    """Read from, to, body and the sending endpoint in one round trip.

    Raises AgiProtocolError when the answer is not five base64 fields.
    """
    answer = await session.get_full_variable(_EXPRESSION)
    parts = answer.split(",")
    if len(parts) != len(_FIELDS):
        raise AgiProtocolError(f"message read gave {len(parts)} fields, expected 5")
    values = [
        unmark(part, f"message field {name}") for name, part in zip(_FIELDS, parts, strict=True)
    ]
    return ChannelMessage(*values)


def destination(to: str, extension: str) -> str | None:
    """The destination: E.164 from MESSAGE(to), else from the dialled extension.

    When neither is a valid number the raw user part is returned so that the
    outbox can refuse it by name.
    """
    number = sip_uri_to_e164(to) if to else None
    if number is None:
        number = sip_uri_to_e164(extension) if extension else None
    if number is not None:
        return number
    if to:
        return uri_user(to)
    return extension or None


def _lookup(directory: DirectoryPort, tech: str, name: str) -> User | None:
    return (
        directory.user_by_endpoint(f"{tech}:{name}")
        or directory.user_by_extension(name)
        or directory.user_by_username(name)
    )


def sender_user(msg: ChannelMessage, directory: DirectoryPort) -> tuple[User | None, str]:
    """The PBX user who sent the message on this channel, and what identified them.

    chan_sip names the authenticated peer (``SIP_PEERNAME``), which wins.
    PJSIP names none: ``MESSAGE_DATA(PJSIP_ENDPOINT)`` is the endpoint's
    caller-ID *name* (res_pjsip_messaging.c; "Alice Agent" for
    ``callerid = "Alice Agent" <100>``), which anyone may set to another
    user's extension, so it never identifies anybody.  What the dialplan can
    prove is the From user: PJSIP identifies a phone endpoint by it
    (``identify_by = username``, the default) and challenges the MESSAGE with
    that endpoint's auth before the message context runs.  ``[sms-out]`` must
    therefore be the message context of authenticated phone endpoints only
    (asterisk-conf/README.md).
    """
    peer, from_ = msg.peer, msg.from_
    if peer:
        return _lookup(directory, "sip", peer), f"SIP peer {peer}"
    user_part = uri_user(from_)
    if user_part is None:
        return None, f"MESSAGE(from) {from_!r}"
    return _lookup(directory, "pjsip", user_part), f"From user {user_part!r}"
