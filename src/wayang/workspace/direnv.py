"""direnv: commands run through ``direnv exec`` when the policy allows and direnv is here.

- ``deny``: never.
- ``allow``: the workspace's ``.envrc`` is approved (``direnv allow``) when the workspace is
  made, and commands run through it.
- ``auto``: the workspace's ``.envrc`` is approved only if the user already approved the
  repository's own (``direnv exec REPO true`` succeeds): trust carries over, never further.

Without direnv, or without an ``.envrc``, commands run plainly, and a note says why.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from wayang.workspace.backend import CommandRunner, run_command


@dataclass(frozen=True, slots=True)
class DirenvDecision:
    """How commands in one workspace run: ``launcher`` goes before each command's argv."""

    launcher: tuple[str, ...]
    allowed: bool  # whether `direnv allow` was run for the workspace just now
    note: str  # why direnv is or is not used, for the run's log ("" when nothing to say)


def decide_direnv(
    workspace: Path,
    repo: Path,
    policy: str,
    *,
    runner: CommandRunner = run_command,
    direnv: str | None = None,
) -> DirenvDecision:
    """Apply ``policy`` to ``workspace`` (which may need ``direnv allow``)."""
    envrc = workspace / ".envrc"
    if not envrc.is_file():
        return DirenvDecision((), False, "")
    if policy == "deny":
        return DirenvDecision((), False, "direnv: not used (policy deny); .envrc is ignored")
    binary = direnv or shutil.which("direnv")
    if binary is None:
        return DirenvDecision(
            (), False, "direnv is not installed; commands run without .envrc (install direnv)"
        )
    if policy == "auto" and runner([binary, "exec", str(repo), "true"], repo).returncode != 0:
        return DirenvDecision(
            (),
            False,
            f"direnv: {repo}/.envrc is not allowed, so the workspace's is not either; "
            "run 'direnv allow' in the repository or set direnv = \"allow\"",
        )
    done = runner([binary, "allow", str(workspace)], workspace)
    if done.returncode != 0:
        return DirenvDecision((), False, f"direnv allow failed: {done.stderr.strip()[:200]}")
    return DirenvDecision((binary, "exec", str(workspace)), True, "direnv allowed")
