"""The state contract: every adapter of ``wayang.steps.state.StateAdapter`` must pass this suite.

The ``make_state`` fixture is parametrized over the three adapters: files in ``tmp_path``, a real
SQLite store file in ``tmp_path``, and the Redis server at 127.0.0.1:6379 (or
``WAYANG_TEST_REDIS_URL``) under a random key prefix that is deleted afterwards. Without Redis the redis cases skip, except under ``CI=true``,
where they fail: CI must exercise every adapter.

Each test runs one scenario in a fresh event loop (``asyncio.run``); the adapter is opened and
closed inside it, since a Redis connection belongs to the loop that opened it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from pydantic import BaseModel

from wayang.errors import UsageError
from wayang.steps.state import (
    START_REDIS,
    STATE_DIR,
    FileState,
    RedisState,
    StateAdapter,
    StateError,
    StateValueError,
    StoreState,
    open_state,
)
from wayang.store.sqlite import SQLiteStore

T = TypeVar("T")
REDIS_URL = os.environ.get("WAYANG_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
UNREACHABLE_URL = "redis://127.0.0.1:1/0"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

MakeState = Callable[[], StateAdapter]


def redis_unavailable() -> str | None:
    """Why the local Redis cannot be used, or None when it answers."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"no Redis at {REDIS_URL} ({exc}); start one with: {START_REDIS}"
    finally:
        client.close()
    return None


def need_redis() -> None:
    reason = redis_unavailable()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true needs the Redis state adapter tested: {reason}")
    pytest.skip(reason)


def delete_prefixed(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=["file", "store", "redis"])
def make_state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeState]:
    """Opens adapters onto one backing (same folder, store or prefix) for the whole test."""
    if request.param == "file":
        yield lambda: FileState(tmp_path / "state")
    elif request.param == "store":
        store = SQLiteStore(tmp_path / "store.db")
        yield lambda: StoreState(store)
        store.close()
    else:
        need_redis()
        prefix = f"wayang-test:{uuid.uuid4().hex}:"
        try:
            yield lambda: RedisState(REDIS_URL, prefix=prefix)
        finally:
            delete_prefixed(prefix)


def run(make: MakeState, scenario: Callable[[StateAdapter], Awaitable[T]]) -> T:
    async def main() -> T:
        state = make()
        try:
            return await scenario(state)
        finally:
            await state.close()

    return asyncio.run(main())


class Item(BaseModel):
    sku: str
    qty: int


class Order(BaseModel):
    order_id: str
    placed: datetime
    items: list[Item]


ORDER = Order(
    order_id="o-1", placed=datetime(2024, 5, 1, 12, 0, tzinfo=UTC), items=[Item(sku="a", qty=2)]
)
ORDER_JSON = {
    "order_id": "o-1",
    "placed": "2024-05-01T12:00:00Z",
    "items": [{"sku": "a", "qty": 2}],
}


# ------------------------------------------------------------------------------ reading


def test_a_missing_key_or_group_reads_as_none(make_state: MakeState) -> None:
    async def scenario(state: StateAdapter) -> None:
        assert await state.get("nowhere", "k") is None
        await state.set("g", "k", 1)
        assert await state.get("g", "other") is None
        assert await state.delete("g", "other") is None
        assert await state.delete("nowhere", "k") is None
        assert await state.get_group("nowhere") == []
        await state.clear("nowhere")

    run(make_state, scenario)


NESTED = {
    "order": {"id": 7, "lines": [{"sku": "a", "qty": 2, "price": 9.5}], "note": None},
    "tags": ["x", "ü", "日本"],
    "ok": True,
    "empty": {},
    "none": [],
}


@pytest.mark.parametrize(
    "value",
    [NESTED, [1, "two", [3.5, None]], "text", "", 42, -1.25, 0, True, False, None, {}],
    ids=repr,
)
def test_values_round_trip(make_state: MakeState, value: Any) -> None:
    async def scenario(state: StateAdapter) -> tuple[Any, Any]:
        returned = await state.set("trace-1", "key", value)
        return returned, await state.get("trace-1", "key")

    returned, read = run(make_state, scenario)
    assert returned == value
    assert read == value


def test_set_overwrites_and_returns_the_value(make_state: MakeState) -> None:
    async def scenario(state: StateAdapter) -> None:
        assert await state.set("g", "k", {"v": 1}) == {"v": 1}
        assert await state.set("g", "k", [2]) == [2]
        assert await state.get("g", "k") == [2]
        assert await state.get_group("g") == [[2]]

    run(make_state, scenario)


def test_a_read_value_is_a_copy(make_state: MakeState) -> None:
    async def scenario(state: StateAdapter) -> None:
        original = {"items": [1]}
        returned = await state.set("g", "k", original)
        original["items"].append(2)
        returned["items"].append(3)
        read = await state.get("g", "k")
        read["items"].append(4)
        assert await state.get("g", "k") == {"items": [1]}

    run(make_state, scenario)


def test_pydantic_models_are_stored_as_their_json_dump(make_state: MakeState) -> None:
    async def scenario(state: StateAdapter) -> None:
        assert await state.set("g", "order", ORDER) == ORDER_JSON
        assert await state.get("g", "order") == ORDER_JSON
        assert Order.model_validate(await state.get("g", "order")) == ORDER
        assert await state.set("g", "wrapped", {"orders": [ORDER]}) == {"orders": [ORDER_JSON]}
        assert await state.get("g", "wrapped") == {"orders": [ORDER_JSON]}

    run(make_state, scenario)


# ------------------------------------------------------------------------------ deleting


def test_delete_returns_the_old_value_once(make_state: MakeState) -> None:
    async def scenario(state: StateAdapter) -> None:
        await state.set("g", "k", {"n": 1})
        await state.set("g", "kept", 2)
        assert await state.delete("g", "k") == {"n": 1}
        assert await state.get("g", "k") is None
        assert await state.delete("g", "k") is None
        assert await state.get_group("g") == [2]

    run(make_state, scenario)


def test_get_group_returns_every_value_of_that_group_only(make_state: MakeState) -> None:
    async def scenario(state: StateAdapter) -> None:
        await state.set("g", "b", {"n": 2})
        await state.set("g", "a", {"n": 1})
        await state.set("g", "c", [3])
        await state.set("g2", "a", "other group")
        await state.set("g-prefix", "a", "similar name")
        assert await state.get_group("g") == [{"n": 1}, {"n": 2}, [3]]  # in key order
        assert await state.get_group("g2") == ["other group"]

    run(make_state, scenario)


def test_clear_empties_one_group_only(make_state: MakeState) -> None:
    async def scenario(state: StateAdapter) -> None:
        for key in ("a", "b", "c"):
            await state.set("doomed", key, key)
        await state.set("kept", "a", 1)
        await state.clear("doomed")
        assert await state.get_group("doomed") == []
        assert await state.get("doomed", "a") is None
        assert await state.get_group("kept") == [1]
        await state.set("doomed", "again", True)  # a cleared group can be used again
        assert await state.get_group("doomed") == [True]

    run(make_state, scenario)


# ------------------------------------------------------------------------------ groups

ODD_GROUPS = [
    "plain",
    "groups",
    "with/slash and space",
    "../../escape",
    "Case",
    "case",
    "ünïcødé-日本",
    "%2F",
    "x" * 300,
    "",
]


def test_groups_lists_the_groups_holding_keys(make_state: MakeState) -> None:
    async def scenario(state: StateAdapter) -> None:
        assert await state.groups() == []
        for group in ODD_GROUPS:
            await state.set(group, "k", group)
        await state.set("emptied", "k", 1)
        await state.delete("emptied", "k")
        await state.set("cleared", "k", 1)
        await state.clear("cleared")
        assert await state.groups() == sorted(ODD_GROUPS)
        for group in ODD_GROUPS:
            assert await state.get_group(group) == [group]

    run(make_state, scenario)


# ------------------------------------------------------------------------------ concurrency


def test_concurrent_sets_in_one_group_all_land(make_state: MakeState) -> None:
    async def scenario(state: StateAdapter) -> list[Any]:
        returned = await asyncio.gather(
            *(state.set("busy", f"k{i:02}", {"i": i}) for i in range(50))
        )
        assert returned == [{"i": i} for i in range(50)]
        return await state.get_group("busy")

    assert run(make_state, scenario) == [{"i": i} for i in range(50)]


def test_two_adapters_on_one_backing_see_each_others_writes(make_state: MakeState) -> None:
    async def scenario(first: StateAdapter) -> None:
        second = make_state()
        try:
            await first.set("shared", "a", 1)
            assert await second.get("shared", "a") == 1
            await second.set("shared", "b", 2)
            assert await first.get_group("shared") == [1, 2]
            await asyncio.gather(
                *((first if i % 2 else second).set("shared", f"n{i:02}", i) for i in range(20))
            )
            assert len(await second.get_group("shared")) == 22
            assert await first.delete("shared", "b") == 2
            assert await second.get("shared", "b") is None
            assert await second.groups() == ["shared"]
        finally:
            await second.close()

    run(make_state, scenario)


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("value", "type_name"),
    [({1, 2}, "set"), ({"deep": [object()]}, "object"), (b"bytes", "bytes")],
)
def test_a_value_that_is_not_json_is_refused_by_name(
    make_state: MakeState, value: Any, type_name: str
) -> None:
    async def scenario(state: StateAdapter) -> None:
        with pytest.raises(StateValueError) as caught:
            await state.set("trace-9", "basket", value)
        message = str(caught.value)
        assert "'trace-9'" in message
        assert "'basket'" in message
        assert f"'{type_name}'" in message
        assert await state.get("trace-9", "basket") is None
        assert await state.groups() == []

    run(make_state, scenario)


def test_a_value_error_is_also_a_type_error_and_a_state_error() -> None:
    assert issubclass(StateValueError, TypeError)
    assert issubclass(StateValueError, StateError)


def test_names_must_be_strings(make_state: MakeState) -> None:
    async def scenario(state: StateAdapter) -> None:
        with pytest.raises(StateValueError, match="key must be a string, not int"):
            await state.set("g", 1, "v")  # type: ignore[arg-type]
        with pytest.raises(StateValueError, match="group id must be a string, not NoneType"):
            await state.get(None, "k")  # type: ignore[arg-type]
        with pytest.raises(StateValueError, match="key must be a string"):
            await state.delete("g", None)  # type: ignore[arg-type]

    run(make_state, scenario)


# ------------------------------------------------------------------------------ file adapter

WRITER = """
import asyncio, sys
from pathlib import Path
from wayang.steps.state import FileState

async def main():
    state = FileState(Path(sys.argv[1]))
    await asyncio.gather(*(state.set("shared", f"{sys.argv[2]}-{i:02}", i) for i in range(25)))

asyncio.run(main())
"""


def test_file_state_processes_sharing_a_folder_lose_no_writes(tmp_path: Path) -> None:
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), f"p{n}"]) for n in range(4)
    ]
    assert [writer.wait(timeout=30) for writer in writers] == [0, 0, 0, 0]
    values = asyncio.run(FileState(tmp_path).get_group("shared"))
    assert values == [i for _ in range(4) for i in range(25)]
    assert not list(tmp_path.glob("*.tmp")), "temporary files were left behind"


def test_file_state_keeps_every_group_inside_its_folder(tmp_path: Path) -> None:
    root = tmp_path / "state"
    asyncio.run(FileState(root).set("../../escape", "k", 1))
    assert [path.parent for path in tmp_path.rglob("*.json")] == [root]
    (name,) = [path.name for path in root.glob("*.json")]
    assert name.startswith("escape-")


def test_file_state_reports_a_damaged_file(tmp_path: Path) -> None:
    state = FileState(tmp_path)
    asyncio.run(state.set("g", "k", 1))
    (path,) = tmp_path.glob("*.json")
    path.write_text("{not json")
    with pytest.raises(StateError, match=r"is damaged .*fix or delete it"):
        asyncio.run(state.get("g", "k"))
    path.write_text("[1, 2]")
    with pytest.raises(StateError, match="not a Wayang state file"):
        asyncio.run(state.groups())


# ------------------------------------------------------------------------------ choosing


def test_open_state_chooses_by_name(tmp_path: Path) -> None:
    file_state = open_state("file", root=tmp_path)
    assert isinstance(file_state, FileState)
    assert file_state.root == tmp_path / STATE_DIR
    store = SQLiteStore(tmp_path / "store.db")
    try:
        assert isinstance(open_state(" Store ", root=tmp_path, store=store), StoreState)
    finally:
        store.close()


def test_open_state_names_the_valid_kinds(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown state adapter 'memory'; use one of: file, store"):
        open_state("memory", root=tmp_path)
    with pytest.raises(UsageError, match="needs the engine's store"):
        open_state("store", root=tmp_path)


def test_open_state_opens_redis(tmp_path: Path) -> None:
    need_redis()
    state = open_state("redis", root=tmp_path, url=REDIS_URL)
    assert isinstance(state, RedisState)
    asyncio.run(state.close())


def test_an_unreachable_redis_is_reported_with_how_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        open_state("redis", root=tmp_path, url=UNREACHABLE_URL)
    assert UNREACHABLE_URL in str(caught.value)
    assert "redis-server --daemonize yes" in str(caught.value)
    with pytest.raises(UsageError, match="not a Redis URL"):
        open_state("redis", root=tmp_path, url="http://example.com")


def test_redis_state_losing_its_server_raises_state_error() -> None:
    async def scenario() -> None:
        state = RedisState(UNREACHABLE_URL, prefix="wayang-test:unreachable:")
        try:
            with pytest.raises(StateError, match=r"cannot reach Redis at redis://127\.0\.0\.1:1"):
                await state.get("g", "k")
        finally:
            await state.close()

    asyncio.run(scenario())
