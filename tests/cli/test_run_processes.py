"""The run commands across processes: Ctrl-C, ``wayang cancel`` from elsewhere, a killed CLI
resumed, and detached runs. Each ``wayang run`` here is a child process on the test's store."""

from __future__ import annotations

import gc
import json
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from cli_runs import Wayang, kill_group, wait_for
from wayang.cli.driver import FULL_COLLECTION_AFTER

Spawn = Callable[..., subprocess.Popen[str]]

# b sleeps until the test creates the file "fast"; it records its shell's pid (the leader of
# the step's process group) so the test can kill it when the CLI that ran it was killed.
SLEEPY = """
    id = "sleepy"

    [steps.a]
    run = 'echo a >> ledger'

    [steps.b]
    needs = ["a"]
    run = 'echo b >> ledger; echo $$ > b.pid; {trap}if [ -f fast ]; then true; else sleep 30; fi'

    [steps.c]
    needs = ["b"]
    run = 'echo c >> ledger'
"""


def write(tmp_path: Path, trap: str = "", extra: str = "") -> str:
    path = tmp_path / "workflow.toml"
    path.write_text(textwrap.dedent(SLEEPY.format(trap=trap)) + textwrap.dedent(extra))
    return str(path)


def ledger(tmp_path: Path) -> list[str]:
    path = tmp_path / "ledger"
    return path.read_text().split() if path.exists() else []


def wait_until_b_runs(tmp_path: Path, wayang: Wayang) -> None:
    """Until b runs and the store knows a succeeded. The engine starts b before the append that
    records a's success (and dispatches b) is durable (runtime/engine.py): a CLI killed in
    between leaves a in flight, to be cancelled or run again by whoever adopts the run."""
    wait_for(lambda: "b" in ledger(tmp_path) and (tmp_path / "b.pid").exists(), what="step b")
    wait_for(lambda: durable_status(wayang, "a") == "succeeded", what="a's success in the store")


def durable_status(wayang: Wayang, step: str) -> str | None:
    """``step``'s status in the store, None while the run itself is not there yet."""
    result = wayang("status", "--json")
    return str(result.json()["steps"][step]["status"]) if result.code == 0 else None


def latest(wayang: Wayang) -> dict[str, object]:
    data: dict[str, object] = wayang("status", "--json").json()
    return data


def test_ctrl_c_cancels_the_run(spawn: Spawn, wayang: Wayang, tmp_path: Path) -> None:
    child = spawn("run", write(tmp_path))
    wait_until_b_runs(tmp_path, wayang)
    asked = time.monotonic()
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=10)
    took = time.monotonic() - asked
    assert child.returncode == 130, err
    assert took < 10, f"cancelling took {took:.2f}s"
    lines = out.splitlines()
    assert any(line.endswith("interrupted: cancelling the run; press Ctrl-C again to stop at "
                             "once (the run stays resumable)") for line in lines)  # fmt: skip
    assert lines[-1].endswith(": interrupted") and " cancelled in " in lines[-1]
    status = latest(wayang)
    assert status["status"] == "cancelled" and status["reason"] == "interrupted"
    assert ledger(tmp_path) == ["a", "b"]


def test_a_second_ctrl_c_stops_at_once_and_leaves_the_run_resumable(
    spawn: Spawn, wayang: Wayang, tmp_path: Path
) -> None:
    # b ignores SIGTERM, so the cancel waits out the grace period: time for a second Ctrl-C.
    child = spawn("run", write(tmp_path, trap='trap "" TERM; '))
    wait_until_b_runs(tmp_path, wayang)
    child.send_signal(signal.SIGINT)
    time.sleep(0.3)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=10)
    assert child.returncode == 130, err
    run_id = latest(wayang)["run_id"]
    assert f"interrupted again: stopping now; 'wayang resume {run_id}' continues the run" in out
    assert f"is still running; 'wayang resume {run_id}' continues it" in err
    assert latest(wayang)["status"] == "running"

    (tmp_path / "fast").touch()
    resumed = wayang("resume", str(run_id), "--json")
    assert resumed.code == 1  # the recorded cancel is carried out
    assert resumed.json()["status"] == "cancelled"
    assert ledger(tmp_path).count("a") == 1


def test_cancel_from_another_process(spawn: Spawn, wayang: Wayang, tmp_path: Path) -> None:
    child = spawn("run", write(tmp_path))
    wait_until_b_runs(tmp_path, wayang)
    run_id = latest(wayang)["run_id"]
    busy = wayang("resume", str(run_id))
    assert busy.code == 1 and f"error: run {run_id} is being driven by " in busy.err
    asked = time.monotonic()
    result = wayang("cancel", str(run_id))
    took = time.monotonic() - asked
    assert result.code == 0, result.err
    assert result.out.startswith(f"run {run_id} cancelled in ")
    assert took < 10, f"cancelling took {took:.2f}s"
    out, _ = child.communicate(timeout=10)
    assert child.returncode == 1
    assert out.splitlines()[-1].endswith(": cancelled by 'wayang cancel'")


def test_a_killed_run_resumes_without_rerunning_finished_steps(
    spawn: Spawn, wayang: Wayang, tmp_path: Path
) -> None:
    extra = """
        [steps.bad]
        run = 'echo bad >> ledger; exit 4'
        continue_on_error = true
    """
    child = spawn("run", write(tmp_path, extra=extra))
    wait_until_b_runs(tmp_path, wayang)
    wait_for(lambda: wayang("dlq", "list", "--json").json(), what="the dead letter of bad")
    child.kill()
    child.communicate(timeout=10)
    kill_group(tmp_path / "b.pid")  # the machine "crashed": its steps died with it
    run_id = str(latest(wayang)["run_id"])
    assert latest(wayang)["status"] == "running"

    letter = wayang("dlq", "list", "--json").json()[0]["id"]
    refused = wayang("dlq", "replay", letter)
    assert refused.code == 2 and f"run {run_id}, which is still running" in refused.err
    assert [d["id"] for d in wayang("dlq", "list", "--json").json()] == [letter]  # kept

    (tmp_path / "fast").touch()
    resumed = wayang("resume", run_id)
    assert resumed.code == 0, resumed.out + resumed.err
    assert resumed.lines[-1].startswith(f"run {run_id} succeeded in ")
    assert sorted(ledger(tmp_path)) == ["a", "b", "b", "bad", "c"]  # only b, in flight, again
    assert wayang("status", run_id, "--json").json()["steps"]["bad"]["status"] == "failed"


def test_cancel_of_a_run_nobody_drives(spawn: Spawn, wayang: Wayang, tmp_path: Path) -> None:
    child = spawn("run", write(tmp_path))
    wait_until_b_runs(tmp_path, wayang)
    child.kill()
    child.communicate(timeout=10)
    kill_group(tmp_path / "b.pid")
    run_id = str(latest(wayang)["run_id"])
    result = wayang("cancel", run_id, "--json")
    assert result.code == 0, result.err
    data = result.json()
    assert data["status"] == "cancelled"
    assert [data["steps"][s]["status"] for s in ("a", "b", "c")] == [
        "succeeded",
        "cancelled",
        "cancelled",
    ]


def test_a_detached_run_outlives_the_command(spawn: Spawn, wayang: Wayang, tmp_path: Path) -> None:
    path = tmp_path / "workflow.toml"
    path.write_text(
        'id = "bg"\n[steps.talk]\nrun = "for i in 1 2 3; do echo line $i; sleep 0.1; done"\n'
        '[steps.done]\nneeds = ["talk"]\nrun = "echo done"\n'
    )
    started = time.monotonic()
    child = spawn("run", str(path), "--detach", "--json")
    out, err = child.communicate(timeout=10)
    assert child.returncode == 0, err
    assert time.monotonic() - started < 10
    data = wayang("runs", "--json").json()[0]
    assert json.loads(out) == {"run_id": data["run_id"], "status": "running"}
    run_id = str(data["run_id"])

    follow = wayang("logs", run_id, "--follow")  # until the run ends
    assert [line.split(" | ")[1] for line in follow.lines] == ["line 1", "line 2", "line 3", "done"]
    assert wayang("status", run_id, "--json").json()["status"] == "succeeded"
    engine_log = tmp_path / "wayang-logs" / f"{run_id}.log"
    assert engine_log.read_text().splitlines()[-1].startswith(f"run {run_id} succeeded in ")

    plain = spawn("run", str(path), "--detach")
    out, err = plain.communicate(timeout=10)
    assert plain.returncode == 0 and out.strip() == wayang("runs", "--json").json()[0]["run_id"]
    assert f"'wayang logs {out.strip()} --follow'" in err
    wait_for(lambda: latest(wayang)["status"] == "succeeded", what="the second detached run")


def test_sigterm_stops_at_once_and_leaves_the_run_resumable(
    spawn: Spawn, wayang: Wayang, tmp_path: Path
) -> None:
    child = spawn("run", write(tmp_path), "--json")
    wait_until_b_runs(tmp_path, wayang)
    child.terminate()
    out, err = child.communicate(timeout=10)
    assert child.returncode == 143, err
    assert json.loads(out)["status"] == "running"  # the one JSON object, as durable so far
    run_id = str(latest(wayang)["run_id"])
    assert latest(wayang)["status"] == "running" and latest(wayang)["reason"] is None
    (tmp_path / "fast").touch()
    resumed = wayang("resume", run_id, "--json")
    assert resumed.code == 0 and resumed.json()["status"] == "succeeded"
    assert ledger(tmp_path) == ["a", "b", "b", "c"]


def test_wayang_run_looks_at_a_full_collection_less_often(spawn: Spawn, tmp_path: Path) -> None:
    # The step runs in the CLI's process, so it sees the collector the engine works with.
    path = tmp_path / "gc.toml"
    path.write_text(
        'id = "gc"\n[steps.look]\nuses = "python:wayang_test_steps:collector_thresholds"\n'
    )
    child = spawn("run", str(path), "--json")
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    outputs = json.loads(out)["steps"]["look"]["outputs"]
    young, middle, _ = gc.get_threshold()
    assert outputs == {"young": young, "middle": middle, "full": FULL_COLLECTION_AFTER}
