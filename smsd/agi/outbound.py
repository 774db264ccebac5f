"""``sms-send``: an SMS from the dialplan (a phone's MESSAGE or an explicit AGI call)."""

from __future__ import annotations

import structlog

from smsd.agi.channel import ChannelMessage, destination, read_message, sender_user
from smsd.agi.ports import AgiServices, Refuse, report, split_list, user_from_name
from smsd.agi.session import AgiSession
from smsd.config import User
from smsd.core.outbox import Refusal, SubmitRequest
from smsd.errors import AmiError, InvalidNumber, ValidationError
from smsd.numbers import complete_national, parse_e164

log = structlog.get_logger(__name__)


def _normalise(number: str) -> str:
    try:
        return parse_e164(number)
    except InvalidNumber:
        return number  # the outbox refuses it, naming the number


# --- sms-send --------------------------------------------------------------------


async def sms_send(session: AgiSession, services: AgiServices) -> None:
    """Submit an SMS from the dialplan; sets SMS_STATUS, SMS_ID, SMS_ERROR, SMS_WARNING."""
    env = session.env
    bound = log.bind(uniqueid=env.uniqueid, script="sms-send")
    msg: ChannelMessage | None = None
    try:
        if env.query and env.args:
            # AGI() split the data at an unescaped comma: "?to=+1,+2" arrives as
            # query "to=+1" and argument "+2".  Guessing would drop or misread a
            # recipient, so refuse and say how to write it.
            raise Refuse(
                "query and arguments both given (an unescaped comma in AGI() splits the"
                " query; write \\, in the dialplan): query "
                f"{sorted(env.query)!r}, {len(env.args)} argument(s)"
            )
        to_raw = env.param("to", 1)
        from_raw = env.param("from", 2)
        body = env.param("body", 3)
        if env.is_message_channel:
            msg = await read_message(session)
            if to_raw is None:
                to_raw = destination(msg.to, env.extension)
                if to_raw is not None and services.country and not to_raw.startswith("+"):
                    # A phone dialled a national number: the PBX's country is the
                    # only sensible reading (a bad one is refused, named).
                    try:
                        to_raw = complete_national(to_raw, services.country)
                    except InvalidNumber as exc:
                        raise Refuse(str(exc)) from None
            if body is None:
                body = msg.body
        if to_raw is None or not split_list(to_raw):
            raise Refuse("no destination number (query 'to', argument 1 or MESSAGE(to))")
        if body is None:
            raise Refuse("no message text (query 'body', argument 3 or MESSAGE(body))")
        user: User | None
        if from_raw is not None and from_raw.strip():
            user = user_from_name(services.directory, from_raw.strip())
            if user is None:
                raise Refuse(f"unknown sender {from_raw.strip()!r}")
        elif msg is not None:
            user, identified_by = sender_user(msg, services.directory)
            if user is None:
                raise Refuse(f"sender is not a PBX user ({identified_by})")
        else:
            user = None
        result = await _submit(services, user, split_list(to_raw), body)
    except (Refuse, ValidationError) as exc:
        bound.info("agi.sms_send.refused", reason=str(exc))
        await report(
            session, SMS_STATUS="REFUSED", SMS_ID="", SMS_ERROR=str(exc), SMS_WARNING=""
        )
        if msg is not None:
            await _tell_phone(services, msg, f"SMS not sent: {exc}")
        return
    ids, refused, warnings = result
    errors = "; ".join(f"{r.number}: {r.reason}" for r in refused)
    if msg is not None and refused:
        await _tell_phone(services, msg, f"SMS not sent to {errors}")
    bound.info(
        "agi.sms_send",
        ids=ids,
        refused=len(refused),
        warnings=warnings,
        user=user.username if user is not None else None,
    )
    await report(
        session,
        SMS_STATUS="QUEUED" if ids else "REFUSED",
        SMS_ID=",".join(str(i) for i in ids),
        SMS_ERROR=errors,
        # What a "warn" policy found (link, unregistered or Italian given-name
        # sender), "; "-separated; empty when nothing.
        SMS_WARNING="; ".join(warnings),
    )


# The From of smsd's own notices to a phone (a plain user part: codec.message_from).
NOTICE_FROM = "smsd"


async def _tell_phone(services: AgiServices, msg: ChannelMessage, text: str) -> None:
    """Send the phone that texted a short SIP MESSAGE saying why its SMS was refused.

    A desk phone shows nothing for a refused MESSAGE (Asterisk already answered
    202), so without this the user never learns the SMS went nowhere.  Only for
    a sender that is a PBX user (never a message to an unknown From).
    """
    if services.notices is None:
        return
    user, _ = sender_user(msg, services.directory)
    if user is None:
        return
    try:
        await services.notices.message_send(user.endpoint or f"pjsip:{user.extension}",
                                            NOTICE_FROM, text[:300])
    except AmiError as exc:
        log.info("agi.sms_send.notice_failed", user=user.username, error=str(exc))


async def _submit(
    services: AgiServices, user: User | None, recipients: list[str], body: str
) -> tuple[list[int], list[Refusal], list[str]]:
    """One submit, or one per recipient that is inside a conversation of ``user``.

    A reply to a customer the user is already talking with goes out from the
    conversation's DID and is attached to it (SEED-NOTES: replies from the PBX
    go out from the conversation's DID).
    """
    plain: list[str] = []
    requests: list[SubmitRequest] = []
    ids: list[int] = []
    refused: list[Refusal] = []
    warnings: list[str] = []
    for raw in recipients:
        number = _normalise(raw)
        conversations = services.conversations
        if user is None or conversations is None or not number.startswith("+"):
            plain.append(raw)
            continue
        ctx = await conversations.reply_context(user, number)
        if ctx is None:
            plain.append(raw)
            continue
        conversation_id, did = ctx
        if await conversations.participant_stop(user, number, body):
            # A participant's STOP on a US/Canadian DID blocks the customer's
            # inbound SMS (SEED-NOTES); the word itself is not sent on.
            refused.append(Refusal(number, "STOP: inbound SMS from this number is now blocked"))
            continue
        requests.append(
            SubmitRequest(
                recipients=[number],
                text=body,
                user=user,
                origin="agi",
                sender=did,
                conversation_id=conversation_id,
            )
        )
    if plain:
        requests.insert(0, SubmitRequest(recipients=plain, text=body, user=user, origin="agi"))
    for req in requests:
        try:
            result = await services.outbox.submit(req)
        except Exception as exc:
            if not ids:
                raise  # nothing committed yet: the whole call failed
            # Earlier submits are committed: report them (a dialplan retry on
            # ERROR would send them twice) and name what was not queued.
            if not isinstance(exc, ValidationError):
                log.exception("agi.sms_send.partial_failure", committed=ids)
            reason = str(exc) if isinstance(exc, ValidationError) else "not queued: internal error"
            refused.extend(Refusal(n, reason) for n in req.recipients)
            continue
        ids.extend(result.ids)
        refused.extend(result.refused)
        warnings.extend(w for w in result.warnings if w not in warnings)
    return ids, refused, warnings
