"""The Jujutsu backend: ``jj workspace add`` at a change, outside the repository.

A jj repository can have several workspaces (working copies) sharing one store; each has its own
working-copy commit ``@``. A run's workspace is one more of them: ``jj workspace add -r BASE``
gives it a new, empty working-copy commit whose parent is ``BASE``, and ``jj workspace forget``
unregisters it again (jj leaves the folder on disk, so it is deleted here).

jj has no "uncommitted changes": every jj command first snapshots the files of the working copy
into ``@``. So the default base, ``@``, already holds the edits in the user's checkout, and
``include_uncommitted`` has nothing to add.

Ids are full change ids (``jj log -T change_id``: 32 letters k–z), which stay the same when a
change is rewritten (snapshotted, amended, rebased), unlike commit ids.

The commands and options used are those of jj's CLI reference
(https://jj-vcs.github.io/jj/latest/cli-reference/): ``jj log`` with ``-r``, ``--no-graph``,
``--limit`` and ``-T``; ``jj workspace add`` with ``--name`` and ``-r``; ``jj workspace forget``;
and the global options ``-R``, ``--ignore-working-copy`` and ``--color``.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
from collections.abc import Sequence
from pathlib import Path

from wayang.workspace.backend import CommandResult, CommandRunner, run_command
from wayang.workspace.errors import BackendCommandError, WorkspaceError

INSTALL_URL = "https://jj-vcs.github.io/jj/latest/install-and-setup/"

# One full change id a line. ``\n`` is written for jj's template language, which turns it into a
# newline; the template never depends on the user's ``templates.log`` setting.
_CHANGE_ID_TEMPLATE = 'change_id ++ "\\n"'

# Said by ``jj workspace forget NAME`` when NAME is not a workspace of the repository: an error
# (exit status 1) in older jj releases, a warning (exit status 0) in newer ones.
_NO_SUCH_WORKSPACE = "No such workspace"


class JujutsuBackend:
    """Workspaces as extra ``jj`` workspaces of the repository."""

    name: str = "jj"

    def __init__(self, runner: CommandRunner = run_command, jj: str = "jj") -> None:
        self._runner = runner
        self._jj = jj

    def resolve(self, repo: Path, base: str | None) -> str:
        """The full change id of the one revision that revset ``base`` names (``@`` when None).

        ``@`` is the working-copy change, which in jj already holds the checkout's edits. A
        revset naming no revision, or several, is an error saying what to pass instead.
        """
        return self._one_change_id(repo, repo, base or "@")

    def add(
        self, repo: Path, dest: Path, base: str, *, name: str, include_uncommitted: bool
    ) -> str:
        """``jj workspace add --name NAME -r BASE DEST``: a workspace whose working copy is a new
        empty change on top of ``base``.

        Returns the change id of that working copy's parent, read back from the new workspace:
        the change ``base`` names, so the same id :meth:`resolve` gives for ``base``.

        ``include_uncommitted`` has no effect: jj snapshots the working copy as a commit (``@``)
        before every command, so there is nothing uncommitted to carry over; pass ``@`` (the
        default base) to start from the checkout as it is, edits included.
        """
        # Refuse a revset naming no or several revisions before anything is made: given several,
        # ``jj workspace add -r`` would make a merge of them instead of failing.
        self.resolve(repo, base)
        self._checked(
            [
                self._jj,
                "workspace",
                "add",
                "-R",
                str(repo),
                "--color=never",
                "--name",
                name,
                "-r",
                base,
                str(dest),
            ],
            repo,
        )
        return self._one_change_id(dest, repo, "@-")

    def remove(self, repo: Path, dest: Path, *, name: str) -> None:
        """``jj workspace forget NAME``, then delete ``dest``.

        A workspace jj does not know (half made, or forgotten already) is not an error, nor is a
        missing ``dest``. The folder is deleted even when forgetting fails otherwise (jj allows
        deleting a workspace's folder before or after forgetting it); the error is raised after.
        What was done in the workspace stays in the repository: forgetting drops the workspace's
        working-copy pointer, and jj abandons its working-copy commit only if that is empty.
        """
        if _holds(dest, repo):
            raise WorkspaceError(
                f"refusing to delete {dest}: it holds the repository {repo}, not a workspace of it"
            )
        argv = [self._jj, "workspace", "forget", "-R", str(repo), "--color=never", name]
        try:
            result = self._run(argv, repo)
            if result.returncode != 0 and _NO_SUCH_WORKSPACE not in _output(result):
                raise BackendCommandError(_describe_failure(argv, repo, result))
        finally:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(dest)

    def uncommitted(self, repo: Path) -> list[str]:
        # Always empty: jj snapshots the working copy into the working-copy commit ``@`` at the
        # start of every command, so a file edited in the checkout is part of ``@`` (the default
        # base), not an uncommitted change left behind when a workspace is made from it.
        return []

    def _one_change_id(self, where: Path, cwd: Path, revset: str) -> str:
        """The full change id of the single revision ``revset`` names in the workspace at
        ``where``; ``--ignore-working-copy`` because reading must not snapshot nor update it (a
        change id does not change when its working copy is snapshotted)."""
        listed = self._checked(
            [
                self._jj,
                "log",
                "-R",
                str(where),
                "--ignore-working-copy",
                "--color=never",
                "--no-graph",
                "--limit",
                "2",  # two are enough to tell "one" from "several"
                "-r",
                revset,
                "-T",
                _CHANGE_ID_TEMPLATE,
            ],
            cwd,
        )
        ids = listed.split()
        if not ids:
            raise WorkspaceError(
                f"revset {revset!r} names no revision in {where}: pass one that exists, such as "
                "'@' (the working-copy change), a bookmark, or a change id shown by 'jj log'"
            )
        if len(ids) > 1:
            raise WorkspaceError(
                f"revset {revset!r} names several revisions in {where}: pass exactly one, such as "
                f"a commit id or a change id shown by 'jj log', or narrow it, e.g. "
                f"'latest({revset})'"
            )
        return ids[0]

    def _run(self, argv: Sequence[str], cwd: Path) -> CommandResult:
        result = self._runner(argv, cwd)
        if result.returncode == 127:
            raise BackendCommandError(
                f"Jujutsu is not installed (no {self._jj!r} command found): install it "
                f'({INSTALL_URL}), or use git worktrees instead by setting backend = "git" '
                "under [workspaces] in wayang.toml"
            )
        return result

    def _checked(self, argv: Sequence[str], cwd: Path) -> str:
        result = self._run(argv, cwd)
        if result.returncode != 0:
            raise BackendCommandError(_describe_failure(argv, cwd, result))
        return result.stdout


def _output(result: CommandResult) -> str:
    return result.stderr + result.stdout


def _describe_failure(argv: Sequence[str], cwd: Path, result: CommandResult) -> str:
    """``'jj …' failed in DIR: Error: … Hint: …``: jj prints its error first and hints after it,
    so its last line alone may be only a hint."""
    lines = [line.strip() for line in _output(result).splitlines() if line.strip()]
    said = [line for line in lines if line.startswith(("Error:", "Caused by:", "Hint:"))]
    detail = " ".join(said or lines[-1:]) or f"exit status {result.returncode}"
    return f"'{shlex.join(argv)}' failed in {cwd}: {detail}"


def _holds(dest: Path, repo: Path) -> bool:
    """Whether deleting ``dest`` would delete ``repo`` (they are the same, or it is inside)."""
    dest, repo = dest.resolve(), repo.resolve()
    return repo == dest or repo.is_relative_to(dest)
