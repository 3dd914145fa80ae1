"""Every example under examples/ validates and plans — examples are tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from support.runtime_helpers import FAST
from wayang.app import App, Settings
from wayang.engine.state import RunState
from wayang.ids import new_run_id
from wayang.model.loader import load_workflow
from wayang.model.plan import plan_workflow
from wayang.runtime.operations import prepare_run
from wayang.runtime.signals import deliver, publish, send_signal

ROOT = Path(__file__).parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*/workflow.toml"))
REQUIRED_PARAMS = {"order-approval": {"order_id": "ORD-1"}, "expense-approval": {"amount": 10}}


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.parent.name)
def test_example_validates_and_plans(path: Path) -> None:
    workflow = load_workflow(path)
    plan = plan_workflow(workflow, REQUIRED_PARAMS.get(path.parent.name, {}))
    assert {step.id for step in plan.steps} == set(workflow.steps)


def test_templates_match_their_examples() -> None:
    templates = ROOT / "src/wayang/cli/templates"
    for name, example in (("basic", "hello"), ("release", "release")):
        template = (templates / f"{name}.toml").read_text().split("\n", 1)[1]
        assert template == (ROOT / "examples" / example / "workflow.toml").read_text()


RUNNABLE = {
    "hello": {},
    "release": {"target": "prod"},
    "pipeline": {},
    "review-loop": {},
    "expense-approval": {"amount": "50"},
}


@pytest.mark.parametrize("name", sorted(RUNNABLE))
def test_example_runs_to_success_on_the_engine(name: str, tmp_path: Path) -> None:
    """The examples whose step kinds the engine executes today run for real."""
    app = App(Settings(store=str(tmp_path / "wayang.db")))
    path = ROOT / "examples" / name / "workflow.toml"

    async def go() -> str:
        async with app.engine() as engine:
            request = prepare_run(path, RUNNABLE[name], {}, parallel=4, timeout_s=60)
            started = request.started
            # Steps write into their workspace (the example's folder); run them elsewhere.
            started = type(started)(**{**started.to_data(), "cwd": str(tmp_path)})
            state = await engine.start(request.plan, started, new_run_id())
            return state.status.value

    try:
        assert asyncio.run(go()) == "succeeded"
    finally:
        app.close()


def _run_example(
    name: str, params: dict[str, str], tmp_path: Path, during: object = None
) -> RunState:
    """Run an example on the engine; ``during(app, run_id)`` acts while it runs (a person)."""
    app = App(Settings(store=str(tmp_path / "wayang.db"), engine=FAST))
    path = ROOT / "examples" / name / "workflow.toml"

    async def go() -> RunState:
        async with app.engine() as engine:
            request = prepare_run(path, params, {}, parallel=4, timeout_s=60)
            started = type(request.started)(**{**request.started.to_data(), "cwd": str(tmp_path)})
            run_id = new_run_id()
            future = engine.start(request.plan, started, run_id)
            if callable(during):
                await during(app, engine, run_id)
            return await asyncio.wait_for(future, 30)

    try:
        return asyncio.run(go())
    finally:
        app.close()


async def _until_waiting(engine: object, run_id: str, step_id: str) -> None:
    for _ in range(400):
        state = engine.live_state(run_id)  # type: ignore[attr-defined]
        if state is not None and state.step(step_id).status.value == "waiting":
            await engine.flush()  # type: ignore[attr-defined]  # people see the stored run
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{step_id} never waited")


def test_order_saga_rolls_back_in_reverse_order(tmp_path: Path) -> None:
    state = _run_example("order-saga", {}, tmp_path)
    assert state.status.value == "failed"
    assert state.compensation_all == ["refund", "release"]
    assert {s: state.step(s).status.value for s in ("refund", "release")} == {
        "refund": "succeeded",
        "release": "succeeded",
    }


def test_wait_for_payment_takes_the_matching_event(tmp_path: Path) -> None:
    async def pay(app: App, engine: object, run_id: str) -> None:
        await _until_waiting(engine, run_id, "paid")
        publish(app.store, "payments.received", {"order_id": "ORD-other", "amount": 1}, actor="t")
        publish(app.store, "payments.received", {"order_id": "ORD-7", "amount": 42}, actor="t")

    state = _run_example("wait-for-payment", {}, tmp_path, pay)
    assert state.status.value == "succeeded"
    assert state.step("paid").outputs["amount"] == 42


def test_expense_approval_needs_two_approvers_for_large_amounts(tmp_path: Path) -> None:
    async def approve(app: App, engine: object, run_id: str) -> None:
        await _until_waiting(engine, run_id, "approve")
        for who in ("mia", "fay"):
            data = {"comment": "ok"}
            seq = send_signal(app.store, run_id, "approve", kind="approve", actor=who, data=data)
            record = await deliver(engine, run_id, seq)  # type: ignore[arg-type]
            assert record.status == "accepted", record.outcome

    state = _run_example("expense-approval", {"amount": "5000"}, tmp_path, approve)
    assert state.status.value == "succeeded"
    assert state.step("approve").outputs["approvers"] == ["mia", "fay"]


def test_price_negotiation_agrees_within_the_budget(tmp_path: Path) -> None:
    async def haggle(app: App, engine: object, run_id: str) -> None:
        await _until_waiting(engine, run_id, "haggle")
        moves = [
            ("offer", "bo", {"terms": {"price": 80, "quantity": 10}}),
            ("offer", "sam", {"terms": {"price": 95, "quantity": 10}}),
            ("accept", "bo", {}),
        ]
        for kind, who, data in moves:
            seq = send_signal(app.store, run_id, "haggle", kind=kind, actor=who, data=data)
            record = await deliver(engine, run_id, seq)  # type: ignore[arg-type]
            assert record.status == "accepted", record.outcome

    state = _run_example("price-negotiation", {}, tmp_path, haggle)
    assert state.status.value == "succeeded"
    assert state.step("haggle").outputs["price"] == 95
