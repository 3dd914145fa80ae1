"""Every example under examples/ validates and plans — examples are tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from wayang.model.loader import load_workflow
from wayang.model.plan import plan_workflow

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
