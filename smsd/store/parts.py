"""SQLite-backed PartStore for the modem Reassembler (smsd.codec.reassembly).

Why it differs from MemoryPartStore:

* ``put`` commits before it returns, so a part is on disk before the modem
  deletes it from the SIM, and a restart between part 1 and part 2 loses
  nothing.
* ``drop`` is deferred: the key is only marked done (``done = TRUE``) in the
  inbox's transaction that stores the whole message (``take_drops`` +
  ``MARK_DONE_SQL``).  Marking parts done and storing the message are then one
  commit: a crash in between cannot lose the message, nor store it twice.
* Done rows are kept for a while (``purge``), so a part read again from the
  SIM after a crash between commit and delete is recognised as a duplicate
  (same SMSC timestamp and text) instead of starting a message that would
  never complete.  A part with the same key but another timestamp is a new
  message reusing the one-octet reference: the old done rows give way.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

import structlog

from smsd.codec.pdu import DeliverPdu
from smsd.codec.reassembly import PartKey
from smsd.store.store import Store
from smsd.store.timefmt import ts

log = structlog.get_logger(__name__)

_KEY = "modem = ? AND sender = ? AND reference = ? AND parts = ?"
MARK_DONE_SQL = f"UPDATE inbound_parts SET done = TRUE WHERE {_KEY}"


def _key(key: PartKey) -> tuple[str, str, int, int]:
    return (key.modem, key.sender, key.reference, key.parts)


def pdu_to_json(sms: DeliverPdu) -> str:
    return json.dumps(
        {
            "sender": sms.sender,
            "text": sms.text,
            "timestamp": sms.timestamp.isoformat(),
            "smsc": sms.smsc,
            "reference": sms.reference,
            "part": sms.part,
            "parts": sms.parts,
            "ref_bits": sms.ref_bits,
            "encoding": sms.encoding,
            "status_report_indication": sms.status_report_indication,
            "split_high": sms.split_high,
            "split_low": sms.split_low,
        },
        ensure_ascii=False,
    )


def pdu_from_json(raw: str) -> DeliverPdu:
    d: dict[str, Any] = json.loads(raw)
    return DeliverPdu(
        sender=d["sender"],
        text=d["text"],
        timestamp=datetime.fromisoformat(d["timestamp"]),
        smsc=d["smsc"],
        reference=d["reference"],
        part=d["part"],
        parts=d["parts"],
        ref_bits=d["ref_bits"],
        encoding=d["encoding"],
        status_report_indication=d["status_report_indication"],
        # Rows written before these two fields existed have neither: no cut pair.
        split_high=d.get("split_high"),
        split_low=d.get("split_low"),
    )


def _same(stored: DeliverPdu, sms: DeliverPdu) -> bool:
    return stored.timestamp == sms.timestamp and stored.text == sms.text


class SqlitePartStore:
    """PartStore (smsd.codec.reassembly) on the ``inbound_parts`` table."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._dropping: set[PartKey] = set()

    async def put(self, key: PartKey, part: int, sms: DeliverPdu, received_at: datetime) -> bool:
        k = _key(key)
        received = ts(received_at)

        # The function only reads and writes the database (Store.write may run
        # it twice); the conflict it finds is logged here, once.
        def write(db: sqlite3.Connection) -> tuple[bool, DeliverPdu | None]:
            row = db.execute(
                f"SELECT pdu, done FROM inbound_parts WHERE {_KEY} AND part = ?", (*k, part)
            ).fetchone()
            if row is not None:
                stored = pdu_from_json(row["pdu"])
                if _same(stored, sms):
                    return False, None
                if not row["done"]:
                    # Another message on the same key while the first is still
                    # incomplete: keep the first (its siblings are here) and
                    # say so with the evidence.
                    return False, stored
                db.execute(f"DELETE FROM inbound_parts WHERE {_KEY} AND done = TRUE", k)
            db.execute(
                "INSERT INTO inbound_parts (modem, sender, reference, parts, part, pdu, "
                "received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*k, part, pdu_to_json(sms), received),
            )
            return True, None

        stored, conflict = await self._store.write(write)
        if conflict is not None:
            log.warning(
                "inbox.part_conflict",
                modem=key.modem,
                sender=key.sender,
                reference=key.reference,
                part=part,
                kept_timestamp=conflict.timestamp.isoformat(),
                dropped_timestamp=sms.timestamp.isoformat(),
            )
        if stored:
            self._dropping.discard(key)
        return stored

    async def parts(self, key: PartKey) -> dict[int, DeliverPdu]:
        if key in self._dropping:
            return {}
        rows = await self._store.fetchall(
            f"SELECT part, pdu FROM inbound_parts WHERE {_KEY} AND done = FALSE", _key(key)
        )
        return {int(r["part"]): pdu_from_json(r["pdu"]) for r in rows}

    async def drop(self, key: PartKey) -> None:
        """Deferred: committed by ``MARK_DONE_SQL`` in the transaction storing the message."""
        self._dropping.add(key)

    async def older_than(self, cutoff: datetime) -> list[PartKey]:
        rows = await self._store.fetchall(
            "SELECT modem, sender, reference, parts FROM inbound_parts WHERE done = FALSE "
            "GROUP BY modem, sender, reference, parts HAVING MIN(received_at) < ?",
            (ts(cutoff),),
        )
        keys = [PartKey(r[0], r[1], int(r[2]), int(r[3])) for r in rows]
        return [k for k in keys if k not in self._dropping]

    # --- the inbox's side ---------------------------------------------------

    def take_drops(self) -> list[PartKey]:
        """Keys dropped since the last call; the caller must run ``MARK_DONE_SQL`` on them."""
        keys = list(self._dropping)
        self._dropping.clear()
        return keys

    async def complete_keys(self) -> list[PartKey]:
        """Keys with every part held but not done: a crash came before the message was stored."""
        rows = await self._store.fetchall(
            "SELECT modem, sender, reference, parts FROM inbound_parts WHERE done = FALSE "
            "GROUP BY modem, sender, reference, parts HAVING COUNT(*) >= parts"
        )
        return [PartKey(r[0], r[1], int(r[2]), int(r[3])) for r in rows]

    async def purge(self, before: datetime) -> int:
        """Forget done parts received before ``before`` (duplicate detection window)."""
        async with self._store.transaction() as db:
            cur = await db.execute(
                "DELETE FROM inbound_parts WHERE done = TRUE AND received_at < ?", (ts(before),)
            )
            return int(cur.rowcount or 0)
