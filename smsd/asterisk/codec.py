"""What Asterisk 20 accepts and answers on AMI, as pure functions.

Most of it was checked against a real Asterisk 20.20.1 (captures in
``/work/shared/captures/asterisk-20/``): which ``To``/``From`` forms
MessageSend takes, when a body needs ``Base64Body``, how panoramisk 1.4 hands
back async Originate results.  ShowDialPlan was not captured; its answers
follow Asterisk's source (main/pbx.c ``manager_show_dialplan``, main/manager.c
list and error framing).  Keeping these pure lets the tests pin each fact
without a socket.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping
from typing import Any

from smsd.errors import AmiError

# Asterisk's manager session reads one header line into ``inbuf[1025]``
# (main/manager.c); a longer line is dumped with "Dumping long line".  A
# ``Base64Body: `` header of at most 1000 characters stays well inside that,
# which is 750 bytes of UTF-8 per MessageSend.  The 1300-byte body limit of
# the brief is therefore always honoured (every chunk is smaller).
BASE64_BODY_MAX_CHARS = 1000
BODY_CHUNK_MAX_BYTES = BASE64_BODY_MAX_CHARS // 4 * 3

_PLAIN_BODY = re.compile(r"^[\x20-\x7e]*$")
_SIP_TO = re.compile(r"^sips?:[^@\s<>]+@[^@\s<>]+$")
_PJSIP_TO = re.compile(r"^pjsip:[^\s<>]+$")
_NUMBER = re.compile(r"^\+?[0-9A-Za-z*#._-]{1,40}$")


class AmiAddressError(AmiError):
    """A MessageSend address Asterisk would refuse or mangle (evidence: ``address``)."""

    def __init__(self, address: str, reason: str) -> None:
        self.address = address
        self.reason = reason
        super().__init__(f"MessageSend address {address!r}: {reason}")


def check_message_to(to: str) -> str:
    """Refuse ``To`` forms that fail on Asterisk 20.

    The capture shows ``sip:bob`` (no peer) failing with "Message failed to
    send." and ``pjsip:`` needing an endpoint; so a ``sip:`` target must name
    user and host/peer, a ``pjsip:`` target an endpoint.
    """
    if _SIP_TO.match(to) or (_PJSIP_TO.match(to) and len(to) > len("pjsip:")):
        return to
    if to.startswith(("sip:", "sips:")):
        raise AmiAddressError(to, "a sip: target must name user and peer (sip:user@peer)")
    raise AmiAddressError(to, "expected sip:user@peer or pjsip:endpoint")


def message_from(number: str, host: str | None, to: str) -> str:
    """The MessageSend ``From`` for an SMS from ``number`` to the phone ``to``.

    With ``host``: ``"+1555..." <sip:+1555...@host>``, the number as name and
    user.  Without, Asterisk fills the host from the endpoint
    (messagesend-from-forms.txt): PJSIP replaces only the user of the
    endpoint's own From when given a bare number (so ``from_domain`` holds),
    and chan_sip takes ``"name" <user>`` as name and user with its own domain.
    A bare ``sip:...`` would become chan_sip's display name (edge-cases
    capture), so a URI is always bracketed.
    """
    if not _NUMBER.match(number):
        raise AmiAddressError(number, "a sender must be a number or a simple SIP user")
    if host is not None:
        return f'"{number}" <sip:{number}@{host}>'
    if to.lower().startswith("pjsip:"):
        return number
    return f'"{number}" <{number}>'


def needs_base64(body: str) -> bool:
    """A header value cannot hold a line break or (reliably) non-ASCII text."""
    return not _PLAIN_BODY.match(body)


def split_body(body: str, max_bytes: int = BODY_CHUNK_MAX_BYTES) -> list[str]:
    """Cut ``body`` into pieces of at most ``max_bytes`` UTF-8 bytes.

    Cuts fall on character boundaries (never inside a UTF-8 sequence or a
    surrogate-free code point), preferring the last space or line break so a
    word is not split across two SIP MESSAGEs.
    """
    if max_bytes < 4:
        raise ValueError("max_bytes must hold at least one character")
    pieces: list[str] = []
    rest = body
    while len(rest.encode("utf-8")) > max_bytes:
        size = 0
        cut = 0
        for i, ch in enumerate(rest):
            size += len(ch.encode("utf-8"))
            if size > max_bytes:
                cut = i
                break
        soft = max(rest.rfind(" ", 0, cut), rest.rfind("\n", 0, cut))
        if soft > cut // 2:
            cut = soft + 1
        pieces.append(rest[:cut])
        rest = rest[cut:]
    pieces.append(rest)
    return pieces


def message_send_actions(to: str, from_: str, body: str) -> list[dict[str, str]]:
    """The MessageSend action(s) for one message, split when it is long."""
    check_message_to(to)
    actions: list[dict[str, str]] = []
    for piece in split_body(body):
        action = {"Action": "MessageSend", "To": to, "From": from_}
        if needs_base64(piece):
            action["Base64Body"] = base64.b64encode(piece.encode("utf-8")).decode("ascii")
        else:
            action["Body"] = piece
        actions.append(action)
    return actions


# What smsd's AMI user lacks when ShowDialPlan is refused.  pbx.c registers
# the action for EVENT_FLAG_CONFIG | EVENT_FLAG_REPORTING; "config" would also
# grant UpdateConfig/CreateConfig, so the sample manager.conf asks for
# "reporting" (read-only status actions).
SHOW_DIALPLAN_CLASS = "reporting"

# manager.c answers an action the user's write classes do not cover with
# ``Response: Error`` / ``Message: Permission denied``.
_PERMISSION_DENIED = "Permission denied"
# manager_show_dialplan's two "nothing there" answers (pbx.c):
# "Did not find context <ctx>" and "Did not find extension <exten>@<ctx>".
_NOT_FOUND = ("Did not find context ", "Did not find extension ")


class AmiPermissionError(AmiError):
    """Asterisk refused an action for the AMI user's write classes.

    Evidence: ``action`` (what was refused) and ``needed`` (the manager.conf
    write class that allows it), so the message tells the admin the fix.
    """

    def __init__(self, action: str, needed: str, username: str | None = None) -> None:
        self.action = action
        self.needed = needed
        self.username = username
        who = f"AMI user {username!r}" if username else "the AMI user"
        super().__init__(
            f"Asterisk answered 'Permission denied' to {action}: add {needed!r} to the "
            f"write = classes of {who} in manager.conf, then 'manager reload'"
        )


def show_dialplan_action(context: str, exten: str) -> dict[str, str]:
    """The ShowDialPlan action for one ``exten@context``.

    Header values must stay on one line; an empty one would make Asterisk
    list every extension (or every context), so both are refused here.
    """
    for name, value in (("Context", context), ("Extension", exten)):
        if not value or any(c in value for c in "\r\n"):
            raise AmiError(f"ShowDialPlan {name} {value!r} is empty or holds a line break")
    return {"Action": "ShowDialPlan", "Context": context, "Extension": exten}


def _plain_extension(listed: str) -> str | None:
    """A listed extension without its decorative dashes; None for a pattern (``_...``)."""
    return None if listed.startswith("_") else listed.replace("-", "")


def show_dialplan_has_exact(
    result: Any, context: str, exten: str, username: str | None = None
) -> bool:
    """Did ShowDialPlan list ``exten`` itself in ``context``?

    ``result`` is what panoramisk resolved the action with: one message for
    an Error, else ``[Success (EventList: start), ListDialplan...,
    ShowDialPlanComplete]``.  Asterisk lists every extension that *matches*
    the lookup, patterns such as ``_+1NXX.`` included, in ``context`` and in
    every context it includes (those events carry the included context's name:
    tests/asterisk/data/ami-showdialplan-include.txt).  ``Local/<exten>@context``
    finds an extension of an included context too, so a ``ListDialplan`` of
    any listed context counts when its ``Extension`` is ``exten``: the same
    characters, ``+`` included, except the dashes Asterisk itself ignores in
    a plain extension (``+1-555-123-4567`` is ``+15551234567`` to Asterisk too).
    "Did not find context" and "Did not find extension" mean False; "Permission denied" raises
    :class:`AmiPermissionError`; any other refusal raises ``AmiError``.
    """
    messages = result if isinstance(result, list) else [result]
    if not messages:
        raise AmiError("ShowDialPlan got an empty answer")
    for msg in messages:
        if str(msg.get("Response", "")) != "Error":
            continue
        text = str(msg.get("Message", ""))
        if text == _PERMISSION_DENIED:
            raise AmiPermissionError("ShowDialPlan", SHOW_DIALPLAN_CLASS, username)
        if text.startswith(_NOT_FOUND):
            return False
        raise AmiError(f"ShowDialPlan {exten}@{context} refused: {text or 'no message'}")
    first = messages[0]
    if str(first.get("Response", "")) != "Success":
        raise AmiError(
            f"ShowDialPlan {exten}@{context}: unexpected answer {first.get('Response')!r}")
    complete = False
    for msg in messages[1:]:
        event = str(msg.get("Event", ""))
        if event == "ShowDialPlanComplete":
            complete = True
        elif (event == "ListDialplan"
              and _plain_extension(str(msg.get("Extension", ""))) == exten.replace("-", "")):
            return True
    if not complete:
        raise AmiError(f"ShowDialPlan {exten}@{context}: listing ended without "
                       "ShowDialPlanComplete")
    return False


def originate_outcome(result: Any) -> tuple[bool, dict[str, str]]:
    """(answered, OriginateResponse headers) from what panoramisk returned.

    For an async Originate panoramisk 1.4 resolves the action with a list
    ``[Response, OriginateResponse]`` and never dispatches the
    OriginateResponse event to handlers; a refused Originate is one message.
    """
    messages = result if isinstance(result, list) else [result]
    first = messages[0] if messages else {}
    if str(first.get("Response", "")) != "Success":
        return False, {k: str(v) for k, v in dict(first).items()}
    for msg in messages[1:]:
        if str(msg.get("Event", "")) == "OriginateResponse":
            headers = {k: str(v) for k, v in dict(msg).items()}
            return headers.get("Response") == "Success", headers
    return False, {k: str(v) for k, v in dict(first).items()}


def channel_variables(variables: Mapping[str, str]) -> list[str]:
    """``Variable: NAME=value`` lines; values must stay on one header line."""
    out: list[str] = []
    for name, value in variables.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise AmiError(f"channel variable name {name!r} is not a plain identifier")
        if any(c in value for c in "\r\n"):
            raise AmiError(f"channel variable {name} holds a line break")
        out.append(f"{name}={value}")
    return out


def iter_user_event_headers(headers: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """UserEvent headers, refusing names/values that would break the frame."""
    for key, value in headers.items():
        if not re.match(r"^[A-Za-z][A-Za-z0-9-]*$", key):
            raise AmiError(f"UserEvent header name {key!r} is not a token")
        if any(c in value for c in "\r\n"):
            raise AmiError(f"UserEvent header {key} holds a line break")
        yield key, value
