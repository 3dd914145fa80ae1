"""A poison task, one that kills the worker running it, reaches the dead letters after its
attempts, and other runs on the same queue complete meanwhile (issue 7).

The poison step is Python, so it runs inside the worker and ``os.kill(os.getpid(), SIGKILL)``
kills the worker itself. A small supervisor starts every dead worker again under the same id,
as a service manager would. Each attempt of the poison step is claimed three times (the store's
``max_claims``), killing a worker each time, before the engine fails the attempt; with
``attempts = 2`` the step then lands in the dead letters. Ledger runs submitted all along on
the same queue must all succeed, each step's effect once (tasks that shared a worker with the
poison die with it and are claimed again, with the same idempotency key).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from fleet_procs import (
    WAYANG,
    Fleet,
    FleetDb,
    FleetProcess,
    ServerProcess,
    child_env,
    figures_line,
    read_ledger,
    run_statuses,
    start_runs,
    wait_until,
)

POISON = (
    'id = "poison"\n[steps.boom]\nuses = "python:fleet_steps:poison"\n'
    'retry = { attempts = 2, delay = "100ms" }\n'
)
OTHER_RUNS = 40
WORKER_ARGS = ("--lease", "2", "--slots", "4", "--grace", "1")


def ledger_workflow(ledger: str) -> str:
    step = f'uses = "python:fleet_steps:record"\ninputs = {{ ledger = "{ledger}", pause_ms = 100 }}'
    return (
        'id = "ledger"\n[defaults]\nretry = { attempts = 5, delay = "100ms" }\n'
        f'[steps.one]\n{step}\n[steps.two]\nneeds = ["one"]\n{step}\n'
    )


class Supervisor:
    """Starts each worker again as soon as it dies (same id), counting the deaths."""

    def __init__(self, fleet: Fleet, workers: list[FleetProcess]) -> None:
        self.fleet, self.workers = fleet, workers
        self.deaths: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            for index, worker in enumerate(self.workers):
                if not worker.alive():
                    self.deaths.append(time.monotonic())
                    self.workers[index] = self.fleet.restart(worker)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def submit_others(server: ServerProcess, fleet_db: FleetDb) -> list[str]:
    """OTHER_RUNS ledger runs, submitted all along (four a second)."""
    others: list[str] = []
    for _ in range(OTHER_RUNS):
        others += start_runs([server], ledger_workflow(fleet_db.ledger), "/fleet/l.toml", 1)
        time.sleep(0.25)
    return others


def finished(fleet_db: FleetDb, runs: list[str]) -> bool:
    statuses = run_statuses(fleet_db.db)
    return all(statuses.get(run) in ("succeeded", "failed") for run in runs)


def dead_letters(fleet_db: FleetDb) -> list[dict[str, object]]:
    """``wayang dlq list --json``, run as a command on the store."""
    argv = [str(WAYANG), "--store", fleet_db.store, "--no-server", "dlq", "list", "--json"]
    done = subprocess.run(argv, capture_output=True, text=True, env=child_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    found: list[dict[str, object]] = json.loads(done.stdout)
    return found


@pytest.mark.timeout(180)
def test_a_poison_task_is_dead_lettered_while_other_runs_complete(
    fleet: Fleet, fleet_db: FleetDb
) -> None:
    server = fleet.server("server", "--no-tasks", "--lease", "3")
    workers = [fleet.worker(f"worker-{i}", *WORKER_ARGS) for i in (0, 1)]
    with Supervisor(fleet, workers) as supervisor:
        began = time.monotonic()
        [poison_run] = start_runs([server], POISON, "/fleet/poison.toml", 1)
        others = submit_others(server, fleet_db)
        wait_until(lambda: finished(fleet_db, [poison_run]), 120, "the poison run to fail")
        dead_lettered_s = time.monotonic() - began
        finished_meanwhile = sum(s == "succeeded" for s in run_statuses(fleet_db.db).values())
        wait_until(lambda: finished(fleet_db, others), 60, "the other runs to finish")
    statuses = run_statuses(fleet_db.db)
    letters = dead_letters(fleet_db)
    ledger = read_ledger(fleet_db.books)
    figures_line(
        "poison task",
        {
            "worker_deaths": len(supervisor.deaths),
            "dead_lettered_s": f"{dead_lettered_s:.1f}",
            "other_runs": len(others),
            "finished_before_dead_letter": finished_meanwhile,
            "other_runs_failed": sum(statuses[run] != "succeeded" for run in others),
            "effects": ledger.effects,
            "duplicate_effects": ledger.duplicate_effects,
            "absorbed_by_key": ledger.absorbed,
        },
    )
    assert [(d["run_id"], d["step"], d["attempts"]) for d in letters] == [(poison_run, "boom", 2)]
    assert "lost its worker 3 times" in str(letters[0]["error"]), letters
    assert len(supervisor.deaths) >= 6  # 2 attempts x 3 claims, each killing its worker
    assert all(statuses[run] == "succeeded" for run in others)
    assert (ledger.effects, ledger.duplicate_effects) == (2 * OTHER_RUNS, 0)
