"""Reading a message channel (``Message/ast_msg_queue``) over AGI.

chan_sip and PJSIP show the same message differently (captures:
message-transcript.txt, pjsip-message-transcript.txt):

* ``MESSAGE(from)``: ``"Test Sender" <sip:+15557654321@127.0.0.1:5061>``
  (chan_sip keeps the port, PJSIP drops it);
* ``MESSAGE(to)``: ``sip:+15551234567@127.0.0.1:5060`` or
  ``pjsip:+15551234567@127.0.0.1``;
* ``MESSAGE_DATA(SIP_PEERNAME)`` (chan_sip) / ``MESSAGE_DATA(PJSIP_ENDPOINT)``
  name the authenticated peer when there is one, else are empty.

The body is read as base64: a newline in it would break the line protocol.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import unquote

import structlog

from smsd.agi.session import AgiSession
from smsd.config import User
from smsd.numbers import sip_uri_to_e164

if TYPE_CHECKING:
    from smsd.agi.handlers import DirectoryPort

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


async def read_body(session: AgiSession) -> str:
    return await session.get_base64("${MESSAGE(body)}")


async def read_message_to(session: AgiSession) -> str | None:
    """The destination: E.164 from MESSAGE(to), else from the dialled extension.

    When neither is a valid number the raw user part is returned so that the
    outbox can refuse it by name.
    """
    to = await session.get_variable("MESSAGE(to)")
    number = sip_uri_to_e164(to) if to else None
    if number is None:
        number = sip_uri_to_e164(session.env.extension) if session.env.extension else None
    if number is not None:
        return number
    if to:
        return uri_user(to)
    return session.env.extension or None


async def read_message_from(session: AgiSession) -> str | None:
    return await session.get_variable("MESSAGE(from)")


def _lookup(directory: DirectoryPort, tech: str, name: str) -> User | None:
    return (
        directory.user_by_endpoint(f"{tech}:{name}")
        or directory.user_by_extension(name)
        or directory.user_by_username(name)
    )


async def sender_user(session: AgiSession, directory: DirectoryPort) -> tuple[User | None, str]:
    """The PBX user who sent the message on this channel, and what identified them.

    The authenticated endpoint (PJSIP_ENDPOINT, or chan_sip's SIP_PEERNAME)
    wins: ``MESSAGE(from)`` is whatever the phone wrote, so it is used only
    when Asterisk names no endpoint (then the ``[sms-out]`` context must be
    reachable by the PBX's own phones only).
    """
    data = await session.get_full_variable(
        "${MESSAGE_DATA(PJSIP_ENDPOINT)}|${MESSAGE_DATA(SIP_PEERNAME)}"
    )
    endpoint, _, peer = data.partition("|")
    if endpoint:
        return _lookup(directory, "pjsip", endpoint), f"PJSIP endpoint {endpoint}"
    if peer:
        return _lookup(directory, "sip", peer), f"SIP peer {peer}"
    from_ = await read_message_from(session) or ""
    user_part = uri_user(from_)
    if user_part is None:
        return None, f"MESSAGE(from) {from_!r}"
    return _lookup(directory, "pjsip", user_part), f"MESSAGE(from) {from_!r}"
