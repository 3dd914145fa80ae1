"""``wayang workspace list|show|shell|clean|sync-tools`` on workspaces that real runs made in
real git repositories; ``shell`` driven through a pseudo-terminal, and attached to a run that
is still going."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cli_runs import Wayang, child_env, kill_group, wait_for
from wayang.cli.main import main
from wayang.workspace.metadata import iso_now, read_meta, write_meta

WORKFLOW = """
id = "demo"
version = "1.0.0"

[parameters.code]
type = "string"
default = "0"

[steps.work]
run = "echo working in $WAYANG_WORKSPACE_ID; exit ${{ params.code }}"
"""

PTY_TIMEOUT_S = 20.0
# Run by the child in its new session: make the terminal on stdin its controlling terminal (as
# a login's is), then become ``python ARGS``.
CONTROLLING_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True)
    return done.stdout


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository with a workflow and a tool script; runs in it get workspaces."""
    folder = tmp_path / "repo"
    (folder / "scripts").mkdir(parents=True)
    git(folder, "init", "-q")
    git(folder, "config", "user.email", "test@example.com")
    git(folder, "config", "user.name", "Test")
    git(folder, "config", "commit.gpgsign", "false")
    (folder / "workflow.toml").write_text(textwrap.dedent(WORKFLOW))
    (folder / "scripts" / "x.sh").write_text("#!/bin/sh\necho one\n")
    commit_all(folder, "init")
    monkeypatch.setenv("WAYANG_WORKSPACE_MODE", "per-run")
    monkeypatch.chdir(folder)
    return folder


def child(db: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``wayang --store DB *argv`` as a child process (a shell writes to the real stdout)."""
    command = [sys.executable, "-m", "wayang.cli.main", "--store", str(db), *argv]
    return subprocess.run(
        command, cwd=cwd, env=child_env(db), capture_output=True, text=True, timeout=30
    )


def root() -> Path:
    return Path(os.environ["WAYANG_WORKSPACES"]).resolve()


def start(wayang: Wayang, *args: str, code: int = 0) -> str:
    """Run the workflow to its end; the run's id (also its workspace's)."""
    done = wayang("run", "workflow.toml", "--json", *args)
    assert done.code == code, done.out + done.err
    run_id: str = done.json()["run_id"]
    return run_id


def listed(wayang: Wayang, *args: str) -> dict[str, dict[str, object]]:
    done = wayang("workspace", "list", "--json", *args)
    assert done.code == 0, done.err
    return {row["id"]: row for row in done.json()}


def path_of(wayang: Wayang, workspace_id: str) -> Path:
    return Path(str(listed(wayang)[workspace_id]["path"]))


def age(workspace: Path, seconds: float) -> None:
    """Make the workspace look untouched for ``seconds``."""
    meta = read_meta(workspace)
    assert meta is not None
    then = iso_now(time.time() - seconds)
    write_meta(workspace, meta.model_copy(update={"created_at": then, "updated_at": then}))


def half_made(repo: Path, wayang: Wayang, name: str) -> Path:
    """A workspace folder with no metadata, older than the grace for makers at work."""
    some = start(wayang)
    folder = path_of(wayang, some).parent / name
    folder.mkdir()
    old = time.time() - 3600
    os.utime(folder, (old, old))
    return folder


# ------------------------------------------------------------------------------ list and show


def test_list_shows_every_workspace_as_a_table_and_as_json(repo: Path, wayang: Wayang) -> None:
    first, second = start(wayang), start(wayang, "-p", "code=3", code=1)
    broken = half_made(repo, wayang, "broken")

    rows = listed(wayang)
    assert {first, second, "broken"} <= set(rows)
    head = git(repo, "rev-parse", "HEAD").strip()
    assert rows[first]["status"] == "finished"
    assert rows[second]["status"] == "failed"
    assert rows[first]["base_change"] == head
    assert rows[first]["run_id"] == first
    assert rows[first]["workflow"] == "demo"
    assert rows[first]["repository"] == str(repo.resolve())
    assert Path(str(rows[first]["path"])).parent.parent == root()
    assert rows["broken"] == {
        "id": "broken",
        "path": str(broken),
        "repository": str(repo.resolve()),
        "status": "incomplete",
    }

    table = wayang("workspace", "list")
    assert table.code == 0
    assert table.lines[0].split() == ["ID", "STATUS", "BASE", "WORKFLOW", "RUN", "UPDATED", "PATH"]
    line = next(line for line in table.lines if line.startswith(first))
    assert line.split()[:5] == [first, "finished", head[:12], "demo", first]
    assert line.endswith(str(rows[first]["path"]))
    assert (
        next(line for line in table.lines if line.startswith("broken")).split()[1] == "incomplete"
    )


def test_list_outside_a_repository_and_with_all(
    repo: Path, wayang: Wayang, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = start(wayang)
    other = tmp_path / "other"
    (other / "sub").mkdir(parents=True)
    git(other, "init", "-q")
    monkeypatch.chdir(other / "sub")
    empty = wayang("workspace", "list")
    assert empty.code == 0
    assert empty.out == ""
    assert f"no workspaces of {other.resolve()}" in empty.err
    assert run_id in listed(wayang, "--all")
    monkeypatch.chdir(tmp_path)  # in no repository: every repository's
    assert run_id in listed(wayang)


def test_show_prints_the_metadata_disk_tools_and_run(repo: Path, wayang: Wayang) -> None:
    run_id = start(wayang)

    shown = wayang("workspace", "show", run_id, "--json")
    assert shown.code == 0, shown.err
    data = shown.json()
    assert data["id"] == data["run_id"] == run_id
    assert data["status"] == "finished"
    assert data["run_status"] == "succeeded"
    assert data["tool_files"] == ["scripts/x.sh"]
    assert data["disk_bytes"] > len("#!/bin/sh\necho one\n")
    assert data["direnv_policy"] == "auto"
    assert data["backend"] == "git"
    assert len(data["tooling_hash"]) == 16

    text = wayang("workspace", "show", run_id)
    assert text.code == 0
    assert f"run:           {run_id} (succeeded)" in text.lines
    assert "tool_files:    1: scripts/x.sh" in text.lines
    assert f"path:          {data['path']}" in text.lines
    assert f"base_change:   {data['base_change']}" in text.lines


def test_show_of_a_run_this_store_does_not_know(
    repo: Path, wayang: Wayang, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = start(wayang)
    code = main(["--store", str(tmp_path / "elsewhere.db"), "workspace", "show", run_id])
    out = capsys.readouterr().out
    assert code == 0
    assert f"{run_id} (unknown: not in this store)" in out
    assert not (tmp_path / "elsewhere.db").exists()  # looking did not make a store


# ------------------------------------------------------------------------------ clean


def test_clean_by_id_removes_the_workspace_and_its_worktree(repo: Path, wayang: Wayang) -> None:
    run_id = start(wayang)
    path = path_of(wayang, run_id)
    assert str(path) in git(repo, "worktree", "list")

    done = wayang("workspace", "clean", run_id)
    assert done.code == 0, done.err
    assert done.out == f"removed workspace {run_id} (asked by id): {path}\n"
    assert not path.exists()
    assert str(path) not in git(repo, "worktree", "list")
    logs = wayang("logs", run_id)
    assert f"workspace {run_id} cleaned" in logs.out  # and in the run's history

    again = wayang("workspace", "clean", run_id)
    assert again.code == 2
    assert "no workspace" in again.err
    assert "wayang workspace list" in again.err


def test_clean_by_status_and_age(repo: Path, wayang: Wayang) -> None:
    finished, failed = start(wayang), start(wayang, "-p", "code=1", code=1)
    old = start(wayang)
    age(path_of(wayang, old), 8 * 86400)

    by_status = wayang("workspace", "clean", "--status", "failed", "--json")
    assert by_status.code == 0, by_status.err
    assert [(r["id"], r["reason"]) for r in by_status.json()["removed"]] == [
        (failed, "status failed")
    ]
    assert set(listed(wayang)) == {finished, old}

    by_age = wayang("workspace", "clean", "--older-than", "7d")
    assert by_age.code == 0, by_age.err
    assert by_age.out.startswith(f"removed workspace {old} (untouched for 8d)")
    assert set(listed(wayang)) == {finished}


def test_clean_of_half_made_workspaces(repo: Path, wayang: Wayang) -> None:
    broken = half_made(repo, wayang, "broken")
    shell = wayang("workspace", "shell", "broken", "--command", "true")
    assert shell.code == 2
    assert "half made" in shell.err
    assert "wayang workspace clean broken" in shell.err

    done = wayang("workspace", "clean", "--status", "incomplete", "--json")
    assert done.code == 0, done.err
    assert [r["id"] for r in done.json()["removed"]] == ["broken"]
    assert not broken.exists()


def test_clean_by_policy_keeps_the_last_and_failed_ones(repo: Path, wayang: Wayang) -> None:
    (repo / "wayang.toml").write_text('[workspaces.retention]\nkeep_last = 1\nkeep_failed = "1d"\n')
    commit_all(repo, "retention")
    finished = [start(wayang) for _ in range(3)]
    for index, run_id in enumerate(finished):  # the last is the newest
        age(path_of(wayang, run_id), 3600 * (3 - index))
    failed = start(wayang, "-p", "code=1", code=1)

    done = wayang("workspace", "clean", "--json")
    assert done.code == 0, done.err
    removed = {r["id"]: r["reason"] for r in done.json()["removed"]}
    assert removed == {run_id: "more than keep_last = 1" for run_id in finished[:2]}
    assert set(listed(wayang)) == {finished[2], failed}

    age(path_of(wayang, failed), 2 * 86400)
    later = wayang("workspace", "clean")
    assert later.code == 0, later.err
    assert f"removed workspace {failed} (failed 2d ago (keep_failed))" in later.out
    assert set(listed(wayang)) == {finished[2]}
    assert wayang("workspace", "clean").err == "nothing to clean\n"


def test_dry_run_removes_nothing(repo: Path, wayang: Wayang) -> None:
    (repo / "wayang.toml").write_text("[workspaces.retention]\nkeep_last = 0\n")
    commit_all(repo, "retention")
    runs = {start(wayang), start(wayang)}

    text = wayang("workspace", "clean", "--dry-run")
    assert text.code == 0
    assert sorted(line.split()[3] for line in text.lines) == sorted(runs)
    assert all(line.startswith("would remove workspace ") for line in text.lines)
    as_json = wayang("workspace", "clean", "--dry-run", "--json").json()
    assert as_json["dry_run"] is True
    assert {r["id"] for r in as_json["removed"]} == runs
    by_status = wayang("workspace", "clean", "--status", "finished", "--dry-run")
    assert by_status.code == 0
    assert len(by_status.lines) == 2
    assert set(listed(wayang)) == runs
    assert all(path_of(wayang, run_id).is_dir() for run_id in runs)


def test_clean_refuses_mixed_or_bad_options(repo: Path, wayang: Wayang) -> None:
    for argv, said in [
        (("x", "--status", "failed"), "drop --older-than"),
        (("--force",), "--force is for removing one workspace"),
        (("--older-than", "soon"), "--older-than: invalid duration"),
        (("--status", "gone"), "Invalid value for '--status'"),
    ]:
        done = wayang("workspace", "clean", *argv)
        assert done.code == 2, argv
        assert said in done.err, done.err


# ------------------------------------------------------------------------------ sync-tools


def test_sync_tools_brings_the_bundle_up_to_date(repo: Path, wayang: Wayang) -> None:
    run_id = start(wayang)
    bundled = path_of(wayang, run_id) / ".agent-tools" / "scripts" / "x.sh"
    assert bundled.read_text() == "#!/bin/sh\necho one\n"

    (repo / "scripts" / "x.sh").write_text("#!/bin/sh\necho two\n")
    synced = wayang("workspace", "sync-tools", run_id)
    assert synced.code == 0, synced.err
    assert synced.out.startswith(f"workspace {run_id}: tooling synced: 1 file(s), hash ")
    assert bundled.read_text() == "#!/bin/sh\necho two\n"

    again = wayang("workspace", "sync-tools", run_id)
    assert again.code == 0
    assert again.out == f"workspace {run_id}: tooling already up to date\n"


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("bad", ["../x", "a/b", ".hidden", ".."])
def test_ids_that_could_leave_the_root_are_refused(repo: Path, wayang: Wayang, bad: str) -> None:
    for command in (["show"], ["shell", "--command", "true"], ["clean"], ["sync-tools"]):
        done = wayang("workspace", *command, bad)
        assert done.code == 2, command
        assert f"workspace id {bad!r}" in done.err
        assert "no '/', no '..'" in done.err


def test_unknown_ids_say_where_to_look(repo: Path, wayang: Wayang) -> None:
    for command in (["show"], ["shell"], ["clean"], ["sync-tools"]):
        done = wayang("workspace", *command, "nothing-here")
        assert done.code == 2, command
        assert "no workspace 'nothing-here'" in done.err
        assert "'wayang workspace list'" in done.err


# ------------------------------------------------------------------------------ shell


def test_shell_command_runs_in_the_runs_folder_with_its_environment(
    repo: Path, wayang: Wayang, db: Path
) -> None:
    (repo / "flows").mkdir()
    (repo / "flows" / "workflow.toml").write_text(textwrap.dedent(WORKFLOW))
    commit_all(repo, "a workflow in a subfolder")
    done = wayang("run", "flows/workflow.toml", "--json", "--env", "GREETING=hello there")
    assert done.code == 0, done.err
    run_id = done.json()["run_id"]
    path = path_of(wayang, run_id)

    shown = child(
        db, repo, "workspace", "shell", run_id, "--command",
        'pwd; echo "$WAYANG_WORKSPACE|$WAYANG_WORKSPACE_ID|$WAYANG_RUN_ID|$GREETING"',
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines == [str(path / "flows"), f"{path}|{run_id}|{run_id}|hello there"]
    failing = child(db, repo, "workspace", "shell", run_id, "--command", "exit 3")
    assert failing.returncode == 3


@contextlib.contextmanager
def in_terminal(db: Path, cwd: Path, env: dict[str, str], *argv: str) -> Iterator[Terminal]:
    """``wayang --store DB *argv`` on a new pseudo-terminal, its controlling terminal; killed
    at the end if still running."""
    command = [sys.executable, "-c", CONTROLLING_TERMINAL, "-m", "wayang.cli.main"]
    command += ["--store", str(db), *argv]
    main_fd, terminal_fd = pty.openpty()
    # Wide enough that the shell never shortens the prompt.
    fcntl.ioctl(terminal_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 500, 0, 0))
    process = subprocess.Popen(
        command, stdin=terminal_fd, stdout=terminal_fd, stderr=terminal_fd,
        env={**child_env(db), "TERM": "dumb", **env}, cwd=cwd, start_new_session=True,
    )  # fmt: skip
    os.close(terminal_fd)
    terminal = Terminal(main_fd, process, time.monotonic() + PTY_TIMEOUT_S)
    try:
        yield terminal
    finally:
        os.close(main_fd)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class Terminal:
    fd: int
    process: subprocess.Popen[bytes]
    deadline: float
    seen: bytearray = field(default_factory=bytearray)

    def read_until(self, wanted: bytes, times: int = 1) -> bool:
        """Read until ``wanted`` has shown ``times`` times (True) or the terminal closes
        (False); fail at the deadline."""
        while self.seen.count(wanted) < times:
            left = self.deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"timed out waiting for {wanted!r}; the terminal showed {self.seen!r}")
            if not select.select([self.fd], [], [], left)[0]:
                continue
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # EIO: the other end closed
                return False
            if not chunk:
                return False
            self.seen.extend(chunk)
        return True

    def read_to_the_end(self) -> list[str]:
        assert not self.read_until(b"\0never shown")
        return self.seen.decode(errors="replace").replace("\r", "").splitlines()


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_interactive_shell_in_a_pseudo_terminal(
    repo: Path, wayang: Wayang, db: Path, tmp_path: Path, shell: str
) -> None:
    binary = shutil.which(shell)
    if binary is None:
        pytest.skip(f"{shell} is not installed")
    run_id = start(wayang)
    path = path_of(wayang, run_id)
    home = tmp_path / "home"  # no rc file of the user's
    home.mkdir()
    env = {"SHELL": binary, "HOME": str(home)}
    prompt = f"(wayang:{run_id})".encode()
    with in_terminal(db, repo, env, "workspace", "shell", run_id) as terminal:
        assert terminal.read_until(prompt)
        os.write(terminal.fd, b"sleep 30\n")
        time.sleep(0.3)
        os.write(terminal.fd, b"\x03")  # Ctrl-C: stops the sleep, not the shell nor wayang
        assert terminal.read_until(prompt, times=2)
        os.write(terminal.fd, b"echo $WAYANG_WORKSPACE_ID; pwd; exit\n")
        lines = terminal.read_to_the_end()
        assert terminal.process.wait(timeout=PTY_TIMEOUT_S) == 0
    assert any(line.startswith(f"(wayang:{run_id})") for line in lines), lines
    assert run_id in lines  # echo $WAYANG_WORKSPACE_ID, read back
    assert str(path) in lines  # pwd: the workspace


def test_ctrl_c_is_for_the_command_and_wayang_exits_with_its_status(
    repo: Path, wayang: Wayang, db: Path
) -> None:
    run_id = start(wayang)
    # A command that handles Ctrl-C itself and goes on: wayang must wait for it, not stop it.
    handles = "trap 'echo caught' INT; echo started; sleep 30; echo after; exit 4"
    with in_terminal(db, repo, {}, "workspace", "shell", run_id, "-c", handles) as terminal:
        assert terminal.read_until(b"started")
        time.sleep(0.2)
        os.write(terminal.fd, b"\x03")
        lines = terminal.read_to_the_end()
        assert terminal.process.wait(timeout=PTY_TIMEOUT_S) == 4
    assert lines[-2].endswith("caught"), lines  # after the terminal's own "^C"
    assert lines[-1] == "after", lines
    # One that does not: it dies of SIGINT, and wayang says so the way shells do.
    dies = "echo started; sleep 30"
    with in_terminal(db, repo, {}, "workspace", "shell", run_id, "-c", dies) as terminal:
        assert terminal.read_until(b"started")
        time.sleep(0.2)
        os.write(terminal.fd, b"\x03")
        lines = terminal.read_to_the_end()
        assert terminal.process.wait(timeout=PTY_TIMEOUT_S) == 130  # 128 + SIGINT
    assert "aborted" not in lines
    assert "Traceback" not in "\n".join(lines)


def test_shell_attaches_to_the_workspace_of_a_running_run(
    repo: Path, wayang: Wayang, db: Path, tmp_path: Path
) -> None:
    pid_file = tmp_path / "step.pid"
    (repo / "workflow.toml").write_text(
        textwrap.dedent(f"""
        id = "slow"
        version = "1.0.0"

        [steps.wait]
        run = "echo $$ > {pid_file}; sleep 30"
        """)
    )
    commit_all(repo, "a slow workflow")
    argv = [sys.executable, "-m", "wayang.cli.main", "--store", str(db), "run", "workflow.toml"]
    argv += ["--workspace-id", "attached"]
    runner = subprocess.Popen(
        argv, cwd=repo, env=child_env(db), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_for(pid_file.exists, 20, "the step to start")
        run_id = next(row["run_id"] for row in wayang("runs", "--json").json())
        path = path_of(wayang, "attached")
        assert listed(wayang)["attached"]["status"] == "running"

        shown = child(db, repo, "workspace", "shell", run_id, "-c", "pwd; echo $WAYANG_RUN_ID")
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.splitlines() == [str(path), run_id]
        refused = wayang("workspace", "clean", run_id)
        assert refused.code == 2
        assert f"its run {run_id} is running" in refused.err
        assert path.is_dir()

        assert wayang("cancel", run_id).code in (0, 1)
        assert runner.wait(timeout=20) != 0
    finally:
        kill_group(pid_file)
        if runner.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(runner.pid, signal.SIGKILL)
        runner.communicate()
    assert listed(wayang)["attached"]["status"] == "cancelled"
    assert wayang("workspace", "clean", "attached").code == 0
    assert not path.exists()
