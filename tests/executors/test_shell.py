"""ShellExecutor: environment, streamed lines, exit statuses, outputs, timeouts and cancellation."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from wayang.executors import ShellExecutor, TaskResult, TaskSpec


class Lines:
    """A LogSink that remembers every (stream, line)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, stream: str, line: str) -> None:
        self.calls.append((stream, line))

    def of(self, stream: str) -> list[str]:
        return [line for name, line in self.calls if name == stream]


def task(command: str, tmp_path: Path, **changes: Any) -> TaskSpec:
    fields: dict[str, Any] = {
        "run_id": "run-1",
        "step_id": "build",
        "attempt": 2,
        "idempotency_key": "run-1/build",
        "command": command,
        "uses": None,
        "inputs": {},
        "env": {},
        "cwd": str(tmp_path),
        "timeout_s": None,
        "workflow_id": "release",
    }
    return TaskSpec(**(fields | changes))


def run(command: str, tmp_path: Path, **changes: Any) -> tuple[TaskResult, Lines]:
    lines = Lines()
    result = asyncio.run(ShellExecutor().execute(task(command, tmp_path, **changes), lines))
    return result, lines


def gone(pid: int, within_s: float = 1.0) -> bool:
    """True once ``pid`` no longer runs (a zombie waiting for init to reap it counts as gone)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (ProcessLookupError, FileNotFoundError):
            return True
        if state == "Z":
            return True
        time.sleep(0.01)
    return False


def wait_for_pid(path: Path) -> int:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.01)
    raise AssertionError(f"{path} was never written")


# --- environment ------------------------------------------------------------------------------


def test_the_step_sees_its_identity_its_env_and_the_worker_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKER_ONLY", "from-worker")
    monkeypatch.setenv("OVERRIDDEN", "worker")
    names = [
        "WAYANG_RUN_ID",
        "WAYANG_STEP_ID",
        "WAYANG_ATTEMPT",
        "WAYANG_IDEMPOTENCY_KEY",
        "WAYANG_WORKFLOW_ID",
        "WORKER_ONLY",
        "OVERRIDDEN",
        "STEP_ONLY",
    ]
    command = "".join(f'echo "{name}=${name}" >> "$WAYANG_OUTPUT"\n' for name in names)
    result, _ = run(command, tmp_path, env={"STEP_ONLY": "yes", "OVERRIDDEN": "step"})
    assert result.status == "succeeded", result
    assert result.outputs == {
        "WAYANG_RUN_ID": "run-1",
        "WAYANG_STEP_ID": "build",
        "WAYANG_ATTEMPT": "2",
        "WAYANG_IDEMPOTENCY_KEY": "run-1/build",
        "WAYANG_WORKFLOW_ID": "release",
        "WORKER_ONLY": "from-worker",
        "OVERRIDDEN": "step",
        "STEP_ONLY": "yes",
    }


def test_the_output_file_is_fresh_per_attempt_and_removed_afterwards(tmp_path: Path) -> None:
    command = 'test -f "$WAYANG_OUTPUT" && test ! -s "$WAYANG_OUTPUT" && echo "$WAYANG_OUTPUT"'
    first, lines = run(command, tmp_path)
    second, more = run(command, tmp_path)
    assert first.status == second.status == "succeeded"
    [path], [other] = lines.of("stdout"), more.of("stdout")
    assert path != other
    assert not Path(path).exists()


def test_the_step_runs_in_its_cwd_with_no_stdin(tmp_path: Path) -> None:
    result, lines = run("pwd; cat; echo read-nothing", tmp_path)
    assert result.status == "succeeded"
    assert lines.of("stdout") == [str(tmp_path), "read-nothing"]


def test_a_missing_cwd_fails_without_raising(tmp_path: Path) -> None:
    result, _ = run("true", tmp_path, cwd=str(tmp_path / "nowhere"))
    assert result.status == "failed"
    assert result.error is not None and result.error.startswith("cannot start /bin/sh:")


# --- streamed lines ---------------------------------------------------------------------------


def test_lines_arrive_in_order_per_stream_and_a_last_partial_line_counts(tmp_path: Path) -> None:
    command = "for i in 1 2 3; do echo out$i; echo err$i >&2; done; echo; printf 'no newline'"
    result, lines = run(command, tmp_path)
    assert result.status == "succeeded"
    assert lines.of("stdout") == ["out1", "out2", "out3", "", "no newline"]
    assert lines.of("stderr") == ["err1", "err2", "err3"]


def test_long_lines_are_split_into_64_kib_pieces(tmp_path: Path) -> None:
    command = "head -c 150000 /dev/zero | tr '\\0' a; echo; echo after"
    result, lines = run(command, tmp_path)
    assert result.status == "succeeded"
    assert [len(line) for line in lines.of("stdout")] == [65536, 65536, 150000 - 2 * 65536, 5]


def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    result, lines = run("printf 'caf\\351 ok\\n'", tmp_path)
    assert result.status == "succeeded"
    assert lines.of("stdout") == ["caf\ufffd ok"]


# --- exit statuses ----------------------------------------------------------------------------


def test_exit_zero_succeeds(tmp_path: Path) -> None:
    result, _ = run("true", tmp_path)
    assert (result.status, result.exit_code, result.error, result.outputs) == (
        "succeeded",
        0,
        None,
        {},
    )
    assert result.duration_s > 0


def test_a_non_zero_exit_fails_with_its_status(tmp_path: Path) -> None:
    result, _ = run("echo partial=1 >> $WAYANG_OUTPUT; exit 3", tmp_path)
    assert (result.status, result.exit_code, result.error) == ("failed", 3, "exit status 3")
    assert result.outputs == {}  # a failed step's outputs are not trusted


def test_death_by_signal_is_named(tmp_path: Path) -> None:
    result, _ = run("kill -TERM $$", tmp_path)
    assert (result.status, result.exit_code) == ("failed", -15)
    assert result.error == "killed by signal SIGTERM"


# --- outputs ----------------------------------------------------------------------------------


def test_key_value_outputs_with_a_heredoc(tmp_path: Path) -> None:
    command = """
    echo "version=1.4.0" >> "$WAYANG_OUTPUT"
    {
      echo 'notes<<EOF'
      echo 'line one'
      echo 'line two'
      echo 'EOF'
    } >> "$WAYANG_OUTPUT"
    """
    result, _ = run(command, tmp_path)
    assert result.outputs == {"version": "1.4.0", "notes": "line one\nline two"}


def test_json_outputs_keep_their_types(tmp_path: Path) -> None:
    result, _ = run("""printf '{"files": 12, "ok": true}' > "$WAYANG_OUTPUT" """, tmp_path)
    assert result.outputs == {"files": 12, "ok": True}


def test_a_malformed_output_line_fails_the_step(tmp_path: Path) -> None:
    result, _ = run("printf 'a=1\\nb=2\\noops\\n' >> $WAYANG_OUTPUT", tmp_path)
    assert result.status == "failed"
    assert result.error == "WAYANG_OUTPUT line 3: expected key=value, got 'oops'"


def test_a_step_that_removes_its_output_file_has_no_outputs(tmp_path: Path) -> None:
    result, _ = run('rm "$WAYANG_OUTPUT"', tmp_path)
    assert (result.status, result.outputs) == ("succeeded", {})


# --- timeouts and cancellation ----------------------------------------------------------------


def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    command = 'sleep 30 & echo $! > "$PIDFILE"; sleep 30'
    started = time.monotonic()
    result, _ = run(command, tmp_path, timeout_s=0.3, env={"PIDFILE": str(pidfile)})
    assert time.monotonic() - started < 1.5
    assert (result.status, result.error, result.exit_code) == (
        "timed_out",
        "timed out after 0.3s",
        None,
    )
    assert gone(int(pidfile.read_text()))


def test_a_timeout_sigkills_what_ignores_sigterm_after_the_grace(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    command = "trap '' TERM; sleep 30 & echo $! > \"$PIDFILE\"; wait"
    spec = task(command, tmp_path, timeout_s=0.2, env={"PIDFILE": str(pidfile)})
    started = time.monotonic()
    result = asyncio.run(ShellExecutor(grace_s=0.3).execute(spec, Lines()))
    elapsed = time.monotonic() - started
    assert result.status == "timed_out"
    assert 0.45 < elapsed < 1.2  # the timeout, then the whole grace, then SIGKILL
    assert gone(int(pidfile.read_text()))


def cancel_after_start(coro: Coroutine[Any, Any, TaskResult], pidfile: Path) -> float:
    """Run ``coro``, cancel it once ``pidfile`` is written; how long the cancel took."""

    async def scenario() -> float:
        job = asyncio.create_task(coro)
        while not (pidfile.exists() and pidfile.read_text().strip()):
            await asyncio.sleep(0.01)
        started = time.monotonic()
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        return time.monotonic() - started

    return asyncio.run(scenario())


def test_cancelling_stops_the_group_quickly(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    command = 'sleep 30 & echo $! > "$PIDFILE"; wait'
    spec = task(command, tmp_path, env={"PIDFILE": str(pidfile)})
    took = cancel_after_start(ShellExecutor().execute(spec, Lines()), pidfile)
    assert took < 0.5  # SIGTERM was enough: no waiting for the grace period
    assert gone(int(pidfile.read_text()))


def test_cancelling_sigkills_a_group_that_ignores_sigterm_within_2s(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    command = "trap '' TERM; sleep 30 & echo $! > \"$PIDFILE\"; wait; wait"
    spec = task(command, tmp_path, env={"PIDFILE": str(pidfile)})
    took = cancel_after_start(ShellExecutor().execute(spec, Lines()), pidfile)
    assert 0.9 < took < 2.0  # the default 1 s grace, then SIGKILL
    assert gone(int(pidfile.read_text()))


def test_a_failing_log_sink_raises_and_leaves_no_process(tmp_path: Path) -> None:
    pidfile = tmp_path / "shell.pid"

    def sink(stream: str, line: str) -> None:
        raise RuntimeError("sink is broken")

    spec = task(
        'echo $$ > "$PIDFILE"; echo hello; sleep 30', tmp_path, env={"PIDFILE": str(pidfile)}
    )
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="sink is broken"):
        asyncio.run(ShellExecutor().execute(spec, sink))
    assert time.monotonic() - started < 1.5
    assert gone(wait_for_pid(pidfile))


@pytest.mark.parametrize("loop_turns", range(8))
def test_cancelling_at_any_point_of_the_start_leaves_no_process(
    tmp_path: Path, loop_turns: int
) -> None:
    """Cancelled while asyncio is still wiring up the pipes, the child must not leak or hang us."""
    pidfile = tmp_path / "pids"
    command = 'echo $$ > "$PIDFILE"; sleep 30 & echo $! >> "$PIDFILE"; wait'
    spec = task(command, tmp_path, env={"PIDFILE": str(pidfile)})

    async def scenario() -> float:
        job = asyncio.create_task(ShellExecutor().execute(spec, Lines()))
        for _ in range(loop_turns):
            await asyncio.sleep(0)
        time.sleep(0.05)  # blocks the loop: the child runs ahead while asyncio is mid-start
        started = time.monotonic()
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 2.0
    pids = pidfile.read_text().split() if pidfile.exists() else []
    assert all(gone(int(pid)) for pid in pids)
