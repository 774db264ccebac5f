"""Each participant's copy of an inbound SMS: delivered, waiting, or given up.

Routing decides who takes part in a conversation; handing the message to each
participant's phone is a separate step that can fail for one phone only.  On
Asterisk 20, ``MessageSend`` to a PJSIP endpoint with no registered contact
(the phone is off) answers ``Message failed to send.``
(tests/asterisk/data/ami-unregistered-phone.txt).  Such a copy is kept here and
tried again with back-off, and at once when Asterisk reports the endpoint back
(``ContactStatus`` / ``PeerStatus`` events, same capture), so a phone that was
off gets its SMS after it registers, in the order they arrived.

States per (message, extension): ``delivered`` (inbound_deliveries),
``waiting`` and ``gave_up`` (inbound_delivery_waits).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from smsd.errors import AmiError, AmiNotConnected
from smsd.store import Store, deliveries, ts, utcnow

if TYPE_CHECKING:
    from smsd.core.directory import Directory

log = structlog.get_logger(__name__)

# First retry of a phone that did not take a message: a phone rebooting is back
# within a minute or so; the ContactStatus event usually comes first anyway.
RETRY_BASE_S = 30.0
# Back-off doubles up to this: an absent phone costs one MessageSend per
# quarter of an hour, and its registration event still delivers at once.
RETRY_MAX_S = 900.0
# A copy older than this is given up (logged): a phone off for three days gets
# its conversations through the API/console, not a burst of stale SMS.
GIVE_UP_AFTER_S = 3 * 24 * 3600.0
# The retry loop looks at the table at least this often even without a wake-up,
# so a due retry is never late by more than this.
POLL_MAX_S = 30.0
# ContactStatus values meaning "a contact is there now" (res_pjsip
# ast_sip_get_contact_status_label); Removed/Unreachable mean it is not.
_CONTACT_UP = frozenset({"Created", "Reachable", "NonQualified", "Updated"})
# PeerStatus values meaning the same (PJSIP: Reachable; chan_sip: Registered too).
_PEER_UP = frozenset({"Reachable", "Registered"})


class MessageSender(Protocol):
    async def message_send(self, to: str, from_: str, body: str) -> None: ...


def endpoint_from_event(headers: Mapping[str, str]) -> str | None:
    """The smsd endpoint (``pjsip:100``, ``sip:alice``) an AMI event reports back, else None.

    ContactStatus names ``EndpointName: 100``; PeerStatus ``Peer: PJSIP/100`` or
    ``Peer: SIP/alice`` (captured on Asterisk 20.20.1).
    """
    event = headers.get("Event", "")
    if event == "ContactStatus":
        name = headers.get("EndpointName", "")
        if name and headers.get("ContactStatus", "") in _CONTACT_UP:
            return f"pjsip:{name}"
    elif event == "PeerStatus":
        tech, _, name = headers.get("Peer", "").partition("/")
        if name and headers.get("PeerStatus", "") in _PEER_UP:
            if tech.upper() == "PJSIP":
                return f"pjsip:{name}"
            if tech.upper() == "SIP":
                return f"sip:{name}"
    return None


def backoff_s(attempts: int) -> float:
    """Delay after the ``attempts``-th failure: 30 s doubling to 15 min."""
    return float(min(RETRY_BASE_S * 2 ** max(attempts - 1, 0), RETRY_MAX_S))


class PhoneDeliveries:
    """Hands inbound SMS to phones, remembering which phone has which message."""

    def __init__(self, store: Store, directory: Directory, sender: MessageSender | None) -> None:
        self._store = store
        self._directory = directory
        self._sender = sender
        self._wake = asyncio.Event()
        self._back: set[str] = set()      # endpoints reported back since the last pass
        self.retried = 0                  # copies delivered by a retry (tests, status)

    def endpoint_of(self, extension: str) -> str:
        user = self._directory.user_by_extension(extension)
        return (user.endpoint if user else None) or f"pjsip:{extension}"

    # --- the first attempt (from Conversations) ----------------------------------------

    async def delivered_to(self, sms_id: int) -> set[str]:
        return await deliveries.delivered_to(self._store, sms_id)

    async def send(self, sms_id: int, extension: str, sender: str, text: str) -> bool:
        """One MessageSend to ``extension``'s phone; True when Asterisk took it.

        A refusal is recorded as waiting (retried later); AmiNotConnected is
        raised so that the caller keeps the whole message pending.
        """
        if self._sender is None:
            return False
        endpoint = self.endpoint_of(extension)
        try:
            await self._sender.message_send(endpoint, sender, text)
        except AmiNotConnected:
            raise
        except AmiError as exc:
            await self._failed(sms_id, extension, endpoint, str(exc))
            return False
        await self._succeeded(sms_id, extension)
        return True

    async def _succeeded(self, sms_id: int, extension: str) -> None:
        await deliveries.record_delivered(self._store, sms_id, extension, ts(utcnow()))

    async def _failed(self, sms_id: int, extension: str, endpoint: str, error: str) -> None:
        now = utcnow()
        attempts = 1 + await deliveries.attempts_of(self._store, sms_id, extension)
        due = now + timedelta(seconds=backoff_s(attempts))
        await deliveries.record_waiting(self._store, sms_id, extension, endpoint,
                                        attempts=attempts, error=error, now_s=ts(now),
                                        due_s=ts(due))
        log.warning("delivery.phone_waiting", sms_id=sms_id, extension=extension,
                    endpoint=endpoint, attempts=attempts, error=error,
                    retry_in_s=backoff_s(attempts),
                    hint="the phone is off or not registered; retried when it registers")

    # --- retries ---------------------------------------------------------------------------

    def endpoint_back(self, headers: Mapping[str, str]) -> None:
        """AMI ContactStatus/PeerStatus handler: wake the loop for that endpoint."""
        endpoint = endpoint_from_event(headers)
        if endpoint is None:
            return
        self._back.add(endpoint.lower())
        self._wake.set()

    def wake(self) -> None:
        """Try every waiting copy now (AMI logged in again)."""
        self._back.add("*")
        self._wake.set()

    async def run(self) -> None:
        """Retry waiting copies until cancelled: when due, or when their phone is back."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(await self._sleep_s()):
                    await self._wake.wait()
            self._wake.clear()
            back, self._back = self._back, set()
            try:
                await self.retry(back)
            except asyncio.CancelledError:
                raise
            except AmiNotConnected:
                pass                      # the next login wakes us
            except Exception:
                log.exception("delivery.retry_failed")

    async def _sleep_s(self) -> float:
        next_at = await deliveries.next_retry_at(self._store)
        if next_at is None:
            return POLL_MAX_S
        due = datetime.fromisoformat(next_at)
        return max(0.0, min(POLL_MAX_S, (due - utcnow()).total_seconds()))

    async def retry(self, back: Collection[str] = ()) -> int:
        """One pass: every due copy, and every copy of an endpoint in ``back`` ("*" = all).

        Copies are sent oldest message first, so a phone gets its backlog in order.
        Returns how many were delivered.
        """
        now = utcnow()
        done = 0
        for row in await deliveries.waiting(self._store):
            endpoint = row.endpoint
            due = datetime.fromisoformat(row.next_attempt_at) <= now
            if not (due or "*" in back or endpoint.lower() in back):
                continue
            sms_id, ext = row.inbound_id, row.extension
            age = (now - datetime.fromisoformat(row.received_at)).total_seconds()
            if age > GIVE_UP_AFTER_S:
                await self._give_up(sms_id, ext, age)
                continue
            if await self.send(sms_id, ext, row.sender, row.text):
                done += 1
                self.retried += 1
                log.info("delivery.phone_delivered", sms_id=sms_id, extension=ext,
                         endpoint=endpoint, via="retry")
        return done

    async def _give_up(self, sms_id: int, extension: str, age_s: float) -> None:
        await deliveries.give_up(self._store, sms_id, extension)
        log.warning("delivery.phone_gave_up", sms_id=sms_id, extension=extension,
                    age_s=round(age_s), reason="the phone stayed unreachable")

    # --- for the API -----------------------------------------------------------------------

    async def states(self, sms_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        """Per message, each phone's copy: extension, state, attempts, last error, next try."""
        out: dict[int, list[dict[str, Any]]] = {i: [] for i in sms_ids}
        delivered, waits = await deliveries.copies(self._store, sms_ids)
        for d in delivered:
            out[d.inbound_id].append({
                "extension": d.extension, "state": "delivered", "at": d.delivered_at})
        for w in waits:
            out[w.inbound_id].append({
                "extension": w.extension,
                "state": "gave_up" if w.gave_up else "waiting",
                "attempts": w.attempts, "error": w.last_error,
                "next_attempt_at": None if w.gave_up else w.next_attempt_at})
        return out
