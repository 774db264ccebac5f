"""Inbound AGI scripts: ``sms-receive`` (trunk SMS into the inbox) and
``kite-sms`` (the call-group application of the inbound procedure).

Asterisk has already answered the SIP sender ``202 Accepted`` when these run
(captures), so the inbox commit here is the only thing standing between the
message and its loss: commit first, report after.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from smsd.agi.channel import destination, marked_expression, read_message, unmark, uri_user
from smsd.agi.ports import AgiServices, Refuse, report, split_list
from smsd.agi.session import AgiSession
from smsd.errors import AgiProtocolError, ValidationError
from smsd.numbers import sip_uri_to_e164

log = structlog.get_logger(__name__)

# Gateway name recorded for messages the carrier trunk hands to Asterisk.
DEFAULT_INBOUND_GATEWAY = "classound"

# What names one SIP MESSAGE across the two sms-receive calls of [sms-in], in
# one GET FULL VARIABLE: the key the sample dialplan sets once before its
# first AGI call (SMSD_KEY), then the request's Call-ID and CSeq.  chan_sip
# copies the headers of an incoming MESSAGE into MESSAGE_DATA; PJSIP's
# res_pjsip_messaging keeps Call-ID and CSeq out of it (its blocked-header
# list; the captures show neither), so there only SMSD_KEY or ``?key=`` can
# name the message and an empty Call-ID simply means "no key".  Each value is
# base64 with an "x" marker for the reason given in smsd.agi.channel
# (BASE64_ENCODE of nothing fails).
KEY_VARIABLE = "SMSD_KEY"
_KEY_EXPRESSION = marked_expression(
    "${" + KEY_VARIABLE + "}", "${MESSAGE_DATA(Call-ID)}", "${MESSAGE_DATA(CSeq)}"
)


async def _message_key(session: AgiSession) -> str | None:
    """The idempotency key of the message on this channel, None when nothing names it.

    ``?key=`` (or argument 4 off a message channel) wins; on a message
    channel SMSD_KEY, else Call-ID with CSeq, are read from Asterisk.  An
    answer that cannot be read means "no key": the message is already read
    and acknowledged to the carrier, and a possible duplicate is better than
    refusing it.
    """
    env = session.env
    explicit = env.query.get("key") if env.is_message_channel else env.param("key", 4)
    if explicit is not None and explicit.strip():
        return "key:" + explicit.strip()
    if not env.is_message_channel:
        return None
    answer = await session.get_full_variable(_KEY_EXPRESSION)
    try:
        parts = answer.split(",")
        if len(parts) != 3:
            raise AgiProtocolError(f"message key read gave {len(parts)} fields, expected 3")
        variable, call_id, cseq = (unmark(p, "message key field").strip() for p in parts)
    except AgiProtocolError as exc:
        log.warning("agi.message_key_unreadable", uniqueid=env.uniqueid, error=str(exc),
                    answer=answer[:80])
        return None
    if variable:
        return "key:" + variable
    if call_id:
        return f"sip:{call_id} {cseq}"
    return None


async def _receive(session: AgiSession, services: AgiServices) -> int:
    """Read sender, DID and body, commit to the inbox, return the inbound id."""
    env = session.env
    from_raw: str | None
    to_raw: str | None
    body: str | None
    if env.is_message_channel:
        msg = await read_message(session)
        from_raw = env.query.get("from") or msg.from_
        to_raw = env.query.get("to") or env.query.get("did") or destination(msg.to, env.extension)
        body = msg.body
    else:
        from_raw = env.param("from", 1)
        to_raw = env.param("to", 2) or env.query.get("did")
        body = env.param("body", 3)
    if not from_raw:
        raise Refuse("no sender (MESSAGE(from), query 'from' or argument 1)")
    sender = sip_uri_to_e164(from_raw) or uri_user(from_raw)
    if not sender:
        raise Refuse(f"cannot read a sender from {from_raw!r}")
    recipient = sip_uri_to_e164(to_raw) if to_raw else None
    if recipient is None and env.extension:
        recipient = sip_uri_to_e164(env.extension)
    if body is None:
        raise Refuse("no message body (MESSAGE(body), query 'body' or argument 3)")
    # An empty body from the trunk is still stored: the carrier already got its
    # 202 Accepted, and "nothing acknowledged is lost" includes odd messages.
    gateway = env.query.get("gateway") or DEFAULT_INBOUND_GATEWAY
    key = await _message_key(session)
    return await services.inbox.receive(sender, recipient, body, gateway=gateway, dedupe_key=key)


async def sms_receive(session: AgiSession, services: AgiServices) -> None:
    """Inbound SMS from a carrier trunk; sets SMS_STATUS (RECEIVED|REFUSED), SMS_ID."""
    bound = log.bind(uniqueid=session.env.uniqueid, script="sms-receive")
    try:
        sms_id = await _receive(session, services)
    except (Refuse, ValidationError) as exc:
        bound.info("agi.sms_receive.refused", reason=str(exc))
        await report(session, SMS_STATUS="REFUSED", SMS_ID="", SMS_ERROR=str(exc))
        return
    bound.info("agi.sms_receive", sms_id=sms_id)
    await report(session, SMS_STATUS="RECEIVED", SMS_ID=str(sms_id), SMS_ERROR="")


def _members(session: AgiSession) -> list[str]:
    """Static members from ``?members=`` and from the arguments, in order, once each.

    AGI() splits its data on commas before the URL reaches us, so the
    documented ``AGI(agi://h/kite-sms?members=100,201)`` arrives as the query
    ``members=100`` and ``agi_arg_1: 201``; both halves are members.
    """
    env = session.env
    out: list[str] = split_list(env.query.get("members", ""))
    for arg in env.args:
        out.extend(split_list(arg))
    return list(dict.fromkeys(out))


async def kite_sms(session: AgiSession, services: AgiServices) -> None:
    """Hand inbound SMS ``SMS_ID`` to the procedure with the static members.

    The daemon's AMI Originate sets SMS_ID (with SMS_FROM, SMS_TO) on the
    Local channel in ``[kite-sms]``.  When the script runs directly on a
    message channel instead (the trunk's context calls it, no SMS_ID), the
    message is received first, as ``sms-receive`` would, then claimed.
    Sets SMS_CONVERSATION and SMS_STATUS (ROUTED, UNROUTED, REFUSED, ERROR).
    """
    bound = log.bind(uniqueid=session.env.uniqueid, script="kite-sms")
    members: Sequence[str] = _members(session)
    sms_id: int | None = None
    try:
        raw_id = await session.get_variable("SMS_ID")
        if raw_id is None or not raw_id.strip():
            raw_id = session.env.query.get("sms_id")
        if raw_id is not None and raw_id.strip():
            if not raw_id.strip().isdigit():
                raise Refuse(f"SMS_ID {raw_id[:40]!r} is not a message id")
            sms_id = int(raw_id.strip())
        elif session.env.is_message_channel:
            sms_id = await _receive(session, services)
        else:
            raise Refuse("SMS_ID is not set on the channel")
        if services.procedure is None:
            # A message received above is kept (and routed by the directory).
            raise Refuse("the kite-sms procedure is not enabled in smsd")
        conversation = await services.procedure.claim(sms_id, members)
    except (Refuse, ValidationError) as exc:
        bound.info("agi.kite_sms.refused", reason=str(exc), members=list(members), sms_id=sms_id)
        await report(
            session,
            SMS_STATUS="REFUSED",
            SMS_ID="" if sms_id is None else str(sms_id),
            SMS_CONVERSATION="",
            SMS_ERROR=str(exc),
        )
        return
    bound.info("agi.kite_sms", sms_id=sms_id, members=list(members), conversation=conversation)
    await report(
        session,
        SMS_STATUS="ROUTED" if conversation is not None else "UNROUTED",
        SMS_ID=str(sms_id),
        SMS_CONVERSATION="" if conversation is None else str(conversation),
        SMS_ERROR="",
    )
