"""smsd.store: the store (SQLite, or PostgreSQL in smsd.store.pg), its migrations and read views.

Every SQL statement of smsd is in this package (tests/test_sql_in_store.py):
the rooms above call the typed functions of its modules, one per concern
(``submits``, ``claims``, ``attempts``, ``recovery``, ``inbound``,
``deliveries``, ``conversations``, ``stats``, ``usage``, ``parts``, ``console``,
``reads``, ``optouts``; docs/internals.md lists them).
``SqlitePartStore`` (inbound multipart parts) lives in ``smsd.store.parts``.
"""

from smsd.store.backends import open_database
from smsd.store.sqlite_io import StoreError
from smsd.store.store import FINAL_STATES, MESSAGE_STATES, Store
from smsd.store.timefmt import from_ts, ts, utcnow
from smsd.store.views import MessageView

__all__ = [
    "FINAL_STATES",
    "MESSAGE_STATES",
    "MessageView",
    "Store",
    "StoreError",
    "from_ts",
    "open_database",
    "ts",
    "utcnow",
]
