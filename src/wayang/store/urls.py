"""Where a store lives: store URLs and the default location.

A store is named by a plain path, ``sqlite:///abs/path`` or ``sqlite:///:memory:`` (SQLite: one
host), or by ``postgresql://user@host:5432/dbname?pool_max=8&schema=wayang`` (PostgreSQL: a
fleet of engines and workers on many hosts sharing one database; ``postgres://`` too). See
:mod:`wayang.store.postgres_connection` for the PostgreSQL URL's parameters.
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
    if is_postgres_url(url):
        # Imported here: psycopg and its pool take a tenth of a second to import, which every
        # command on a SQLite store would otherwise pay.
        from wayang.store.postgres import PostgresStore  # noqa: PLC0415

        return PostgresStore(str(url))
    return SQLiteStore(sqlite_path(url))


def is_postgres_url(url: str | Path) -> bool:
    """Whether ``url`` names a PostgreSQL store (``postgresql://`` or ``postgres://``)."""
    if isinstance(url, Path):
        return False
    scheme, sep, _ = url.partition("://")
    return bool(sep) and scheme.lower() in _POSTGRES_SCHEMES


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
            f"this needs a SQLite store (a file), and {scheme}:// names a PostgreSQL one; "
            "pass a path or sqlite:///abs/path"
        )
    raise StoreError(
        f"unknown store URL scheme {scheme!r} in {_shown(url)!r}: use a path, sqlite:///abs/path, "
        "sqlite:///:memory: or postgresql://user@host:5432/dbname"
    )


def _shown(url: str) -> str:
    """``url`` without a password it may carry (user:password@host)."""
    scheme, _, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    user, at, host = netloc.rpartition("@")
    if at and ":" in user:
        netloc = f"{user.partition(':')[0]}:***@{host}"
    return f"{scheme}://{netloc}{slash}{path}"


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
