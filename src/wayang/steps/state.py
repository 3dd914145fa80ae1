"""State for event steps: ``ctx.state``, a JSON key-value store split into groups.

Handlers use the Motia 0.x Python API unmodified::

    await ctx.state.set(trace_id, "order", {"id": 1})   # returns the value as stored
    await ctx.state.get(trace_id, "order")              # the value, or None
    await ctx.state.delete(trace_id, "order")           # the deleted value, or None
    await ctx.state.get_group(trace_id)                 # every value of the group, in key order
    await ctx.state.clear(trace_id)                     # empties that group only

A group is any string (usually the trace id). Values are JSON values: dicts, lists, strings,
numbers, booleans and None; a pydantic model is stored as its ``model_dump(mode="json")``. What
``get`` returns is always a fresh decoded copy, never the object that was set. A group exists
while it holds at least one key: :meth:`StateAdapter.groups` (for the Workbench state viewer)
lists exactly those.

Three adapters pass one contract suite (``tests/steps/test_state_contract.py``):

``file`` (:class:`FileState`)
    The default for development: one JSON file per group under the project's ``.wayang/state/``.
    Writes replace the file atomically, under an ``flock`` on a lock file per group, so several
    processes may share the folder. All disk work runs in a thread, never on the event loop.
``store`` (:class:`StoreState`)
    The engine's store (its key-value table, namespace ``state:<group>``); the default for
    ``wayang server``.
``redis`` (:class:`RedisState`)
    A Redis server: one hash per group, plus a set naming the groups.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import orjson
import redis
import redis.asyncio as aioredis
from pydantic import BaseModel
from redis.exceptions import RedisError

from wayang.errors import UsageError, WayangError
from wayang.files import write_atomic

T = TypeVar("T")

STATE_KINDS: Final = ("file", "store", "redis")
STATE_DIR: Final = Path(".wayang") / "state"
DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"
DEFAULT_REDIS_PREFIX: Final = "wayang:state:"
STORE_NAMESPACE_PREFIX: Final = "state:"
START_REDIS: Final = (
    'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no'
)
REDIS_CONNECT_TIMEOUT_S: Final = 2.0


class StateError(WayangError):
    """State cannot do what was asked: a damaged state file, an unreachable Redis."""


class StateValueError(StateError, TypeError):
    """A value given to ``state.set`` is not a JSON value (or a name is not a string)."""


class StateAdapter(Protocol):
    """What ``ctx.state`` is: the Motia 0.x state API plus what tools need around it."""

    async def get(self, group_id: str, key: str) -> Any:
        """The value under ``key`` in ``group_id``, or None."""
        ...

    async def set(self, group_id: str, key: str, value: Any) -> Any:
        """Store ``value`` (a JSON value or pydantic model); return it as stored."""
        ...

    async def delete(self, group_id: str, key: str) -> Any:
        """Remove ``key``; return the value it held, or None."""
        ...

    async def get_group(self, group_id: str) -> list[Any]:
        """Every value in ``group_id``, in key order; [] for an empty group."""
        ...

    async def clear(self, group_id: str) -> None:
        """Remove every key of ``group_id`` (other groups are untouched)."""
        ...

    async def groups(self) -> list[str]:
        """The groups holding at least one key, sorted."""
        ...

    async def close(self) -> None:
        """Release connections; the adapter is not used afterwards."""
        ...


# ------------------------------------------------------------------------------------ values


def _pydantic_default(obj: object) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    raise TypeError(f"a value of type {type(obj).__qualname__!r} is not JSON")


def check_names(group_id: object, *keys: object) -> None:
    """Raise :class:`StateValueError` unless the group id and keys are valid strings."""
    for what, name in (("group id", group_id), *(("key", key) for key in keys)):
        if not isinstance(name, str):
            raise StateValueError(f"a state {what} must be a string, not {type(name).__name__}")
        try:
            name.encode()
        except UnicodeEncodeError as exc:
            raise StateValueError(f"the state {what} {name!r} is not valid text: {exc}") from exc


def encode_value(group_id: str, key: str, value: Any) -> tuple[bytes, Any]:
    """``value`` as JSON bytes and as the JSON value a later ``get`` returns.

    Raises :class:`StateValueError` naming the group, the key and what is wrong.
    """
    check_names(group_id, key)
    try:
        encoded = orjson.dumps(value, default=_pydantic_default)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        reason = str(exc.__cause__ or exc)
        raise StateValueError(
            f"cannot store key {key!r} of state group {group_id!r}: {reason}; state values "
            "must be dicts, lists, strings, numbers, booleans, None or pydantic models"
        ) from exc
    return encoded, orjson.loads(encoded)


def _in_key_order(items: dict[str, Any]) -> list[Any]:
    return [items[key] for key in sorted(items)]


# ------------------------------------------------------------------------------------ file

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_READABLE_CHARS = 40


def group_file_stem(group_id: str) -> str:
    """A file name for ``group_id``: a readable part plus a hash, safe on every file system.

    The hash tells apart groups whose readable parts agree (``a/b`` and ``a_b``, or names that
    differ only in case on a case-insensitive disk); the group id itself is kept inside the file.
    """
    digest = hashlib.sha256(group_id.encode()).hexdigest()[:20]
    readable = _UNSAFE.sub("_", group_id)[:_READABLE_CHARS].strip("._")
    return f"{readable}-{digest}" if readable else digest


class FileState:
    """State in one JSON file per group under ``root`` (the project's ``.wayang/state/``).

    A group's file holds ``{"group": id, "values": {key: value}}``; it is deleted when its last
    key goes. A write takes an exclusive ``flock`` on the group's lock file, reads the file,
    changes it and replaces it atomically (temporary file, fsync, ``os.replace``), so processes
    sharing the folder never lose each other's writes. Reads take no lock: a replaced file is
    seen whole or not at all. Every disk access runs in a thread.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"FileState({str(self.root)!r})"

    async def get(self, group_id: str, key: str) -> Any:
        check_names(group_id, key)
        values = await asyncio.to_thread(self._read, group_id)
        return values.get(key)

    async def set(self, group_id: str, key: str, value: Any) -> Any:
        _, stored = encode_value(group_id, key, value)
        await asyncio.to_thread(self._set, group_id, key, stored)
        return stored

    async def delete(self, group_id: str, key: str) -> Any:
        check_names(group_id, key)
        return await asyncio.to_thread(self._delete, group_id, key)

    async def get_group(self, group_id: str) -> list[Any]:
        check_names(group_id)
        return _in_key_order(await asyncio.to_thread(self._read, group_id))

    async def clear(self, group_id: str) -> None:
        check_names(group_id)
        await asyncio.to_thread(self._clear, group_id)

    async def groups(self) -> list[str]:
        return await asyncio.to_thread(self._groups)

    async def close(self) -> None:
        """Nothing to release: files are opened and closed by each call."""

    # -------------------------------------------------------------- on the worker thread

    def _path(self, group_id: str, suffix: str = ".json") -> Path:
        return self.root / (group_file_stem(group_id) + suffix)

    @contextmanager
    def _locked(self, group_id: str) -> Iterator[None]:
        """Hold the group's lock (an exclusive ``flock``, released when the file closes)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path(group_id, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self, group_id: str) -> dict[str, Any]:
        path = self._path(group_id)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return {}
        stored_id, values = _parse_group_file(path, raw)
        if stored_id != group_id:
            raise StateError(
                f"the state file {path} belongs to group {stored_id!r}, not {group_id!r}; "
                "it was renamed or copied by hand: move it away"
            )
        return values

    def _write(self, group_id: str, values: dict[str, Any]) -> None:
        path = self._path(group_id)
        if not values:
            path.unlink(missing_ok=True)
            return
        data = orjson.dumps({"group": group_id, "values": values}, option=orjson.OPT_INDENT_2)
        write_atomic(path, data, durable_rename=True)

    def _set(self, group_id: str, key: str, value: Any) -> None:
        with self._locked(group_id):
            values = self._read(group_id)
            values[key] = value
            self._write(group_id, values)

    def _delete(self, group_id: str, key: str) -> Any:
        with self._locked(group_id):
            values = self._read(group_id)
            if key not in values:
                return None
            old = values.pop(key)
            self._write(group_id, values)
            return old

    def _clear(self, group_id: str) -> None:
        with self._locked(group_id):
            self._path(group_id).unlink(missing_ok=True)

    def _groups(self) -> list[str]:
        found: list[str] = []
        for path in self.root.glob("*.json"):
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                continue  # its last key was deleted meanwhile
            group_id, values = _parse_group_file(path, raw)
            if values:
                found.append(group_id)
        return sorted(found)


def _parse_group_file(path: Path, raw: bytes) -> tuple[str, dict[str, Any]]:
    """The group id and values in a state file; :class:`StateError` if it is damaged."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise StateError(f"the state file {path} is damaged ({exc}); fix or delete it") from exc
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("group"), str)
        or not isinstance(data.get("values"), dict)
    ):
        raise StateError(
            f'the state file {path} is not a Wayang state file (it needs a "group" string and '
            'a "values" object); fix or delete it'
        )
    return data["group"], data["values"]


# ------------------------------------------------------------------------------------ store


class KeyValueStore(Protocol):
    """The part of the store port (``wayang.store.port.Store``) that state uses."""

    def kv_get(self, namespace: str, key: str) -> Any: ...
    def kv_set(self, namespace: str, key: str, value: Any) -> None: ...
    def kv_delete(self, namespace: str, key: str) -> None: ...
    def kv_scan(self, namespace: str) -> dict[str, Any]: ...
    def kv_namespaces(self, prefix: str) -> list[str]: ...


StoreCall = Callable[..., Awaitable[Any]]


class StoreState:
    """State in the engine's store: key-value namespace ``state:<group>``, one row per key.

    ``call(fn, *args)`` runs one store function off the event loop; pass the engine's committer
    ``call`` so state writes go through its writer thread, in order with its commits. The default,
    :func:`asyncio.to_thread`, suits :class:`~wayang.store.sqlite.SQLiteStore`, whose connection
    may be used from any thread (it serializes calls with a lock). ``delete`` and ``clear`` are
    each one ``call`` of several store calls: atomic against other work on the same writer thread,
    not against another process writing the same group. The store belongs to the caller:
    :meth:`close` leaves it open.
    """

    def __init__(
        self,
        store: KeyValueStore,
        call: StoreCall | None = None,
        *,
        prefix: str = STORE_NAMESPACE_PREFIX,
    ) -> None:
        self.store = store
        self.prefix = prefix
        self._call: StoreCall = call or asyncio.to_thread

    def __repr__(self) -> str:
        return f"StoreState({self.store!r})"

    def _namespace(self, group_id: str) -> str:
        return self.prefix + group_id

    async def get(self, group_id: str, key: str) -> Any:
        check_names(group_id, key)
        return await self._call(self.store.kv_get, self._namespace(group_id), key)

    async def set(self, group_id: str, key: str, value: Any) -> Any:
        _, stored = encode_value(group_id, key, value)
        await self._call(self.store.kv_set, self._namespace(group_id), key, stored)
        return stored

    async def delete(self, group_id: str, key: str) -> Any:
        check_names(group_id, key)
        return await self._call(self._pop, self._namespace(group_id), key)

    async def get_group(self, group_id: str) -> list[Any]:
        check_names(group_id)
        found: dict[str, Any] = await self._call(self.store.kv_scan, self._namespace(group_id))
        return _in_key_order(found)

    async def clear(self, group_id: str) -> None:
        check_names(group_id)
        await self._call(self._clear, self._namespace(group_id))

    async def groups(self) -> list[str]:
        found: list[str] = await self._call(self.store.kv_namespaces, self.prefix)
        return sorted(namespace[len(self.prefix) :] for namespace in found)

    async def close(self) -> None:
        """Nothing to release: the store belongs to the caller."""

    def _pop(self, namespace: str, key: str) -> Any:
        old = self.store.kv_get(namespace, key)
        self.store.kv_delete(namespace, key)
        return old

    def _clear(self, namespace: str) -> None:
        for key in self.store.kv_scan(namespace):
            self.store.kv_delete(namespace, key)


# ------------------------------------------------------------------------------------ redis

# Atomic: HDEL and, when that empties the hash, dropping the group from the set of groups.
_DELETE_SCRIPT = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  redis.call('HDEL', KEYS[1], ARGV[1])
  if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('SREM', KEYS[2], ARGV[2])
  end
end
return old
"""


def redact_url(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def unreachable_message(url: str, exc: BaseException) -> str:
    return (
        f"cannot reach Redis at {redact_url(url)} ({exc}); start a local one with: {START_REDIS}"
        " (or point the state adapter at another URL)"
    )


def _text(name: bytes | str) -> str:
    return name.decode() if isinstance(name, bytes) else name


class RedisState:
    """State in Redis: hash ``<prefix>g:<group>`` maps keys to JSON, set ``<prefix>groups``.

    Writes keep the two consistent atomically (``MULTI`` for set and clear, a Lua script for
    delete), so :meth:`groups` is one ``SMEMBERS``. The connection opens on first use, bound
    to the running event loop; :meth:`close` must be awaited on that loop.
    """

    def __init__(self, url: str = DEFAULT_REDIS_URL, prefix: str = DEFAULT_REDIS_PREFIX) -> None:
        self.url = url
        self.prefix = prefix
        self._groups_key = f"{prefix}groups"
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S
        )
        self._delete_script = self._client.register_script(_DELETE_SCRIPT)

    def __repr__(self) -> str:
        return f"RedisState({redact_url(self.url)!r}, prefix={self.prefix!r})"

    def _hash(self, group_id: str) -> str:
        return f"{self.prefix}g:{group_id}"

    async def _run(self, operation: Awaitable[T]) -> T:
        """Await a Redis call; an unreachable server becomes a :class:`StateError`."""
        try:
            return await operation
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StateError(unreachable_message(self.url, exc)) from exc

    async def get(self, group_id: str, key: str) -> Any:
        check_names(group_id, key)
        raw: bytes | str | None = await self._run(self._client.hget(self._hash(group_id), key))
        return None if raw is None else orjson.loads(raw)

    async def set(self, group_id: str, key: str, value: Any) -> Any:
        encoded, stored = encode_value(group_id, key, value)
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(self._hash(group_id), key, encoded)
        pipe.sadd(self._groups_key, group_id)
        await self._run(pipe.execute())
        return stored

    async def delete(self, group_id: str, key: str) -> Any:
        check_names(group_id, key)
        keys = [self._hash(group_id), self._groups_key]
        raw: bytes | None = await self._run(self._delete_script(keys=keys, args=[key, group_id]))
        return None if raw is None else orjson.loads(raw)

    async def get_group(self, group_id: str) -> list[Any]:
        check_names(group_id)
        found = await self._run(self._client.hgetall(self._hash(group_id)))
        return _in_key_order({_text(key): orjson.loads(raw) for key, raw in found.items()})

    async def clear(self, group_id: str) -> None:
        check_names(group_id)
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(self._hash(group_id))
        pipe.srem(self._groups_key, group_id)
        await self._run(pipe.execute())

    async def groups(self) -> list[str]:
        members = await self._run(self._client.smembers(self._groups_key))
        return sorted(_text(member) for member in members)

    async def ping(self) -> None:
        """Check the server answers; :class:`StateError` with how to start one if not."""
        await self._run(self._client.ping())

    async def close(self) -> None:
        await self._client.aclose()


def check_redis(url: str) -> None:
    """Raise :class:`UsageError` unless a Redis server answers at ``url`` (a blocking ping)."""
    try:
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
            socket_timeout=REDIS_CONNECT_TIMEOUT_S,
        )
    except ValueError as exc:
        raise UsageError(
            f"{redact_url(url)} is not a Redis URL ({exc}); use one like {DEFAULT_REDIS_URL}"
        ) from exc
    try:
        client.ping()
    except RedisError as exc:
        raise UsageError(unreachable_message(url, exc)) from exc
    finally:
        client.close()


# ------------------------------------------------------------------------------------ choosing


def open_state(
    kind: str,
    *,
    root: Path,
    store: KeyValueStore | None = None,
    url: str | None = None,
    call: StoreCall | None = None,
) -> StateAdapter:
    """The state adapter named ``kind``: ``file``, ``store`` or ``redis``.

    ``root`` is the project root: the file adapter keeps its files in ``root/.wayang/state/``.
    ``store`` (and optionally the engine's ``call``) is needed for ``store``; ``url`` is the
    Redis URL (default :data:`DEFAULT_REDIS_URL`), pinged here so a missing server is reported
    at start-up, not at the first handler. Raises :class:`UsageError` for anything else.
    """
    name = kind.strip().lower()
    if name == "file":
        return FileState(Path(root) / STATE_DIR)
    if name == "store":
        if store is None:
            raise UsageError(
                "the 'store' state adapter needs the engine's store, and none was given; "
                "use state 'file' for development"
            )
        return StoreState(store, call)
    if name == "redis":
        target = url or DEFAULT_REDIS_URL
        check_redis(target)
        return RedisState(target)
    raise UsageError(f"unknown state adapter {kind!r}; use one of: {', '.join(STATE_KINDS)}")
