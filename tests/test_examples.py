"""Every example under examples/ validates and plans — examples are tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from wayang.app import App, Settings
from wayang.ids import new_run_id
from wayang.model.loader import load_workflow
from wayang.model.plan import plan_workflow
from wayang.runtime.operations import prepare_run

ROOT = Path(__file__).parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*/workflow.toml"))
REQUIRED_PARAMS = {"order-approval": {"order_id": "ORD-1"}}


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
