"""A message's history: the explicit rows of message_history and the routine ones in its row.

A message that goes well changes state five times (queued, sending,
submitting, sent, delivered).  Since migration 0010 those transitions are
not rows of message_history but columns of the message, written by the
UPDATE (or the submit's INSERT) that moves it anyway: five INSERTs fewer per
message on the database thread (issue 17).  What anyone reads is unchanged:
:func:`history_of` puts the rows back where the table had them.

Where they sit, and why the order is structural (no tie on equal times):

* ``hist_queued`` is the submit's row ('queued' or 'scheduled', at
  ``created_at``, detail ``origin=<origin>``).  The submit writes it before
  anything else of the message (its warnings come after it), so it is the
  first row of every history.  It never changes and never moves.
* ``hist_sending_at`` .. ``hist_delivered_at`` are the current attempt's
  'sending', 'submitting', 'sent', 'delivered', in that order.  Every write
  of an explicit row (a retry, a failure, an expiry by report, a recovery, a
  gateway report, a second 'submitting' in one attempt) first moves them
  into message_history with :data:`FLUSH_SQL` and clears them
  (:data:`CLEAR_ATTEMPT`) in the same transaction, so they always come
  after every row of the table.  'sent' and 'delivered' written by one
  ``write_sent`` share their time and keep that order, as before.
* A message waiting in 'queued'/'scheduled' has none of the four: every way
  back there (a retry, a recovery's requeue) moves them first.  So a claim
  sets ``hist_sending_at`` on empty columns, and an expiry (only of waiting
  messages) has nothing to move.

The details the table had are derived: 'sending' is ``attempt N`` where N is
the attempt being made (``attempts + 1`` while the message is in flight, the
count itself once ``write_sent`` has counted it); 'sent' is
:func:`sent_detail` of the message's gateway and modem, which ``write_sent``
sets in the same UPDATE and nothing changes afterwards.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

# Set clause forgetting the current attempt's routine transitions, for the
# UPDATE that follows a FLUSH_SQL of the same message.
CLEAR_ATTEMPT = (
    "hist_sending_at = NULL, hist_submitting_at = NULL, hist_sent_at = NULL, "
    "hist_delivered_at = NULL, hist_delivered_detail = NULL"
)

# The attempt number of a 'sending' row, and the detail of a 'sent' one, in
# SQL: the same rules as history_of below.
_ATTEMPT_SQL = ("'attempt ' || CAST(m.attempts + CASE WHEN m.state IN ('sending', 'submitting') "
                "THEN 1 ELSE 0 END AS TEXT)")
_SENT_SQL = "CASE WHEN m.modem IS NULL THEN m.gateway ELSE m.gateway || ' via ' || m.modem END"

# The current attempt's routine rows of the messages matched by the WHERE that
# callers append (on ``m``), into message_history in their order.
FLUSH_SQL = (
    "INSERT INTO message_history (message_id, at, state, detail) "
    "SELECT m.id, CASE k.n WHEN 1 THEN m.hist_sending_at WHEN 2 THEN m.hist_submitting_at "
    "WHEN 3 THEN m.hist_sent_at ELSE m.hist_delivered_at END, "
    "CASE k.n WHEN 1 THEN 'sending' WHEN 2 THEN 'submitting' WHEN 3 THEN 'sent' "
    "ELSE 'delivered' END, "
    f"CASE k.n WHEN 1 THEN {_ATTEMPT_SQL} WHEN 2 THEN NULL WHEN 3 THEN {_SENT_SQL} "
    "ELSE m.hist_delivered_detail END "
    "FROM messages m CROSS JOIN (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3 "
    "UNION ALL SELECT 4) k "
    "WHERE CASE k.n WHEN 1 THEN m.hist_sending_at WHEN 2 THEN m.hist_submitting_at "
    "WHEN 3 THEN m.hist_sent_at ELSE m.hist_delivered_at END IS NOT NULL AND "
)
_ORDER = " ORDER BY m.id, k.n"


def sent_detail(gateway: str, modem: str | None) -> str:
    """The detail of a 'sent' row: the gateway, and the modem that sent it."""
    return gateway if modem is None else f"{gateway} via {modem}"


def flush(db: sqlite3.Connection, message_id: int, guard: str = "") -> None:
    """Move the current attempt's routine rows of ``message_id`` into message_history.

    ``guard`` (SQL on ``m``, e.g. ``" AND m.state = 'sent'"``) repeats the
    condition of the UPDATE that then clears them, when that UPDATE may match
    nothing.  The caller clears them (:data:`CLEAR_ATTEMPT`) in the same write.
    """
    db.execute(FLUSH_SQL + "m.id = ?" + guard + _ORDER, (message_id,))


def flush_many_sql(message_ids: Sequence[int]) -> str:
    """The statement of :func:`flush` for several messages (recovery's async
    transaction runs it); ``message_ids`` must not be empty."""
    marks = ",".join(str(int(i)) for i in message_ids)
    return FLUSH_SQL + f"m.id IN ({marks})" + _ORDER


def _row(at: Any, state: str, detail: str | None) -> dict[str, Any]:
    return {"at": at, "state": state, "detail": detail}


def history_of(message: Any, table_rows: Sequence[Any]) -> list[dict[str, Any]]:
    """The whole history of ``message`` (its row, with created_at, origin, state,
    attempts, gateway, modem and the hist_ columns) as the API
    shows it: its explicit rows ``table_rows`` (at, state, detail; in id order)
    between the routine rows kept in its own row."""
    out: list[dict[str, Any]] = []
    if message["hist_queued"] is not None:
        out.append(_row(message["created_at"], message["hist_queued"],
                        f"origin={message['origin']}"))
    out.extend(_row(r["at"], r["state"], r["detail"]) for r in table_rows)
    if message["hist_sending_at"] is not None:
        in_flight = message["state"] in ("sending", "submitting")
        attempt = int(message["attempts"]) + (1 if in_flight else 0)
        out.append(_row(message["hist_sending_at"], "sending", f"attempt {attempt}"))
    if message["hist_submitting_at"] is not None:
        out.append(_row(message["hist_submitting_at"], "submitting", None))
    if message["hist_sent_at"] is not None:
        out.append(_row(message["hist_sent_at"], "sent",
                        sent_detail(message["gateway"], message["modem"])))
    if message["hist_delivered_at"] is not None:
        out.append(_row(message["hist_delivered_at"], "delivered",
                        message["hist_delivered_detail"]))
    return out
