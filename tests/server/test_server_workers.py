"""A server that leaves steps to workers: what the API shows while a step waits for one."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from server_runs import finish, running_server, start

from cli_runs import child_env, wait_for
from wayang.client import Client

FLOW = """
id = "gpu-job"
[steps.render]
run = "echo rendered"
runs_on = { labels = { region = "eu" } }
"""


def test_a_step_waits_for_a_worker_and_the_run_shows_what_it_waits_for(
    tmp_path: Path,
) -> None:
    db = tmp_path / "wayang.db"
    with running_server(db, tmp_path, "--no-tasks") as server, Client(server.url) as client:
        run_id = start(client, FLOW, tmp_path)

        def waits() -> str | None:
            return client.run(run_id).steps["render"].waiting_for

        shown = wait_for(waits, what="the step to wait for a worker")
        assert shown == "a worker of queue default offering capabilities shell; labels region=eu"
        worker = subprocess.Popen(
            [sys.executable, "-m", "wayang", "--store", str(db), "worker", "--labels", "region=eu"],
            env=child_env(db),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            detail = finish(client, run_id)
        finally:
            worker.send_signal(signal.SIGTERM)
            _, err = worker.communicate(timeout=20)
    assert detail.status == "succeeded"
    assert detail.steps["render"].waiting_for is None
    assert "1 done, 0 failed, 0 refused" in err
