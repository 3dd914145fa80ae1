"""``wayang workspace shell``: a shell, or one command, in a workspace as its run sees it.

The shell starts in the run's folder with the run's environment, through ``direnv exec`` when
the workspace's direnv policy allows, and with the prompt ``(wayang:ID)``. It owns the
terminal while it runs: Ctrl-C goes to it, not to wayang, which waits and exits with its status.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from wayang.engine import events as ev
from wayang.errors import UsageError
from wayang.workspace.direnv import decide_direnv
from wayang.workspace.manager import WorkspaceInfo

PROMPT = "(wayang:{id}) \\w $ "  # bash's; \w (the folder) means nothing to other shells
PLAIN_PROMPT = "(wayang:{id}) $ "


@dataclass(frozen=True)
class Launch:
    """How the shell in a workspace starts: a command prefix, a folder and an environment."""

    workspace_id: str
    launcher: tuple[str, ...]
    cwd: Path
    env: dict[str, str]


def launch_of(
    info: WorkspaceInfo, repository: Path, run_id: str, started: ev.RunStarted | None
) -> Launch:
    """The shell of ``run_id`` (whose first event is ``started``, if known) in workspace
    ``info`` of ``repository``: the run's folder (its ``subdir`` of the workspace), its
    environment, and direnv."""
    cwd = info.path
    subdir = str(started.workspace.get("subdir") or "") if started is not None else ""
    if subdir and (info.path / subdir).is_dir():
        cwd = info.path / subdir
    env = {**os.environ, **(started.env_overrides if started is not None else {})}
    env.update(WAYANG_WORKSPACE=str(info.path), WAYANG_WORKSPACE_ID=info.id, PWD=str(cwd))
    if run_id:
        env["WAYANG_RUN_ID"] = run_id
    if started is not None:
        env["WAYANG_WORKFLOW_ID"] = started.workflow_id
    policy = info.meta.direnv_policy if info.meta is not None else "deny"
    direnv = decide_direnv(info.path, repository, policy)
    return Launch(info.id, direnv.launcher, cwd, env)


@contextlib.contextmanager
def shell_argv(launch: Launch, command: str | None) -> Iterator[tuple[list[str], dict[str, str]]]:
    """``sh -c CMD``; or the user's shell with the prompt ``(wayang:ID)``, which bash gets
    after reading its rc file (other shells take PS1 from the environment, if their rc files
    leave it)."""
    if command is not None:
        yield ["/bin/sh", "-c", command], launch.env
        return
    shell = launch.env.get("SHELL") or "/bin/sh"
    if Path(shell).name != "bash":
        yield [shell], {**launch.env, "PS1": PLAIN_PROMPT.format(id=launch.workspace_id)}
        return
    prompt = PROMPT.format(id=launch.workspace_id)
    with tempfile.TemporaryDirectory(prefix="wayang-shell-") as folder:
        rcfile = Path(folder) / "bashrc"
        rcfile.write_text(f"[ -f ~/.bashrc ] && . ~/.bashrc\nPS1={shlex.quote(prompt)}\n")
        yield [shell, "--rcfile", str(rcfile)], {**launch.env, "PS1": prompt}


def _leave_to_the_shell(_number: int, _frame: object) -> None:
    """Ctrl-C and Ctrl-\\ are for the shell; wayang only waits for it to end."""


@contextlib.contextmanager
def signals_for_the_shell() -> Iterator[None]:
    # A Python handler, not SIG_IGN: the shell starts with the default ones (exec resets them).
    previous = {}
    for number in (signal.SIGINT, signal.SIGQUIT):
        with contextlib.suppress(ValueError):  # not the main thread: nothing to set
            previous[number] = signal.signal(number, _leave_to_the_shell)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def run_shell(launch: Launch, command: str | None) -> int:
    """Run the shell (or ``command``) to its end; its exit status (128+N when killed by N)."""
    with shell_argv(launch, command) as (argv, env), signals_for_the_shell():
        try:
            done = subprocess.run([*launch.launcher, *argv], cwd=launch.cwd, env=env)
        except OSError as exc:
            raise UsageError(f"cannot start {argv[0]}: {exc.strerror}; set $SHELL") from None
    return done.returncode if done.returncode >= 0 else 128 - done.returncode
