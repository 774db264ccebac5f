"""Concatenated SMS: parts in, whole messages out.

Parts are matched on (modem, sender, reference, total) and not on the
reference alone: references are only one octet, so two senders (or one sender
writing twice in a day) can reuse one, and the modem is part of the key
because each SIM's parts come from its own network.  Parts arrive in any
order and may arrive twice (a modem re-reporting an unread SIM slot); a
duplicate is ignored.  A message whose last part never comes is not lost
either: after ``timeout`` it is released with a marker where the gap is.
An emoji whose UTF-16 surrogate pair a sender cut between two UCS-2 parts is
joined again here, from the halves ``pdu.decode`` kept aside.

The parts live in a ``PartStore`` so that the inbox can keep them in SQLite
and survive a restart between part 1 and part 2; ``MemoryPartStore`` is the
in-process version for tests and tools.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from smsd.codec.pdu import HIGH_SURROGATES, LOW_SURROGATES, DeliverPdu


@dataclass(frozen=True)
class PartKey:
    modem: str
    sender: str
    reference: int
    parts: int


@dataclass(frozen=True)
class CompleteSms:
    modem: str
    sender: str
    text: str
    timestamp: datetime
    parts: int
    complete: bool
    smsc: str | None


class PartStore(Protocol):
    async def put(self, key: PartKey, part: int, sms: DeliverPdu, received_at: datetime) -> bool:
        """Keep one part; False when that part of that key is already held."""
        ...

    async def parts(self, key: PartKey) -> dict[int, DeliverPdu]: ...

    async def drop(self, key: PartKey) -> None: ...

    async def older_than(self, cutoff: datetime) -> list[PartKey]:
        """Keys whose first part arrived before ``cutoff``."""
        ...


class MemoryPartStore(PartStore):
    """Parts in a dict: for tests, tools and a daemon that accepts losing them on restart."""

    def __init__(self) -> None:
        self._parts: dict[PartKey, dict[int, DeliverPdu]] = {}
        self._first_seen: dict[PartKey, datetime] = {}

    async def put(self, key: PartKey, part: int, sms: DeliverPdu, received_at: datetime) -> bool:
        held = self._parts.setdefault(key, {})
        if part in held:
            return False
        held[part] = sms
        first = self._first_seen.get(key)
        if first is None or received_at < first:
            self._first_seen[key] = received_at
        return True

    async def parts(self, key: PartKey) -> dict[int, DeliverPdu]:
        return dict(self._parts.get(key, {}))

    async def drop(self, key: PartKey) -> None:
        self._parts.pop(key, None)
        self._first_seen.pop(key, None)

    async def older_than(self, cutoff: datetime) -> list[PartKey]:
        return [key for key, first in self._first_seen.items() if first < cutoff]


class Reassembler:
    MISSING_MARKER = "[…]"  # stands where a part never arrived

    def __init__(self, store: PartStore, *, timeout: timedelta = timedelta(hours=24)) -> None:
        # 24 h by default: TS 23.040 leaves it to the receiver; networks retry
        # undelivered parts for up to a few days, but a reader waiting longer
        # than a day for the rest of a text is worse off than with a gap.
        self._store = store
        self._timeout = timeout
        # One writer at a time: two parts completing a message at once must
        # release it once, whatever the store.
        self._lock = asyncio.Lock()

    async def add(
        self, modem: str, sms: DeliverPdu, received_at: datetime | None = None
    ) -> CompleteSms | None:
        """The whole message once ``sms`` completes it (at once for a one-part SMS), else None."""
        if sms.reference is None or sms.parts <= 1 or not 1 <= sms.part <= sms.parts:
            # Not concatenated, or a header no receiver could place: deliver it
            # as it is rather than hold it for ever.
            return CompleteSms(
                modem=modem,
                sender=sms.sender,
                text=sms.text,
                timestamp=sms.timestamp,
                parts=1,
                complete=True,
                smsc=sms.smsc,
            )
        when = received_at if received_at is not None else datetime.now(UTC)
        key = PartKey(modem=modem, sender=sms.sender, reference=sms.reference, parts=sms.parts)
        async with self._lock:
            await self._store.put(key, sms.part, sms, when)
            held = await self._store.parts(key)
            if len(held) < key.parts:
                return None
            await self._store.drop(key)
        return join_parts(key, held)

    async def expire(self, now: datetime) -> list[CompleteSms]:
        """Release every message still incomplete ``timeout`` after its first part."""
        released: list[CompleteSms] = []
        async with self._lock:
            for key in await self._store.older_than(now - self._timeout):
                held = await self._store.parts(key)
                await self._store.drop(key)
                if held:
                    released.append(join_parts(key, held))
        return released


_REPLACEMENT = "\ufffd"  # what the decoder put where each half of a cut pair was


def _seam(before: DeliverPdu, after: DeliverPdu) -> str | None:
    """The character a sender cut in two between adjacent parts, or None.

    Some senders cut UCS-2 parts at a fixed number of UTF-16 units, so the
    high surrogate of an emoji can end one part and its low surrogate begin
    the next (see ``DeliverPdu``).  Both halves must be held, both must be
    real surrogates, and both texts must still show the U+FFFD the decoder
    put in their place; anything else is left as it is.
    """
    high, low = before.split_high, after.split_low
    if high is None or low is None:
        return None
    if high not in HIGH_SURROGATES or low not in LOW_SURROGATES:
        return None
    if not before.text.endswith(_REPLACEMENT) or not after.text.startswith(_REPLACEMENT):
        return None
    return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))


def join_parts(key: PartKey, held: dict[int, DeliverPdu]) -> CompleteSms:
    """The message from the parts held (at least one), a marker standing in each gap.

    A surrogate pair the sender cut between two held neighbours becomes the
    one character again; next to a gap, a lone half stays U+FFFD.  Shared
    with the inbox, which releases keys from its own part store.
    """
    # seams[n]: the character cut between parts n and n+1, when both are held.
    seams = {n: c for n in held if n + 1 in held
             if (c := _seam(held[n], held[n + 1])) is not None}
    pieces: list[str] = []
    for n in range(1, key.parts + 1):
        sms = held.get(n)
        if sms is None:
            pieces.append(Reassembler.MISSING_MARKER)
            continue
        text = sms.text[1:] if n - 1 in seams else sms.text
        pieces.append(text[:-1] + seams[n] if n in seams else text)
    first = held[min(held)]
    return CompleteSms(
        modem=key.modem,
        sender=key.sender,
        text="".join(pieces),
        timestamp=first.timestamp,
        parts=key.parts,
        complete=len(held) >= key.parts,
        smsc=first.smsc,
    )
