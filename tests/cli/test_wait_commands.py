"""The commands for waiting steps (approvals, negotiations, external steps, events), driven in
this process on a real SQLite store: a run is parked on its wait by an engine that then stops,
so the command itself has to adopt the run to answer its signal."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
from pathlib import Path

import pytest

from cli_runs import Wayang
from runtime_helpers import FAST, start
from wayang.app import App, Settings
from wayang.engine.state import RunState, StepStatus
from wayang.runtime.operations import load_run

EXPENSE = """
    id = "exp"
    [parameters.amount]
    type = "number"
    default = 50
    [steps.review]
    kind = "approval"
    assignees = ["alice", "role:finance"]
    required_fields = ["comment"]
    [steps.pay]
    needs = ["review"]
    run = "echo paid"
"""

DEAL = """
    id = "deal"
    [steps.haggle]
    kind = "negotiation"
    parties = ["buyer", "seller"]
    terms.price = { type = "number", min = 10, max = 100 }
"""

TICKET = """
    id = "ticket"
    [steps.ticket]
    kind = "noop"
    external = true
"""


def park(db: Path, tmp_path: Path, text: str, step: str) -> str:
    """Start the workflow, wait until ``step`` waits, then stop the engine: an orphaned run."""
    path = tmp_path / "workflow.toml"
    path.write_text(textwrap.dedent(text), "utf-8")
    app = App(Settings(store=str(db), engine=FAST))

    async def go() -> str:
        async with app.engine() as engine:
            run_id, done = await start(engine, path)
            done.add_done_callback(lambda f: f.cancelled() or f.exception())
            deadline = time.monotonic() + 10
            while True:
                state = engine.live_state(run_id)
                entry = state.steps.get(step) if state is not None else None
                if entry is not None and entry.status is StepStatus.WAITING:
                    break
                assert time.monotonic() < deadline, "the step never waited"
                await asyncio.sleep(0.02)
            await engine.flush()
            return run_id

    try:
        return asyncio.run(go())
    finally:
        app.close()


def stored(db: Path, run_id: str) -> RunState:
    app = App(Settings(store=str(db), engine=FAST))
    try:
        return load_run(app.store, run_id).state
    finally:
        app.close()


@pytest.fixture
def expense(db: Path, tmp_path: Path) -> str:
    return park(db, tmp_path, EXPENSE, "review")


# ------------------------------------------------------------------------------ approvals


def test_approve_adopts_the_orphaned_run_and_finishes_it(
    wayang: Wayang, db: Path, expense: str
) -> None:
    result = wayang("approve", expense, "review", "--comment", "ok", "--as", "alice")
    assert result.code == 0, result.err
    assert "granted" in result.out
    state = stored(db, expense)
    assert state.status.value == "succeeded"
    assert state.steps["pay"].status is StepStatus.SUCCEEDED
    status = wayang("status", expense)
    assert status.code == 0, status.err
    assert "succeeded" in status.out

    again = wayang("approve", expense, "review", "--comment", "ok", "--as", "alice")
    assert again.code == 2
    assert "already" in again.err


def test_approve_json(wayang: Wayang, expense: str) -> None:
    result = wayang("approve", expense, "review", "--comment", "ok", "--as", "alice", "--json")
    assert result.code == 0, result.err
    data = result.json()
    assert set(data) == {"seq", "status", "outcome"}
    assert data["status"] == "accepted"
    assert isinstance(data["seq"], int)


def test_as_user_defaults_to_wayang_user(
    wayang: Wayang, expense: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAYANG_USER", "alice")
    result = wayang("approve", expense, "review", "--comment", "ok")
    assert result.code == 0, result.err


def test_refused_approvals_exit_2_and_record_nothing(
    wayang: Wayang, db: Path, expense: str
) -> None:
    before = stored(db, expense).version
    stranger = wayang("approve", expense, "review", "--comment", "ok", "--as", "mallory")
    assert stranger.code == 2
    assert "not an assignee" in stranger.err
    no_comment = wayang("approve", expense, "review", "--as", "alice")
    assert no_comment.code == 2
    assert "--comment" in no_comment.err
    not_approval = wayang("approve", expense, "pay", "--comment", "ok", "--as", "alice")
    assert not_approval.code == 2
    assert "not an approval" in not_approval.err
    unknown = wayang("approve", "no-such-run", "review", "--comment", "ok", "--as", "alice")
    assert unknown.code == 2
    assert unknown.err.strip()
    assert stored(db, expense).version == before
    assert stored(db, expense).steps["review"].status is StepStatus.WAITING


def test_reject_needs_a_comment_and_fails_the_run(wayang: Wayang, db: Path, expense: str) -> None:
    bare = wayang("reject", expense, "review", "--as", "alice")
    assert bare.code == 2
    assert "--comment" in bare.err
    result = wayang("reject", expense, "review", "--comment", "too much", "--as", "alice")
    assert result.code == 0, result.err
    assert stored(db, expense).status.value == "failed"


def test_approvals_lists_the_pending_approval(wayang: Wayang, expense: str) -> None:
    result = wayang("approvals", "--json")
    assert result.code == 0, result.err
    [wait] = result.json()
    assert wait["run_id"] == expense
    assert wait["workflow_id"] == "exp"
    assert wait["step_id"] == "review"
    assert wait["kind"] == "approval"
    assert wait["who"] == ["alice", "role:finance"]

    table = wayang("approvals")
    assert table.code == 0, table.err
    assert expense in table.out
    assert "alice" in table.out

    mine = wayang("approvals", "--mine", "--as", "alice", "--json")
    assert [w["run_id"] for w in mine.json()] == [expense]
    theirs = wayang("approvals", "--mine", "--as", "mallory", "--json")
    assert theirs.json() == []


# ------------------------------------------------------------------------------ negotiation


def test_offer_counter_accept(wayang: Wayang, db: Path, tmp_path: Path) -> None:
    run_id = park(db, tmp_path, DEAL, "haggle")
    first = wayang("offer", run_id, "haggle", "--terms", '{"price": 50}', "--as", "buyer")
    assert first.code == 0, first.err
    listed = wayang("approvals", "--json").json()
    assert listed[0]["offer"]["terms"] == {"price": 50}
    assert listed[0]["round"] == 1
    counter = wayang("offer", run_id, "haggle", "--terms", '{"price": 80}', "--as", "seller")
    assert counter.code == 0, counter.err
    done = wayang("accept", run_id, "haggle", "--as", "buyer")
    assert done.code == 0, done.err
    state = stored(db, run_id)
    assert state.status.value == "succeeded"
    assert state.steps["haggle"].outputs["price"] == 80


def test_offer_out_of_bounds_or_malformed_is_refused(
    wayang: Wayang, db: Path, tmp_path: Path
) -> None:
    run_id = park(db, tmp_path, DEAL, "haggle")
    too_much = wayang("offer", run_id, "haggle", "--terms", '{"price": 500}', "--as", "buyer")
    assert too_much.code == 2
    assert "price must be ≤ 100" in too_much.err
    broken = wayang("offer", run_id, "haggle", "--terms", '{"price": ', "--as", "buyer")
    assert broken.code == 2
    assert "--terms" in broken.err
    assert "column" in broken.err
    not_object = wayang("offer", run_id, "haggle", "--terms", "[1]", "--as", "buyer")
    assert not_object.code == 2
    assert stored(db, run_id).steps["haggle"].wait["round"] == 0


# ------------------------------------------------------------------------------ external steps


def test_complete_an_external_step(wayang: Wayang, db: Path, tmp_path: Path) -> None:
    run_id = park(db, tmp_path, TICKET, "ticket")
    bad = wayang("complete", run_id, "ticket", "--outputs", '"T-1"', "--as", "ops")
    assert bad.code == 2
    assert "--outputs" in bad.err
    result = wayang("complete", run_id, "ticket", "--outputs", '{"ticket":"T-1"}', "--as", "ops")
    assert result.code == 0, result.err
    state = stored(db, run_id)
    assert state.status.value == "succeeded"
    assert state.steps["ticket"].outputs == {"ticket": "T-1"}


# ------------------------------------------------------------------------------ emit


def test_emit_prints_the_sequence_number(wayang: Wayang) -> None:
    first = wayang("emit", "orders", "--data", '{"id": 1}', "--key", "1")
    assert first.code == 0, first.err
    second = wayang("emit", "orders", "--data", "2", "--json")
    assert second.code == 0, second.err
    assert int(first.out.strip()) < second.json()["seq"]
    bad = wayang("emit", "orders", "--data", "{nope")
    assert bad.code == 2
    assert "--data" in bad.err
    assert bad.out == ""


# ------------------------------------------------------------------------------ status and logs

GUARDED = """
    id = "guarded"
    [parameters.amount]
    type = "number"
    default = 5000
    [steps.pay]
    run = "echo paid"
    [[policy.rules]]
    name = "big-payments"
    action = "execute"
    steps = ["pay"]
    require = "params.amount <= 1000"
    message = "payments over 1000 go through finance"
"""


def test_status_says_what_a_waiting_step_waits_for(wayang: Wayang, expense: str) -> None:
    text = wayang("status", expense)
    assert text.code == 0, text.err
    assert "waiting for approval by alice, role:finance (0/1 approvals)" in text.out
    data = wayang("status", expense, "--json").json()
    assert data["steps"]["review"]["waiting_for"].startswith("approval by alice")
    assert data["policy_denials"] == []


def test_logs_show_votes_between_the_step_lines(wayang: Wayang, expense: str) -> None:
    assert wayang("approve", expense, "review", "--comment", "fine", "--as", "alice").code == 0
    lines = wayang("logs", expense).lines
    events = [line.split(" | ", 1)[1] for line in lines if " event | " in line]
    assert events == [
        "approval requested from alice, role:finance",
        "alice voted approve: fine",
        "approved by alice",
    ]
    paid = next(i for i, line in enumerate(lines) if line.endswith("stdout | paid"))
    assert paid > next(i for i, line in enumerate(lines) if "approved by alice" in line)
    only_pay = wayang("logs", expense, "--step", "pay").lines
    assert only_pay and all(" event | " not in line for line in only_pay)
    as_json = [json.loads(line) for line in wayang("logs", expense, "--json").lines]
    assert {"stream": "event", "step": "review", "line": "approved by alice"}.items() <= next(
        d for d in as_json if d["line"] == "approved by alice"
    ).items()


def test_status_and_logs_show_a_policy_denial_and_its_rule(wayang: Wayang, tmp_path: Path) -> None:
    path = tmp_path / "guarded.toml"
    path.write_text(textwrap.dedent(GUARDED), "utf-8")
    run = wayang("run", str(path), "--json")
    assert run.code == 1
    run_id = run.json()["run_id"]
    status = wayang("status", run_id)
    assert "policy denials:" in status.out
    assert "rule 'big-payments': payments over 1000 go through finance" in status.out
    denial = wayang("status", run_id, "--json").json()["policy_denials"]
    assert [(d["step"], d["action"], d["rule"]) for d in denial] == [
        ("pay", "execute", "big-payments")
    ]
    logs = wayang("logs", run_id).out
    assert "pay event | policy denied execute" in logs
    assert "payments over 1000 go through finance" in logs
