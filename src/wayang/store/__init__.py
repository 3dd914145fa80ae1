"""Durable state: the store port and its adapters (SQLite now, PostgreSQL for fleets).

Code that needs a store depends on :class:`Store` from :mod:`wayang.store.port` and gets a concrete
one from :func:`open_store`; only the composition root names an adapter.
"""

from wayang.store.port import ConcurrencyError, Store, StoreError, StoreUnavailableError
from wayang.store.sqlite import SQLiteStore
from wayang.store.urls import default_store_path, open_store

__all__ = [
    "ConcurrencyError",
    "SQLiteStore",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "default_store_path",
    "open_store",
]
