"""The workspace manager on real git repositories: worktrees outside the checkout, uncommitted
changes, metadata, cleanup, tool bundles shared by hard link, retention and direnv.

Every repository is made here with ``git init``; the user's checkout must come out of every
test exactly as it went in.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from wayang import files
from wayang.workspace.errors import InvalidWorkspaceIdError, WorkspaceNotFoundError
from wayang.workspace.git import GitBackend
from wayang.workspace.manager import LOCKS_DIR, Workspace, WorkspaceManager, check_workspace_id
from wayang.workspace.metadata import METADATA_FILE, TOOLS_DIR
from wayang.workspace.retention import by_policy, by_request
from wayang.workspace.settings import RetentionSettings
from wayang.workspace.tools import CACHE_DIR, bundle_files, bundle_hash

HOUR = 3600.0
START = 1_700_000_000.0

# The proof of concept's metadata schema: its tools read these keys.
SEED_KEYS = {
    "id",
    "repository",
    "base_change",
    "created_at",
    "updated_at",
    "status",
    "workflow",
    "command",
    "tooling_hash",
    "direnv_policy",
}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return done.stdout


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def write(base: Path, relative: str, text: str, *, executable: bool = False) -> Path:
    path = base / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if executable:
        path.chmod(0o755)
    return path


@pytest.fixture(autouse=True)
def _per_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAYANG_WORKSPACE_MODE", "per-run")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository on branch ``main`` with one commit: sources, a tool bundle, ignored logs."""
    path = tmp_path / "project"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "user.name", "Test")
    write(path, "README.md", "committed\n")
    write(path, "src/app.py", "print('app')\n")
    write(path, ".gitignore", "*.log\n")
    write(path, "agents.just", "check:\n    echo check\n")
    write(path, "scripts/x.sh", "#!/bin/sh\necho one\n", executable=True)
    write(path, "rules/style.md", "be kind\n")
    commit_all(path, "first")
    return path


@pytest.fixture
def manager(repo: Path) -> WorkspaceManager:
    return WorkspaceManager(repo, environ=dict(os.environ))


class Checkout:
    """What the user sees of their checkout: status, HEAD, branch, stash, and its files."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.before = self.snapshot()

    def snapshot(self) -> tuple[str, str, str, str, dict[str, bytes]]:
        files = {
            path.relative_to(self.repo).as_posix(): path.read_bytes()
            for path in sorted(self.repo.rglob("*"))
            if path.is_file() and ".git" not in path.relative_to(self.repo).parts
        }
        return (
            git(self.repo, "status", "--porcelain", "--untracked-files=all"),
            git(self.repo, "rev-parse", "HEAD"),
            git(self.repo, "branch", "--show-current"),
            git(self.repo, "stash", "list"),
            files,
        )

    def assert_untouched(self) -> None:
        assert self.snapshot() == self.before


def worktrees(repo: Path) -> list[str]:
    """The folders ``git worktree list`` shows besides the checkout itself."""
    listed = git(repo, "worktree", "list", "--porcelain")
    paths = [line.split(" ", 1)[1] for line in listed.splitlines() if line.startswith("worktree ")]
    return [path for path in paths if Path(path) != repo.resolve()]


def kinds(made: Workspace) -> list[str]:
    return [event.kind for event in made.events]


# ------------------------------------------------------------------------------ making


def test_a_workspace_is_a_detached_worktree_at_head_outside_the_checkout(
    repo: Path, manager: WorkspaceManager
) -> None:
    checkout = Checkout(repo)
    made = manager.ensure_workspace("w1")
    assert made.path == manager.namespace / "w1"
    assert not made.path.resolve().is_relative_to(repo.resolve())
    assert git(made.path, "rev-parse", "HEAD") == git(repo, "rev-parse", "HEAD")
    assert git(made.path, "branch", "--show-current") == ""  # detached
    assert (made.path / "src/app.py").read_text() == "print('app')\n"
    assert worktrees(repo) == [str(made.path)]
    assert kinds(made)[:2] == ["created", "tooling synced"]
    checkout.assert_untouched()


def test_a_workspace_at_a_base_holds_that_commit(repo: Path, manager: WorkspaceManager) -> None:
    first = git(repo, "rev-parse", "HEAD").strip()
    write(repo, "second.txt", "added later\n")
    commit_all(repo, "second")
    checkout = Checkout(repo)
    made = manager.ensure_workspace("old", first)
    assert git(made.path, "rev-parse", "HEAD").strip() == first
    assert made.meta.base_change == first
    assert not (made.path / "second.txt").exists()
    git(repo, "tag", "v1", first)
    by_tag = manager.ensure_workspace("tagged", "v1")
    assert by_tag.meta.base_change == first
    checkout.assert_untouched()


def test_uncommitted_changes_are_carried_over_when_asked_but_ignored_files_never(
    repo: Path, manager: WorkspaceManager
) -> None:
    write(repo, "README.md", "edited, not committed\n")
    write(repo, "new.txt", "untracked\n")
    write(repo, "notes/deep/n.txt", "untracked, in a folder\n")
    write(repo, "debug.log", "ignored\n")
    checkout = Checkout(repo)
    made = manager.ensure_workspace("dirty", include_uncommitted=True)
    assert (made.path / "README.md").read_text() == "edited, not committed\n"
    assert (made.path / "new.txt").read_text() == "untracked\n"
    assert (made.path / "notes/deep/n.txt").read_text() == "untracked, in a folder\n"
    assert not (made.path / "debug.log").exists()
    head = git(repo, "rev-parse", "HEAD").strip()
    assert made.meta.base_change != head  # the stash-like commit holding the edits
    created = made.events[0]
    assert created.kind == "created" and f"base {head[:12]} with uncommitted" in created.detail
    assert "note" not in kinds(made)
    checkout.assert_untouched()  # `git stash create` left the checkout and stash list alone


def test_without_uncommitted_the_workspace_is_the_commit_and_a_note_says_what_is_left_out(
    repo: Path, manager: WorkspaceManager
) -> None:
    first = git(repo, "rev-parse", "HEAD").strip()
    write(repo, "second.txt", "second\n")
    head = commit_all(repo, "second")
    write(repo, "README.md", "edited, not committed\n")
    write(repo, "new.txt", "untracked\n")
    checkout = Checkout(repo)
    made = manager.ensure_workspace("clean")
    assert (made.path / "README.md").read_text() == "committed\n"
    assert not (made.path / "new.txt").exists()
    notes = [event.detail for event in made.events if event.kind == "note"]
    assert len(notes) == 1
    assert "2 uncommitted change(s)" in notes[0] and "--uncommitted" in notes[0]
    assert "README.md" in notes[0] and "new.txt" in notes[0]
    # A run pins the checkout's change as its base: the edits are left out all the same.
    pinned = manager.ensure_workspace("pinned", head)
    assert [event.detail for event in pinned.events if event.kind == "note"] == notes
    older = manager.ensure_workspace("older", first)
    assert "note" not in kinds(older)  # another change: the checkout's edits are beside the point
    checkout.assert_untouched()


def test_the_note_names_both_sides_of_a_staged_rename(
    repo: Path, manager: WorkspaceManager
) -> None:
    git(repo, "mv", "src/app.py", "src/main.py")
    assert GitBackend().uncommitted(repo) == ["src/app.py", "src/main.py"]
    (note,) = [
        event.detail for event in manager.ensure_workspace("w1").events if event.kind == "note"
    ]
    assert "2 uncommitted change(s)" in note and "src/app.py, src/main.py" in note


def test_looking_for_uncommitted_changes_leaves_the_index_lock_to_the_user(repo: Path) -> None:
    # A user's `git commit` while a run starts must not meet an index.lock taken by Wayang.
    index = repo / ".git" / "index"
    write(repo, "README.md", "edited\n")
    os.utime(index, (86400, 86400))  # stale: a plain `git status` would refresh and rewrite it
    before = index.stat()
    assert GitBackend().uncommitted(repo) == ["README.md"]
    after = index.stat()
    assert (after.st_ino, after.st_mtime) == (before.st_ino, before.st_mtime)


def test_asking_again_reuses_the_workspace_as_it_is(repo: Path, manager: WorkspaceManager) -> None:
    first = manager.ensure_workspace("w1")
    write(first.path, "work.txt", "in progress\n")
    again = manager.ensure_workspace("w1", workflow="wf", run_id="r2")
    assert kinds(again) == ["reused"]  # tools unchanged: not synced again
    assert again.path == first.path
    assert (again.path / "work.txt").read_text() == "in progress\n"
    assert again.meta.created_at == first.meta.created_at
    assert (again.meta.workflow, again.meta.run_id) == ("wf", "r2")
    assert worktrees(repo) == [str(first.path)]


def test_workspaces_made_and_removed_at_once_all_succeed(
    repo: Path, manager: WorkspaceManager
) -> None:
    # Twenty `git worktree add`s at once fail now and then on their own ("failed to read
    # .git/worktrees/X/commondir"): the manager must not pass that on.
    with ThreadPoolExecutor(max_workers=20) as pool:
        made = list(pool.map(manager.ensure_workspace, [f"w{i}" for i in range(20)]))
        assert sorted(worktrees(repo)) == sorted(str(ws.path) for ws in made)
        removing = pool.map(manager.cleanup, [f"w{i}" for i in range(10)])
        adding = pool.map(manager.ensure_workspace, [f"n{i}" for i in range(10)])
        assert [event.kind for event in removing] == ["cleaned"] * 10
        added = list(adding)
    kept = [str(ws.path) for ws in made[10:] + added]
    assert sorted(worktrees(repo)) == sorted(kept)
    assert all(git(Path(path), "status", "--porcelain") == "" for path in kept)


def test_the_base_of_an_unknown_revision_is_a_clear_error(manager: WorkspaceManager) -> None:
    with pytest.raises(Exception, match="no such commit"):
        manager.ensure_workspace("w1", "nosuchrev")
    assert not (manager.namespace / "w1").exists()


# ------------------------------------------------------------------------------ metadata


def test_the_metadata_has_the_seed_schema_and_is_written_whole(
    repo: Path, manager: WorkspaceManager
) -> None:
    made = manager.ensure_workspace(
        "w1", workflow="build", command="wayang run workflow.toml", run_id="run-1"
    )
    stored = json.loads((made.path / TOOLS_DIR / METADATA_FILE).read_text())
    assert stored.keys() >= SEED_KEYS
    assert stored["id"] == "w1"
    assert stored["repository"] == str(repo.resolve())
    assert stored["base_change"] == git(repo, "rev-parse", "HEAD").strip()
    assert stored["status"] == "ready"
    assert (stored["workflow"], stored["command"]) == ("build", "wayang run workflow.toml")
    assert (stored["run_id"], stored["backend"], stored["path"]) == ("run-1", "git", str(made.path))
    assert stored["direnv_policy"] == "auto"
    assert stored["tooling_hash"] == made.meta.tooling_hash != ""
    assert stored["created_at"].endswith("Z") and stored["updated_at"].endswith("Z")
    for status in ("running", "finished"):
        assert manager.update_status("w1", status).status == status
    assert json.loads((made.path / TOOLS_DIR / METADATA_FILE).read_text())["status"] == "finished"
    leftovers = [p.name for p in (made.path / TOOLS_DIR).iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_a_failed_metadata_write_leaves_the_old_record_and_no_temp_file(
    manager: WorkspaceManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = manager.ensure_workspace("w1")
    record = made.path / TOOLS_DIR / METADATA_FILE
    before = record.read_bytes()
    real_replace = os.replace

    def full_disk(source: str | Path, target: str | Path) -> None:
        if Path(target) == record:
            raise OSError(28, "No space left on device")
        real_replace(source, target)

    with monkeypatch.context() as patched:
        patched.setattr(files.os, "replace", full_disk)
        with pytest.raises(OSError, match="No space"):
            manager.update_status("w1", "running")
    assert record.read_bytes() == before
    assert sorted(p.name for p in record.parent.iterdir() if p.name.startswith(".")) == [
        ".agent-workflow.json",
        ".gitignore",
    ]


def test_the_tools_folder_is_out_of_the_workspaces_own_git_status(
    manager: WorkspaceManager,
) -> None:
    made = manager.ensure_workspace("w1")
    assert (made.path / TOOLS_DIR / "scripts/x.sh").is_file()
    assert git(made.path, "status", "--porcelain", "--untracked-files=all") == ""
    write(made.path, "result.txt", "made by a step\n")
    assert git(made.path, "status", "--porcelain") == "?? result.txt\n"


# ------------------------------------------------------------------------------ cleanup and ids


def test_cleanup_removes_the_folder_and_the_repositorys_record(
    repo: Path, manager: WorkspaceManager
) -> None:
    checkout = Checkout(repo)
    keep = manager.ensure_workspace("keep")
    gone = manager.ensure_workspace("gone")
    write(gone.path, "scratch.txt", "work\n")
    event = manager.cleanup("gone")
    assert (event.kind, event.workspace_id) == ("cleaned", "gone")
    assert not gone.path.exists()
    assert worktrees(repo) == [str(keep.path)]
    assert [info.id for info in manager.workspaces()] == ["keep"]
    # the shared tool cache is not the workspace's to remove
    assert (manager.namespace / CACHE_DIR / keep.meta.tooling_hash / "scripts/x.sh").is_file()
    with pytest.raises(WorkspaceNotFoundError):
        manager.cleanup("gone")
    checkout.assert_untouched()
    locks = sorted(p.name for p in (manager.namespace / LOCKS_DIR).iterdir())
    assert "gone.lock" not in locks and "keep.lock" in locks  # no lock file left per id


def test_a_lock_waited_on_while_its_file_is_removed_is_taken_again(
    manager: WorkspaceManager,
) -> None:
    # "a" waits on the lock file that a cleanup removes; "b" comes after the removal and makes
    # a new one. Both may not hold the id at once.
    order: list[str] = []
    holding, released = threading.Event(), threading.Event()

    def remover() -> None:
        with manager._locked("w1", then_remove=True):
            holding.set()
            time.sleep(0.3)  # "a" is blocked on the file about to go
            order.append("remover done")
        released.set()

    def locker(name: str, after: threading.Event, hold_s: float) -> None:
        after.wait()
        with manager._locked("w1"):
            order.append(f"{name} in")
            time.sleep(hold_s)
            order.append(f"{name} out")

    threads = [
        threading.Thread(target=remover),
        threading.Thread(target=locker, args=("a", holding, 0.3)),
        threading.Thread(target=locker, args=("b", released, 0.1)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert order[0] == "remover done"
    pairs = sorted(tuple(order[i : i + 2]) for i in (1, 3))
    assert pairs == [("a in", "a out"), ("b in", "b out")]  # one holder at a time
    assert (manager.namespace / LOCKS_DIR / "w1.lock").exists()


@pytest.mark.parametrize("bad", ["../x", "a/b", ".hidden", "..", "", "a" * 200, "x/../..", "-x"])
def test_ids_that_could_leave_the_root_are_refused(bad: str, manager: WorkspaceManager) -> None:
    with pytest.raises(InvalidWorkspaceIdError, match="workspace id"):
        check_workspace_id(bad)
    with pytest.raises(InvalidWorkspaceIdError):
        manager.ensure_workspace(bad)
    assert not manager.root.exists() or list(manager.root.rglob("*")) == []


@pytest.mark.parametrize("good", ["w1", "run-20240101.a_b", "A" * 128])
def test_ids_of_letters_digits_dots_dashes_are_accepted(good: str) -> None:
    assert check_workspace_id(good) == good


# ------------------------------------------------------------------------------ tool bundles


def tool_file(made: Workspace, relative: str = "scripts/x.sh") -> Path:
    return made.path / TOOLS_DIR / relative


def test_an_unchanged_bundle_is_one_read_only_copy_hard_linked_into_each_workspace(
    repo: Path, manager: WorkspaceManager
) -> None:
    files = bundle_files(repo, manager.settings.tools)
    assert files == ["agents.just", "rules/style.md", "scripts/x.sh"]
    digest = bundle_hash(repo, files)
    assert bundle_hash(repo, files) == digest  # stable
    one = manager.ensure_workspace("one")
    two = manager.ensure_workspace("two")
    assert one.meta.tooling_hash == two.meta.tooling_hash == digest
    cache = manager.namespace / CACHE_DIR
    assert [entry.name for entry in cache.iterdir()] == [digest]
    for relative in files:
        cached = (cache / digest / relative).stat()
        assert tool_file(one, relative).stat().st_ino == cached.st_ino
        assert tool_file(two, relative).stat().st_ino == cached.st_ino
        assert cached.st_nlink == 3
        assert cached.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) == 0
    assert os.access(tool_file(one), os.X_OK)
    assert manager.sync_tools("one") is None


def test_a_changed_tool_gets_a_new_bundle_on_sync(repo: Path, manager: WorkspaceManager) -> None:
    one = manager.ensure_workspace("one")
    two = manager.ensure_workspace("two")
    old = one.meta.tooling_hash
    write(repo, "scripts/x.sh", "#!/bin/sh\necho two\n", executable=True)
    event = manager.sync_tools("one")
    assert event is not None and event.kind == "tooling synced"
    new = bundle_hash(repo, bundle_files(repo, manager.settings.tools))
    assert new != old and new in event.detail
    assert tool_file(one).read_text() == "#!/bin/sh\necho two\n"
    assert tool_file(two).read_text() == "#!/bin/sh\necho one\n"  # until it is synced too
    shown = manager.show("one").meta
    assert shown is not None and shown.tooling_hash == new
    assert sorted(entry.name for entry in (manager.namespace / CACHE_DIR).iterdir()) == sorted(
        [old, new]
    )
    # a new bundle is a new cache folder: until synced, two differs from one everywhere
    assert (
        tool_file(one, "agents.just").stat().st_ino != tool_file(two, "agents.just").stat().st_ino
    )
    assert manager.sync_tools("two") is not None
    assert tool_file(one).stat().st_ino == tool_file(two).stat().st_ino
    assert manager.prune_tool_cache() == [old]
    assert git(one.path, "status", "--porcelain") == ""


# ------------------------------------------------------------------------------ retention


@pytest.fixture
def clock() -> list[float]:
    return [START]


@pytest.fixture
def timed(repo: Path, clock: list[float]) -> WorkspaceManager:
    return WorkspaceManager(repo, environ=dict(os.environ), clock=lambda: clock[0])


def made_at(
    manager: WorkspaceManager, clock: list[float], at: float, wid: str, status: str
) -> Path:
    clock[0] = at
    made = manager.ensure_workspace(wid)
    manager.update_status(wid, status)
    return made.path


def half_made(repo: Path, manager: WorkspaceManager, wid: str) -> Path:
    """A worktree whose maker died before writing its metadata."""
    path = manager.namespace / wid
    head = git(repo, "rev-parse", "HEAD").strip()
    GitBackend().add(repo, path, head, name=wid, include_uncommitted=False)
    return path


def never_busy(_row: object) -> bool:
    return False


def remove_all(manager: WorkspaceManager, ids: list[str]) -> None:
    for wid in ids:
        manager.cleanup(wid)


def test_retention_keeps_the_newest_finished_recent_failures_and_work_in_progress(
    repo: Path, timed: WorkspaceManager, clock: list[float]
) -> None:
    for hour, wid, status in [
        (0, "done-old", "finished"),
        (1, "failed-old", "failed"),
        (2, "done-mid", "cancelled"),
        (3, "running", "running"),
        (4, "done-new", "finished"),
        (5, "failed-new", "failed"),
    ]:
        made_at(timed, clock, START + hour * HOUR, wid, status)
    half_made(repo, timed, "half")
    now = START + 5.5 * HOUR
    policy = RetentionSettings(keep_last=1, keep_failed="2h")
    chosen = by_policy(timed.workspaces(), policy, now, busy=never_busy)
    reasons = {removal.info.id: removal.reason for removal in chosen}
    assert sorted(reasons) == ["done-mid", "done-old", "failed-old", "half"]
    assert "keep_failed" in reasons["failed-old"] and "keep_last" in reasons["done-old"]
    assert timed.show("half").status == "incomplete"
    remove_all(timed, sorted(reasons))
    assert sorted(Path(p).name for p in worktrees(repo)) == ["done-new", "failed-new", "running"]
    assert by_policy(timed.workspaces(), policy, now, busy=never_busy) == []


def test_a_half_made_workspace_whose_maker_lives_is_left_alone(
    repo: Path, timed: WorkspaceManager
) -> None:
    half_made(repo, timed, "half")
    rows = timed.workspaces()
    policy = RetentionSettings()
    assert by_policy(rows, policy, START, busy=lambda _row: True) == []
    assert [r.info.id for r in by_policy(rows, policy, START, busy=never_busy)] == ["half"]


@pytest.mark.parametrize(
    ("limit", "removed"),
    [
        (450_000, ["a-finished"]),
        (250_000, ["a-finished", "b-finished"]),
        (100_000, ["a-finished", "b-finished", "c-failed"]),
        (10_000_000, []),
    ],
)
def test_over_max_disk_the_oldest_finished_go_first_then_the_failed(
    timed: WorkspaceManager, clock: list[float], limit: int, removed: list[str]
) -> None:
    # c failed before the others finished: age alone would pick it first.
    made = [(0, "c-failed", "failed"), (1, "a-finished", "finished"), (2, "b-finished", "finished")]
    for hour, wid, status in made:
        path = made_at(timed, clock, START + hour * HOUR, wid, status)
        write(path, "build/blob.bin", "x" * 200_000)
    policy = RetentionSettings(keep_last=10, keep_failed="7d", max_disk=limit)
    chosen = by_policy(timed.workspaces(), policy, START + 3 * HOUR, busy=never_busy)
    assert [removal.info.id for removal in chosen] == removed
    assert all("max_disk" in removal.reason for removal in chosen)


def test_clean_by_request_matches_status_and_age_and_skips_busy_ones(
    repo: Path, timed: WorkspaceManager, clock: list[float]
) -> None:
    made_at(timed, clock, START, "old-failed", "failed")
    made_at(timed, clock, START + 10 * HOUR, "new-failed", "failed")
    made_at(timed, clock, START + 10 * HOUR, "new-done", "finished")
    half_made(repo, timed, "half")
    rows = timed.workspaces()
    now = START + 12 * HOUR
    failed = by_request(rows, now, older_than=None, status="failed", busy=never_busy)
    assert sorted(r.info.id for r in failed) == ["new-failed", "old-failed"]
    old = by_request(rows, now, older_than=5 * HOUR, status=None, busy=never_busy)
    assert sorted(r.info.id for r in old) == ["half", "old-failed"]
    both = by_request(rows, now, older_than=5 * HOUR, status="failed", busy=never_busy)
    assert [r.info.id for r in both] == ["old-failed"]
    assert by_request(rows, now, older_than=0, status=None, busy=lambda _row: True) == []
    remove_all(timed, [r.info.id for r in old])
    assert sorted(Path(p).name for p in worktrees(repo)) == ["new-done", "new-failed"]


# ------------------------------------------------------------------------------ direnv

# Under CI=true the Makefile installs direnv, and these tests must run, not skip.
needs_direnv = pytest.mark.skipif(
    shutil.which("direnv") is None and os.environ.get("CI", "").lower() != "true",
    reason="direnv not installed (apt-get install direnv)",
)

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def envrc_repo(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``repo`` with a committed ``.envrc``; direnv's allow list lives in the test's folder
    ($XDG_DATA_HOME/direnv/allow, per direnv(1))."""
    home = tmp_path / "home"
    for name, sub in [("HOME", ""), ("XDG_DATA_HOME", "data"), ("XDG_CONFIG_HOME", "config")]:
        (home / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(home / sub))
    monkeypatch.delenv("DIRENV_DIR", raising=False)
    monkeypatch.delenv("DIRENV_FILE", raising=False)
    write(repo, ".envrc", "export WAYANG_PROBE=from-envrc\n")
    commit_all(repo, "envrc")
    return repo


def allow_list(home_data: Path) -> list[str]:
    allowed = home_data / "direnv" / "allow"
    return sorted(entry.name for entry in allowed.iterdir()) if allowed.is_dir() else []


def probe(made: Workspace) -> str:
    """What a command started the way the run starts its steps sees of the ``.envrc``."""
    done = subprocess.run(
        [*made.launcher, "sh", "-c", 'printf %s "${WAYANG_PROBE:-unset}"'],
        cwd=made.path,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


@needs_direnv
def test_direnv_allow_runs_commands_through_direnv_exec(envrc_repo: Path) -> None:
    manager = WorkspaceManager(envrc_repo, environ=dict(os.environ))
    made = manager.ensure_workspace("w1", direnv_policy="allow")
    assert made.launcher == (shutil.which("direnv"), "exec", str(made.path))
    assert "direnv allowed" in kinds(made)
    assert probe(made) == "from-envrc"
    assert len(allow_list(Path(os.environ["XDG_DATA_HOME"]))) == 1
    assert made.meta.direnv_policy == "allow"


@needs_direnv
def test_direnv_deny_ignores_the_envrc(envrc_repo: Path) -> None:
    manager = WorkspaceManager(envrc_repo, environ=dict(os.environ))
    made = manager.ensure_workspace("w1", direnv_policy="deny")
    assert made.launcher == ()
    assert any("policy deny" in e.detail for e in made.events if e.kind == "note")
    assert probe(made) == "unset"
    assert allow_list(Path(os.environ["XDG_DATA_HOME"])) == []


@needs_direnv
def test_direnv_auto_trusts_the_workspace_only_when_the_repository_is_trusted(
    envrc_repo: Path,
) -> None:
    manager = WorkspaceManager(envrc_repo, environ=dict(os.environ))
    untrusted = manager.ensure_workspace("w1", direnv_policy="auto")
    assert untrusted.launcher == ()
    notes = [e.detail for e in untrusted.events if e.kind == "note"]
    assert len(notes) == 1 and "not allowed" in notes[0] and "direnv allow" in notes[0]
    assert allow_list(Path(os.environ["XDG_DATA_HOME"])) == []
    subprocess.run(["direnv", "allow", str(envrc_repo)], check=True, capture_output=True)
    trusted = manager.ensure_workspace("w2", direnv_policy="auto")
    assert trusted.launcher == (shutil.which("direnv"), "exec", str(trusted.path))
    assert probe(trusted) == "from-envrc"
    # the one already made is trusted from now on too: asking again applies the policy again
    assert manager.ensure_workspace("w1", direnv_policy="auto").launcher != ()
