"""The planner resolves parameters, actions, env and commands, and defers run-time values."""

from __future__ import annotations

import subprocess

import pytest

from wayang.errors import PlanError
from wayang.model.plan import plan_workflow
from wf_helpers import load

WORKFLOW = """
id = "p"
version = "1.2.3"

[parameters.who]
default = "world"

[parameters.count]
type = "integer"
default = 2

[parameters.flags]
type = "array"
default = ["a"]

[parameters.mode]
enum = ["fast", "slow"]
required = true

[defaults]
timeout = "1m"
retry = { attempts = 3, backoff = "fixed", delay = "2s", jitter = false }
env = { STAGE = "${{ params.mode }}" }

[actions.greet]
run = "echo hi ${{ inputs.name }} x${{ inputs.times }}"
inputs.name = { required = true }
inputs.times = "1"
env = { FROM_ACTION = "yes" }

[steps.first]
uses = "greet"
inputs = { name = "${{ params.who }}" }

[steps.second]
needs = ["first"]
run = "echo ${{ steps.first.outputs.v }} ${{ run.id }}"
env = { TOTAL = "${{ params.count }}", RUNNER = "${{ run.id }}" }
timeout = "5s"
retry = { attempts = 1 }

[steps.py]
needs = ["first"]
uses = "python:mypkg.mod:fn"
inputs = { n = "${{ params.count }}", label = "n=${{ params.count }}", later = "${{ steps.first.outputs.v }}" }
when = "params.mode == 'fast'"
"""


def test_plan_resolves_everything_known_before_the_run() -> None:
    plan = plan_workflow(load(WORKFLOW), {"mode": "fast"}, environ={"HOME": "/h"})
    assert plan.params == {"who": "world", "count": 2, "flags": ["a"], "mode": "fast"}
    first, second, py = plan.steps
    assert first.command == "echo hi world x1"
    assert first.env["FROM_ACTION"] == "yes" and first.env["STAGE"] == "fast"
    assert first.env["WAYANG_PARAM_COUNT"] == "2"
    assert first.env["WAYANG_PARAM_FLAGS"] == '["a"]'
    assert first.timeout_s == 60 and first.retry.attempts == 3 and first.retry.jitter == 0
    assert second.needs == ("first",)
    assert second.command is None and "run" in second.deferred
    assert second.env["TOTAL"] == "2"
    assert second.env["RUNNER"] == "${{ run.id }}" and "env.RUNNER" in second.deferred
    assert second.timeout_s == 5 and second.retry.attempts == 1
    assert py.uses == "python:mypkg.mod:fn"
    assert py.inputs["n"] == 2  # a lone expression keeps its type
    assert py.inputs["label"] == "n=2"
    assert py.inputs["later"] == "${{ steps.first.outputs.v }}"
    assert py.when == "params.mode == 'fast'"


def test_parameters_from_text_are_typed_and_checked_all_at_once() -> None:
    workflow = load(WORKFLOW)
    plan = plan_workflow(
        workflow, {"mode": "slow", "count": "7", "flags": '["x", "y"]'}, params_are_text=True
    )
    assert plan.params["count"] == 7 and plan.params["flags"] == ["x", "y"]
    with pytest.raises(PlanError) as caught:
        plan_workflow(
            workflow, {"count": "many", "mood": "x", "flags": "nope"}, params_are_text=True
        )
    lines = [d.format() for d in caught.value.diagnostics]
    assert lines == [
        "--param mood: error: unknown parameter 'mood'; did you mean 'mode'?",
        "--param count: error: parameter 'count' must be an integer, got 'many'",
        "--param flags: error: parameter 'flags' must be an array written as JSON, got 'nope'",
        "--param mode: error: missing required parameter 'mode': pass --param mode=VALUE",
    ]


def test_enum_and_pattern_enforced_for_given_values() -> None:
    with pytest.raises(PlanError, match="is not one of"):
        plan_workflow(load(WORKFLOW), {"mode": "medium"})


def test_env_overrides_reach_every_step_and_env_expressions() -> None:
    text = 'id = "e"\n[steps.a]\nrun = "echo ${{ env.GREETING }}"\n'
    plan = plan_workflow(
        load(text), environ={"GREETING": "base"}, env_overrides={"GREETING": "hey"}
    )
    assert plan.steps[0].command == "echo hey"
    assert plan.steps[0].env["GREETING"] == "hey"


def test_commands_are_shell_quoted_so_parameters_cannot_inject() -> None:
    text = 'id = "q"\n[parameters.x]\n[steps.a]\nrun = "echo ${{ params.x }}"\n'
    hostile = "a; touch /tmp/wayang-pwned $(id) `id` 'q' \"d\""
    plan = plan_workflow(load(text), {"x": hostile})
    done = subprocess.run(
        ["/bin/sh", "-c", plan.steps[0].command or ""], capture_output=True, text=True, check=True
    )
    assert done.stdout == hostile + "\n"


def test_order_respects_needs_and_decisions() -> None:
    text = """
    id = "o"
    [steps.z]
    run = "x"
    needs = ["d"]
    [steps.d]
    kind = "decision"
    needs = ["a"]
    cases = [{ when = "true", next = "z" }]
    default = "y"
    [steps.y]
    run = "x"
    [steps.a]
    run = "x"
    """
    plan = plan_workflow(load(text))
    order = [s.id for s in plan.steps]
    assert order == ["a", "d", "z", "y"]
    decision = plan.steps[1]
    assert decision.config["cases"] == [{"when": "true", "next": "z"}]
    assert decision.config["default"] == "y"


def test_compensation_steps_are_marked() -> None:
    text = 'id = "c"\n[steps.a]\nrun = "x"\ncompensate = "undo"\n[steps.undo]\nrun = "y"\n'
    plan = plan_workflow(load(text))
    flags = {s.id: s.compensation_only for s in plan.steps}
    assert flags == {"a": False, "undo": True}


def test_plan_to_dict_is_json_ready() -> None:
    import json

    plan = plan_workflow(load(WORKFLOW), {"mode": "fast"})
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["workflow"] == {"id": "p", "name": "p", "version": "1.2.3"}
    assert [s["id"] for s in data["steps"]] == ["first", "second", "py"]
    assert data["steps"][1]["retry"]["attempts"] == 1


def test_integer_parameters_must_fit_64_bits() -> None:
    workflow = load('id = "i"\n[parameters.n]\ntype = "integer"\n[steps.a]\nrun = "x"\n')
    with pytest.raises(PlanError, match="must fit in 64 bits"):
        plan_workflow(workflow, {"n": "9999999999999999999"}, params_are_text=True)
    with pytest.raises(PlanError, match="must fit in 64 bits"):
        plan_workflow(workflow, {"n": 2**64})
