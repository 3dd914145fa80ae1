"""kill -9 in the middle of making a workspace: what is left is found, cleaned and made again.

A child process runs ``WorkspaceManager.ensure_workspace`` and is held at one point of it, then
its whole process group (git and its helpers too) is SIGKILLed:

- ``before-add``: a git wrapper on the backend sleeps before it runs ``git worktree add``;
- ``mid-checkout``: a smudge filter sleeps while ``git worktree add`` checks files out, so git
  dies with the worktree half written and still locked ("initializing");
- ``after-add``: the wrapper runs ``git worktree add``, then sleeps before returning;
- ``creating``: the metadata says ``creating`` and the child sleeps before writing ``ready``.

Each point is followed both by ``cleanup`` and by a fresh ``ensure_workspace``. One more,
``tools``, kills a workspace already ready while its tool bundle is being linked.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from wayang.workspace.manager import LOCKS_DIR, WorkspaceManager
from wayang.workspace.metadata import TOOLS_DIR, read_meta
from wayang.workspace.tools import CACHE_DIR

WID = "crashy"
REAL_GIT = shutil.which("git") or "git"

CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import wayang.workspace.manager as manager
    from wayang.workspace.git import GitBackend

    repo, git, workspace_id, marker, hold = sys.argv[1:6]

    def held(real, when):
        def wrapper(*args, **kwargs):
            if when(*args):
                Path(marker).touch()
                time.sleep(60)
            return real(*args, **kwargs)
        return wrapper

    if hold == "creating":  # the metadata says "creating": hold before it says "ready"
        manager.write_meta = held(manager.write_meta, lambda _path, meta: meta.status == "ready")
    if hold == "tools":  # the workspace is ready: hold before its tools are linked
        manager.link_bundle = held(manager.link_bundle, lambda *_args: True)
    made = manager.WorkspaceManager(Path(repo), backend=GitBackend(git=git))
    made.ensure_workspace(workspace_id)
    print("finished without being killed")
    """
)

# The wrapper's argv is git's: -C REPO worktree add ...
WRAPPER = """#!/bin/sh
if [ "$3" = worktree ] && [ "$4" = add ]; then
    case "{hold}" in
    before-add) touch "{marker}"; sleep 60 ;;
    after-add) "{git}" "$@" || exit $?; touch "{marker}"; sleep 60; exit 0 ;;
    esac
fi
exec "{git}" "$@"
"""

# Checking out slow.txt runs this filter; it sleeps only while the test holds the child there.
SLOW_FILTER = """#!/bin/sh
if [ -f "{armed}" ]; then touch "{marker}"; sleep 60; fi
exec cat
"""

POINTS = ["before-add", "mid-checkout", "after-add", "creating"]


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        [REAL_GIT, "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return done.stdout


@pytest.fixture(autouse=True)
def _per_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAYANG_WORKSPACE_MODE", "per-run")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "user.name", "Test")
    for index in range(30):
        (path / f"file{index:02}.txt").write_text(f"{index}\n")
    (path / "slow.txt").write_text("checked out through a filter\n")
    (path / ".gitattributes").write_text("slow.txt filter=slow\n")
    (path / "scripts").mkdir()
    (path / "scripts" / "x.sh").write_text("#!/bin/sh\necho tool\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "first")
    return path


class Crash:
    """The child process, the point it is held at, and how to kill it there."""

    def __init__(self, tmp_path: Path, repo: Path, hold: str) -> None:
        self.tmp_path, self.repo, self.hold = tmp_path, repo, hold
        self.marker = tmp_path / "held"
        self.armed = tmp_path / "armed"
        self.git = self._wrapper()
        if hold == "mid-checkout":
            self._slow_checkout()

    def _wrapper(self) -> str:
        path = self.tmp_path / "git-wrapper"
        path.write_text(WRAPPER.format(hold=self.hold, marker=self.marker, git=REAL_GIT))
        path.chmod(0o755)
        return str(path)

    def _slow_checkout(self) -> None:
        script = self.tmp_path / "slow-filter"
        script.write_text(SLOW_FILTER.format(armed=self.armed, marker=self.marker))
        script.chmod(0o755)
        git(self.repo, "config", "filter.slow.smudge", str(script))
        git(self.repo, "config", "filter.slow.clean", "cat")
        self.armed.touch()

    def kill_when_held(self) -> None:
        """Start the child, wait until it is held, and SIGKILL its whole process group."""
        argv = [sys.executable, "-c", CHILD, str(self.repo), self.git, WID, str(self.marker)]
        child = subprocess.Popen(
            [*argv, self.hold],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
            start_new_session=True,  # its own group: git and the filter die with it
        )
        try:
            deadline = time.monotonic() + 20
            while not self.marker.exists():
                if child.poll() is not None:
                    out, err = child.communicate()
                    pytest.fail(f"the child ended before {self.hold}: {out}{err}")
                if time.monotonic() > deadline:
                    pytest.fail(f"the child never reached {self.hold}")
                time.sleep(0.02)
        finally:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
        assert child.returncode == -signal.SIGKILL
        self.armed.unlink(missing_ok=True)  # from now on checkouts are quick


def worktrees(repo: Path) -> list[str]:
    listed = git(repo, "worktree", "list", "--porcelain")
    paths = [line.split(" ", 1)[1] for line in listed.splitlines() if line.startswith("worktree ")]
    return [path for path in paths if Path(path) != repo.resolve()]


def manager_of(repo: Path) -> WorkspaceManager:
    return WorkspaceManager(repo, environ=dict(os.environ))


def assert_left_half_made(manager: WorkspaceManager, hold: str) -> None:
    """What the listing shows after the kill at ``hold``."""
    rows = {row.id: row for row in manager.workspaces()}
    if hold == "before-add":  # nothing of the workspace was made yet
        assert rows == {}
        assert not (manager.namespace / WID).exists()
        return
    row = rows[WID]
    assert not row.complete
    assert row.status == ("creating" if hold == "creating" else "incomplete")
    assert manager.show(WID).status == row.status


def assert_clean_repository(repo: Path, manager: WorkspaceManager) -> None:
    assert worktrees(repo) == []
    assert not (manager.namespace / WID).exists()
    assert git(repo, "status", "--porcelain") == ""


@pytest.mark.parametrize("hold", POINTS)
def test_cleanup_after_a_kill_removes_the_half_made_workspace_and_its_record(
    tmp_path: Path, repo: Path, hold: str
) -> None:
    Crash(tmp_path, repo, hold).kill_when_held()
    manager = manager_of(repo)
    assert_left_half_made(manager, hold)
    if hold == "before-add":
        with pytest.raises(Exception, match="no workspace"):
            manager.cleanup(WID)
    else:
        assert manager.cleanup(WID).kind == "cleaned"
    assert_clean_repository(repo, manager)
    assert manager.workspaces() == []


@pytest.mark.parametrize("hold", POINTS)
def test_making_the_workspace_again_after_a_kill_replaces_the_half_made_one(
    tmp_path: Path, repo: Path, hold: str
) -> None:
    Crash(tmp_path, repo, hold).kill_when_held()
    manager = manager_of(repo)
    made = manager.ensure_workspace(WID)
    kinds = [event.kind for event in made.events]
    if hold == "before-add":
        assert kinds[:2] == ["created", "tooling synced"]
    else:
        assert kinds[:3] == ["cleaned", "created", "tooling synced"]
        assert made.events[0].detail == "removed a half-made workspace"
    assert made.meta.status == "ready"
    assert worktrees(repo) == [str(made.path)]
    assert git(made.path, "rev-parse", "HEAD") == git(repo, "rev-parse", "HEAD")
    assert git(made.path, "status", "--porcelain") == ""
    assert (made.path / "slow.txt").read_text() == "checked out through a filter\n"
    assert [row.status for row in manager.workspaces()] == ["ready"]
    assert manager.ensure_workspace(WID).events[0].kind == "reused"


def test_a_kill_while_linking_tools_leaves_a_ready_workspace_whose_tools_come_next_time(
    tmp_path: Path, repo: Path
) -> None:
    Crash(tmp_path, repo, "tools").kill_when_held()
    manager = manager_of(repo)
    meta = read_meta(manager.namespace / WID)
    assert meta is not None and meta.status == "ready" and meta.tooling_hash == ""
    made = manager.ensure_workspace(WID)
    assert [event.kind for event in made.events][:2] == ["reused", "tooling synced"]
    linked = made.path / TOOLS_DIR / "scripts" / "x.sh"
    cached = manager.namespace / CACHE_DIR / made.meta.tooling_hash / "scripts" / "x.sh"
    assert linked.stat().st_ino == cached.stat().st_ino


def test_the_killed_makers_lock_is_free_for_the_next(tmp_path: Path, repo: Path) -> None:
    Crash(tmp_path, repo, "after-add").kill_when_held()
    manager = manager_of(repo)
    assert (manager.namespace / LOCKS_DIR / f"{WID}.lock").exists()
    # A second child, not killed, takes the lock the first held when it died and finishes.
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(repo), REAL_GIT, WID, str(tmp_path / "x"), "none"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert [row.status for row in manager.workspaces()] == ["ready"]
    assert worktrees(repo) == [str(manager.namespace / WID)]
