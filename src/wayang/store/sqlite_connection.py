"""Opening a SQLite store: connection settings, telling our files from others, migrations.

Order matters. Connection-local settings first; then the file is *identified* with reads only, so
a text file or another program's database is refused before anything is written to it; only then
is it switched to WAL and created or migrated, inside ``BEGIN IMMEDIATE`` so two processes
opening a new file at once do not both create the schema.

A Wayang store is marked with ``PRAGMA application_id`` (SQLite's own slot for "which program
owns this file") and carries its schema version in ``PRAGMA user_version``.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from wayang.store import sql_files
from wayang.store.port import StoreError

DIALECT = "sqlite"
APPLICATION_ID = 0x5779_6E67  # "Wyng"
SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
MIN_SQLITE = (3, 35, 0)  # UPDATE … RETURNING, which claim relies on


def connect(path: str, synchronous: str, busy_timeout_ms: int) -> sqlite3.Connection:
    """Open ``path`` as a Wayang store with an up-to-date schema, or raise :class:`StoreError`."""
    level = _check_settings(synchronous, busy_timeout_ms)
    try:
        # isolation_level=None: the module opens no transactions of its own; every write says
        # BEGIN IMMEDIATE itself. check_same_thread=False: the store serializes use with a lock.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise translate(exc, path) from exc
    try:
        _configure(conn, level, busy_timeout_ms)
        ensure_schema(conn, path)
    except sqlite3.Error as exc:
        conn.close()
        raise translate(exc, path) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _check_settings(synchronous: str, busy_timeout_ms: int) -> str:
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        wanted = ".".join(map(str, MIN_SQLITE))
        raise StoreError(
            f"SQLite {sqlite3.sqlite_version} is too old for the Wayang store (it needs {wanted} "
            "or newer for UPDATE … RETURNING); use a Python built with a newer SQLite"
        )
    level = synchronous.upper()
    if level not in SYNCHRONOUS_LEVELS:
        raise StoreError(
            f"synchronous={synchronous!r} is not a SQLite level; use one of "
            + ", ".join(SYNCHRONOUS_LEVELS)
        )
    if busy_timeout_ms < 0:
        raise StoreError(f"busy_timeout_ms must be 0 or more, not {busy_timeout_ms}")
    return level


def _configure(conn: sqlite3.Connection, synchronous: str, busy_timeout_ms: int) -> None:
    # PRAGMA values cannot be bound parameters; both were validated in _check_settings.
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    # Claim sorts a few candidate rows in a temporary b-tree; with temp_store=FILE SQLite makes
    # a temporary file for it on every claim, which made a claim ten times slower.
    conn.execute("PRAGMA temp_store = MEMORY")


@dataclass(frozen=True, slots=True)
class Schema:
    """What a store is built from: the full schema for new files, migrations for older ones."""

    sql: str
    migrations: tuple[sql_files.Migration, ...]

    @property
    def version(self) -> int:
        return len(self.migrations)


def packaged_schema() -> Schema:
    """The schema and migrations shipped in ``wayang/store/sql/sqlite/``."""
    return Schema(sql_files.schema(DIALECT), sql_files.migrations(DIALECT))


def ensure_schema(conn: sqlite3.Connection, path: str, schema: Schema | None = None) -> None:
    """Create the schema in a new file, migrate an older one, refuse a newer or foreign one.

    ``schema`` defaults to the packaged one; tests pass their own to exercise upgrades.
    """
    schema = schema or packaged_schema()
    # One read transaction: identity and table list must come from the same snapshot, or a
    # schema created by another process in between makes a new file look like a foreign one.
    conn.execute("BEGIN")
    try:
        version = _current_version(conn, path, schema.version)
    finally:
        conn.execute("COMMIT")
    _enable_wal(conn)
    if version == schema.version:
        return  # the common case: an up-to-date store takes no write lock on open
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: another process may have migrated meanwhile.
        _upgrade(conn, _current_version(conn, path, schema.version), schema)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL, which lets readers go on while one writer commits.

    Switching needs a moment of exclusive access, and SQLite answers "locked" at once instead of
    calling the busy handler while another process is creating the schema; so wait here, within
    the busy timeout. A file already in WAL needs no switch (an in-memory one answers "memory").
    """
    deadline = time.monotonic() + conn.execute("PRAGMA busy_timeout").fetchone()[0] / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY")
            if not busy or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


def _current_version(conn: sqlite3.Connection, path: str, latest: int) -> int:
    """The schema version of the store at ``path``: 0 for a new file; raises if it is not ours."""
    queries = sql_files.queries(DIALECT)
    application_id, version = conn.execute(queries["store_identity"]).fetchone()
    if application_id == APPLICATION_ID:
        if version > latest:
            raise StoreError(
                f"the store {path} was written by a newer Wayang (schema {version}, this one "
                f"knows {latest}); upgrade wayang"
            )
        return int(version)
    tables = [name for (name,) in conn.execute(queries["list_tables"])]
    if application_id == 0 and version == 0 and not tables:
        return 0
    raise StoreError(_foreign_message(path, application_id, tables))


def _foreign_message(path: str, application_id: int, tables: list[str]) -> str:
    shown = ", ".join(tables[:5]) + (", …" if len(tables) > 5 else "")
    what = f"tables: {shown}" if tables else f"application id {application_id:#x}"
    return (
        f"{path} is a SQLite database from another program ({what}), not a Wayang store; "
        "leave it alone and point Wayang at a new file"
    )


def _upgrade(conn: sqlite3.Connection, version: int, schema: Schema) -> None:
    if version == 0:
        run_script(conn, schema.sql)
    else:
        for migration in schema.migrations[version:]:
            run_script(conn, migration.sql)
    # Integers formatted by us, not user text: PRAGMA values cannot be bound parameters.
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {schema.version}")


def run_script(conn: sqlite3.Connection, script: str) -> None:
    """Run each statement of ``script`` inside the caller's transaction.

    Not ``executescript``: it commits any open transaction first, which would let a half-applied
    migration stick and let two processes race to create the schema.
    """
    for statement in split_statements(script):
        conn.execute(statement)


def split_statements(script: str) -> list[str]:
    """Split a script into whole statements (SQLite's own parser decides where one ends)."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip() and not _only_comments(pending):
        raise StoreError(f"incomplete SQL statement at the end of a script: {pending.strip()!r}")
    return statements


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in text.splitlines())


# SQLite's error names (extended codes start with the primary one) and what to tell the user.
_MESSAGES = (
    (
        "SQLITE_NOTADB",
        "{path} is not a SQLite database, so it is not a Wayang store; "
        "move it away or point Wayang at another file",
    ),
    (
        "SQLITE_CORRUPT",
        "the store {path} is damaged ({exc}); restore it from a backup or start a new file",
    ),
    (
        "SQLITE_BUSY",
        "the store {path} is busy: another process held its write lock past the busy timeout; "
        "try again, or raise busy_timeout_ms",
    ),
    ("SQLITE_LOCKED", "the store {path} is locked by another connection ({exc}); try again"),
    (
        "SQLITE_CANTOPEN",
        "cannot open the store {path}: check that its folder exists and is writable",
    ),
    ("SQLITE_READONLY", "the store {path} is read-only here: check the file's permissions"),
    ("SQLITE_FULL", "the disk holding the store {path} is full: free some space"),
    ("SQLITE_CONSTRAINT", "the store {path} refused a write ({exc}): an id used twice?"),
)


def translate(exc: sqlite3.Error, path: str) -> StoreError:
    """Turn a driver error into a :class:`StoreError` that says what happened and what to do."""
    code = getattr(exc, "sqlite_errorname", None) or ""
    for prefix, template in _MESSAGES:
        if code.startswith(prefix):
            return StoreError(template.format(path=path, exc=exc))
    if isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc):
        return StoreError(f"the store {path} is closed")
    return StoreError(f"the store {path} failed: {exc}")
