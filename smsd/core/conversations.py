"""Two-way SMS conversations: the rules of SEED-NOTES "Inbound and conversations".

One external number talks to one service of the PBX (a call group with an SMS
number, or a bare DID when no call group owns it).  The service never
changes, so "the same number and service" always lands in the same row; the
database's UNIQUE constraint keeps that true even if two requests race.
Participants are internal users only; the customer is the conversation's
``external`` and is never a participant row.  Inbound messages are handed to
each active participant's phone with AMI MessageSend; replies go out through
the outbox from the conversation's DID, whatever gateway owns that DID.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from smsd.config import Config, Licence, User
from smsd.core.deliveries import PhoneDeliveries
from smsd.core.directory import Directory
from smsd.core.events import InboundSms
from smsd.errors import MessageTooLong, NotAllowed, ValidationError
from smsd.numbers import country_of, is_nanp, is_two_way_country, parse_e164
from smsd.store import Store, ts, utcnow
from smsd.store import conversations as rows
from smsd.store.conversations import ConversationRecord, ServiceKey
from smsd.store.inbound import mark_routed

if TYPE_CHECKING:
    from smsd.core.outbox import Outbox

log = structlog.get_logger(__name__)

# SEED-NOTES "Message limits": conversation input at most 670 characters.
MAX_REPLY_CHARS = 670
STOP_WORDS = frozenset({"STOP"})
# A title is a name shown in a list, not a message.
MAX_TITLE_CHARS = 100


class MessageSender(Protocol):
    """Hands a message to a PBX endpoint (the AMI client is one)."""

    async def message_send(self, to: str, from_: str, body: str) -> None: ...


class ConversationError(ValidationError):
    """A conversation request breaks a rule; ``status`` is the HTTP answer it maps to."""

    def __init__(self, message: str, status: int = 400) -> None:
        self.status = status
        super().__init__(message)


class ConversationNotFound(ConversationError):
    def __init__(self, conversation_id: int) -> None:
        super().__init__(f"conversation {conversation_id} does not exist", 404)


@dataclass(frozen=True)
class Service:
    """Who a DID belongs to: a call group, or the DID's own users."""

    kind: str               # "group" | "did"
    name: str               # call group name, or the DID
    did: str
    members: tuple[str, ...]  # extensions that may take part (UC-Business+, DID as office number)

    @property
    def key(self) -> ServiceKey:
        return ServiceKey(self.kind, self.name, self.did)


class Conversations:
    def __init__(
        self,
        store: Store,
        directory: Directory,
        config: Config,
        *,
        ami: MessageSender | None = None,
        outbox: Outbox | None = None,
        deliveries: PhoneDeliveries | None = None,
    ) -> None:
        self._store = store
        self._directory = directory
        self._config = config
        self._ami = ami
        self._outbox = outbox
        self.deliveries = deliveries or PhoneDeliveries(store, directory, ami)
        self._listeners: list[Callable[[int], None]] = []

    def on_change(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(conversation_id)`` after each committed change.

        The web console shows an inbound SMS once it is *in* its conversation;
        the bus's InboundSms comes before that link is written, so the console
        listens here.  Listeners must not block (they queue and return).
        """
        self._listeners.append(listener)

    def _changed(self, conv_id: int) -> None:
        for listener in self._listeners:
            try:
                listener(conv_id)
            except Exception:  # one consumer's bug must not fail the change itself
                log.exception("conversation.listener_failed", conversation=conv_id)

    def set_config(self, config: Config) -> None:
        """A reloaded config (SIGHUP); the directory object is reloaded by its owner."""
        self._config = config

    # --- rules --------------------------------------------------------------------

    def two_way_allowed(self, did: str) -> bool:
        """DID's country two-way AND the PBX's country two-way AND policy on (SEED-NOTES)."""
        policy = self._config.policy
        if not policy.two_way or not is_two_way_country(policy.country):
            return False
        try:
            return is_two_way_country(country_of(did))
        except ValidationError:
            return False

    def eligible(self, extension: str, did: str) -> User | None:
        """A user who may take part for ``did``: UC-Business+ with the DID as office number."""
        user = self._directory.user_by_extension(extension)
        if user is None or user.licence.rank < Licence.UC_BUSINESS.rank:
            return None
        if user.office_number != did:
            return None
        return user

    def service_for_did(self, did: str) -> Service:
        group = self._directory.call_group_by_number(did)
        if group is not None:
            members = tuple(m for m in group.members if self.eligible(m, did))
            return Service("group", group.name, did, members)
        users = self._directory.users_with_office_number(did, Licence.UC_BUSINESS)
        return Service("did", did, did, tuple(u.extension for u in users))

    def service_by_name(self, name: str) -> Service | None:
        """A service a conversation may be created on: a call group with a number, or a DID."""
        for group in self._directory.call_groups:
            if group.name == name:
                return self.service_for_did(group.number) if group.number else None
        try:
            did = parse_e164(name)
        except ValidationError:
            return None
        service = self.service_for_did(did)
        return service if service.members else None

    def services_for(self, user: User) -> list[Service]:
        """Services ``user`` may open conversations on (only those with an SMS number)."""
        out: list[Service] = []
        for group in self._directory.call_groups:
            if group.number is None:
                continue
            service = self.service_for_did(group.number)
            if user.extension in service.members:
                out.append(service)
        if user.office_number and self._directory.call_group_by_number(user.office_number) is None:
            service = self.service_for_did(user.office_number)
            if user.extension in service.members:
                out.append(service)
        return out

    # --- inbound ---------------------------------------------------------------------

    async def on_inbound(self, sms: InboundSms, members: Sequence[str]) -> int | None:
        """Create or join the conversation for ``sms``, deliver it, mark it routed.

        ``members`` are the recipients the kite-sms procedure found (already
        filtered).  They join the conversation; when nobody is active and
        none were given, the service's members are added back.  Returns the
        conversation id, or None when there is nobody at all to give it to
        (the caller then keeps the message unrouted).  Raises AmiError when
        AMI is needed but not there: the message then stays pending.
        """
        did = sms.recipient
        if did is None:
            return None
        service = self.service_for_did(did)
        now = ts(utcnow())

        def pick(active: list[str]) -> tuple[list[str], str]:
            joining = [m for m in members if m not in active]
            if not active and not joining:
                # Everybody left (or nobody was found): the service's members come back.
                return list(service.members), "service"
            return joining, "dialplan"

        joined = await rows.join_inbound(self._store, sms.sender, service.key, now,
                                         ts(sms.received_at), pick)
        if joined is None:
            return None
        conv_id, active, joining = joined
        await self._deliver(conv_id, sms, active)
        await mark_routed(self._store, sms.id, conv_id)
        log.info("conversation.inbound", conversation=conv_id, sms_id=sms.id,
                 participants=len(active), joined=len(joining))
        self._changed(conv_id)
        return conv_id

    async def _deliver(self, conv_id: int, sms: InboundSms, extensions: Sequence[str]) -> None:
        """MessageSend to each participant's phone that has not had this message yet.

        Each Success is recorded (inbound_deliveries) before the next phone is
        tried, so when AMI drops halfway the message stays pending and the
        retry serves only the phones still waiting.  A phone that refuses (off,
        not registered) does not stop the others: its copy waits in
        PhoneDeliveries and is sent when the phone is back.
        """
        if self._ami is None:
            return  # no AMI configured: the conversation API is the only way to read it
        done = await self.deliveries.delivered_to(sms.id)
        for ext in extensions:
            if ext in done:
                log.info("conversation.deliver_skipped", conversation=conv_id,
                         sms_id=sms.id, extension=ext, reason="already delivered")
                continue
            if not await self.deliveries.send(sms.id, ext, sms.sender, sms.text):
                log.warning("conversation.deliver_failed", conversation=conv_id,
                            sms_id=sms.id, extension=ext, state="waiting")

    # --- API operations -------------------------------------------------------------------

    async def create(self, user: User, external: str, service_name: str | None) -> tuple[int, bool]:
        """Open (or join) the conversation of ``external`` on a service; (id, created)."""
        try:
            number = parse_e164(external)
        except ValidationError as exc:
            raise ConversationError(str(exc)) from None
        services = self.services_for(user)
        if service_name is None:
            if len(services) != 1:
                names = [s.name for s in services]
                raise ConversationError(
                    "name the service ('service'): you can use " + (", ".join(names) or "none"))
            service = services[0]
        else:
            found = self.service_by_name(service_name)
            if found is None:
                raise ConversationError(
                    f"{service_name!r} is not a service with an SMS number", 404)
            service = found
        if user.extension not in service.members:
            raise ConversationError(
                f"{user.extension} is not a member of {service.name} with two-way SMS", 403)
        if not self.two_way_allowed(service.did):
            raise ConversationError(f"two-way SMS is not available on {service.did}", 403)
        conv_id, created = await rows.open_conversation(
            self._store, number, service.key, user.extension, ts(utcnow()))
        log.info("conversation.opened", conversation=conv_id, user=user.username,
                 created=created)
        return conv_id, created

    async def get(self, conv_id: int) -> dict[str, Any]:
        found = await rows.get(self._store, conv_id)
        if found is None:
            raise ConversationNotFound(conv_id)
        return _json(found)

    async def list_for(self, user: User) -> list[dict[str, Any]]:
        """Conversations ``user`` takes part in or may join (their services')."""
        services = [s.key for s in self.services_for(user)]
        return [_json(c) for c in await rows.list_for(self._store, user.extension, services)]

    async def list_all(self) -> list[dict[str, Any]]:
        """Every conversation (the console's admins see them all)."""
        return [_json(c) for c in await rows.list_all(self._store)]

    async def require_access(self, conv_id: int, user: User) -> dict[str, Any]:
        conv = await self.get(conv_id)
        service = self._service_of(conv)
        participant = any(p["extension"] == user.extension and p["active"]
                          for p in conv["participants"])
        if not participant and user.extension not in service.members:
            raise ConversationError(f"{user.extension} has no access to conversation {conv_id}",
                                    403)
        return conv

    def _service_of(self, conv: dict[str, Any]) -> Service:
        return self.service_for_did(conv["did"])

    async def add_participant(self, conv_id: int, extension: str, by: User) -> None:
        conv = await self.require_access(conv_id, by)
        if extension == conv["external"] or extension.startswith("+"):
            raise ConversationError("only internal users can be added to a conversation")
        if self._directory.user_by_extension(extension) is None:
            raise ConversationError(f"no internal user with extension {extension}", 404)
        if self.eligible(extension, conv["did"]) is None:
            raise ConversationError(
                f"{extension} cannot take part: needs UC-Business or above and "
                f"{conv['did']} as office number")
        await rows.add_participant(self._store, conv_id, extension, ts(utcnow()), by.extension)
        log.info("conversation.participant_added", conversation=conv_id, extension=extension,
                 by=by.username)
        self._changed(conv_id)

    async def remove_participant(self, conv_id: int, extension: str, by: User) -> None:
        conv = await self.require_access(conv_id, by)
        if extension == conv["external"] or extension.startswith("+"):
            raise ConversationError("the external party cannot be removed from a conversation")
        if not await rows.remove_participant(self._store, conv_id, extension, ts(utcnow())):
            raise ConversationError(f"{extension} is not an active participant", 404)
        log.info("conversation.participant_removed", conversation=conv_id,
                 extension=extension, by=by.username)
        self._changed(conv_id)

    async def assign(self, conv_id: int, extension: str, by: User) -> None:
        conv = await self.require_access(conv_id, by)
        if extension not in self._service_of(conv).members:
            raise ConversationError(
                f"{extension} is not a member of the conversation's service")
        await rows.assign(self._store, conv_id, extension, ts(utcnow()), by.extension)
        log.info("conversation.assigned", conversation=conv_id, assignee=extension,
                 by=by.username)
        self._changed(conv_id)

    async def rename(self, conv_id: int, title: str, by: User) -> None:
        """Give the conversation a title (the customer's name, say) instead of the number."""
        await self.require_access(conv_id, by)
        title = title.strip()
        if not title or len(title) > MAX_TITLE_CHARS:
            raise ConversationError(f"a title needs 1 to {MAX_TITLE_CHARS} characters")
        await rows.rename(self._store, conv_id, title, ts(utcnow()))
        log.info("conversation.renamed", conversation=conv_id, by=by.username)
        self._changed(conv_id)

    async def history(self, conv_id: int) -> list[dict[str, Any]]:
        await self.get(conv_id)
        inbound, outbound = await rows.messages(self._store, conv_id)
        copies = await self.deliveries.states([r.id for r in inbound])
        items: list[dict[str, Any]] = [
            {"direction": "in", "id": r.id, "from": r.sender, "to": r.recipient,
             "text": r.text, "at": r.received_at, "deliveries": copies[r.id]}
            for r in inbound
        ]
        items += [
            {"direction": "out", "id": r.id, "user": r.user, "from": r.sender,
             "to": r.recipient, "text": r.text, "state": r.state,
             "at": r.created_at} for r in outbound
        ]
        items.sort(key=lambda i: (datetime.fromisoformat(i["at"]), i["direction"], i["id"]))
        return items

    async def reply(self, conv_id: int, user: User, text: str) -> int | None:
        """Send ``text`` to the customer from the conversation's DID.

        STOP from a participant on a US/Canadian DID blocks the customer's
        number for inbound (SEED-NOTES) and sends nothing; returns None then.
        """
        conv = await self.require_access(conv_id, user)
        if len(text) > MAX_REPLY_CHARS:
            raise MessageTooLong(len(text), MAX_REPLY_CHARS)
        if not text.strip():
            raise ConversationError("a reply needs some text")
        if await self.stop_if_requested(conv, user, text):
            return None
        if self._outbox is None:
            raise NotAllowed("sending is not available (no outbox)")
        from smsd.core.outbox import SubmitRequest

        result = await self._outbox.submit(SubmitRequest(
            recipients=[conv["external"]], text=text, user=user, origin="conversation",
            sender=conv["did"], conversation_id=conv_id, max_chars=MAX_REPLY_CHARS))
        if result.refused or not result.ids:
            reason = result.refused[0].reason if result.refused else "refused"
            raise ConversationError(f"reply not queued: {reason}")
        await rows.replied(self._store, conv_id, user.extension, ts(utcnow()))
        self._changed(conv_id)
        return result.ids[0]

    async def stop_if_requested(self, conv: dict[str, Any], user: User, text: str) -> bool:
        """Block the customer when a participant on a NANP DID answers STOP."""
        if text.strip().upper() not in STOP_WORDS or not is_nanp(conv["did"]):
            return False
        await self._store.block(conv["external"], by=user.username,
                                reason=f"STOP from {user.extension} in conversation {conv['id']}")
        log.info("conversation.stop_blocked", conversation=conv["id"], user=user.username,
                 number=conv["external"])
        return True

    async def participant_stop(self, user: User, external: str, text: str) -> bool:
        """For the AGI sms-send path: True (and the number blocked) when ``text`` is a
        participant's STOP to ``external`` on a US/Canadian DID; then send nothing."""
        if text.strip().upper() not in STOP_WORDS:
            return False
        ctx = await self.reply_context(user, external)
        if ctx is None:
            return False
        return await self.stop_if_requested(await self.get(ctx[0]), user, text)

    async def reply_context(self, user: User, external: str) -> tuple[int, str] | None:
        """(conversation id, DID) when ``user`` is active in a conversation with ``external``."""
        return await rows.reply_context(self._store, external, user.extension)


def _json(c: ConversationRecord) -> dict[str, Any]:
    """A conversation as the API and the console show it."""
    return {
        "id": c.id,
        "title": c.title,
        "external": c.external,
        "service": {"kind": c.service_kind, "name": c.service},
        "did": c.did,
        "assignee": c.assignee,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "last_message_at": c.last_message_at,
        "participants": [
            {"extension": p.extension, "active": p.active, "joined_at": p.joined_at,
             "left_at": p.left_at}
            for p in c.participants
        ],
    }
