"""Opening a PostgreSQL store: the URL and its own parameters, the pool, migrations, errors.

A store is named by a libpq URL plus two parameters of Wayang's own, taken out of the query
before libpq sees it::

    postgresql://user:password@host:5432/dbname?pool_max=8&schema=wayang&sslmode=require

``pool_max`` bounds the connections this process opens (default 8; the pool keeps one open and
grows on demand). ``schema`` puts the store in that schema (created when missing): every pooled
connection starts with ``search_path`` set to it, through libpq's ``options``; libpq's own
``options=-csearch_path=…`` does the same. Without either the store lives in the first schema
of the server's search path (``public``, usually).

Order matters, as for SQLite. One plain connection first: it reports an unreachable server, a
refused login or a missing database as a :class:`StoreError` that says where and what to do. It
*identifies* the schema with reads only, so another program's tables are refused before anything
is written; then creates or migrates it, inside one transaction that holds an advisory lock on
the schema, so processes opening a new store at once create it once. Only then is the pool
opened. A store carries its schema version in its ``wayang_schema`` table.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from wayang.store import rows, sql_files
from wayang.store.port import ConcurrencyError, LogLine, StoreError, StoreUnavailableError

DIALECT = "postgresql"
SCHEMES = ("postgresql", "postgres")
DEFAULT_POOL_MAX = 8
CONNECT_TIMEOUT_S = 10
APPLICATION_NAME = "wayang"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# ``:name`` parameters, not the second half of a ``::type`` cast nor a word's inner colon.
_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")

Connection = psycopg.Connection[tuple[Any, ...]]
Pool = ConnectionPool[Connection]


# ------------------------------------------------------------------------------------ URLs


@dataclass(frozen=True, slots=True)
class Target:
    """Where a PostgreSQL store lives, as parsed from its URL (no password kept outside
    ``conninfo``)."""

    conninfo: str
    where: str  # host:port/dbname, for messages
    pool_max: int
    schema: str | None  # from ``?schema=``; None means the server's search path decides

    def __str__(self) -> str:
        return self.where + (f" (schema {self.schema})" if self.schema else "")


def parse_url(url: str) -> Target:
    """Split a store URL into libpq's connection string and Wayang's own parameters."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise StoreError(f"{_safe(url)!r} is not a postgresql:// URL")
    own: dict[str, str] = {}
    kept: list[str] = []
    # Split by hand: libpq reads "+" as itself, not as a space, so the rest of the query is
    # passed on exactly as written.
    for item in filter(None, parts.query.split("&")):
        key, _, value = item.partition("=")
        if unquote(key) in ("pool_max", "schema"):
            own[unquote(key)] = unquote(value)
        else:
            kept.append(item)
    libpq_url = urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join(kept), ""))
    try:
        params = conninfo_to_dict(libpq_url)
    except psycopg.ProgrammingError as exc:
        raise StoreError(
            f"{_safe(url)!r} is not a PostgreSQL URL libpq accepts ({_first_line(exc)}); write "
            "postgresql://user@host:5432/dbname?pool_max=8&schema=wayang"
        ) from exc
    ports = str(params.get("port") or "5432").split(",")
    if not all(port.isdigit() for port in ports):
        raise StoreError(
            f"{_safe(url)!r} names port {params['port']!r}, which is not a number; write "
            "postgresql://user@host:5432/dbname"
        )
    schema = _schema_param(own.get("schema"), url)
    extra: dict[str, Any] = {
        "application_name": params.get("application_name") or APPLICATION_NAME,
        "connect_timeout": params.get("connect_timeout") or CONNECT_TIMEOUT_S,
    }
    if schema is not None:
        # libpq's options: settings the server applies to each new session, before any query.
        extra["options"] = f"{params.get('options') or ''} -c search_path={schema}".strip()
    return Target(
        conninfo=make_conninfo(libpq_url, **extra),
        where=_where(params),
        pool_max=_pool_max_param(own.get("pool_max"), url),
        schema=schema,
    )


def _schema_param(value: str | None, url: str) -> str | None:
    if value is None:
        return None
    if not _SCHEMA_NAME.match(value):
        raise StoreError(
            f"schema={value!r} in {_safe(url)!r} is not a plain schema name: use lower-case "
            "letters, digits and _ (at most 63), starting with a letter or _"
        )
    return value


def _pool_max_param(value: str | None, url: str) -> int:
    if value is None:
        return DEFAULT_POOL_MAX
    if not value.isdigit() or int(value) < 1:
        raise StoreError(
            f"pool_max={value!r} in {_safe(url)!r} must be a whole number of connections, 1 or "
            f"more (default {DEFAULT_POOL_MAX})"
        )
    return int(value)


def _where(params: Mapping[str, Any]) -> str:
    host = params.get("host") or os.environ.get("PGHOST") or "localhost"
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    user = params.get("user") or os.environ.get("PGUSER")
    dbname = params.get("dbname") or os.environ.get("PGDATABASE") or user or "(default)"
    return f"{host}:{port}/{dbname}"


def _safe(url: str) -> str:
    """``url`` without its password, fit to show."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# ------------------------------------------------------------------------------------ SQL


def to_pyformat(text: str) -> str:
    """A query written with ``:name`` parameters in psycopg's ``%(name)s`` style."""
    return _PARAMETER.sub(r"%(\1)s", text.replace("%", "%%"))


@cache
def queries() -> Mapping[str, str]:
    """The named queries of the PostgreSQL store, ready for psycopg."""
    found = sql_files.queries(DIALECT)
    return MappingProxyType({name: to_pyformat(text) for name, text in found.items()})


def lock_key(*parts: str) -> int:
    """A 64-bit advisory lock key for ``parts`` (a purpose, a schema, maybe a run).

    Advisory locks are per database, so keys name the schema: stores in different schemas of
    one database never wait on each other. A hash collision only makes two locks one.
    """
    text = "\x1f".join(("wayang", *parts)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big", signed=True)


def log_params(line: LogLine) -> rows.Params:
    """A log line's row. PostgreSQL text cannot hold NUL, which captured output may: it is
    stored as U+FFFD instead (JSON payloads keep theirs, escaped as \\u0000)."""
    return {**rows.log_params(line), "line": line.line.replace("\x00", "\ufffd")}


@dataclass(frozen=True, slots=True)
class Schema:
    """What a store is built from: the full schema for new stores, migrations for older ones."""

    sql: str
    migrations: tuple[sql_files.Migration, ...]

    @property
    def version(self) -> int:
        return len(self.migrations)


def packaged_schema() -> Schema:
    """The schema and migrations shipped in ``wayang/store/sql/postgresql/``."""
    return Schema(sql_files.schema(DIALECT), sql_files.migrations(DIALECT))


# ------------------------------------------------------------------------------------ opening


def connect(target: Target) -> Connection:
    """One plain connection (autocommit), or a :class:`StoreError` saying what went wrong."""
    try:
        return psycopg.connect(target.conninfo, autocommit=True)
    except psycopg.Error as exc:
        raise connect_error(exc, target) from exc


def prepare(target: Target, schema: Schema | None = None) -> str:
    """Create or migrate the store at ``target``; return the schema it lives in."""
    conn = connect(target)
    try:
        return ensure_schema(conn, target, schema)
    except psycopg.Error as exc:
        raise translate(exc, str(target)) from exc
    finally:
        conn.close()


def open_pool(target: Target) -> Pool:
    """The store's bounded pool: one connection kept, up to ``pool_max`` on demand."""
    pool: Pool = ConnectionPool(
        target.conninfo,
        min_size=1,
        max_size=target.pool_max,
        kwargs={"autocommit": True},
        open=False,
        name=f"wayang {target}",
    )
    try:
        pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
    except PoolTimeout as exc:
        pool.close()
        raise StoreError(
            f"could not open connections to PostgreSQL at {target} within {CONNECT_TIMEOUT_S} "
            "s: check that the server is up and accepts more connections"
        ) from exc
    return pool


def ensure_schema(conn: Connection, target: Target, schema: Schema | None = None) -> str:
    """Create the schema in a new store, migrate an older one, refuse a newer or foreign one.

    ``schema`` defaults to the packaged one; tests pass their own to exercise upgrades. Returns
    the name of the schema the store lives in.
    """
    schema = schema or packaged_schema()
    name = target.schema or conn.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
    if name is None:
        raise StoreError(
            f"PostgreSQL at {target} has no schema on its search path to hold the store: "
            "add ?schema=wayang to the URL"
        )
    if _current_version(conn, name, target, schema.version) == schema.version:
        return str(name)  # the common case: an up-to-date store takes no lock on open
    with conn.transaction():
        # Every process opening this store waits here for the one migrating it, then reads the
        # version again: the lock is released by the COMMIT that makes the migration visible.
        conn.execute(queries()["take_locks"], {"keys": [lock_key("migrate", name)]})
        if not conn.execute(queries()["schema_exists"], {"schema": name}).fetchone():
            # Only when missing: CREATE SCHEMA needs a right on the database the user may lack.
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        _upgrade(conn, _current_version(conn, name, target, schema.version), schema)
    return str(name)


def _current_version(conn: Connection, name: str, target: Target, latest: int) -> int:
    """The schema version of the store: 0 for an empty schema; raises if it is not ours."""
    tables = [row[0] for row in conn.execute(queries()["list_tables"], {"schema": name})]
    if "wayang_schema" in tables:
        version = int(conn.execute(queries()["schema_version"]).fetchone()[0])  # type: ignore[index]
        if version > latest:
            raise StoreError(
                f"the store at {target} was written by a newer Wayang (schema {version}, this "
                f"one knows {latest}); upgrade wayang"
            )
        return version
    if not tables:
        return 0
    shown = ", ".join(tables[:5]) + (", …" if len(tables) > 5 else "")
    raise StoreError(
        f"schema {name} of PostgreSQL at {target.where} holds another program's tables "
        f"({shown}), not a Wayang store; leave it alone and give Wayang a schema of its own "
        "(?schema=wayang in the URL) or another database"
    )


def _upgrade(conn: Connection, version: int, schema: Schema) -> None:
    """Bring the store from ``version`` to the latest, inside the caller's transaction.

    DDL is transactional in PostgreSQL: a migration that fails leaves nothing behind.
    """
    run = queries()
    if version == 0:
        conn.execute(run["create_schema_table"])
        conn.execute(schema.sql.encode())
        conn.execute(run["record_version"], {"version": schema.version})
        return
    for migration in schema.migrations[version:]:
        conn.execute(migration.sql.encode())
        conn.execute(run["record_version"], {"version": migration.version})


# ------------------------------------------------------------------------------------ errors


def connect_error(exc: psycopg.Error, target: Target) -> StoreError:
    """A failed first connection, said the way a user can act on."""
    detail = _first_line(exc)
    detail = re.sub(r"^connection failed: (connection to server at .*? failed: )?", "", detail)
    detail = re.sub(r"^FATAL:\s+", "", detail)
    where = target.where
    if "does not exist" in detail and detail.startswith("database"):
        dbname = where.rpartition("/")[2]
        return StoreError(
            f"PostgreSQL at {where} has no database {dbname} ({detail}): create it "
            f"(createdb {dbname}, or CREATE DATABASE {dbname}) or fix the URL"
        )
    if "does not exist" in detail and detail.startswith("role"):
        return StoreError(
            f"PostgreSQL at {where} refused the login ({detail}): create that user "
            "(CREATE ROLE … LOGIN) or put another one in the URL"
        )
    if "authentication" in detail or "password" in detail or "pg_hba.conf" in detail:
        return StoreError(
            f"PostgreSQL at {where} refused the login ({detail}): check the user and password "
            "in the URL (or ~/.pgpass) and the server's pg_hba.conf"
        )
    if "resolve host" in detail or "translate host name" in detail:
        return StoreError(
            f"cannot reach PostgreSQL at {where}: no such host ({detail}); check the host in "
            "the URL"
        )
    if isinstance(exc, psycopg.OperationalError):
        return StoreError(
            f"cannot reach PostgreSQL at {where} ({detail}): is the server running and "
            "listening there? Check the host and port in the URL"
        )
    return StoreError(f"cannot connect to PostgreSQL at {where}: {detail}")


# What advance_runs (schema.sql) raises: a run not at the version a commit expected, or no run.
STALE_RUN_VERSION = "WYV01"
_RUN_VERSION_STATES = (STALE_RUN_VERSION, "WYR01")

# Driver and pool errors, most specific first, and what to tell the user.
_MESSAGES: tuple[tuple[type[BaseException], str], ...] = (
    (PoolClosed, "the store {where} is closed"),
    (
        PoolTimeout,
        "no connection to the store {where} came free in time ({detail}): every pooled "
        "connection is busy or the server is unreachable; raise ?pool_max= or check the server",
    ),
    (
        psycopg.errors.IntegrityError,
        "the store {where} refused a write ({detail}): an id used twice?",
    ),
    (
        psycopg.errors.InsufficientPrivilege,
        "the store {where} refused ({detail}): its user needs the right to create tables in the "
        "schema (GRANT CREATE ON SCHEMA … TO …), or use ?schema= for one it owns",
    ),
    (
        psycopg.OperationalError,
        "lost the connection to the store {where} ({detail}): the server went away or "
        "restarted; try again once it is back",
    ),
)
_IN_DOUBT = (
    " The connection was lost while a transaction was committing: it may or may not have "
    "been committed."
)
# SQLSTATEs of a server going away or not taking connections now (besides class 08, connection
# exceptions): an administrator's or a crash's shutdown, a server starting or stopping, a server
# out of connection slots.
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the server cannot be reached now, so the same call may succeed
    later: a lost or refused connection, a server shutting down or starting, no pooled
    connection in time. Anything else (a constraint, a syntax error, a cancelled statement, a
    closed store) would fail again."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, PoolClosed) or not isinstance(exc, psycopg.OperationalError):
        return False
    # Client-side failures (connection refused, server closed the connection) carry no state.
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _UNAVAILABLE_STATES


def translate(exc: BaseException, where: str, *, committing: bool = False) -> StoreError:
    """Turn a driver or pool error into a :class:`StoreError` that says what happened: a
    :class:`StoreUnavailableError` when trying again later may work, in doubt when the
    connection was lost while ``committing``."""
    if isinstance(exc, psycopg.Error) and exc.sqlstate in _RUN_VERSION_STATES:
        # advance_runs refused a group commit: its message is the user's, its detail the run
        message, run_id = exc.diag.message_primary or "", exc.diag.message_detail or ""
        if exc.sqlstate == STALE_RUN_VERSION:
            return ConcurrencyError(message, run_id)
        return StoreError(message)
    detail = _first_line(exc)
    message = next(
        (template for kind, template in _MESSAGES if isinstance(exc, kind)),
        "the store {where} failed: {detail}",
    ).format(where=where, detail=detail)
    if not unavailable(exc):
        return StoreError(message)
    return StoreUnavailableError(message + (_IN_DOUBT if committing else ""), in_doubt=committing)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip()
