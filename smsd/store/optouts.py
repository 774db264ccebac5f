"""Removing an opt-out by hand (an admin, in the console or the API).

A number is opted out when it texts STOP and back in when it texts START
(smsd.core.inbox writes both, inside the inbound message's transaction).  An
admin may also lift an opt-out, e.g. when the customer asked by phone or an
opt-out came from a test; who did it is logged, since carrier rules make the
customer's STOP the default truth.
"""

from __future__ import annotations

import structlog

from smsd.store.store import Store

log = structlog.get_logger(__name__)


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
