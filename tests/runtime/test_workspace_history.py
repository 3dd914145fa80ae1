"""A workspace's lifecycle in a run's history: made before the first task, cleaned afterwards."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from support.runtime_helpers import make_app, write_workflow
from wayang.app import run_workspace_plan
from wayang.engine import events as ev
from wayang.engine.state import RunStatus, fold
from wayang.ids import new_run_id
from wayang.runtime.operations import prepare_retry, prepare_run
from wayang.runtime.records import read_events
from wayang.runtime.workspaces import (
    WorkspaceChoice,
    manager_for,
    record_cleaned,
    with_workspace,
)

FLOW = """\
id = "noted"
[steps.look]
run = "test -f committed.txt && echo here=$WAYANG_WORKSPACE_ID"
"""


def _repository(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    for command in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "t@example.com"],
        ["git", "config", "user.name", "t"],
    ):
        subprocess.run(command, cwd=repo, check=True)
    (repo / "committed.txt").write_text("yes\n")
    (repo / "agents.just").write_text("hello:\n    echo hello\n")
    write_workflow(repo, FLOW)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "one"], cwd=repo, check=True)
    return repo


def test_the_history_records_the_workspace_and_its_cleaning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAYANG_WORKSPACE_MODE", "per-run")
    repo = _repository(tmp_path)
    flow = repo / "workflow.toml"
    request = prepare_run(flow, {}, {}, parallel=1, timeout_s=None)
    request = with_workspace(request, run_workspace_plan(flow, WorkspaceChoice()))
    app = make_app(tmp_path)
    run_id = new_run_id()

    async def go() -> None:
        async with app.engine() as engine:
            done = engine.start(request.plan, request.started, run_id)
            state = await asyncio.wait_for(done, 30)
            assert state.status is RunStatus.SUCCEEDED

    try:
        asyncio.run(go())
        history = read_events(app.store.load_history(run_id))
        noted = [e for e in history if isinstance(e, ev.WorkspaceNoted)]
        assert [e.kind for e in noted][:2] == ["created", "tooling synced"]
        manager = manager_for(request.started.workspace)
        path = manager.path_of(run_id)
        assert fold(run_id, history).workspace == str(path)
        assert manager.show(run_id).status == "finished"

        cleaned = manager.cleanup(run_id)
        assert not path.exists()
        assert record_cleaned(app.store, run_id, cleaned, 1.0)
        after = read_events(app.store.load_history(run_id))
        assert isinstance(after[-1], ev.WorkspaceNoted)
        assert after[-1].kind == "cleaned"
        assert fold(run_id, after).status is RunStatus.SUCCEEDED
        assert not record_cleaned(app.store, "no-such-run", cleaned, 1.0)
    finally:
        app.close()


PARENT = """\
id = "parent"
[steps.here]
run = "test -f committed.txt"
[steps.child]
needs = ["here"]
kind = "subworkflow"
workflow = "sub/workflow.toml"
"""

CHILD = """\
id = "child"
[steps.look]
run = "echo child-in=$WAYANG_WORKSPACE_ID; test -f ../committed.txt"
"""


def test_a_subworkflow_borrows_its_parents_workspace_and_a_retry_gets_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAYANG_WORKSPACE_MODE", "per-run")
    repo = _repository(tmp_path)
    (repo / "sub").mkdir()
    write_workflow(repo / "sub", CHILD)
    write_workflow(repo, PARENT, "parent.toml")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "two"], cwd=repo, check=True)
    flow = repo / "parent.toml"
    request = prepare_run(flow, {}, {}, parallel=1, timeout_s=None)
    request = with_workspace(request, run_workspace_plan(flow, WorkspaceChoice()))
    app = make_app(tmp_path)
    run_id = new_run_id()

    async def go() -> None:
        async with app.engine() as engine:
            state = await asyncio.wait_for(engine.start(request.plan, request.started, run_id), 30)
            assert state.status is RunStatus.SUCCEEDED, state.reason
            retry = prepare_retry(app.store, run_id, "here")
            again = await asyncio.wait_for(
                engine.start(retry.plan, retry.started, "retry-1", reuse=retry.reuse), 30
            )
            assert again.status is RunStatus.SUCCEEDED, again.reason

    try:
        asyncio.run(go())
        manager = manager_for(request.started.workspace)
        rows = {row.id: row for row in manager.workspaces()}
        # The child ran in the parent's workspace; the parent's record of it stands.
        children = [r.run_id for r in app.store.list_runs() if r.workflow_id == "child"]
        assert len(children) == 2
        seen = {
            line.line
            for child in children
            for line in app.store.read_logs(child)
            if "in=" in line.line
        }
        assert seen == {f"child-in={run_id}", "child-in=retry-1"}
        assert rows[run_id].meta is not None and rows[run_id].meta.run_id == run_id
        assert rows[run_id].status == "finished"
        # The retry worked at the same change, in a workspace of its own.
        assert rows["retry-1"].meta is not None
        assert rows["retry-1"].meta.base_change == rows[run_id].meta.base_change
    finally:
        app.close()
