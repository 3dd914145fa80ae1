"""``uses = "just:RECIPE"``: accepted, planned like a Python step, placed on ``shell``, and every
mistake in its recipe name or inputs reported at its line and column."""

from __future__ import annotations

import pytest

from wayang.model.placement import task_needs
from wayang.model.plan import plan_workflow
from wf_helpers import diagnose, load

HEAD = 'id = "w"\n'


def test_a_just_step_plans_with_its_recipe_and_resolved_inputs() -> None:
    workflow = load(
        """
        id = "w"
        [parameters.target]
        default = "src"
        [actions.lint]
        run = "ruff check"
        [steps.prepare]
        uses = "lint"
        [steps.check]
        needs = ["prepare"]
        uses = "just:check_all-2"
        [steps.check.inputs]
        args = ["--fix", "${{ params.target }}", "${{ steps.prepare.status }}"]
        justfile = "tools/agents.just"
        [steps.bare]
        uses = "just:_private"
        """
    )
    steps = {step.id: step for step in plan_workflow(workflow).steps}
    prepare, check, bare = steps["prepare"], steps["check"], steps["bare"]
    assert (prepare.command, prepare.uses) == ("ruff check", None)  # an action is still an action
    assert (check.command, check.uses) == (None, "just:check_all-2")
    assert check.inputs == {
        "args": ["--fix", "src", "${{ steps.prepare.status }}"],  # resolved when it runs
        "justfile": "tools/agents.just",
    }
    assert "inputs.args" in check.deferred
    assert (bare.uses, bare.inputs) == ("just:_private", {})


def test_a_just_step_needs_the_shell_capability() -> None:
    workflow = load(HEAD + '[steps.a]\nuses = "just:a"\nruns_on = { capabilities = ["gpu"] }\n')
    [step] = plan_workflow(workflow).steps
    assert task_needs(step.runs_on, step.command, step.uses) == ["cap:gpu", "cap:shell"]
    assert task_needs((), None, "python:m:f") == ["cap:python"]


@pytest.mark.parametrize("recipe", ["", "9lives", "-x", "a b", "a.b", "a:b", "ré"])
def test_a_bad_recipe_name_is_reported_at_uses(recipe: str) -> None:
    [line] = diagnose(HEAD + f'[steps.a]\nuses = "just:{recipe}"\n')
    assert line == (
        "workflow.toml:3:8: error: steps.a.uses: write a just recipe as 'just:RECIPE', where "
        "RECIPE is letters, digits, '_' and '-', starting with a letter or '_' "
        f"(got 'just:{recipe}')"
    )


def test_args_must_be_a_list_of_strings() -> None:
    lines = diagnose(
        HEAD
        + '[steps.a]\nuses = "just:a"\ninputs.args = "--fix"\n'
        + '[steps.b]\nuses = "just:b"\ninputs.args = ["ok", 3, true, ["x"], { k = 1 }]\n'
    )
    assert lines == [
        'workflow.toml:4:15: error: inputs.args of a just recipe step is a list of strings, e.g. ["--fix", "src"]',
        "workflow.toml:7:22: error: inputs.args[1] is an integer; write it as a string",
        "workflow.toml:7:25: error: inputs.args[2] is a boolean; write it as a string",
        "workflow.toml:7:31: error: inputs.args[3] is a list; write it as a string",
        "workflow.toml:7:38: error: inputs.args[4] is a table; write it as a string",
    ]


@pytest.mark.parametrize("path", ["/etc/agents.just", "../agents.just", "tools/../../x", ""])
def test_justfile_is_a_relative_path_that_stays_inside(path: str) -> None:
    [line] = diagnose(HEAD + f'[steps.a]\nuses = "just:a"\ninputs.justfile = "{path}"\n')
    assert line == (
        "workflow.toml:4:19: error: inputs.justfile is a path relative to the step's directory, "
        f"without '..' (got '{path}')"
    )


def test_justfile_is_a_string() -> None:
    [line] = diagnose(HEAD + '[steps.a]\nuses = "just:a"\ninputs.justfile = 1\n')
    assert (
        line == "workflow.toml:4:19: error: inputs.justfile is an integer; write a path as a string"
    )


def test_a_justfile_from_an_expression_is_checked_when_it_runs() -> None:
    workflow = load(
        HEAD + '[parameters.f]\ndefault = "a.just"\n'
        '[steps.a]\nuses = "just:a"\ninputs.justfile = "${{ params.f }}"\n'
    )
    assert plan_workflow(workflow).steps[0].inputs == {"justfile": "a.just"}


def test_unknown_inputs_are_reported_at_their_key() -> None:
    lines = diagnose(
        HEAD + '[steps.a]\nuses = "just:a"\ninputs = { arg = ["x"], env = "y", justfile = "j" }\n'
    )
    assert lines == [
        "workflow.toml:4:12: error: a just recipe step has no input 'arg'; did you mean 'args'?",
        "workflow.toml:4:25: error: a just recipe step has no input 'env'; its inputs are "
        "'args' and 'justfile'",
    ]


def test_run_and_a_just_recipe_conflict() -> None:
    [line] = diagnose(HEAD + '[steps.a]\nrun = "x"\nuses = "just:a"\n')
    assert "a step has 'run' or 'uses', not both" in line


def test_an_action_stays_python_only() -> None:
    [line] = diagnose(HEAD + '[actions.x]\nuses = "just:a"\n[steps.a]\nuses = "x"\n')
    assert "an action's 'uses' must be 'python:package.module:function'" in line
