"""``wayang run --detach``: hand a prepared run to a background process that outlives the CLI.

The CLI validates and plans the run itself (so every error is reported where the user is), then
spawns ``wayang _drive`` in a new session and passes it the run's first event on stdin. The
background process creates the run and drives it; the CLI returns once the run's row is durable
in the store, so the id it prints always names a run. Nothing runs twice: the steps are started
only by the background process.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from wayang.errors import UsageError, WayangError
from wayang.runtime.operations import RunRequest, request_payload
from wayang.store.port import Store
from wayang.store.urls import MEMORY, default_store_path, is_postgres_url, sqlite_path

CREATE_WAIT_S = 10.0
POLL_S = 0.05
LOG_TAIL = 20


class DetachError(WayangError):
    """The background process did not create the run."""


def start_detached(
    store: Store, location: str, request: RunRequest, run_id: str, cpus: str | None = None
) -> Path:
    """Spawn the background driver of a new run; returns its output file once the run exists.
    ``cpus``: the driver pins itself to these (``wayang run --detach --cpus``)."""
    if is_postgres_url(location):
        # The driver reads the same URL; its output goes beside the user's default store.
        store_arg = location
        log = default_store_path().with_name("detached-logs") / f"{run_id}.log"
    else:
        database = sqlite_path(location)
        if database == MEMORY:
            raise UsageError(
                "--detach needs a store file: an in-memory store ends with this process; "
                "pass --store PATH"
            )
        database_path = Path(database).resolve()
        store_arg = str(database_path)
        log = database_path.with_name(f"{database_path.stem}-logs") / f"{run_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "wayang.cli.main", "--store", store_arg, "_drive"]
    argv += ["--cpus", cpus] if cpus else []
    pid = _spawn(argv, request_payload(request, run_id), log)
    _wait_for_run(store, run_id, pid, log)
    return log


def _spawn(argv: list[str], payload: str, log: Path) -> int:
    """Start ``argv`` in a new session, ``payload`` on its stdin, its output into ``log``."""
    read_end, write_end = os.pipe()
    try:
        pid = os.posix_spawn(
            argv[0],
            argv,
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, read_end, 0),
                (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,
        )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    try:
        with os.fdopen(write_end, "w", encoding="utf-8") as pipe:
            pipe.write(payload)
    except BrokenPipeError:
        pass  # it died before reading; _wait_for_run says so, with its output
    return pid


def _wait_for_run(store: Store, run_id: str, pid: int, log: Path) -> None:
    deadline = time.monotonic() + CREATE_WAIT_S
    while store.get_run(run_id) is None:
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            raise DetachError(
                f"the background process exited ({_exit_text(status)}) before creating run "
                f"{run_id}; its output ({log}):\n{_tail(log)}"
            )
        if time.monotonic() > deadline:
            raise DetachError(
                f"the background process (pid {pid}) did not create run {run_id} within "
                f"{CREATE_WAIT_S:.0f}s; see {log}"
            )
        time.sleep(POLL_S)


def _exit_text(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"signal {-code}" if code < 0 else f"status {code}"


def _tail(log: Path) -> str:
    try:
        lines = log.read_text("utf-8", errors="replace").splitlines()
    except OSError:
        return "(no output)"
    return "\n".join(lines[-LOG_TAIL:]) or "(no output)"
