"""gate_for(): the gate a run gets from its pinned project policy and its workflow."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from wayang.engine.events import RunStarted
from wayang.engine.gate import PolicyRequest
from wayang.errors import DefinitionError
from wayang.model.loader import parse_workflow
from wayang.model.spec import Workflow
from wayang.policy import ENTRY_POINT_GROUP, RuleGate, gate_for, plugins
from wayang.policy.files import parse_policy_cached

WORKFLOW = """\
id = "w"
[steps.deploy]
run = "git push"
[policy]
max_parallel = 8
allowed_tools = ["git", "make"]
[[policy.rules]]
name = "workflow-rule"
action = "execute"
require = "actor.name != 'mallory'"
"""

PROJECT = """\
max_parallel = 2
allowed_tools = ["git"]
[roles]
ops = ["ann"]
[[rules]]
name = "ops-only"
action = "execute"
require = "'ops' in actor.roles"
"""


def started(policy_source: str = "", policy_filename: str = "") -> RunStarted:
    return RunStarted(
        workflow_id="w",
        workflow_version="0.1.0",
        source=WORKFLOW,
        filename="workflow.toml",
        params={},
        env={},
        env_overrides={},
        at=0.0,
        actor="ann",
        policy_source=policy_source,
        policy_filename=policy_filename,
    )


@pytest.fixture
def workflow() -> Workflow:
    return parse_workflow(WORKFLOW)


def test_without_a_project_policy_the_workflows_rules_apply(workflow: Workflow) -> None:
    gate = gate_for(workflow, started())
    assert isinstance(gate, RuleGate)
    assert gate.max_parallel == 8
    assert gate.check(PolicyRequest("execute", actor="bob", command="make")).allowed
    assert not gate.check(PolicyRequest("execute", actor="mallory")).allowed


def test_the_project_policy_is_merged_in(workflow: Workflow) -> None:
    gate = gate_for(workflow, started(PROJECT, "wayang.policy.toml"))
    assert isinstance(gate, RuleGate)
    assert gate.max_parallel == 2
    assert gate.roles_of("ann") == ("ops",)
    verdict = gate.check(PolicyRequest("execute", actor="ann", command="git push"))
    assert verdict.applied == ("ops-only", "workflow-rule")
    assert gate.check(PolicyRequest("execute", actor="ann", command="make")).rule == (
        "policy.allowed_tools"
    )
    assert gate.check(PolicyRequest("execute", actor="bob")).rule == "ops-only"


def test_the_pinned_text_is_parsed_once(workflow: Workflow) -> None:
    text = PROJECT + "# a fresh text for this test\n"
    before = parse_policy_cached.cache_info().misses
    for _ in range(3):
        gate_for(workflow, started(text, "wayang.policy.toml"))
    assert parse_policy_cached.cache_info().misses == before + 1


def test_a_bad_pinned_policy_is_a_definition_error(workflow: Workflow) -> None:
    with pytest.raises(DefinitionError, match=r"^pinned\.toml:1:1: error: unknown key"):
        gate_for(workflow, started("bogus = 1\n", "pinned.toml"))


def test_a_project_engine_decides(monkeypatch: pytest.MonkeyPatch, workflow: Workflow) -> None:
    entry = EntryPoint(name="fake", value="tests.policy.fake_engine:make", group=ENTRY_POINT_GROUP)
    monkeypatch.setattr(plugins, "entry_points", lambda *, group: [entry])
    project = 'engine = "fake"\n[roles]\nadmins = ["ann"]\n'
    gate = gate_for(workflow, started(project, "wayang.policy.toml"))
    assert not isinstance(gate, RuleGate)
    assert gate.check(PolicyRequest("start", actor="ann")).allowed
    assert not gate.check(PolicyRequest("start", actor="bob")).allowed
