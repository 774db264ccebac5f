"""smsd.store: the store (SQLite, or PostgreSQL in smsd.store.pg), its migrations and read views.

``SqlitePartStore`` (inbound multipart parts) lives in ``smsd.store.parts``.
"""

from smsd.store.backends import open_database
from smsd.store.store import FINAL_STATES, MESSAGE_STATES, Store, StoreError
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
