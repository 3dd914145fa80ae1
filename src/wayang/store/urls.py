"""Where a store lives: store URLs and the default location.

A store is named by a plain path, ``sqlite:///abs/path`` or ``sqlite:///:memory:``. PostgreSQL
URLs are recognised only to say that the adapter is not here yet.
"""

from __future__ import annotations

import os
from pathlib import Path

from wayang.store.port import Store, StoreError
from wayang.store.sqlite import SQLiteStore

MEMORY = ":memory:"
_POSTGRES_SCHEMES = ("postgresql", "postgres")


def open_store(url: str | Path) -> Store:
    """Open the store that ``url`` names, creating and migrating it as needed."""
    return SQLiteStore(sqlite_path(url))


def sqlite_path(url: str | Path) -> str:
    """The SQLite path ``url`` names (``:memory:`` for an in-memory store)."""
    if isinstance(url, Path):
        return str(url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url if url == MEMORY else str(Path(url).expanduser())
    if scheme.lower() == "sqlite":
        return _sqlite_url_path(url, rest)
    if scheme.lower() in _POSTGRES_SCHEMES:
        raise StoreError(
            f"{scheme}:// stores are not supported yet: the PostgreSQL adapter arrives in a later "
            "release; use a SQLite path or sqlite:///abs/path for now"
        )
    raise StoreError(
        f"unknown store URL scheme {scheme!r} in {url!r}: use a path, sqlite:///abs/path or "
        "sqlite:///:memory: (PostgreSQL arrives later)"
    )


def _sqlite_url_path(url: str, rest: str) -> str:
    # sqlite:///abs/path: empty host, then the absolute path, slash included.
    if not rest.startswith("/"):
        raise StoreError(
            f"{url!r} names a host; write sqlite:///abs/path (three slashes) for a file"
        )
    if rest == "/" + MEMORY:
        return MEMORY
    if rest == "/":
        raise StoreError(f"{url!r} names no file; write sqlite:///abs/path")
    return rest


def default_store_path() -> Path:
    """``$XDG_STATE_HOME/wayang/wayang.db`` (else ``~/.local/state/…``); makes the folder."""
    state = os.environ.get("XDG_STATE_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(state) if state and Path(state).is_absolute() else Path.home() / ".local" / "state"
    folder = base / "wayang"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "wayang.db"
