"""The step runtime on a real SQLite store: deliveries, emits, retries, dead letters, ordering,
traces, triggers, and a second runtime taking over what the first left."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from wayang.steps.context import Context, Request
from wayang.steps.model import Emit, PayloadError, PayloadSchema, RetryRule, StepDef, Where
from wayang.steps.runtime import Finished, RuntimeSettings, StepRuntime
from wayang.steps.state import FileState
from wayang.store.port import NewTopicMessage
from wayang.store.sqlite import SQLiteStore

FAST = RuntimeSettings(poll_every_s=0.02, renew_every_s=0.2, lease_s=2.0)


class Steps:
    """A registry of hand-made steps (the file-based registry has its own tests)."""

    def __init__(self, *steps: StepDef, inactive: Sequence[str] = ()) -> None:
        self.steps = {s.name: s for s in steps}
        self.inactive = set(inactive)

    def subscriptions(self) -> Mapping[str, Sequence[tuple[str, int]]]:
        subs: dict[str, list[tuple[str, int]]] = {}
        for step in self.steps.values():
            if step.name in self.inactive:
                continue
            for topic in step.subscribes:
                subs.setdefault(topic, []).append((step.name, step.retry.attempts))
        return subs


def event_step(
    name: str,
    handler: Callable[..., Any],
    subscribes: str,
    emits: Sequence[str] = (),
    **extra: Any,
) -> StepDef:
    return StepDef(
        name,
        "event",
        Where(Path(f"{name}.step.py"), 1),
        handler=handler,
        handler_is_async=asyncio.iscoroutinefunction(handler),
        subscribes=(subscribes,),
        emits=tuple(Emit(t) for t in emits),
        **extra,
    )


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    db = SQLiteStore(tmp_path / "w.db")
    yield db  # type: ignore[misc]
    db.close()


def run(
    store: SQLiteStore,
    steps: Steps,
    tmp_path: Path,
    body: Callable[[StepRuntime], Any],
    *,
    owner: str = "test-owner",
    finished: list[Finished] | None = None,
) -> Any:
    async def go() -> Any:
        state = FileState(tmp_path / "state")
        done = finished.append if finished is not None else None
        async with StepRuntime(
            store, steps, state, owner=owner, settings=FAST, on_finished=done
        ) as runtime:
            result = await body(runtime)
            assert await runtime.settle(10)
            return result

    return asyncio.run(go())


def test_a_chain_of_steps_shares_one_trace(store: SQLiteStore, tmp_path: Path) -> None:
    seen: list[tuple[str, Any]] = []

    async def validate(data: dict[str, Any], ctx: Context) -> None:
        ctx.logger.info("validating", {"id": data["id"]})  # noqa: PLE1205 - Motia's logger
        await ctx.state.set(ctx.trace_id, "order", data)
        await ctx.emit({"topic": "order.valid", "data": {**data, "ok": True}})

    def ship(data: dict[str, Any], ctx: Context) -> None:  # a sync handler
        seen.append((ctx.traceId, data))

    steps = Steps(
        event_step("Validate", validate, "order.created", ["order.valid"]),
        event_step("Ship", ship, "order.valid"),
    )

    async def body(runtime: StepRuntime) -> str:
        return await runtime.emit("order.created", {"id": 7}, source="test")

    trace = run(store, steps, tmp_path, body)
    assert seen == [(trace, {"id": 7, "ok": True})]
    deliveries = store.list_deliveries(trace_id=trace)
    assert [(d.step, d.status, d.attempt) for d in deliveries] == [
        ("Validate", "succeeded", 1),
        ("Ship", "succeeded", 1),
    ]
    assert [m.topic for m in store.trace_messages(trace)] == ["order.created", "order.valid"]
    [line] = store.read_logs(trace, None, after_seq=0, limit=10)
    assert (line.step_id, line.stream, line.line) == ("Validate", "info", 'validating {"id":7}')


def test_a_failed_attempt_drops_its_emits_and_is_retried(
    store: SQLiteStore, tmp_path: Path
) -> None:
    calls: list[int] = []

    async def flaky(data: Any, ctx: Context) -> None:
        calls.append(ctx.attempt)
        await ctx.emit({"topic": "done", "data": {"attempt": ctx.attempt}})
        if ctx.attempt < 3:
            raise RuntimeError("not yet")

    got: list[Any] = []

    async def after(data: Any, ctx: Context) -> None:
        got.append(data)

    retry = RetryRule(attempts=3, delay_s=0.01)
    steps = Steps(
        event_step("Flaky", flaky, "go", ["done"], retry=retry),
        event_step("After", after, "done"),
    )
    finished: list[Finished] = []

    async def body(runtime: StepRuntime) -> str:
        return await runtime.emit("go", {}, source="test")

    trace = run(store, steps, tmp_path, body, finished=finished)
    assert calls == [1, 2, 3]
    assert got == [{"attempt": 3}]
    assert [m.data for m in store.trace_messages(trace) if m.topic == "done"] == [{"attempt": 3}]
    assert [f.status for f in finished if f.delivery.step == "Flaky"] == [
        "retry",
        "retry",
        "succeeded",
    ]
    errors = [line.line for line in store.read_logs(trace, "Flaky", 0, 10)]
    assert errors[0].startswith("attempt 1 failed: RuntimeError: not yet (")


def test_out_of_attempts_is_dead_lettered_and_replayable(
    store: SQLiteStore, tmp_path: Path
) -> None:
    fail = {"on": True}

    async def broken(data: Any, ctx: Context) -> None:
        if fail["on"]:
            raise ValueError("bad gateway")

    steps = Steps(event_step("Broken", broken, "go", retry=RetryRule(2, 0.01)))

    async def body(runtime: StepRuntime) -> None:
        await runtime.emit("go", {}, source="test")

    run(store, steps, tmp_path, body)
    [dead] = store.list_deliveries(status="dead")
    assert dead.attempt == 2 and "ValueError: bad gateway" in dead.error

    fail["on"] = False
    store.replay_delivery(dead.delivery_id, now=0.0)

    async def wait(runtime: StepRuntime) -> None:
        await asyncio.sleep(0.1)

    run(store, steps, tmp_path, wait)
    [again] = store.list_deliveries(step="Broken")
    assert (again.status, again.attempt) == ("succeeded", 1)


def test_a_bad_payload_is_dead_at_once_naming_topic_step_and_field(
    store: SQLiteStore, tmp_path: Path
) -> None:
    def check(data: Any) -> Any:
        if not isinstance(data.get("qty"), int):
            raise PayloadError("qty", "must be an integer")
        return data

    schema = PayloadSchema(check, {"type": "object"})
    calls: list[Any] = []

    async def handler(data: Any, ctx: Context) -> None:
        calls.append(data)

    steps = Steps(event_step("Count", handler, "items", input=schema))

    async def body(runtime: StepRuntime) -> None:
        await runtime.emit("items", {"qty": "three"}, source="test")

    run(store, steps, tmp_path, body)
    assert calls == []
    [dead] = store.list_deliveries(status="dead")
    assert dead.attempt == 1
    assert dead.error == (
        "payload on topic 'items' rejected by step 'Count' (Count.step.py:1): "
        "qty: must be an integer"
    )


def test_every_subscriber_gets_one_delivery_and_outside_messages_arrive(
    store: SQLiteStore, tmp_path: Path
) -> None:
    got: list[str] = []

    def make(name: str) -> Callable[[Any, Context], Any]:
        async def handler(data: Any, ctx: Context) -> None:
            got.append(f"{name}:{data['n']}")

        return handler

    steps = Steps(*(event_step(n, make(n), "tick") for n in ("A", "B", "C")))

    async def body(runtime: StepRuntime) -> None:
        await runtime.emit("tick", {"n": 1}, source="test")
        # published by another process (say 'wayang emit'): the poll picks it up
        store.publish(NewTopicMessage("tick", {"n": 2}, 0.0, trace_id="outside"))
        for _ in range(100):
            if len(got) == 6:
                break
            await asyncio.sleep(0.02)

    run(store, steps, tmp_path, body)
    assert sorted(got) == ["A:1", "A:2", "B:1", "B:2", "C:1", "C:2"]


def test_ordered_steps_take_one_message_per_key_at_a_time(
    store: SQLiteStore, tmp_path: Path
) -> None:
    order: list[tuple[str, int]] = []

    async def slow(data: Any, ctx: Context) -> None:
        await asyncio.sleep(0.03 if data["n"] == 0 else 0.001)
        order.append((data["key"], data["n"]))

    steps = Steps(event_step("Ordered", slow, "ev", ordered=True))

    async def body(runtime: StepRuntime) -> None:
        for n in range(4):
            for key in ("a", "b"):
                runtime.publish("ev", {"key": key, "n": n}, trace_id="t", source="test", key=key)
        await runtime.flush()

    run(store, steps, tmp_path, body)
    for key in ("a", "b"):
        assert [n for k, n in order if k == key] == [0, 1, 2, 3]


def test_api_and_cron_triggers_start_traces_and_publish_on_success(
    store: SQLiteStore, tmp_path: Path
) -> None:
    async def create(req: Request, ctx: Context) -> dict[str, Any]:
        await ctx.emit({"topic": "order.created", "data": req.body})
        return {"status": 201, "body": {"id": req.pathParams["id"], "trace": ctx.trace_id}}

    async def tick(ctx: Context) -> None:
        ctx.emit({"topic": "order.created", "data": {"from": "cron"}})  # works without await

    got: list[Any] = []

    async def on_created(data: Any, ctx: Context) -> None:
        got.append((data, ctx.trace_id))

    api = StepDef(
        "Create", "api", Where(Path("c.step.py")), create, True, path="/orders/:id",
        method="POST", emits=(Emit("order.created"),),
    )  # fmt: skip
    cron = StepDef("Tick", "cron", Where(Path("t.step.py")), tick, True, cron="* * * * *",
                   emits=(Emit("order.created"),))  # fmt: skip
    steps = Steps(api, cron, event_step("OnCreated", on_created, "order.created"))
    request = Request(
        body={"sku": "x"}, headers={}, path_params={"id": "9"}, query_params={},
        raw_body='{"sku":"x"}', method="POST", path="/orders/9",
    )  # fmt: skip

    async def body(runtime: StepRuntime) -> tuple[Any, str, str]:
        response, trace = await runtime.call_api(api, request)
        cron_trace = await runtime.fire_cron(cron)
        return response, trace, cron_trace

    response, trace, cron_trace = run(store, steps, tmp_path, body)
    assert response == {"status": 201, "body": {"id": "9", "trace": trace}}
    assert sorted(got, key=str) == sorted(
        [({"sku": "x"}, trace), ({"from": "cron"}, cron_trace)], key=str
    )
    [message] = store.trace_messages(trace)
    assert message.source == "api:POST /orders/9"


def test_emitting_an_undeclared_topic_fails_the_attempt(store: SQLiteStore, tmp_path: Path) -> None:
    async def sloppy(data: Any, ctx: Context) -> None:
        await ctx.emit({"topic": "typo.topic", "data": {}})

    steps = Steps(event_step("Sloppy", sloppy, "go", ["real.topic"], retry=RetryRule(1)))

    async def body(runtime: StepRuntime) -> None:
        await runtime.emit("go", {}, source="test")

    run(store, steps, tmp_path, body)
    [dead] = store.list_deliveries(status="dead")
    assert "emitted topic 'typo.topic', which its config does not list in 'emits'" in dead.error


def test_a_second_runtime_takes_over_what_a_stopped_one_left(
    store: SQLiteStore, tmp_path: Path
) -> None:
    ran: list[str] = []
    gate = {"block": True}

    async def handler(data: Any, ctx: Context) -> None:
        if gate["block"]:
            await asyncio.sleep(30)  # the first runtime stops while this runs
        ran.append(data["id"])

    steps = Steps(event_step("Slow", handler, "go"))

    async def first() -> None:
        state = FileState(tmp_path / "state")
        async with StepRuntime(store, steps, state, owner="one", settings=FAST) as runtime:
            await runtime.emit("go", {"id": "x"}, source="test")
            await asyncio.sleep(0.1)

    asyncio.run(first())
    [left] = store.list_deliveries()
    assert left.status == "running"  # its lease runs out; nothing was recorded
    gate["block"] = False

    async def wait(runtime: StepRuntime) -> None:
        for _ in range(200):
            if ran:
                return
            await asyncio.sleep(0.02)

    run(store, steps, tmp_path, wait, owner="two")
    assert ran == ["x"]
    [done] = store.list_deliveries()
    assert (done.status, done.attempt) == ("succeeded", 2)
