"""``wayang worker --server URL``: a real worker that never opens the store works through a real
``wayang server`` over HTTP; fencing holds over HTTP; a worker the server refuses exits with a
clear message; and a full task queue refuses ``wayang run`` through a server as in process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from server_runs import ServerProcess, finish, running_server, start

from cli_runs import Wayang, child_env, wait_for
from wayang.cli.main import main
from wayang.client import Client, HttpWorkerLink
from wayang.engine.messages import TaskFinished
from wayang.runtime.records import result_record
from wayang.store.port import ClaimedTask, WorkerRecord

TOKEN = "s3cret"
GPU = """
    id = "fleet"
    version = "1.0.0"
    [steps.prepare]
    run = "echo prepared"
    [steps.render]
    needs = ["prepare"]
    run = 'echo "rendered on $WAYANG_RUN_ID"'
    runs_on = { capabilities = ["gpu"] }
"""
OFFERS = frozenset({"cap:shell", "cap:gpu"})


def http_worker(server: ServerProcess, tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    """``wayang worker --server URL *args`` with a store it could not open: it must not try."""
    env = child_env(tmp_path / "no-such-dir" / "w.db")
    env.pop("WAYANG_API_TOKEN", None)
    return subprocess.Popen(
        [sys.executable, "-m", "wayang", "worker", "--server", server.url, "--lease", "2", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )


@pytest.mark.timeout(120)
def test_a_gpu_step_runs_on_a_worker_that_works_through_the_server(
    wayang: Wayang, db: Path, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    with running_server(db, tmp_path, env={"WAYANG_API_TOKEN": TOKEN}) as server:
        worker = http_worker(
            server, tmp_path, "--token-file", "token", "--capabilities", "shell,gpu"
        )
        try:
            with Client(server.url, token=TOKEN, timeout=30) as client:
                run_id = start(client, GPU, tmp_path)
                run = finish(client, run_id)
        finally:
            worker.send_signal(signal.SIGTERM)
            _, err = worker.communicate(timeout=30)
    assert run.status == "succeeded", run
    assert worker.returncode == 0, err
    assert f"through {server.url}" in err
    assert "1 done, 0 failed, 0 refused" in err
    assert "Traceback" not in err
    assert not (tmp_path / "no-such-dir").exists()  # the worker never opened a store
    logs = wayang("--no-server", "logs", run_id)  # what the worker wrote, read from the store
    assert logs.code == 0, logs.err
    assert f"rendered on {run_id}" in logs.out
    [listed] = wayang("workers", "--json").json()
    assert (listed["capabilities"], listed["state"], listed["done"]) == (["shell", "gpu"],
                                                                         "stopped", 1)  # fmt: skip
    assert (listed["pid"], listed["host"]) == (worker.pid, socket.gethostname())


@pytest.mark.timeout(120)
def test_a_late_result_over_http_is_refused_by_fencing(db: Path, tmp_path: Path) -> None:
    with (
        running_server(db, tmp_path, env={"WAYANG_API_TOKEN": TOKEN}) as server,
        Client(server.url, token=TOKEN, timeout=10) as client,
    ):
        stalled, taker = HttpWorkerLink(client), HttpWorkerLink(client)
        for name, link in (("stalled", stalled), ("taker", taker)):
            link.register_worker(record(name))
        run_id = start(client, GPU, tmp_path)

        def claimed(link: HttpWorkerLink, owner: str, lease_s: float) -> list[ClaimedTask]:
            return link.claim(owner, time.time(), lease_s, 2, offers=OFFERS)

        [first] = wait_for(lambda: claimed(stalled, "stalled", 1.0), 30, "the render task")
        assert (first.run_id, first.owner, first.step_id) == (run_id, "stalled", "render")
        [second] = wait_for(lambda: claimed(taker, "taker", 30.0), 30, "the lease to lapse")
        assert (second.task_id, second.owner) == (first.task_id, "taker")
        assert second.fencing_token > first.fencing_token

        result = result_record(TaskFinished("render", 1, "succeeded", {}, None, 0, 0.1))
        assert stalled.complete(first.task_id, first.fencing_token, result, time.time()) is False
        assert taker.complete(second.task_id, second.fencing_token, result, time.time()) is True
        assert finish(client, run_id).status == "succeeded"
        assert taker.kv_scan("queue-limits") == {}


def record(worker_id: str) -> WorkerRecord:
    now = time.time()
    return WorkerRecord(worker_id, "test", os.getpid(), "test", ["shell", "gpu"], {}, ["default"],
                        2, "running", now, now)  # fmt: skip


@pytest.mark.timeout(120)
def test_a_worker_the_server_refuses_exits_with_a_clear_message(
    wayang: Wayang, db: Path, tmp_path: Path
) -> None:
    with running_server(db, tmp_path, env={"WAYANG_API_TOKEN": TOKEN}) as server:
        for args in (("--token", "wrong"), ()):
            worker = http_worker(server, tmp_path, *args)
            _, err = worker.communicate(timeout=60)
            assert worker.returncode == 2, err
            assert f"the server at {server.url} refused the worker (401 Unauthorized)" in err
            assert "--token-file FILE or $WAYANG_API_TOKEN" in err
            assert "Traceback" not in err
        both = wayang("worker", "--server", server.url)  # the fixture gives --store too
        assert both.code == 2
        assert "--store and --server" in both.err
    assert wayang("workers", "--json").json() == []  # none was let in


@pytest.mark.timeout(120)
def test_a_full_task_queue_refuses_wayang_run_through_a_server_as_in_process(
    wayang: Wayang, db: Path, tmp_path: Path
) -> None:
    assert wayang("queues", "limit", "default", "--max-depth", "1").code == 0
    with running_server(db, tmp_path) as server, Client(server.url, timeout=30) as client:
        start(client, GPU, tmp_path)  # no worker offers a GPU: its render task waits
        wait_for(lambda: wayang("queues", "--json").json()[0]["queued"], 30, "a waiting task")
        path = str(tmp_path / "workflow.toml")
        remote = wayang("--server", server.url, "run", path)
        local = wayang("--no-server", "run", path)
    assert (remote.code, local.code) == (2, 2)
    assert "queue 'default' holds 1 waiting tasks, its limit (max_depth) is 1" in remote.err
    assert remote.err == local.err
    assert remote.out == local.out == ""


def test_a_driver_needs_the_store_not_a_server(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["worker", "--drive", "--server", "http://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--drive needs the store" in err and "drop --server, or --drive" in err
    assert "Traceback" not in err
