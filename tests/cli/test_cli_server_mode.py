"""The CLI through a running ``wayang server``: the same commands print the same output and
exit the same way as in this process. A real server runs on the test's store; each command runs
once through it (found by its Unix socket, or named by --server / $WAYANG_SERVER) and once with
--no-server, on copies of the same workflow or on the same run."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import signal
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from server_runs import ServerProcess, free_port, running_server

from cli_runs import Result, Wayang, wait_for
from wayang.client import Client
from wayang.server.daemon import socket_path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

Spawn = Callable[..., subprocess.Popen[str]]

STEADY = """
    id = "steady"
    version = "1.0.0"
    [parameters.who]
    type = "string"
    default = "world"
    [steps.greet]
    run = "echo hello ${{ params.who }}"
    [steps.shout]
    needs = ["greet"]
    run = "echo HELLO; echo loud=yes >> $WAYANG_OUTPUT"
"""

FLAKY = """
    id = "flaky"
    version = "1.0.0"
    [steps.ok]
    run = "echo ok"
    [steps.boom]
    needs = ["ok"]
    run = "test -f ../flag || exit 3"
"""

SLOW = """
    id = "slow"
    version = "1.0.0"
    [steps.nap]
    run = "echo napping; sleep 30"
    [steps.after]
    needs = ["nap"]
    run = "echo after"
"""

TOGETHER = """
    id = "together"
    version = "1.0.0"
    [steps.left]
    run = 'touch left.up; i=0; while [ ! -f right.up ]; do i=$((i+1)); [ $i -gt 50 ] && exit 1; sleep 0.05; done'
    [steps.right]
    run = 'touch right.up; i=0; while [ ! -f left.up ]; do i=$((i+1)); [ $i -gt 50 ] && exit 1; sleep 0.05; done'
"""

NEEDY = """
    id = "needy"
    version = "1.0.0"
    [requirements]
    tools = ["wayang-no-such-tool"]
    env = ["WAYANG_TEST_TOKEN"]
    [steps.go]
    run = "echo go"
"""

BROKEN_STEP = """
config = {"type": "event", "name": "Broken", "subscribes": ["order.created"]}
raise RuntimeError("boom at import")
"""

LONELY_STEP = """
config = {"type": "event", "name": "Lonely", "subscribes": ["order.created"],
          "emits": ["nobody.listens"], "flows": ["orders"]}

def handler(input, ctx):
    pass
"""

REVIEW = """
    id = "review"
    version = "1.0.0"
    [steps.review]
    kind = "approval"
    assignees = ["alice", "bob"]
    required_fields = ["comment"]
    [steps.done]
    needs = ["review"]
    run = "echo done"
"""


@pytest.fixture
def server(db: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server on the test's store (so commands find it by its socket)."""
    with running_server(db, tmp_path) as running:
        yield running


def workflow(tmp_path: Path, name: str, text: str) -> str:
    """``text`` as ``tmp_path/name/workflow.toml``; its path."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "workflow.toml").write_text(textwrap.dedent(text), "utf-8")
    return str(folder / "workflow.toml")


def normal(text: str) -> str:
    """Output with run ids, times and durations blanked, and column padding squeezed."""
    text = re.sub(r"\d{8}-\d{6}-[0-9a-f]{8}", "RUN", text)
    text = re.sub(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?(\+00:00)?", "TIME", text)
    text = re.sub(r"\b\d\d:\d\d:\d\d\b", "CLOCK", text)
    text = re.sub(r"\b\d+(\.\d+)?s\b", "Ns", text)
    text = re.sub(r'"duration_s": [0-9.]+', '"duration_s": N', text)
    return re.sub(r" +", " ", text)


def same(served: Result, local: Result) -> None:
    assert served.code == local.code, (served, local)
    assert normal(served.out) == normal(local.out), (served.out, local.out)
    assert normal(served.err) == normal(local.err), (served.err, local.err)


def both(wayang: Wayang, *argv: str) -> tuple[Result, Result]:
    """``argv`` through the server, then in this process."""
    return wayang(*argv), wayang("--no-server", *argv)


def run_id_of(result: Result) -> str:
    found = re.search(r"\d{8}-\d{6}-[0-9a-f]{8}", result.out + result.err)
    assert found is not None, result
    return found.group(0)


# ------------------------------------------------------------------------------ run


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("server")
def test_run_prints_the_same_through_the_server(wayang: Wayang, tmp_path: Path) -> None:
    first, second = (tmp_path / "a", tmp_path / "b")
    for copy in (first, second):
        shutil.copytree(EXAMPLES / "pipeline", copy)
    served = wayang("run", str(first / "workflow.toml"), "-p", "name=served")
    local = wayang("--no-server", "run", str(second / "workflow.toml"), "-p", "name=served")
    assert served.code == local.code == 0, served
    # Steps in parallel finish in either order: the same lines, the same last line.
    assert sorted(normal(served.out).splitlines()) == sorted(normal(local.out).splitlines())
    assert normal(served.lines[-1]) == normal(local.lines[-1])
    assert "started: pipeline 0.1.0, 5 steps" in served.out
    assert "integration failed (attempt 1/3)" in served.out

    served_json = wayang("run", "--json", str(first / "workflow.toml"))
    local_json = wayang("--no-server", "run", "--json", str(second / "workflow.toml"))
    same(served_json, local_json)
    assert served_json.json()["steps"]["package"]["status"] == "succeeded"


@pytest.mark.usefixtures("server")
def test_a_run_that_fails_exits_1_with_the_same_hint(wayang: Wayang, tmp_path: Path) -> None:
    served = wayang("run", workflow(tmp_path, "a", FLAKY))
    local = wayang("--no-server", "run", workflow(tmp_path, "b", FLAKY))
    same(served, local)
    assert served.code == 1
    assert "failed" in served.lines[-1]
    assert "wayang retry" in served.err


@pytest.mark.usefixtures("server")
def test_bad_input_is_refused_the_same_way(wayang: Wayang, tmp_path: Path) -> None:
    broken = workflow(tmp_path, "broken", 'id = "broken"\n[steps.a]\nrun = 3\n')
    same(*both(wayang, "run", broken))
    steady = workflow(tmp_path, "steady", STEADY)
    served, local = both(wayang, "run", steady, "-p", "nobody=1")
    same(served, local)
    assert served.code == 2
    served, local = both(wayang, "run", steady, "--timeout", "soon")
    same(served, local)
    assert served.code == 2
    served, local = both(wayang, "run", steady, "--parallel", "0")
    same(served, local)
    assert served.code == 2


@pytest.mark.timeout(120)
def test_parallel_is_asked_of_the_server_within_its_workers(
    db: Path, tmp_path: Path, wayang: Wayang
) -> None:
    with running_server(db, tmp_path, "--workers", "2") as server:
        # Each step waits for the other to start: only two at once lets both succeed.
        served = wayang("run", "--json", "--parallel", "2", workflow(tmp_path, "a", TOGETHER))
        local = wayang("--no-server", "run", "--json", "--parallel", "2",
                       workflow(tmp_path, "b", TOGETHER))  # fmt: skip
        same(served, local)
        assert served.json()["status"] == "succeeded"
        served = wayang("run", "--json", "--parallel", "1", workflow(tmp_path, "c", TOGETHER))
        local = wayang("--no-server", "run", "--json", "--parallel", "1",
                       workflow(tmp_path, "d", TOGETHER))  # fmt: skip
        same(served, local)
        assert served.json()["status"] == "failed"

        steady = workflow(tmp_path, "steady", STEADY)
        with Client(server.url) as client:
            for argv, granted in ((("--parallel", "8"), 2), (("--parallel", "1"), 1), ((), 2)):
                run_id = wayang("run", "--detach", steady, *argv).out.strip()
                [started] = client.events(run_id, 0, 1).items
                assert started.data["parallel"] == granted, argv


# ------------------------------------------------------------------------------ requirements


@pytest.mark.usefixtures("server")
def test_unmet_requirements_are_refused_before_the_run_is_sent(
    wayang: Wayang, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WAYANG_TEST_TOKEN", raising=False)
    needy = workflow(tmp_path, "needy", NEEDY)
    for argv in (("run", needy), ("run", "--json", needy), ("run", "--detach", needy)):
        served, local = both(wayang, *argv)
        assert (served.code, served.out, served.err) == (local.code, local.out, local.err), argv
        assert served.code == 2
        assert "needs what this machine lacks (nothing was started)" in served.err
        assert "tool 'wayang-no-such-tool' is not on PATH" in served.err
        assert "environment variable WAYANG_TEST_TOKEN is not set" in served.err
    assert wayang("runs", "--json").json() == []  # the server was asked for nothing

    token_only = workflow(tmp_path, "token", NEEDY.replace('"wayang-no-such-tool"', '"sh"'))
    served = wayang("run", token_only, "-e", "WAYANG_TEST_TOKEN=t")  # an override counts
    assert served.code == 0, served
    assert [r["status"] for r in wayang("runs", "--json").json()] == ["succeeded"]


# ------------------------------------------------------------------------------ reading runs


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("server")
def test_status_runs_and_logs_read_the_same(wayang: Wayang, tmp_path: Path) -> None:
    steady = wayang("run", workflow(tmp_path, "steady", STEADY), "-p", "who=ann")
    assert steady.code == 0, steady
    run_id = run_id_of(steady)
    for argv in (
        ("status",),
        ("status", run_id, "--json"),
        ("runs",),
        ("runs", "--json", "--status", "succeeded"),
        ("logs", run_id),
        ("logs", "--json"),
        ("logs", run_id, "--step", "greet"),
        ("logs", run_id, "--step", "nope"),
        ("status", "20990101-000000-deadbeef"),
    ):
        served, local = both(wayang, *argv)
        assert served.out == local.out, argv
        assert served.err == local.err, argv
        assert served.code == local.code, argv
    assert "hello ann" in wayang("logs", run_id).out

    shutil.copytree(EXAMPLES / "pipeline", tmp_path / "pipeline")
    pipeline = wayang("run", str(tmp_path / "pipeline" / "workflow.toml"))
    served, local = both(wayang, "status", run_id_of(pipeline))
    assert "2/3" in local.out  # the retried step shows its try against its limit, both ways
    assert served.out == local.out


@pytest.mark.usefixtures("server")
def test_an_empty_store_reads_the_same(wayang: Wayang) -> None:
    for argv in (("runs",), ("status",), ("approvals",), ("dlq", "list"), ("logs",)):
        served, local = both(wayang, *argv)
        assert (served.code, served.out, served.err) == (local.code, local.out, local.err), argv


# ------------------------------------------------------------------------------ driving runs


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("server")
def test_retry_resume_and_dead_letters(wayang: Wayang, tmp_path: Path) -> None:
    failed = [run_id_of(wayang("run", workflow(tmp_path, name, FLAKY))) for name in "ab"]
    same(*both(wayang, "dlq", "list"))
    same(*both(wayang, "dlq", "list", "--json"))
    (tmp_path / "flag").touch()
    same(wayang("retry", failed[0]), wayang("--no-server", "retry", failed[1]))
    same(*both(wayang, "resume", failed[0]))  # an ended run is only reported
    same(*both(wayang, "resume", failed[0], "--json"))

    (tmp_path / "flag").unlink()
    letters = [run_id_of(wayang("run", workflow(tmp_path, name, FLAKY))) for name in "cd"]
    ids = {d["run_id"]: d["id"] for d in wayang("dlq", "list", "--json").json()}
    (tmp_path / "flag").touch()
    served = wayang("dlq", "replay", ids[letters[0]])
    local = wayang("--no-server", "dlq", "replay", ids[letters[1]])
    same(served, local)
    assert served.code == 0 and "replaying boom of run" in served.err
    same(*both(wayang, "dlq", "replay", "nope/boom/1"))
    same(*both(wayang, "retry", "20990101-000000-deadbeef"))


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("server")
def test_cancel_through_the_server(wayang: Wayang, tmp_path: Path) -> None:
    runs = [wayang("run", "--detach", workflow(tmp_path, name, SLOW)) for name in "ab"]
    assert all(r.code == 0 and "runs on the server" in r.err for r in runs)
    first, second = (r.out.strip() for r in runs)
    for run_id in (first, second):
        wait_for(lambda r=run_id: "napping" in wayang("logs", r).out, 20, "the nap")
    same(wayang("cancel", first), wayang("--no-server", "cancel", second))
    assert "cancelled by 'wayang cancel'" in wayang("status", first).out
    same(*both(wayang, "cancel", first))  # already ended: exit 1
    same(*both(wayang, "cancel", first, "--json"))


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("server")
def test_ctrl_c_cancels_the_run_on_the_server(spawn: Spawn, wayang: Wayang, tmp_path: Path) -> None:
    child = spawn("run", workflow(tmp_path, "a", SLOW))
    wait_for(lambda: "napping" in wayang("logs").out, 20, "the nap")
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 130, err
    assert "interrupted: cancelling the run" in out
    assert "cancelled" in out.splitlines()[-1]

    child = spawn("run", workflow(tmp_path, "b", SLOW))
    wait_for(lambda: wayang("status", "--json").json()["status"] == "running", 20, "the run")
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 143, err
    assert "the server carries it on" in err
    assert wayang("status", "--json").json()["status"] == "running"  # the server drives it on
    assert wayang("cancel").code == 2  # RUN is required


# ------------------------------------------------------------------------------ people


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("server")
def test_approvals_and_votes_through_the_server(wayang: Wayang, tmp_path: Path) -> None:
    runs = [
        wayang("run", "--detach", workflow(tmp_path, name, REVIEW)).out.strip() for name in "ab"
    ]
    for run_id in runs:
        wait_for(lambda r=run_id: r in wayang("approvals").out, 20, "the approval")
    for argv in (
        ("approvals",),
        ("approvals", "--json"),
        ("approvals", "--mine", "--as", "alice"),
        ("approvals", "--mine", "--as", "zed", "--json"),
    ):
        served, local = both(wayang, *argv)
        assert (served.code, served.out, served.err) == (local.code, local.out, local.err), argv
    served, local = (
        wayang("approve", runs[0], "review", "--as", "zed", "--comment", "x"),
        wayang("--no-server", "approve", runs[1], "review", "--as", "zed", "--comment", "x"),
    )
    same(served, local)
    assert served.code == 2
    served, local = (
        wayang("approve", runs[0], "review", "--as", "alice"),
        wayang("--no-server", "approve", runs[1], "review", "--as", "alice"),
    )
    same(served, local)  # a required field is missing
    served, local = (
        wayang("approve", runs[0], "review", "--as", "alice", "--comment", "ok", "--json"),
        wayang("--no-server", "approve", runs[1], "review", "--as", "alice", "--comment", "ok",
               "--json"),
    )  # fmt: skip
    assert served.code == local.code == 0, (served, local)
    assert local.json() == {**served.json(), "seq": served.json()["seq"] + 1}  # one inbox
    assert served.json()["status"] == "accepted"
    wait_for(lambda: wayang("status", runs[0], "--json").json()["status"] == "succeeded", 20)
    served = wayang("reject", runs[0], "review", "--comment", "late", "--as", "bob")
    local = wayang("--no-server", "reject", runs[1], "review", "--comment", "late", "--as", "bob")
    same(served, local)


@pytest.mark.usefixtures("server")
def test_emit_through_the_server(wayang: Wayang) -> None:
    served = wayang("emit", "orders", "--data", '{"id": 1}', "--key", "1")
    assert served.code == 0, served
    local = wayang("--no-server", "emit", "orders", "--data", "2", "--no-deliver")
    assert int(local.out) == int(served.out) + 1
    assert normal(served.err) == normal(local.err) == "trace RUN\n"
    as_json = wayang("emit", "orders", "--data", "3", "--json").json()
    assert (as_json["seq"], as_json["topic"]) == (int(local.out) + 1, "orders")
    same(*both(wayang, "emit", "orders", "--data", "{nope"))


# ------------------------------------------------------------------------------ steps


STEP_READS = (
    ("steps", "list"),
    ("steps", "list", "--json"),
    ("flows",),
    ("flows", "--json"),
)


@pytest.mark.timeout(120)
def test_steps_and_flows_of_the_served_project(db: Path, tmp_path: Path, wayang: Wayang) -> None:
    project = tmp_path / "project"
    shutil.copytree(EXAMPLES / "steps-basic", project)
    with running_server(db, tmp_path, "--project", str(project)):
        for argv in STEP_READS:
            served = wayang(*argv)
            local = wayang("--no-server", *argv, "--project", str(project))
            assert (served.code, served.out, served.err) == (local.code, local.out, local.err), argv
        served_flows = wayang("flows", "--json").json()
        assert served_flows == wayang("--no-server", "flows", "--json", "--project",
                                      str(project)).json()  # fmt: skip
        [orders] = served_flows
        assert set(orders) == {"name", "nodes", "edges"}
        assert orders["nodes"][0]["file"].startswith("steps/") and orders["nodes"][0]["line"] > 0
        deactivated = wayang("steps", "deactivate", "ConfirmOrder")
        assert deactivated.out == "ConfirmOrder: deactivated (on the server)\n"
        assert "False" in wayang("steps", "list").out
        assert wayang("steps", "activate", "ConfirmOrder").code == 0
        assert wayang("steps", "activate", "Nope").code == 2


@pytest.mark.timeout(120)
def test_step_files_that_do_not_load_are_reported_through_the_server(
    db: Path, tmp_path: Path, wayang: Wayang
) -> None:
    project = tmp_path / "project"
    shutil.copytree(EXAMPLES / "steps-basic", project)
    (project / "steps" / "broken_step.py").write_text(BROKEN_STEP)
    (project / "steps" / "lonely_step.py").write_text(LONELY_STEP)
    with running_server(db, tmp_path, "--project", str(project)):
        for argv in STEP_READS:
            served = wayang(*argv)
            local = wayang("--no-server", *argv, "--project", str(project))
            assert (served.code, served.out, served.err) == (local.code, local.out, local.err), argv
        listed = wayang("steps", "list")
        assert listed.code == 2  # listed all the same, as in process
        assert "Lonely" in listed.out and "Broken" not in listed.out
        assert "steps/broken_step.py:3:1: error: cannot import this step file: RuntimeError: " \
            "boom at import" in listed.err  # fmt: skip
        assert "warning: " in listed.err and "nobody.listens" in listed.err
        assert listed.err.endswith("1 error\n")
        flows = wayang("flows", "--json")
        assert flows.code == 0 and "broken_step.py" in flows.err
        assert "Lonely" in {node["name"] for node in flows.json()[0]["nodes"]}


@pytest.mark.timeout(120)
def test_a_project_without_step_files_is_told_so_through_the_server(
    db: Path, tmp_path: Path, wayang: Wayang
) -> None:
    project = tmp_path / "project"
    shutil.copytree(EXAMPLES / "steps-basic", project)
    for step_file in (project / "steps").glob("*.py"):
        step_file.unlink()
    with running_server(db, tmp_path, "--project", str(project)):
        for argv in STEP_READS:
            served = wayang(*argv)
            local = wayang("--no-server", *argv, "--project", str(project))
            assert (served.code, served.out, served.err) == (local.code, local.out, local.err), argv
            assert served.code == 2 and "no step files (*.step.py, *_step.py)" in served.err


DOOMED_STEP = """
config = {"type": "event", "name": "Doomed", "subscribes": ["doom"], "flows": ["orders"],
          "retry": {"attempts": 1}}

def handler(input, ctx):
    raise RuntimeError("never works")
"""


@pytest.mark.timeout(120)
def test_dead_deliveries_are_listed_the_same_through_the_server(
    db: Path, tmp_path: Path, wayang: Wayang
) -> None:
    project = tmp_path / "project"
    shutil.copytree(EXAMPLES / "steps-basic", project)
    (project / "steps" / "doomed_step.py").write_text(DOOMED_STEP)
    with running_server(db, tmp_path, "--project", str(project)):
        assert wayang("emit", "doom", "--data", "{}").code == 0
        wait_for(lambda: wayang("dlq", "list", "--json").json(), what="the dead delivery")
        for argv in (("dlq", "list"), ("dlq", "list", "--json")):
            served, local = both(wayang, *argv)
            assert (served.code, served.out, served.err) == (local.code, local.out, local.err)
        [dead] = wayang("dlq", "list", "--json").json()
        assert (dead["kind"], dead["topic"], dead["step"]) == ("delivery", "doom", "Doomed")


# ------------------------------------------------------------------------------ which server


@pytest.mark.timeout(120)
def test_which_server_a_command_uses(
    db: Path, tmp_path: Path, wayang: Wayang, monkeypatch: pytest.MonkeyPatch
) -> None:
    steady = workflow(tmp_path, "steady", STEADY)
    here = wayang("run", "--detach", steady)
    assert "its engine writes to" in here.err  # no server: run in this process
    wait_for(lambda: wayang("status", "--json").json()["status"] == "succeeded", 20)

    other_db = tmp_path / "other.db"
    with running_server(db, tmp_path) as server, running_server(other_db, tmp_path) as other:
        assert "runs on the server" in wayang("run", "--detach", steady).err  # by its socket
        assert "its engine writes to" in wayang("--no-server", "run", "--detach", steady).err
        assert len(wayang("runs", "--json").json()) == 3
        # --server names a server whatever the store: the other one has no runs
        assert wayang("--server", other.url, "runs", "--json").json() == []
        monkeypatch.setenv("WAYANG_SERVER", other.url)
        assert wayang("runs", "--json").json() == []
        monkeypatch.delenv("WAYANG_SERVER")
        assert "runs on the server" in wayang("--server", server.url, "run", "--detach", steady).err
        gone = f"http://127.0.0.1:{free_port()}"
        missing = wayang("--server", gone, "runs")
        assert missing.code == 1
        assert f"no Wayang server answers at {gone}" in missing.err
    # The servers stopped: back in this process, even with a socket file left behind.
    path = socket_path(str(db))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    try:
        assert len(wayang("runs", "--json").json()) == 4
    finally:
        path.unlink()


@pytest.mark.timeout(120)
def test_the_api_token_comes_from_the_environment(
    db: Path, tmp_path: Path, wayang: Wayang, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WAYANG_API_TOKEN", raising=False)
    with running_server(db, tmp_path, env={"WAYANG_API_TOKEN": "secret"}):
        refused = wayang("runs")
        assert refused.code == 2
        assert "needs the API token" in refused.err
        monkeypatch.setenv("WAYANG_API_TOKEN", "secret")
        assert wayang("runs").err == "no runs in this store yet\n"
        started = wayang("run", "--json", workflow(tmp_path, "steady", STEADY))
        assert json.loads(started.out)["status"] == "succeeded"


# ------------------------------------------------------------------------------ workspaces


@pytest.mark.timeout(120)
def test_runs_through_the_server_work_in_their_workspace(
    wayang: Wayang, db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAYANG_WORKSPACE_MODE", "per-run")
    repo = tmp_path / "repo"
    repo.mkdir()
    for argv in (["init", "-q"], ["config", "user.email", "t@x"], ["config", "user.name", "t"]):
        subprocess.run(["git", *argv], cwd=repo, check=True)
    (repo / "workflow.toml").write_text(
        'id = "where"\n[artifacts.seen]\npath = "out/*.txt"\n[steps.look]\n'
        'run = "echo id=$WAYANG_WORKSPACE_ID; test -f tracked; mkdir -p out; echo hi > out/a.txt"\n'
    )
    (repo / "tracked").write_text("x\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "one"], cwd=repo, check=True)
    (repo / "untracked").write_text("not in the workspace\n")
    env = {"WAYANG_WORKSPACE_MODE": "per-run"}
    with running_server(db, tmp_path, env=env) as server:
        done = wayang("run", str(repo / "workflow.toml"), "--workspace-id", "served")
        assert done.code == 0, done
        run_id = run_id_of(done)
        assert "id=served" in wayang("logs", run_id).out
        status = wayang("status", run_id, "--json").json()
        workspace = Path(status["workspace"])
        assert workspace.name == "served" and (workspace / "tracked").is_file()
        assert not (workspace / "untracked").exists()  # HEAD only, the checkout untouched
        assert (repo / "untracked").is_file()
        collected = httpx.get(f"{server.url}/api/v1/runs/{run_id}/artifacts").json()
        assert [(f["name"], f["path"], f["size"]) for f in collected["files"]] == [
            ("seen", "out/a.txt", 3)
        ]
        assert collected["files"][0]["sha256"] == hashlib.sha256(b"hi\n").hexdigest()
        assert httpx.get(f"{server.url}/api/v1/runs/nope/artifacts").status_code == 404

        bad = wayang("run", str(repo / "workflow.toml"), "--base", "no-such-rev")
        assert bad.code == 2
        assert "--base 'no-such-rev': no such commit" in bad.err
