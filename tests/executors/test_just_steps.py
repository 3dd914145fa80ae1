"""``uses = "just:RECIPE"`` steps, run with the real ``just`` (the ``rust-just`` package) in real
subprocesses: through ``wayang run`` on a SQLite store, through the executor, and the other way
round, a recipe that calls ``wayang run``."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from cli_runs import Wayang, child_env, wait_for
from wayang.executors import LocalExecutor, TaskResult, TaskSpec
from wayang.executors.just import JustExecutor, find_just
from wayang.model.loader import parse_workflow
from wayang.model.plan import plan_workflow

WAYANG = Path(sys.executable).parent / "wayang"
GUIDE = Path(__file__).resolve().parents[2] / "docs" / "migrating-from-just.md"

RECIPES = """
    set positional-arguments

    lint *args:
        printf 'arg=%s\\n' "$@"
        echo "step=$WAYANG_STEP_ID greeting=$GREETING pwd=$(pwd)"
        echo "count=$#" >> "$WAYANG_OUTPUT"

    fail:
        echo "about to fail" >&2
        exit 3

    where:
        echo "from {{justfile()}} in $(pwd)"
"""


@pytest.fixture
def just() -> str:
    found = find_just()
    assert found is not None, "the test extra installs rust-just: pip install -e '.[test]'"
    return found


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def steps_of(wayang: Wayang, workflow: Path) -> dict[str, Any]:
    result = wayang("run", str(workflow), "--json")
    steps: dict[str, Any] = result.json()["steps"]
    return steps


def log_lines(wayang: Wayang, step: str) -> list[tuple[str, str]]:
    records = [json.loads(line) for line in wayang("logs", "--json").lines]
    records = [r for r in records if r["step"] == step]
    return [(r["stream"], r["line"]) for r in records]


def detail(wayang: Wayang, step: str) -> str:
    """The last column of the step's row in ``wayang status``: its error."""
    row = next(line for line in wayang("status").lines if line.startswith(f"{step} "))
    return re.split(r"\s{2,}", row.strip(), maxsplit=4)[-1]


def execute(spec: TaskSpec, executor: Any = None) -> tuple[TaskResult, list[tuple[str, str]]]:
    lines: list[tuple[str, str]] = []
    runner = executor or LocalExecutor()
    result = asyncio.run(runner.execute(spec, lambda stream, line: lines.append((stream, line))))
    return result, lines


def task(cwd: Path, uses: str, **changes: Any) -> TaskSpec:
    fields: dict[str, Any] = {
        "run_id": "r",
        "step_id": "s",
        "attempt": 1,
        "idempotency_key": "r/s",
        "command": None,
        "uses": uses,
        "inputs": {},
        "env": {},
        "cwd": str(cwd),
        "timeout_s": None,
    }
    return TaskSpec(**(fields | changes))


# ------------------------------------------------------------------------------ through wayang run


def test_a_recipe_runs_as_a_step_with_its_args_env_logs_and_outputs(
    wayang: Wayang, tmp_path: Path, just: str
) -> None:
    write(tmp_path / "agents.just", RECIPES)
    workflow = write(
        tmp_path / "workflow.toml",
        """
        id = "lint"
        [parameters.target]
        default = "src dir"
        [steps.lint]
        uses = "just:lint"
        inputs = { args = ["--fix", "${{ params.target }}", "it's"] }
        env = { GREETING = "hello" }
        """,
    )
    steps = steps_of(wayang, workflow)
    assert steps["lint"]["status"] == "succeeded"
    assert steps["lint"]["outputs"] == {"count": "3"}
    stdout = [line for stream, line in log_lines(wayang, "lint") if stream == "stdout"]
    assert stdout == [
        "arg=--fix",
        "arg=src dir",  # one argument, spaces and all
        "arg=it's",
        f"step=lint greeting=hello pwd={tmp_path}",
    ]


def test_a_failing_recipe_fails_the_step_with_its_exit_status(
    wayang: Wayang, tmp_path: Path, just: str
) -> None:
    write(tmp_path / "agents.just", RECIPES)
    workflow = write(
        tmp_path / "workflow.toml",
        """
        id = "fails"
        [steps.fail]
        uses = "just:fail"
        [steps.after]
        needs = ["fail"]
        run = "echo never"
        """,
    )
    steps = steps_of(wayang, workflow)
    assert (steps["fail"]["status"], steps["after"]["status"]) == ("failed", "skipped")
    assert (
        detail(wayang, "fail") == "exit status 3: recipe `fail` failed on line 11 with exit code 3"
    )
    assert ("stderr", "about to fail") in log_lines(wayang, "fail")


def test_a_missing_recipe_fails_the_step_saying_so(
    wayang: Wayang, tmp_path: Path, just: str
) -> None:
    write(tmp_path / "agents.just", RECIPES)
    workflow = write(tmp_path / "workflow.toml", 'id = "w"\n[steps.x]\nuses = "just:lnt"\n')
    assert steps_of(wayang, workflow)["x"]["status"] == "failed"
    assert detail(wayang, "x") == "exit status 1: justfile does not contain recipe `lnt`"


def test_the_agent_tools_justfile_comes_first_and_recipes_run_in_the_step_directory(
    wayang: Wayang, tmp_path: Path, just: str
) -> None:
    tools = write(tmp_path / ".agent-tools" / "agents.just", RECIPES)
    write(tmp_path / "agents.just", "where:\n    echo wrong file\n")
    workflow = write(tmp_path / "workflow.toml", 'id = "w"\n[steps.where]\nuses = "just:where"\n')
    assert steps_of(wayang, workflow)["where"]["status"] == "succeeded"
    assert ("stdout", f"from {tools} in {tmp_path}") in log_lines(wayang, "where")


def test_a_workflow_in_a_sub_folder_finds_the_tools_above_it(
    wayang: Wayang, tmp_path: Path, just: str
) -> None:
    # A workspace keeps today's tools in .agent-tools/ at its top; the workflow may be deeper.
    tools = write(tmp_path / ".agent-tools" / "agents.just", RECIPES)
    workflow = write(
        tmp_path / "services" / "api" / "workflow.toml",
        'id = "w"\n[steps.w]\nuses = "just:where"\n',
    )
    assert steps_of(wayang, workflow)["w"]["status"] == "succeeded"
    assert ("stdout", f"from {tools} in {workflow.parent}") in log_lines(wayang, "w")


def test_inputs_justfile_names_the_file(wayang: Wayang, tmp_path: Path, just: str) -> None:
    chosen = write(tmp_path / "ci" / "tasks.just", RECIPES)
    write(tmp_path / "agents.just", "where:\n    echo wrong file\n")
    workflow = write(
        tmp_path / "workflow.toml",
        'id = "w"\n[steps.where]\nuses = "just:where"\ninputs.justfile = "ci/tasks.just"\n',
    )
    assert steps_of(wayang, workflow)["where"]["status"] == "succeeded"
    assert ("stdout", f"from {chosen} in {tmp_path}") in log_lines(wayang, "where")


def test_without_agents_just_just_finds_a_justfile_upward(
    wayang: Wayang, tmp_path: Path, just: str
) -> None:
    found = write(tmp_path / "justfile", RECIPES)
    workflow = write(
        tmp_path / "pkg" / "workflow.toml", 'id = "w"\n[steps.w]\nuses = "just:where"\n'
    )
    assert steps_of(wayang, workflow)["w"]["status"] == "succeeded"
    # just's own rule: without --justfile, recipes run where the justfile is.
    assert ("stdout", f"from {found} in {tmp_path}") in log_lines(wayang, "w")


def test_a_recipe_that_outlives_the_timeout_is_stopped(
    wayang: Wayang, tmp_path: Path, just: str
) -> None:
    write(
        tmp_path / "agents.just",
        """
        slow:
            sh -c 'echo $$ > sleeper.pid; exec sleep 30'
        """,
    )
    workflow = write(
        tmp_path / "workflow.toml",
        'id = "w"\n[steps.slow]\nuses = "just:slow"\ntimeout = "500ms"\n',
    )
    assert steps_of(wayang, workflow)["slow"]["status"] == "failed"
    assert detail(wayang, "slow") == "timed out after 0.5s"
    pid = int((tmp_path / "sleeper.pid").read_text())
    wait_for(lambda: not _alive(pid), what="the recipe's process to be gone")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ------------------------------------------------------------------------------ the other way round


def test_a_recipe_calls_wayang_run(wayang: Wayang, db: Path, tmp_path: Path, just: str) -> None:
    write(
        tmp_path / "agents.just",
        """
        wayang := "wayang"

        check:
            {{wayang}} run workflow.toml --param who=just --json > result.json
        """,
    )
    write(
        tmp_path / "workflow.toml",
        """
        id = "greet"
        [parameters.who]
        [steps.hello]
        run = 'echo "greeting=hello ${{ params.who }}" >> "$WAYANG_OUTPUT"'
        """,
    )
    done = subprocess.run(
        [just, "--justfile", "agents.just", f"wayang={WAYANG}", "check"],
        cwd=tmp_path,
        env=child_env(db),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = wayang("status", "--json").json()  # the run is in the store, for every command
    assert (result["workflow_id"], result["status"]) == ("greet", "succeeded")
    assert result["steps"]["hello"]["outputs"] == {"greeting": "hello just"}


def test_a_just_step_whose_recipe_runs_another_workflow(
    wayang: Wayang, tmp_path: Path, just: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAYANG_BIN", str(WAYANG))
    write(
        tmp_path / "agents.just",
        """
        inner:
            {{env("WAYANG_BIN")}} run inner.toml
        """,
    )
    write(tmp_path / "inner.toml", 'id = "inner"\n[steps.hello]\nrun = "echo inner"\n')
    outer = write(tmp_path / "outer.toml", 'id = "outer"\n[steps.call]\nuses = "just:inner"\n')
    assert steps_of(wayang, outer)["call"]["status"] == "succeeded"
    runs = {r["workflow_id"]: r["status"] for r in wayang("runs", "--json").json()}
    assert runs == {"outer": "succeeded", "inner": "succeeded"}


# ------------------------------------------------------------------------------ the executor


def test_a_failed_recipe_keeps_its_exit_code(tmp_path: Path, just: str) -> None:
    write(tmp_path / "agents.just", RECIPES)
    result, lines = execute(task(tmp_path, "just:fail"))
    assert (result.status, result.exit_code) == ("failed", 3)
    assert lines[-1] == ("stderr", "error: recipe `fail` failed on line 11 with exit code 3")


def test_without_just_the_step_fails_saying_how_to_install_it(tmp_path: Path) -> None:
    write(tmp_path / "agents.just", RECIPES)
    result, lines = execute(task(tmp_path, "just:lint"), JustExecutor(find=lambda: None))
    assert (result.status, lines) == ("failed", [])
    assert result.error == (
        "cannot run just:lint: 'just' is not installed; pip install 'wayang[just]', "
        "or install just (https://just.systems)"
    )


def test_just_is_found_beside_python_when_not_on_path(
    monkeypatch: pytest.MonkeyPatch, just: str
) -> None:
    monkeypatch.setenv("PATH", "")
    assert find_just() == str(Path(sys.executable).parent / "just")


@pytest.mark.parametrize(
    ("inputs", "error"),
    [
        ({"justfile": "../agents.just"}, "inputs.justfile is a path relative to the step's"),
        ({"justfile": "missing.just"}, "justfile 'missing.just' not found in "),
        ({"args": "--fix"}, "inputs.args is a list of strings, not str"),
        ({"args": [["a"]]}, "inputs.args[0] is list; each argument is a string"),
        ({"flags": ["-v"]}, "a just step takes inputs 'args' and 'justfile', not 'flags'"),
    ],
)
def test_inputs_that_reach_the_executor_unchecked_fail_the_attempt(
    tmp_path: Path, just: str, inputs: dict[str, Any], error: str
) -> None:
    # Inputs mapped from another step's outputs at run time were never validated.
    write(tmp_path / "agents.just", RECIPES)
    result, lines = execute(task(tmp_path, "just:lint", inputs=inputs))
    assert (result.status, lines) == ("failed", [])
    assert result.error is not None and result.error.startswith(error)


def test_scalar_args_from_expressions_become_text(tmp_path: Path, just: str) -> None:
    write(tmp_path / "agents.just", RECIPES)
    spec = task(tmp_path, "just:lint", inputs={"args": [3, 1.5, True]}, env={"GREETING": "x"})
    result, lines = execute(spec)
    assert result.status == "succeeded", lines
    assert [line for stream, line in lines if stream == "stdout"][:3] == [
        "arg=3",
        "arg=1.5",
        "arg=true",
    ]


# ------------------------------------------------------------------------------ the migration guide


def _blocks(language: str) -> list[str]:
    text = GUIDE.read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


def test_the_guides_workflows_validate_and_plan() -> None:
    [workflow] = _blocks("toml")
    plan = plan_workflow(parse_workflow(workflow), {"prompt": "fix the flaky login test"})
    uses = {step.id: step.uses for step in plan.steps}
    assert uses["agent"] == "just:agent" and uses["test"] == "just:test"


def test_the_guides_justfiles_parse_and_have_the_recipes_the_workflow_calls(
    tmp_path: Path, just: str
) -> None:
    before, after = _blocks("just")
    recipes = []
    for text in (before, after):
        path = write(tmp_path / "agents.just", text)
        done = subprocess.run(
            [just, "--justfile", str(path), "--summary"], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        recipes.append(done.stdout.split())
    assert recipes == [
        ["agent", "fix", "lint", "prepare", "summarise", "test"],
        ["agent", "fix", "fix-all", "test"],
    ]


def test_the_guides_wrapper_recipes_run_the_workflow_once_or_in_parallel(
    wayang: Wayang, db: Path, tmp_path: Path, just: str
) -> None:
    _, after = _blocks("just")
    write(tmp_path / "agents.just", after)
    write(
        tmp_path / "workflow.toml",
        """
        id = "agent-fix"
        [parameters.prompt]
        required = true
        [steps.work]
        run = 'test ${{ params.prompt }} != broken && echo did=${{ params.prompt }} >> "$WAYANG_OUTPUT"'
        """,
    )

    def recipe(*argv: str) -> int:
        command = [just, "-f", "agents.just", f"wayang={WAYANG}", *argv]
        done = subprocess.run(command, cwd=tmp_path, env=child_env(db), timeout=60)
        return done.returncode

    assert recipe("fix", "fix the flaky login test") == 0
    assert recipe("fix-all", "task one", "task two") == 0
    assert recipe("fix-all", "task three", "broken") != 0  # one failed run fails the recipe
    runs = wayang("runs", "--json").json()
    assert len(runs) == 5
    did = []
    for run in runs:
        status = wayang("status", run["run_id"], "--json").json()
        did.append(status["steps"]["work"]["outputs"].get("did"))
    assert sorted(filter(None, did)) == [
        "fix the flaky login test",
        "task one",
        "task three",
        "task two",
    ]
