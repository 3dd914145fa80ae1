"""The run commands, driven in this process on a real SQLite store with real shell and Python steps.

Signals, crashes, other processes and detached runs are in ``test_run_processes.py``.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

from cli_runs import Wayang

CLOCK = r"\d\d:\d\d:\d\d"
STEP_KEYS = {"status", "attempts", "outputs", "duration_s"}

PIPELINE = """
    id = "pipeline"
    version = "1.0.0"

    [parameters.who]
    type = "string"
    default = "world"

    [steps.a]
    run = 'echo "a" >> ledger; echo "hello ${{ params.who }}"; echo "name=value" >> "$WAYANG_OUTPUT"'

    [steps.b]
    needs = ["a"]
    run = 'echo "b" >> ledger; echo "echoed=got-${{ steps.a.outputs.name }}" >> "$WAYANG_OUTPUT"'

    [steps.py]
    needs = ["b"]
    uses = "python:wayang_test_steps:flexible"
    inputs = { first = "${{ steps.b.outputs.echoed }}", who = "${{ params.who }}" }

    [steps.only-ada]
    needs = ["a"]
    when = "params.who == 'ada'"
    run = "echo never"
"""

FLAKY = """
    id = "flaky"

    [steps.a]
    run = 'echo "a" >> ledger'

    [steps.check]
    needs = ["a"]
    run = 'echo "check" >> ledger; echo "checking" >&2; test -f ok'
    retry = { attempts = 3, delay = "100ms", backoff = "fixed", jitter = false }

    [steps.after]
    needs = ["check"]
    run = 'echo "after" >> ledger'
"""


def ledger(tmp_path: Path) -> list[str]:
    path = tmp_path / "ledger"
    return path.read_text().split() if path.exists() else []


def run_id_of(result_out: str) -> str:
    found = re.search(r"^run (\S+) ", result_out, re.MULTILINE)
    assert found, result_out
    return found.group(1)


# ------------------------------------------------------------------------------ run


def test_run_json_has_exactly_the_documented_shape(
    wayang: Wayang, workflow: Callable[[str], str], tmp_path: Path
) -> None:
    result = wayang("run", workflow(PIPELINE), "--json")
    assert result.code == 0, result.err
    data = result.json()
    assert set(data) == {"run_id", "status", "steps"}
    assert data["status"] == "succeeded"
    assert list(data["steps"]) == ["a", "b", "only-ada", "py"]  # plan order
    assert all(set(step) == STEP_KEYS for step in data["steps"].values())
    steps = data["steps"]
    assert steps["a"]["outputs"] == {"name": "value"}
    assert steps["b"]["outputs"] == {"echoed": "got-value"}  # an output flowed into a command
    assert steps["py"]["outputs"] == {"first": "got-value", "who": "world"}  # and into Python
    assert steps["only-ada"] == {"status": "skipped", "attempts": 0, "outputs": {}, "duration_s": 0}
    assert steps["a"]["attempts"] == 1 and steps["a"]["duration_s"] >= 0
    assert result.err == ""
    assert ledger(tmp_path) == ["a", "b"]


def test_run_prints_a_line_per_step_transition_off_a_terminal(
    wayang: Wayang, workflow: Callable[[str], str]
) -> None:
    result = wayang("run", workflow(PIPELINE), "--param", "who=ada")
    assert result.code == 0, result.err
    lines = result.lines
    run_id = run_id_of(lines[0].partition(" ")[2])
    assert re.fullmatch(rf"{CLOCK} run {run_id} started: pipeline 1\.0\.0, 4 steps", lines[0])
    body = [line.partition(" ")[2] for line in lines[1:-1]]
    assert all(re.match(CLOCK, line) for line in lines[:-1])
    assert body[:2] == ["a started", body[1]] and re.fullmatch(
        r"a succeeded \(\d\.\d\ds\)", body[1]
    )
    assert "only-ada started" in body and "py started" in body
    assert re.fullmatch(rf"run {run_id} succeeded in \d+\.\d+s", lines[-1])


def test_a_failing_step_is_retried_then_fails_the_run(
    wayang: Wayang, workflow: Callable[[str], str], tmp_path: Path
) -> None:
    path = workflow(FLAKY)
    result = wayang("run", path)
    assert result.code == 1
    body = [line.partition(" ")[2] for line in result.lines[:-1]]
    assert "check failed (attempt 1/3): exit status 1, retrying in 0.10s" in body
    assert "check started (attempt 2/3)" in body
    assert body[-2:] == [
        "check failed (attempt 3/3): exit status 1",
        "after skipped: the run stopped before this step",
    ]
    run_id = run_id_of(result.lines[-1])
    assert result.lines[-1].startswith(f"run {run_id} failed in ")
    assert result.lines[-1].endswith(": a step failed (check)")
    assert f"'wayang logs {run_id} --step check'" in result.err
    assert ledger(tmp_path) == ["a", "check", "check", "check"]

    data = wayang("run", path, "--json").json()
    assert data["status"] == "failed"
    assert data["steps"]["check"]["status"] == "failed" and data["steps"]["check"]["attempts"] == 3
    assert data["steps"]["after"]["status"] == "skipped"


def test_independent_steps_run_in_parallel(wayang: Wayang, workflow: Callable[[str], str]) -> None:
    # Each step waits for the other to have started: only parallel steps can both succeed.
    wait = "touch {me}.up; i=0; while [ ! -f {other}.up ]; do i=$((i+1)); [ $i -gt 50 ] && exit 1; sleep 0.05; done"
    text = f"""
        id = "together"
        [steps.left]
        run = '{wait.format(me="left", other="right")}'
        [steps.right]
        run = '{wait.format(me="right", other="left")}'
    """
    result = wayang("run", workflow(text), "--parallel", "2", "--json")
    assert result.code == 0, result.out
    assert {s["status"] for s in result.json()["steps"].values()} == {"succeeded"}


def test_timeout_stops_the_run_as_failed(wayang: Wayang, workflow: Callable[[str], str]) -> None:
    path = workflow('id = "slow"\n[steps.nap]\nrun = "sleep 5"\n')
    result = wayang("run", path, "--timeout", "300ms", "--json")
    assert result.code == 1
    assert result.json()["status"] == "failed"
    status = wayang("status", "--json").json()
    assert status["reason"] == "run timed out after 0.3s"


def test_bad_input_is_refused_before_anything_starts(
    wayang: Wayang, workflow: Callable[[str], str], tmp_path: Path
) -> None:
    path = workflow(PIPELINE)
    result = wayang("run", path, "--param", "who")
    assert (result.code, result.err) == (2, "error: --param expects NAME=VALUE, got 'who'\n")
    result = wayang("run", path, "--param", "whom=ada")
    assert result.code == 2 and "whom" in result.err
    result = wayang("run", path, "--timeout", "soon")
    assert result.code == 2 and result.err.startswith("error: --timeout: invalid duration 'soon'")
    result = wayang("run", str(tmp_path / "missing.toml"))
    assert result.code == 2 and "no such file" in result.err
    assert wayang("runs", "--json").json() == []
    assert ledger(tmp_path) == []


def test_a_missing_requirement_is_refused_before_anything_starts(
    wayang: Wayang, workflow: Callable[[str], str], tmp_path: Path
) -> None:
    path = workflow("""
        id = "needy"
        [requirements]
        env = ["WAYANG_TEST_NEVER_SET"]
        [steps.a]
        run = 'echo "a" >> ledger'
    """)
    result = wayang("run", path)
    assert result.code == 2
    assert (
        "error: workflow needy needs what this machine lacks (nothing was started):" in result.err
    )
    assert "environment variable WAYANG_TEST_NEVER_SET is not set" in result.err
    assert wayang("runs", "--json").json() == [] and ledger(tmp_path) == []
    assert wayang("run", path, "--env", "WAYANG_TEST_NEVER_SET=1", "--json").code == 0


# ------------------------------------------------------------------------------ reading runs


def test_status_runs_and_logs(wayang: Wayang, workflow: Callable[[str], str]) -> None:
    failed = wayang("run", workflow(FLAKY), "--json").json()["run_id"]
    succeeded = wayang("run", workflow(PIPELINE), "--json").json()["run_id"]

    status = wayang("status", failed, "--json").json()
    assert set(status) == {"run_id", "status", "steps", "workflow_id", "created_at"} | {
        "updated_at",
        "reason",
        "policy_denials",
        "workspace",
    }
    assert (status["workflow_id"], status["status"], status["reason"]) == (
        "flaky",
        "failed",
        "a step failed",
    )
    assert status["created_at"].endswith("+00:00")
    assert wayang("status", "--json").json()["run_id"] == succeeded  # the latest by default

    text = wayang("status", failed)
    assert text.code == 0
    assert text.lines[0] == f"run {failed}  flaky 0.1.0  failed"
    rows = {line.split()[0]: line.split() for line in text.lines[4:]}
    assert rows["check"][1:3] == ["failed", "3/3"] and text.lines[-2].endswith("exit status 1")
    assert rows["after"][1] == "skipped"

    listed = wayang("runs", "--json").json()
    assert [r["run_id"] for r in listed] == [succeeded, failed]
    assert [r["run_id"] for r in wayang("runs", "--status", "failed", "--json").json()] == [failed]
    table = wayang("runs", "--limit", "1").lines
    assert table[0].split() == ["run", "workflow", "status", "created", "updated"]
    assert len(table) == 2 and table[1].startswith(f"{succeeded}  pipeline  succeeded")

    logs = wayang("logs", failed, "--step", "check")
    assert logs.lines == [
        line
        for line in logs.lines
        if re.fullmatch(rf"{CLOCK} check\[\d\] stderr \| checking", line)
    ]
    assert [line.split()[1] for line in logs.lines] == ["check[1]", "check[2]", "check[3]"]
    records = [json.loads(line) for line in wayang("logs", succeeded, "--json").lines]
    assert [(r["step"], r["stream"], r["line"]) for r in records] == [
        ("a", "stdout", "hello world")
    ]
    assert set(records[0]) == {"seq", "at", "step", "attempt", "stream", "line"}
    follow = wayang("logs", succeeded, "--follow")  # a finished run: prints what there is, ends
    assert follow.code == 0 and len(follow.lines) == 1

    unknown = wayang("logs", failed, "--step", "nope")
    assert unknown.code == 2 and "its steps are: a, check, after" in unknown.err


def test_an_unknown_run_id_says_how_to_list_runs(wayang: Wayang) -> None:
    for command in ("status", "logs", "cancel", "resume", "retry", "replay"):
        result = wayang(command, "20990101-000000-deadbeef")
        assert result.code == 2, command
        assert result.err == (
            "error: no run '20990101-000000-deadbeef' in this store; 'wayang runs' lists runs\n"
        )
    empty = wayang("status")
    assert empty.code == 2 and "no runs yet; start one with 'wayang run FILE'" in empty.err
    assert wayang("runs").err == "no runs in this store yet\n"


# ------------------------------------------------------------------------------ finished runs


def test_resume_and_cancel_of_a_finished_run(
    wayang: Wayang, workflow: Callable[[str], str]
) -> None:
    run_id = wayang("run", workflow(FLAKY), "--json").json()["run_id"]
    resumed = wayang("resume", run_id, "--json")
    assert resumed.code == 1 and resumed.json()["status"] == "failed"
    assert set(resumed.json()) == {"run_id", "status", "steps"}
    text = wayang("resume", run_id)
    assert text.code == 1 and text.out.startswith(f"run {run_id} failed in ")
    cancelled = wayang("cancel", run_id)
    assert cancelled.code == 1
    assert cancelled.err == f"error: run {run_id} already finished (failed); nothing to cancel\n"


def test_retry_reuses_what_succeeded_and_from_reruns_the_rest(
    wayang: Wayang, workflow: Callable[[str], str], tmp_path: Path
) -> None:
    first = wayang("run", workflow(FLAKY), "--json").json()["run_id"]
    assert ledger(tmp_path) == ["a", "check", "check", "check"]
    (tmp_path / "ok").touch()

    retried = wayang("retry", first)
    assert retried.code == 0, retried.out
    second = run_id_of(retried.lines[-1])
    assert retried.err.startswith(f"retrying run {first} as {second}")
    assert any(line.endswith(f"a reused from {first}") for line in retried.lines)
    assert ledger(tmp_path) == ["a", "check", "check", "check", "check", "after"]

    again = wayang("retry", second, "--from", "check", "--json")
    assert again.code == 0 and again.json()["steps"]["a"]["attempts"] == 0  # reused
    assert ledger(tmp_path)[-2:] == ["check", "after"] and ledger(tmp_path).count("a") == 1

    unknown = wayang("retry", first, "--from", "nope")
    assert unknown.code == 2 and "its steps are: a, check, after" in unknown.err


# ------------------------------------------------------------------------------ replay, dlq


def test_replay_reproduces_a_run_and_reports_a_divergence(
    wayang: Wayang, workflow: Callable[[str], str], db: Path
) -> None:
    run_id = wayang("run", workflow(PIPELINE), "--json").json()["run_id"]
    result = wayang("replay", run_id)
    assert result.code == 0
    assert re.fullmatch(rf"run {run_id}: \d+ events, \d+ decisions, reproduced", result.out.strip())
    assert wayang("replay", run_id, "--json").json()["reproduced"] is True

    with sqlite3.connect(db) as conn:  # the history now says the skipped step was skipped why?
        conn.execute(
            "UPDATE events SET data = json_set(data, '$.reason', 'because') "
            "WHERE run_id = ? AND type = 'StepSkipped'",
            (run_id,),
        )
    conn.close()
    diverged = wayang("replay", run_id)
    assert diverged.code == 1
    assert re.search(r"diverges at event \d+: replay produced StepSkipped", diverged.lines[0])
    assert "reason='because'" in diverged.lines[1] and diverged.lines[1].startswith("  recorded:")
    assert diverged.lines[2].startswith("  replayed: StepSkipped(")
    data = wayang("replay", run_id, "--json").json()
    assert data["reproduced"] is False
    assert data["divergence"]["recorded"]["data"]["reason"] == "because"


def test_dlq_list_and_replay(
    wayang: Wayang, workflow: Callable[[str], str], tmp_path: Path
) -> None:
    failed = wayang("run", workflow(FLAKY), "--json").json()["run_id"]
    letters = wayang("dlq", "list", "--json").json()
    assert [(d["run_id"], d["step"], d["attempts"], d["error"]) for d in letters] == [
        (failed, "check", 3, "exit status 1")
    ]
    listed = wayang("dlq", "list")
    assert listed.lines[0].split() == ["id", "run", "step", "attempts", "at", "error"]
    letter = letters[0]["id"]

    missing = wayang("dlq", "replay", "nope")
    assert missing.code == 2
    assert missing.err == "error: no dead letter 'nope'; 'wayang dlq list' shows their ids\n"

    (tmp_path / "ok").touch()
    replayed = wayang("dlq", "replay", letter, "--json")
    assert replayed.code == 0, replayed.err
    steps = replayed.json()["steps"]
    assert (steps["a"]["attempts"], steps["check"]["status"], steps["after"]["status"]) == (
        0,
        "succeeded",
        "succeeded",
    )
    assert ledger(tmp_path).count("a") == 1
    assert wayang("dlq", "list", "--json").json() == []
    assert wayang("dlq", "replay", letter).code == 2  # taken: it is gone


def test_help_lists_the_run_commands(wayang: Wayang) -> None:
    out = wayang("--help").out
    for command in ("run", "status", "runs", "logs", "cancel", "resume", "retry", "replay", "dlq"):
        assert re.search(rf"^  {command} ", out, re.MULTILINE), command
        assert wayang(command, "--help").code == 0
    assert "_drive" not in out
    assert "--store PATH|URL" in out
