"""A worker stopped (SIGSTOP) past its lease and continued (SIGCONT): its late result is
refused by fencing, and the effect it recorded before stopping counts once (issue 7).

The step (async, on the worker's event loop) records its effect, then lingers; the test stops
its worker while it lingers. The
lease lapses, a second worker claims the task (fencing token 2) and runs the step again: its
effect is absorbed by the idempotency key, and its result completes the run. Continued, the
first worker reports its result with token 1: the store refuses it and counts it
(``duplicate_completions``), and the worker says so when it stops ("1 refused").
"""

from __future__ import annotations

import signal
import time

from fleet_procs import (
    Fleet,
    FleetDb,
    figures_line,
    read_ledger,
    run_statuses,
    start_runs,
    wait_until,
)

LEASE_S = 2
LINGER_MS = 2000


def lingering_workflow(ledger: str) -> str:
    return (
        'id = "stale"\n[steps.only]\nuses = "python:fleet_steps:record_and_linger"\n'
        f'inputs = {{ ledger = "{ledger}", linger_ms = {LINGER_MS} }}\n'
    )


def refused_completions(fleet_db: FleetDb) -> int:
    row = fleet_db.db.execute(
        "SELECT coalesce(sum(value), 0) FROM counters WHERE name = 'duplicate_completions'"
    ).fetchone()
    return int(row[0]) if row else 0


def test_a_stopped_workers_late_result_is_refused(fleet: Fleet, fleet_db: FleetDb) -> None:
    server = fleet.server("server", "--no-tasks", "--lease", "3")
    stale = fleet.worker("stale", "--lease", str(LEASE_S), "--slots", "1")
    source = lingering_workflow(fleet_db.ledger)
    [run_id] = start_runs([server], source, "/fleet/stale.toml", 1)

    def executions() -> int:
        return read_ledger(fleet_db.books).executions

    wait_until(executions, 60, "the step's first execution")
    time.sleep(0.3)  # into its linger (which ends at a set time, whenever it is stopped)
    stale.signal(signal.SIGSTOP)  # the effect is recorded; the result is not
    stopped = time.monotonic()
    fresh = fleet.worker("fresh", "--lease", str(LEASE_S), "--slots", "1")
    wait_until(lambda: run_statuses(fleet_db.db).get(run_id) == "succeeded", 60, "the run")
    taken_over_s = time.monotonic() - stopped
    # Continue it only once its linger is over: it then reports at once, before its heartbeat
    # can learn that the task was taken (and stop it, which would send no result at all).
    [(began,)] = fleet_db.books.execute("SELECT min(at) FROM fleet_executions").fetchall()
    time.sleep(max(0.0, began + LINGER_MS / 1000 + 0.2 - time.time()))
    stale.signal(signal.SIGCONT)
    wait_until(lambda: refused_completions(fleet_db) == 1, 30, "the stale result to be refused")
    stale_exit, fresh_exit = stale.stop(), fresh.stop()

    ledger = read_ledger(fleet_db.books)
    task = fleet_db.db.execute(
        "SELECT owner, fencing_token, status FROM tasks WHERE run_id = %s", (run_id,)
    ).fetchall()
    figures_line(
        "SIGSTOP past the lease",
        {
            "stopped_s": f"{taken_over_s:.1f}",
            "effects": ledger.effects,
            "executions": ledger.executions,
            "refused_completions": refused_completions(fleet_db),
        },
    )
    assert (stale_exit, fresh_exit) == (0, 0)
    assert task == [("fresh", 2, "consumed")]
    assert (ledger.effects, ledger.executions, ledger.duplicate_effects) == (1, 2, 0)
    assert "stale stopped: 0 done, 0 failed, 1 refused" in stale.output(), stale.output()
    assert "fresh stopped: 1 done, 0 failed, 0 refused" in fresh.output(), fresh.output()
