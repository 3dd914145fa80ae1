"""``wayang worker``, ``wayang workers`` and ``wayang queues`` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_runs import Wayang, child_env, wait_for
from wayang.cli.main import main
from wayang.runtime.cpus import parse_cpus
from wayang.runtime.hand_off import driver_owner
from wayang.store.port import HANDED_OFF, Append, NewEvent, RunRecord, WorkerRecord
from wayang.store.urls import open_store

FLOW = """
id = "fleet"
[steps.prepare]
run = "echo prepared"
[steps.render]
needs = ["prepare"]
run = 'echo "rendered by $(hostname)"'
runs_on = { capabilities = ["gpu"] }
"""


def start_worker(db: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "wayang", "--store", str(db), "worker", "--lease", "2", *args],
        env=child_env(db),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=20)
    return process.returncode, err


def test_a_run_waits_for_a_worker_with_a_gpu_and_the_worker_runs_its_step(
    wayang: Wayang, db: Path, tmp_path: Path
) -> None:
    (tmp_path / "workflow.toml").write_text(FLOW)
    run = subprocess.Popen(
        [sys.executable, "-m", "wayang", "--no-server", "run", "workflow.toml", "--json"],
        cwd=tmp_path,
        env=child_env(db),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The engine runs 'prepare' itself (it shows as running while it runs); 'render' waits.
        waiting = wait_for(
            lambda: [q for q in wayang("queues", "--json").json() if q["queued"]],
            what="the render task to be queued",
        )
        assert [(q["queue"], q["queued"], q["running"]) for q in waiting] == [("default", 1, 0)]
        worker = start_worker(
            db, "--capabilities", "shell,gpu", "--labels", "zone=b", "--slots", "2"
        )
        try:
            out, err = run.communicate(timeout=60)
        finally:
            code, worker_err = stop(worker)
    finally:
        if run.poll() is None:  # a failed check above: the run must not outlive the test
            run.kill()
            run.communicate(timeout=10)
    assert run.returncode == 0, err
    assert '"status": "succeeded"' in out
    assert code == 0
    assert "1 done, 0 failed, 0 refused" in worker_err
    [listed] = wayang("workers", "--json").json()
    assert listed["capabilities"] == ["shell", "gpu"]
    assert (listed["labels"], listed["slots"], listed["state"]) == ({"zone": "b"}, 2, "stopped")
    assert (listed["done"], listed["failed"], listed["pid"]) == (1, 0, worker.pid)
    table = wayang("workers")
    assert table.code == 0
    assert "stopped" in table.out and "gpu" in table.out


def test_a_full_queue_refuses_new_runs_and_says_how_to_raise_the_limit(
    wayang: Wayang, db: Path, tmp_path: Path
) -> None:
    (tmp_path / "workflow.toml").write_text(FLOW)
    limit = wayang("queues", "limit", "default", "--max-depth", "1", "--max-running", "3")
    assert limit.out.strip() == "queue default: max running 3, max depth 1"
    first = subprocess.Popen(
        [sys.executable, "-m", "wayang", "--no-server", "run", "workflow.toml"],
        cwd=tmp_path,
        env=child_env(db),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: wayang("queues", "--json").json()[0]["queued"], what="a queued task")
        refused = wayang("run", str(tmp_path / "workflow.toml"))
        assert refused.code == 2
        assert "queue 'default' holds 1 waiting tasks, its limit (max_depth) is 1" in refused.err
        assert "wayang queues limit default --max-depth N" in refused.err
        [row] = wayang("queues", "--json").json()
        assert (row["max_depth"], row["max_running"]) == (1, 3)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    cleared = wayang("queues", "limit", "default", "--max-depth", "0", "--max-running", "0")
    assert cleared.out.strip() == "queue default: no limits"


def test_bad_worker_options_are_named(wayang: Wayang) -> None:
    labels = wayang("worker", "--labels", "region")
    assert labels.code == 2
    assert "--labels: write each label as key=value, not 'region'" in labels.err
    caps = wayang("worker", "--capabilities", "gpu;rm -rf")
    assert caps.code == 2
    assert "--capabilities: 'gpu;rm -rf' is not a name" in caps.err
    for command in ("worker", "server"):
        cpus = wayang(command, "--cpus", "first")
        assert cpus.code == 2
        assert "--cpus: 'first' is not a CPU number or a range" in cpus.err
    no_limit = wayang("queues", "limit", "default")
    assert no_limit.code == 2
    assert "give --max-running, --max-depth or both" in no_limit.err


def test_no_workers_yet_is_said_plainly(wayang: Wayang) -> None:
    empty = wayang("workers")
    assert empty.code == 0
    assert "no workers have registered with this store" in empty.err
    assert wayang("workers", "--json").json() == []
    assert os.environ.get("WAYANG_STORE")


def test_run_detach_works_on_a_postgresql_store(
    postgres_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    (tmp_path / "workflow.toml").write_text('id = "bg"\n[steps.a]\nrun = "echo hi"\n')
    code = main(
        ["--store", postgres_url, "--no-server", "run", str(tmp_path / "workflow.toml"), "--detach"]
    )
    run_id = capsys.readouterr().out.strip()
    assert code == 0
    store = open_store(postgres_url)
    try:
        record = wait_for(
            lambda: (r := store.get_run(run_id)) and r.status == "succeeded" and r,
            timeout=30,
            what="the detached run to succeed",
        )
        assert record.workflow_id == "bg"
        assert [line.line for line in store.read_logs(run_id)] == ["hi"]
        assert (tmp_path / "state" / "wayang" / "detached-logs" / f"{run_id}.log").exists()
    finally:
        store.close()


def test_workers_lists_the_runs_each_worker_drives(wayang: Wayang, db: Path) -> None:
    store = open_store(str(db))
    try:
        for worker_id in ("w-drives", "w-claims"):
            store.register_worker(
                WorkerRecord(worker_id, "host", 1, "0", [], {}, ["default"], 4, "running", 0, 0)
            )
        for run_id in ("a", "b"):
            run = RunRecord(run_id, "wf", "pending", 0.0, 0.0, owner=HANDED_OFF)
            store.create_run(run, Append(run_id, 0, [NewEvent("run_started", {})]))
        store.take_handed_off(driver_owner("w-drives"), time.time(), 60.0)
    finally:
        store.close()
    listed = {row["id"]: row["drives"] for row in wayang("workers", "--json").json()}
    assert listed == {"w-drives": 2, "w-claims": 0}
    table = wayang("workers").out.splitlines()
    assert table[0].split()[-1] == "drives"
    assert {line.split()[0]: line.split()[-1] for line in table[1:]} == {
        "w-drives": "2",
        "w-claims": "0",
    }


PINNED = """
id = "pinned"
[steps.shell]
run = 'echo "cpus=$(grep Cpus_allowed_list /proc/self/status | cut -f2)" >> "$WAYANG_OUTPUT"'
runs_on = { capabilities = ["gpu"] }
[steps.python]
uses = "python:wayang_test_steps:cpus_of_this_thread"
runs_on = { capabilities = ["gpu"] }
"""


def threads_cpus(pid: int) -> set[str]:
    """The CPU lists of every thread of process ``pid``, as Linux prints them."""
    found = set()
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        for line in status.read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                found.add(line.split(":", 1)[1].strip())
    return found


def test_a_pinned_worker_keeps_its_threads_on_its_cpu_and_frees_its_shell_steps(
    db: Path, tmp_path: Path
) -> None:
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        pytest.skip("pinning shows only with two CPUs or more")
    (tmp_path / "workflow.toml").write_text(PINNED)
    last = str(allowed[-1])
    worker = start_worker(db, "--capabilities", "shell,python,gpu", "--cpus", last)
    try:
        run = subprocess.run(
            [sys.executable, "-m", "wayang", "--no-server", "run", "workflow.toml", "--json"],
            cwd=tmp_path,
            env=child_env(db),
            capture_output=True,
            text=True,
            timeout=60,
        )
        pinned_threads = threads_cpus(worker.pid)
    finally:
        code, err = stop(worker)
    assert run.returncode == 0, run.stderr
    steps = json.loads(run.stdout)["steps"]
    assert steps["python"]["outputs"] == {"cpus": [int(last)]}  # a thread of the worker's
    shell_cpus = parse_cpus(steps["shell"]["outputs"]["cpus"])  # as Linux lists them
    assert shell_cpus == frozenset(allowed)  # the worker's children get them all back
    assert pinned_threads == {last}
    assert code == 0, err


def test_wayang_run_and_retry_pinned_drive_here_and_free_their_shell_steps(
    wayang: Wayang, db: Path, tmp_path: Path
) -> None:
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        pytest.skip("pinning shows only with two CPUs or more")
    (tmp_path / "workflow.toml").write_text(
        PINNED.replace('runs_on = { capabilities = ["gpu"] }\n', "")
    )
    last = str(allowed[-1])
    here = [sys.executable, "-m", "wayang", "run", "workflow.toml", "--cpus", last]
    done = subprocess.run(
        [*here, "--json"], cwd=tmp_path, env=child_env(db), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    detached = subprocess.run(
        [*here, "--detach"], cwd=tmp_path, env=child_env(db), capture_output=True, text=True
    )
    assert detached.returncode == 0, detached.stderr
    run_id = detached.stdout.strip()
    ended = wait_for(
        lambda: (s := wayang("status", run_id, "--json").json())["status"] == "succeeded" and s,
        timeout=30,
        what="the detached run",
    )
    first = json.loads(done.stdout)
    again = [sys.executable, "-m", "wayang", "retry", first["run_id"], "--from", "python"]
    retried = subprocess.run(  # on another CPU: its Python step ran again, there
        [*again, "--cpus", str(allowed[0]), "--json"],
        env=child_env(db),
        capture_output=True,
        text=True,
    )
    assert retried.returncode == 0, retried.stderr
    by_run = [(first, last), (ended, last), (json.loads(retried.stdout), str(allowed[0]))]
    for run, pinned in by_run:
        assert run["steps"]["python"]["outputs"] == {"cpus": [int(pinned)]}
        assert parse_cpus(run["steps"]["shell"]["outputs"]["cpus"]) == frozenset(allowed)
    for argv in (("run", "--detach", str(tmp_path / "workflow.toml")), ("resume", run_id)):
        refused = wayang(*argv, "--cpus", "x")
        assert refused.code == 2 and "--cpus: 'x' is not a CPU number" in refused.err
