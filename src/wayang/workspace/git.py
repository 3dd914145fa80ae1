"""The git backend: ``git worktree add --detach`` at a commit, outside the repository.

With ``include_uncommitted`` the workspace holds the checkout as it is: ``git stash create``
records the tracked changes as a commit without touching the checkout (nor the stash list), the
worktree is made at that commit, and untracked files that are not ignored are copied over.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from wayang.workspace.backend import CommandRunner, describe_failure, run_command
from wayang.workspace.errors import BackendCommandError


class GitBackend:
    """Workspaces as detached git worktrees."""

    name = "git"

    def __init__(self, runner: CommandRunner = run_command, git: str = "git") -> None:
        self._run = runner
        self._git = git

    def _cmd(self, repo: Path, *args: str) -> str:
        argv = [self._git, "-C", str(repo), *args]
        result = self._run(argv, repo)
        if result.returncode == 127:
            raise BackendCommandError(
                "git is not installed; install it (apt-get install git) or set "
                '[workspaces] mode = "off" in wayang.toml'
            )
        if result.returncode != 0:
            raise BackendCommandError(describe_failure(argv, repo, result))
        return result.stdout

    def resolve(self, repo: Path, base: str | None) -> str:
        revision = base or "HEAD"
        result = self._run(
            [
                self._git,
                "-C",
                str(repo),
                "rev-parse",
                "--verify",
                "--quiet",
                f"{revision}^{{commit}}",
            ],
            repo,
        )
        if result.returncode != 0 or not result.stdout.strip():
            if base is None:
                raise BackendCommandError(
                    f"{repo} has no commit yet; commit something first, or set "
                    '[workspaces] mode = "off" in wayang.toml to run in place'
                )
            raise BackendCommandError(
                f"--base {base!r}: no such commit in {repo}; pass a branch, tag or commit id"
            )
        return result.stdout.strip()

    def add(
        self, repo: Path, dest: Path, base: str, *, name: str, include_uncommitted: bool
    ) -> str:
        holds = base
        if include_uncommitted:
            stashed = self._cmd(repo, "stash", "create").strip()
            holds = stashed or base
        self._cmd(repo, "worktree", "add", "--detach", "--quiet", str(dest), holds)
        if include_uncommitted:
            self._copy_untracked(repo, dest)
        return holds

    def _copy_untracked(self, repo: Path, dest: Path) -> None:
        listed = self._cmd(repo, "ls-files", "--others", "--exclude-standard", "-z")
        for relative in filter(None, listed.split("\0")):
            source, target = repo / relative, dest / relative
            if source.is_symlink() or source.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target, follow_symlinks=False)

    def remove(self, repo: Path, dest: Path, *, name: str) -> None:
        if repo.is_dir():
            # Not a worktree (half made, or already removed): deleting the folder and pruning
            # the repository's record of it is all that is left to do. A git killed while adding
            # it leaves the record locked ("initializing"): neither remove nor prune touch that.
            self._run([self._git, "-C", str(repo), "worktree", "unlock", str(dest)], repo)
            self._run(
                [self._git, "-C", str(repo), "worktree", "remove", "--force", str(dest)], repo
            )
        shutil.rmtree(dest, ignore_errors=True)
        if repo.is_dir():
            self._run([self._git, "-C", str(repo), "worktree", "prune"], repo)

    def uncommitted(self, repo: Path) -> list[str]:
        # A background `git status` must not take the index lock a command of the user may want;
        # without renames each entry is "XY path" (a rename adds a bare "old path" entry).
        listed = self._cmd(
            repo,
            "--no-optional-locks",
            "status",
            "--porcelain",
            "-z",
            "--no-renames",
            "--untracked-files=all",
        )
        return [entry[3:] for entry in listed.split("\0") if len(entry) > 3]
