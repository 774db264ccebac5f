"""Adding and removing an opt-out by hand (an admin, in the console or the API).

A number is opted out when it texts STOP and back in when it texts START
(smsd.core.inbox writes both, inside the inbound message's transaction).  An
admin may also lift an opt-out, e.g. when the customer asked by phone or an
opt-out came from a test; who did it is logged, since carrier rules make the
customer's STOP the default truth.  An admin may add one too (the customer
asked by phone or e-mail not to be texted): its keyword is ``ADMIN_KEYWORD``,
and, like a STOP, the customer's START lifts it.
"""

from __future__ import annotations

import structlog

from smsd.store.store import Store
from smsd.store.timefmt import ts, utcnow

log = structlog.get_logger(__name__)

# The keyword of an opt-out an admin added (the customer's own are STOP, ...).
ADMIN_KEYWORD = "ADMIN"


async def add_opt_out(store: Store, number: str, did: str, *, by: str) -> bool:
    """Opt ``number`` out of SMS from ``did`` ('' = from every company number);
    False when it already was (the customer's own STOP and its date are kept)."""
    async with store.transaction() as db:
        cur = await db.execute(
            "INSERT INTO opt_outs (number, did, keyword, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (number, did) DO NOTHING",
            (number, did, ADMIN_KEYWORD, ts(utcnow())))
        added = int(cur.rowcount) == 1
    log.info("store.opt_out_added", number=number, did=did, by=by, added=added)
    return added


async def remove_opt_out(store: Store, number: str, did: str | None, *, by: str) -> int:
    """Delete ``number``'s opt-out from ``did`` ('' = the one of an unknown DID), or
    every opt-out of ``number`` when ``did`` is None; the number of rows removed."""
    async with store.transaction() as db:
        if did is None:
            cur = await db.execute("DELETE FROM opt_outs WHERE number = ?", (number,))
        else:
            cur = await db.execute("DELETE FROM opt_outs WHERE number = ? AND did = ?",
                                   (number, did))
        removed = int(cur.rowcount)
    log.info("store.opt_out_removed", number=number, did=did, by=by, removed=removed)
    return removed
