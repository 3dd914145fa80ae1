"""Runs in their own workspaces, for real: ``wayang run`` child processes on git repositories
made here, twenty at once on one repository, with ``--workspace-id``, ``--base``, ephemeral
steps, artifacts, and the refusals that start no run.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from wayang.engine import events as ev
from wayang.runtime.operations import load_run
from wayang.store.urls import open_store
from wayang.workspace.metadata import METADATA_FILE, TOOLS_DIR, read_meta
from wayang.workspace.tools import CACHE_DIR

WAYANG = Path(sys.executable).parent / "wayang"
PARALLEL = 20

PROBE = """
    id = "probe"

    [steps.probe]
    run = 'echo "$WAYANG_WORKSPACE_ID $(pwd)" > mine.txt; ls -A > top.txt'
"""


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return done.stdout


def write(base: Path, relative: str, text: str) -> Path:
    path = base / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


class Cli:
    """``wayang --no-server --store DB`` as a child process, with workspaces per run."""

    def __init__(self, tmp_path: Path) -> None:
        self.store = tmp_path / "db"
        self.env = {**os.environ, "WAYANG_WORKSPACE_MODE": "per-run", "PYTHONUNBUFFERED": "1"}
        self.root = Path(self.env["WAYANG_WORKSPACES"])

    def argv(self, *args: str) -> list[str]:
        return [str(WAYANG), "--no-server", "--store", str(self.store), *args]

    def start(self, *args: str, cwd: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            cwd=cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __call__(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), cwd=cwd, env=self.env, capture_output=True, text=True, timeout=30
        )

    def run(self, *args: str, cwd: Path) -> dict[str, object]:
        """``wayang run --json ARGS``: the run's final JSON object, whatever its status."""
        done = self("run", "--json", *args, cwd=cwd)
        assert done.returncode in (0, 1), done.stderr
        result: dict[str, object] = json.loads(done.stdout)
        return result

    def namespace(self) -> Path:
        """The one repository namespace under the workspaces root."""
        (found,) = [entry for entry in self.root.iterdir() if entry.is_dir()]
        return found

    def history(self, run_id: str) -> list[ev.Event]:
        store = open_store(self.store)
        try:
            return load_run(store, run_id).history
        finally:
            store.close()

    def logs(self, run_id: str) -> str:
        done = self("logs", run_id, cwd=self.store.parent)
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture(autouse=True)
def _per_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAYANG_WORKSPACE_MODE", "per-run")


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with a tool bundle, whose checkout has an edit and an untracked file."""
    path = tmp_path / "project"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "user.name", "Test")
    write(path, "README.md", "committed\n")
    write(path, "scripts/x.sh", "#!/bin/sh\necho tool\n")
    write(path, "agents.just", "check:\n    echo check\n")
    write(path, "workflow.toml", PROBE)
    commit_all(path, "first")
    write(path, "README.md", "edited, not committed\n")
    write(path, "scratch.txt", "untracked\n")
    return path


def checkout_state(repo: Path) -> tuple[str, str, str, list[str]]:
    files = sorted(
        path.relative_to(repo).as_posix()
        for path in repo.rglob("*")
        if ".git" not in path.relative_to(repo).parts
    )
    return (
        git(repo, "status", "--porcelain", "--untracked-files=all"),
        git(repo, "rev-parse", "HEAD"),
        git(repo, "branch", "--show-current"),
        files,
    )


def files_of(workspace: Path) -> set[str]:
    return {
        path.relative_to(workspace).as_posix()
        for path in workspace.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(workspace).parts
    }


def worktrees(repo: Path) -> list[str]:
    listed = git(repo, "worktree", "list", "--porcelain")
    paths = [line.split(" ", 1)[1] for line in listed.splitlines() if line.startswith("worktree ")]
    return [path for path in paths if Path(path) != repo.resolve()]


def noted(history: list[ev.Event]) -> list[tuple[str, str, str]]:
    return [
        (event.kind, event.workspace_id, event.step_id)
        for event in history
        if isinstance(event, ev.WorkspaceNoted)
    ]


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    children: list[subprocess.Popen[str]] = []
    yield children
    for child in children:
        if child.poll() is None:
            child.kill()
        child.communicate()


# ------------------------------------------------------------------------------ isolation


# Twenty interpreters starting at once take ~20 s of CPU on a two-core machine.
@pytest.mark.timeout(120)
def test_twenty_runs_at_once_each_work_in_their_own_workspace(
    cli: Cli, repo: Path, started: list[subprocess.Popen[str]]
) -> None:
    before = checkout_state(repo)
    committed = set(git(repo, "ls-files").split())
    started.extend(cli.start("run", "--json", "workflow.toml", cwd=repo) for _ in range(PARALLEL))
    run_ids = []
    for child in started:
        out, err = child.communicate(timeout=100)
        assert child.returncode == 0, err
        result = json.loads(out)
        assert result["status"] == "succeeded"
        run_ids.append(result["run_id"])
    assert len(set(run_ids)) == PARALLEL

    namespace = cli.namespace()
    workspaces = {
        p.name: p for p in namespace.iterdir() if p.is_dir() and not p.name.startswith(".")
    }
    assert set(workspaces) == set(run_ids)
    (bundle,) = (namespace / CACHE_DIR).iterdir()  # one copy of the tools for all twenty
    tools = {"agents.just", "scripts/x.sh"}
    top_level = {path.split("/")[0] for path in committed} | {".git", TOOLS_DIR}
    own = {"mine.txt", "top.txt"}
    kept = {f"{TOOLS_DIR}/{name}" for name in (*tools, ".gitignore", METADATA_FILE)}
    for run_id, workspace in workspaces.items():
        assert (workspace / "mine.txt").read_text() == f"{run_id} {workspace}\n"
        assert set((workspace / "top.txt").read_text().split()) == top_level | own
        assert files_of(workspace) == committed | own | kept  # nothing of another run
        meta = read_meta(workspace)
        assert meta is not None and (meta.run_id, meta.status) == (run_id, "finished")
        for name in tools:
            linked = (workspace / TOOLS_DIR / name).stat()
            assert linked.st_ino == (bundle / name).stat().st_ino
    for name in tools:
        assert (bundle / name).stat().st_nlink == PARALLEL + 1
    assert sorted(worktrees(repo)) == sorted(str(p) for p in workspaces.values())
    assert checkout_state(repo) == before


def test_a_named_workspace_is_reused_by_the_next_run(cli: Cli, repo: Path) -> None:
    write(repo, "count.toml", """
        id = "count"

        [steps.count]
        run = 'echo run >> count.txt'
    """)  # fmt: skip
    first = cli.run("--workspace-id", "shared", "count.toml", cwd=repo)
    second = cli.run("--workspace-id", "shared", "count.toml", cwd=repo)
    assert first["status"] == second["status"] == "succeeded"
    shared = cli.namespace() / "shared"
    assert (shared / "count.txt").read_text() == "run\nrun\n"
    made = cli.logs(str(first["run_id"]))
    assert "workspace shared created: git workspace at" in made
    # the checkout's edit and untracked files are not in the workspace, and the log says so
    assert "workspace shared note: 3 uncommitted change(s)" in made  # README, scratch, count
    logs = cli.logs(str(second["run_id"]))
    assert "workspace shared reused: at" in logs and " created:" not in logs
    assert worktrees(repo) == [str(shared)]
    assert not (repo / "count.txt").exists()


def test_a_run_at_a_base_works_on_that_commit(cli: Cli, repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD").strip()
    write(repo, "later.txt", "added in the second commit\n")
    git(repo, "add", "later.txt")
    git(repo, "commit", "-q", "-m", "second")
    write(repo, "base.toml", """
        id = "base"

        [steps.look]
        run = 'git rev-parse HEAD > head.txt; if [ -e later.txt ]; then exit 3; fi'
    """)  # fmt: skip
    result = cli.run("--base", first, "base.toml", cwd=repo)
    assert result["status"] == "succeeded"
    workspace = cli.namespace() / str(result["run_id"])
    assert (workspace / "head.txt").read_text().strip() == first
    meta = read_meta(workspace)
    assert meta is not None and meta.base_change == first
    at_head = cli.run("base.toml", cwd=repo)
    assert at_head["status"] == "failed"  # later.txt is there at HEAD


# ------------------------------------------------------------------------------ ephemeral steps

EPHEMERAL = """
    id = "ephemeral"

    [steps.a]
    run = 'echo a > a.txt'

    [steps.e]
    needs = ["a"]
    workspace = "ephemeral"
    run = 'echo "$WAYANG_WORKSPACE_ID" > eph.txt; test ! -e a.txt; {end}'
"""


def test_an_ephemeral_step_that_succeeds_has_its_workspace_removed(cli: Cli, repo: Path) -> None:
    write(repo, "eph.toml", EPHEMERAL.format(end="true"))
    result = cli.run("eph.toml", cwd=repo)
    assert result["status"] == "succeeded"
    run_id = str(result["run_id"])
    step_ws = f"{run_id}-e-1"
    namespace = cli.namespace()
    assert not (namespace / step_ws).exists()
    assert (namespace / run_id / "a.txt").is_file()  # the run's own stays, finished
    assert worktrees(repo) == [str(namespace / run_id)]
    history = noted(cli.history(run_id))
    assert ("created", run_id, "") in history and ("tooling synced", run_id, "") in history
    made = history.index(("created", step_ws, "e"))
    assert ("tooling synced", step_ws, "e") in history[made:]
    assert ("cleaned", step_ws, "e") in history[made:]
    logs = cli.logs(run_id)
    assert f"workspace {run_id} created:" in logs and f"workspace {step_ws} cleaned:" in logs


def test_an_ephemeral_step_that_fails_keeps_its_workspace_marked_failed(
    cli: Cli, repo: Path
) -> None:
    write(repo, "eph.toml", EPHEMERAL.format(end="exit 3"))
    result = cli.run("eph.toml", cwd=repo)
    assert result["status"] == "failed"
    run_id = str(result["run_id"])
    step_ws = cli.namespace() / f"{run_id}-e-1"
    assert (step_ws / "eph.txt").read_text() == f"{step_ws.name}\n"
    meta = read_meta(step_ws)
    assert meta is not None and meta.status == "failed"
    own = read_meta(cli.namespace() / run_id)
    assert own is not None and own.status == "failed"
    assert str(step_ws) in worktrees(repo)
    assert ("cleaned", step_ws.name, "e") not in noted(cli.history(run_id))
    assert "keep_failed" in cli.logs(run_id)


# ------------------------------------------------------------------------------ in place, refusals


def test_a_workflow_outside_any_repository_runs_in_place(cli: Cli, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    write(plain, "workflow.toml", """
        id = "plain"

        [steps.here]
        run = 'pwd > here.txt; echo "${WAYANG_WORKSPACE_ID:-none}" >> here.txt'
    """)  # fmt: skip
    result = cli.run("workflow.toml", cwd=plain)
    assert result["status"] == "succeeded"
    assert (plain / "here.txt").read_text() == f"{plain}\nnone\n"
    assert not cli.root.exists() or list(cli.root.iterdir()) == []
    assert noted(cli.history(str(result["run_id"]))) == []


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--workspace-id", "../x"], "workspace id '../x'"),
        (["--workspace-id", "a/b"], "workspace id 'a/b'"),
        (["--base", "nosuchrev"], "--base 'nosuchrev': no such commit"),
    ],
)
def test_a_bad_workspace_option_starts_no_run(
    cli: Cli, repo: Path, option: list[str], message: str
) -> None:
    done = cli("run", *option, "workflow.toml", cwd=repo)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    runs = cli("runs", "--json", cwd=repo)
    assert runs.returncode == 0 and json.loads(runs.stdout) == []
    assert not cli.root.exists() or list(cli.root.iterdir()) == []
    assert worktrees(repo) == []


# ------------------------------------------------------------------------------ artifacts


def test_artifacts_are_collected_from_the_runs_workspace(cli: Cli, repo: Path) -> None:
    write(repo, "report.toml", """
        id = "report"

        [steps.build]
        run = 'mkdir -p out; echo "report of $WAYANG_WORKSPACE_ID" > out/report.txt'

        [artifacts.report]
        path = "out/*.txt"
    """)  # fmt: skip
    result = cli.run("report.toml", cwd=repo)
    assert result["status"] == "succeeded"
    run_id = str(result["run_id"])
    content = f"report of {run_id}\n".encode()
    assert (cli.namespace() / run_id / "out/report.txt").read_bytes() == content
    assert not (repo / "out").exists()
    listed = cli("artifacts", run_id, "--json", cwd=repo)
    assert listed.returncode == 0, listed.stderr
    manifest = json.loads(listed.stdout)
    (kept,) = manifest["files"]
    assert (kept["name"], kept["path"], kept["size"]) == ("report", "out/report.txt", len(content))
    assert kept["sha256"] == hashlib.sha256(content).hexdigest()
    assert Path(kept["stored"]).read_bytes() == content
    assert manifest["missing"] == [] and manifest["refused"] == []


def test_artifacts_never_come_from_the_checkout_when_no_step_ran_in_a_workspace(
    cli: Cli, repo: Path
) -> None:
    # No task runs, so no workspace is made; the run's folder is still not the checkout
    # (the same holds for a run resumed after its last task, by an engine that ran none).
    write(repo, "notes.extra", "only in the checkout\n")
    write(repo, "noop.toml", """
        id = "nothing-ran"

        [steps.wait]
        kind = "noop"

        [artifacts.notes]
        path = "*.extra"
    """)  # fmt: skip
    result = cli.run("noop.toml", cwd=repo)
    assert result["status"] == "succeeded"
    run_id = str(result["run_id"])
    listed = cli("artifacts", run_id, "--json", cwd=repo)
    assert listed.returncode == 1
    assert "notes.extra" not in listed.stdout + listed.stderr
    assert "artifacts: collecting failed" in cli.logs(run_id)
    kept = cli.store.parent / "artifacts"
    assert not kept.exists() or list(kept.rglob("notes.extra")) == []


def test_an_artifact_path_out_of_the_workspace_is_refused_before_running(
    cli: Cli, repo: Path
) -> None:
    write(repo, "secret.toml", """
        id = "secret"

        [steps.build]
        run = 'true'

        [artifacts.secret]
        path = "../secret"
    """)  # fmt: skip
    for command in (["validate", "secret.toml"], ["run", "secret.toml"]):
        done = cli(*command, cwd=repo)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "secret.toml:8:8: error: an artifact path is a glob inside the workspace" in (
            done.stderr
        )
    runs = cli("runs", "--json", cwd=repo)
    assert json.loads(runs.stdout) == []
    assert not cli.root.exists() or list(cli.root.iterdir()) == []
