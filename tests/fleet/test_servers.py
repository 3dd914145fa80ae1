"""Several ``wayang server`` processes on one PostgreSQL store (issue 7): any server's API
serves any run, a killed server's runs are adopted by another, and the queue of submitted runs
(kept in the store's key-value space, shared by the servers) never starts a run twice nor
loses one to a kill.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from fleet_procs import (
    Fleet,
    FleetDb,
    ServerProcess,
    figures_line,
    read_ledger,
    run_statuses,
    start_runs,
    wait_until,
)
from wayang import wire
from wayang.app import App, Settings
from wayang.runtime.engine import EngineSettings
from wayang.runtime.operations import prepare_source_run, record_unstarted_cancel
from wayang.server.core import CoreSettings, ServerCore
from wayang.server.queue import RUN_QUEUE, Limits, RunQueue
from wayang.store.port import Append, LogLine, Store
from wayang.store.urls import open_store

WORKER_ARGS = ("--lease", "2", "--slots", "8", "--grace", "1")


def ledger_workflow(ledger: str, pause_ms: int) -> str:
    step = (
        f'uses = "python:fleet_steps:record"\n'
        f'inputs = {{ ledger = "{ledger}", pause_ms = {pause_ms} }}'
    )
    return f'id = "ledger"\n[steps.one]\n{step}\n[steps.two]\nneeds = ["one"]\n{step}\n'


def owned_by(fleet_db: FleetDb, server: ServerProcess) -> set[str]:
    rows = fleet_db.db.execute(
        "SELECT run_id FROM runs WHERE owner LIKE %s", (server.owner_prefix + "%",)
    )
    return {str(run_id) for (run_id,) in rows.fetchall()}


def submit_at_once(server: ServerProcess, source: str, count: int, threads: int = 6) -> list[str]:
    """``count`` runs POSTed to ``server`` from several threads at once; their ids."""
    found: list[str] = []
    lock = threading.Lock()

    def post(share: int) -> None:
        ids = start_runs([server], source, "/fleet/ledger.toml", share)
        with lock:
            found.extend(ids)

    shares = [count // threads + (i < count % threads) for i in range(threads)]
    workers = [threading.Thread(target=post, args=(share,)) for share in shares]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return found


@pytest.mark.timeout(120)
def test_any_server_serves_any_run_and_a_killed_servers_runs_are_adopted(
    fleet: Fleet, fleet_db: FleetDb
) -> None:
    first = fleet.server("server-a", "--no-tasks", "--lease", "3", "--max-runs", "10")
    second = fleet.server("server-b", "--no-tasks", "--lease", "3", "--max-runs", "10")
    for name in ("worker-0", "worker-1"):
        fleet.worker(name, *WORKER_ARGS)
    runs = start_runs([first], ledger_workflow(fleet_db.ledger, 1500), "/fleet/l.toml", 30)

    # Server B answers for a run that server A started and drives (B starts runs from the
    # shared queue too, but the first run went to no queue).
    seen = httpx.get(f"{second.url}/api/v1/runs/{runs[0]}", timeout=10).json()
    assert (seen["run_id"], seen["workflow_id"]) == (runs[0], "ledger")
    assert seen["status"] in ("running", "succeeded")
    assert runs[0] in owned_by(fleet_db, first)

    first.kill()
    killed = time.monotonic()
    statuses = run_statuses(fleet_db.db)  # A's runs stand still now
    held = {run for run in owned_by(fleet_db, first) if statuses[run] != "succeeded"}
    wait_until(lambda: not (held - owned_by(fleet_db, second)), 60, "server B to adopt A's runs")
    adopted_s = time.monotonic() - killed
    wait_until(
        lambda: all(run_statuses(fleet_db.db).get(run) == "succeeded" for run in runs),
        90,
        "every run to succeed",
    )
    finished_s = time.monotonic() - killed

    listed = httpx.get(f"{second.url}/api/v1/runs?limit=100", timeout=10).json()["items"]
    by_b = {item["run_id"]: item["status"] for item in listed}
    ledger = read_ledger(fleet_db.books)
    figures_line(
        "server killed",
        {
            "runs": len(runs),
            "held_by_killed_server": len(held),
            "adopted_s": f"{adopted_s:.1f}",
            "all_done_s": f"{finished_s:.1f}",
            "effects": ledger.effects,
            "duplicate_effects": ledger.duplicate_effects,
            "absorbed_by_key": ledger.absorbed,
        },
    )
    assert held, "server A drove no unfinished run when it was killed"
    assert all(by_b.get(run) == "succeeded" for run in runs), by_b
    assert (ledger.effects, ledger.duplicate_effects) == (2 * len(runs), 0)


@pytest.mark.timeout(120)
def test_two_servers_pumping_one_queue_never_start_a_run_twice(
    fleet: Fleet, fleet_db: FleetDb
) -> None:
    # The servers run the steps themselves: a run started twice would run its first step
    # twice at once (two engines), which the ledger's attempts table would show.
    first = fleet.server("server-a", "--lease", "3", "--max-runs", "2")
    second = fleet.server("server-b", "--lease", "3", "--max-runs", "2")
    runs = submit_at_once(first, ledger_workflow(fleet_db.ledger, 50), 60)
    wait_until(
        lambda: all(run_statuses(fleet_db.db).get(run) == "succeeded" for run in runs),
        90,
        "every run to succeed",
    )
    ledger = read_ledger(fleet_db.books)
    started_by_b = len(owned_by(fleet_db, second))
    figures_line(
        "one queue, two servers",
        {"runs": len(runs), "started_by_b": started_by_b, "executions": ledger.executions},
    )
    assert started_by_b > 0, "server B started none of the queued runs"
    assert len(owned_by(fleet_db, first)) + started_by_b == len(runs)
    assert (ledger.effects, ledger.executions) == (2 * len(runs), 2 * len(runs))


def test_a_queued_run_claimed_by_a_dead_server_is_started_by_another(
    fleet: Fleet, fleet_db: FleetDb, tmp_path: Path
) -> None:
    """What a server killed while starting queued runs leaves: entries it claimed, whose runs
    it did or did not get to store. Another server starts the second kind and only deletes
    the first."""
    store = open_store(fleet_db.store)
    try:
        queue = RunQueue(store, Limits())
        source = ledger_workflow(fleet_db.ledger, 0)
        lapsed = time.time() - 1
        entries = []
        for run_id in ("run-not-stored", "run-stored"):
            request = prepare_source_run(
                source, "/fleet/l.toml", {}, {}, cwd=str(tmp_path), parallel=1,
                timeout_s=None, actor="tester",
            )  # fmt: skip
            queue.put(request, run_id)
            [entry] = [e for e in queue.entries() if e.run_id == run_id]
            claimed = queue.claim(entry, "elsewhere:1:dead", lapsed)
            assert claimed is not None
            entries.append((run_id, request))
        # The dead server got as far as storing the second run (here: as a cancelled one).
        record_unstarted_cancel(store, "run-stored", entries[1][1].started, "test", now=lapsed)
    finally:
        store.close()

    fleet.server("server", "--lease", "3")
    wait_until(lambda: run_statuses(fleet_db.db).get("run-not-stored") == "succeeded", 60, "it")
    queued = fleet_db.db.execute("SELECT count(*) FROM kv WHERE namespace = %s", (RUN_QUEUE,))
    events = fleet_db.db.execute("SELECT count(*) FROM events WHERE run_id = 'run-stored'")
    ledger = fleet_db.books.execute("SELECT DISTINCT run_id FROM fleet_executions").fetchall()
    assert (queued.fetchone(), events.fetchone()) == ((0,), (2,))
    assert run_statuses(fleet_db.db)["run-stored"] == "cancelled"
    assert ledger == [("run-not-stored",)]


class Recorder:
    """A store that notes, in order, when runs are stored and when queue entries are deleted."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.seen: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def commit(self, appends: Sequence[Append], now: float, logs: Sequence[LogLine] = ()) -> None:
        self.store.commit(appends, now, logs)
        self.seen += [("stored", a.run_id) for a in appends if a.create is not None]

    def kv_swap(self, namespace: str, key: str, expected: Any, value: Any) -> bool:
        swapped = self.store.kv_swap(namespace, key, expected, value)
        if swapped and namespace == RUN_QUEUE and value is None:
            self.seen.append(("dequeued", str(expected["run_id"])))
        return swapped

    def kv_delete(self, namespace: str, key: str) -> None:
        if namespace == RUN_QUEUE:
            self.seen.append(("dequeued", key.partition("/")[2]))
        self.store.kv_delete(namespace, key)


class RecordingApp(App):
    def __init__(self, settings: Settings, recorder: Recorder) -> None:
        super().__init__(settings)
        self.recorder = recorder

    @property
    def store(self) -> Store:
        return cast(Store, self.recorder)


def test_a_queued_run_leaves_the_queue_only_once_its_run_is_stored(
    fleet_db: FleetDb, tmp_path: Path
) -> None:
    """A server killed between the two would otherwise lose the run: gone from the queue,
    never stored."""
    recorder = Recorder(open_store(fleet_db.store))
    settings = Settings(store=fleet_db.store, engine=EngineSettings(poll_every_s=0.05))
    source = 'id = "quick"\n[steps.only]\nrun = "sleep 0.1"\n'

    async def go() -> tuple[list[str], list[str]]:
        app = RecordingApp(settings, recorder)
        async with ServerCore(app, CoreSettings(Limits(max_runs=1), grace_s=5.0)) as core:
            body = wire.StartRun(source=source, filename=str(tmp_path / "quick.toml"))
            accepted = [await core.start_run(body, "tester") for _ in range(6)]
            statuses: list[str] = []
            for _ in range(600):  # until every run's end is in the store (30 s at most)
                statuses = [core.run(a.run_id).status for a in accepted]
                if set(statuses) <= {"succeeded", "failed", "cancelled"}:
                    break
                await asyncio.sleep(0.05)
            return [a.run_id for a in accepted if a.status == "queued"], statuses

    try:
        queued, statuses = asyncio.run(go())
    finally:
        recorder.store.close()
    assert statuses == ["succeeded"] * 6
    assert queued, "no run waited in the queue"
    order = recorder.seen
    for run_id in queued:
        assert ("dequeued", run_id) in order, order
        assert order.index(("stored", run_id)) < order.index(("dequeued", run_id)), order
