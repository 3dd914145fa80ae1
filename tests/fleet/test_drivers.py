"""Runs handed off to drivers (``wayang server --hand-off``, ``wayang worker --drive``), with a
driver killed (``kill -9``) while it drives: every run completes, every step's effect is
recorded once, and the steps ran in the drivers' processes, not the server's (issue 7).

Each run is a chain of Python steps that write their effect to a ledger table keyed by their
idempotency key (``fleet_steps.record``). The killed driver's runs lapse with its lease and
the other driver takes them (their owner ends in ``:driver``); steps it was running run again
there with the same key, so the ledger counts each effect once.
"""

from __future__ import annotations

import time

from fleet_procs import (
    Fleet,
    FleetDb,
    FleetProcess,
    figures_line,
    read_ledger,
    run_statuses,
    start_runs,
    wait_until,
)

RUNS = 12
STEPS = ("one", "two", "three", "four")
DRIVER_ARGS = ("--drive", "--drive-runs", "3", "--lease", "2", "--grace", "1")


def chain_workflow(ledger: str) -> str:
    step = f'uses = "python:fleet_steps:record"\ninputs = {{ ledger = "{ledger}", pause_ms = 150 }}'
    lines = ['id = "driven"']
    for before, name in zip((None, *STEPS), STEPS, strict=False):
        lines += [f"[steps.{name}]", step]
        lines += [f'needs = ["{before}"]'] if before else []
    return "\n".join(lines) + "\n"


def effect_pids(fleet_db: FleetDb) -> set[int]:
    return {int(pid) for (pid,) in fleet_db.books.execute("SELECT DISTINCT pid FROM fleet_effects")}


def test_drivers_drive_handed_off_runs_and_survive_a_kill(fleet: Fleet, fleet_db: FleetDb) -> None:
    server = fleet.server("server", "--hand-off", "--lease", "3", "--max-runs", "100")
    drivers = [fleet.worker(f"driver-{i}", *DRIVER_ARGS) for i in range(3)]
    run_ids = start_runs([server], chain_workflow(fleet_db.ledger), "/fleet/driven.toml", RUNS)

    def driving() -> FleetProcess | None:
        """A driver that holds an unfinished run and has recorded an effect."""
        if read_ledger(fleet_db.books).effects < 2:
            return None
        held = fleet_db.db.execute(
            "SELECT owner FROM runs WHERE status NOT IN ('succeeded', 'failed', 'cancelled')"
        ).fetchall()
        owners = {str(owner) for (owner,) in held if owner}
        busy = [d for d in drivers if any(o.startswith(d.owner_prefix) for o in owners)]
        return busy[0] if busy else None

    victim = wait_until(driving, 60, "a driver driving a run")
    killed_at = time.monotonic()
    victim.kill()

    def all_ended() -> bool:
        statuses = run_statuses(fleet_db.db)
        return all(statuses.get(run_id) in ("succeeded", "failed") for run_id in run_ids)

    wait_until(all_ended, 90, "every run to end")
    recovered_s = time.monotonic() - killed_at
    statuses = run_statuses(fleet_db.db)
    ledger = read_ledger(fleet_db.books)
    figures_line(
        "drivers",
        {
            "runs": RUNS,
            "lost": sum(statuses.get(r) != "succeeded" for r in run_ids),
            "duplicate_effects": ledger.duplicate_effects,
            "absorbed": ledger.absorbed,
            "recovered_s": round(recovered_s, 1),
        },
    )
    assert [statuses[r] for r in run_ids] == ["succeeded"] * RUNS
    assert ledger.effects == RUNS * len(STEPS)
    assert ledger.duplicate_effects == 0
    # The drivers ran the steps; the server recorded the runs and ran none of them.
    assert effect_pids(fleet_db) <= {driver.pid for driver in drivers}
    assert len(effect_pids(fleet_db)) >= 2  # runs are spread: a driver drives --drive-runs at most
    owners = {
        str(owner)
        for (owner,) in fleet_db.db.execute(
            "SELECT DISTINCT owner FROM tasks WHERE owner IS NOT NULL"
        )
    }
    assert owners and all(owner.endswith(":driver") for owner in owners), owners
    for driver in drivers:
        if driver is not victim:
            assert driver.stop() == 0


def test_a_handed_off_run_no_driver_takes_is_driven_by_a_server(
    fleet: Fleet, fleet_db: FleetDb
) -> None:
    server = fleet.server("server", "--hand-off", "--lease", "3")
    source = chain_workflow(fleet_db.ledger)
    started = time.monotonic()
    [run_id] = start_runs([server], source, "/fleet/driven.toml", 1)
    wait_until(lambda: run_statuses(fleet_db.db).get(run_id) == "succeeded", 60, "the run")
    # Left to the drivers for DRIVERS_FIRST_S (5 s) first, then adopted by the server's poll.
    assert time.monotonic() - started >= 5.0
    assert effect_pids(fleet_db) == {server.pid}


def test_a_driver_stopped_with_sigterm_finishes_its_steps_and_hands_the_runs_back(
    fleet: Fleet, fleet_db: FleetDb
) -> None:
    server = fleet.server("server", "--hand-off", "--lease", "3")
    stopping = fleet.worker("stopping", "--drive", "--lease", "2", "--grace", "10")
    books = fleet_db.ledger
    linger = f'inputs = {{ ledger = "{books}", linger_ms = 1500 }}'
    one = f'uses = "python:fleet_steps:record_and_linger"\n{linger}'
    two = f'uses = "python:fleet_steps:record"\ninputs = {{ ledger = "{books}" }}'
    source = f'id = "stopped"\n[steps.one]\n{one}\n[steps.two]\nneeds = ["one"]\n{two}\n'
    [run_id] = start_runs([server], source, "/fleet/stopped.toml", 1)

    def executing() -> bool:
        row = fleet_db.books.execute("SELECT count(*) FROM fleet_executions").fetchone()
        return bool(row and row[0] >= 1)

    wait_until(executing, 60, "step one's effect")
    assert stopping.stop(timeout=30) == 0  # SIGTERM: step one lingers on, within --grace
    record = fleet_db.db.execute("SELECT owner FROM runs WHERE run_id = %s", (run_id,)).fetchone()
    assert record is not None and record[0] == "hand-off"  # given back to the drivers
    fleet.worker("next", "--drive", "--lease", "2")
    wait_until(lambda: run_statuses(fleet_db.db).get(run_id) == "succeeded", 60, "the run")
    ledger = read_ledger(fleet_db.books)
    assert (ledger.effects, ledger.executions) == (2, 2)  # step one was not run again


def fanout_workflow(ledger: str, width: int) -> str:
    step = f'uses = "python:fleet_steps:record"\ninputs = {{ ledger = "{ledger}", pause_ms = 600 }}'
    return 'id = "wide"\n' + "".join(f"[steps.s{i}]\n{step}\n" for i in range(width))


def test_a_wide_run_spills_from_its_driver_to_the_other_drivers(
    fleet: Fleet, fleet_db: FleetDb
) -> None:
    """One run's 16 steps, each up to 0.6 s: the driver that takes the run keeps what its 2
    slots start within 50 ms and queues the rest (runtime/spill.py); the other driver runs
    them as a worker, and each effect is recorded once."""
    server = fleet.server("server", "--hand-off", "--lease", "3")  # no bound: 16 at once
    args = ("--drive", "--slots", "2", "--spill-after", "0.05", "--lease", "3")
    drivers = [fleet.worker(f"driver-{i}", *args) for i in range(2)]
    wait_until(
        lambda: len(fleet_db.db.execute("SELECT worker_id FROM workers").fetchall()) == 2,
        30,
        "both drivers to register",
    )
    [run_id] = start_runs([server], fanout_workflow(fleet_db.ledger, 16), "/fleet/wide.toml", 1)
    wait_until(lambda: run_statuses(fleet_db.db).get(run_id) == "succeeded", 60, "the run")
    ledger = read_ledger(fleet_db.books)
    assert (ledger.effects, ledger.duplicate_effects) == (16, 0)
    assert effect_pids(fleet_db) == {driver.pid for driver in drivers}  # both ran its steps
    [(queued,)] = fleet_db.db.execute("SELECT count(*) FROM tasks WHERE remote").fetchall()
    assert queued > 0
    for driver in drivers:
        assert driver.stop() == 0
