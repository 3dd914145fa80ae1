"""``kill -9`` servers and workers at random while many runs execute, restart them, and check
that every run completes with every step's effect recorded exactly once (issue 7).

Two servers (``--no-tasks``: every step goes to a worker) and three workers share one
PostgreSQL store. Runs are submitted through the servers' APIs at an even pace over a chaos
window, during which a random process is killed every one to three seconds and started again a
moment later (a worker under the same ``--id``). At least one server and one worker stay up,
so that what the killed process held has somewhere to go: how long that takes is the recovery
measured. After the window every process is up again and the runs are waited for. Each run has
two Python steps that write their effect to a ledger table keyed by their idempotency key, and
every execution to an attempts table.

Figures (runs lost, duplicate effects, executions the key absorbed, recovery seconds per kill)
are printed, and appended to ``$WAYANG_FLEET_FIGURES`` when set; docs/reliability.md reports
them. ``WAYANG_FLEET_RUNS`` (default 300) and ``WAYANG_FLEET_CHAOS_S`` (default 20) size the
test; docs/reliability.md has the figures of 1,000 runs over 45 s. ``WAYANG_FLEET_SEED`` seeds
the kills.
"""

from __future__ import annotations

import os
import random
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import pytest

from fleet_procs import (
    Fleet,
    FleetDb,
    FleetProcess,
    ServerProcess,
    figures_line,
    read_ledger,
    run_statuses,
)

RUNS = int(os.environ.get("WAYANG_FLEET_RUNS", "300"))
CHAOS_S = float(os.environ.get("WAYANG_FLEET_CHAOS_S", "20"))
SEED = int(os.environ.get("WAYANG_FLEET_SEED", "20260707"))
SERVER_ARGS = ("--no-tasks", "--lease", "3", "--max-runs", "200")
WORKER_ARGS = ("--lease", "2", "--slots", "8", "--grace", "1")
STEPS = ("one", "two")
SUBMITTERS = 6
FINISHED = ("succeeded", "failed", "cancelled")


def ledger_workflow(ledger: str) -> str:
    step = f'uses = "python:fleet_steps:record"\ninputs = {{ ledger = "{ledger}", pause_ms = 200 }}'
    return (
        'id = "ledger"\n[defaults]\nretry = { attempts = 5, delay = "200ms" }\n'
        f"[steps.one]\n{step}\n"
        f'[steps.two]\nneeds = ["one"]\n{step}\n'
    )


@dataclass
class Kill:
    """One ``kill -9``: what the process held then, and when that was all taken over."""

    process: FleetProcess
    at: float
    held: list[tuple[str, int]]
    """Servers: (run id, 0) per unfinished run. Workers: (task id, fencing token) per task."""
    recovered_s: float | None = None


class Chaos:
    """Kills a random process now and then and starts it again; notes recoveries."""

    def __init__(self, fleet: Fleet, fleet_db: FleetDb, rng: random.Random) -> None:
        self.fleet, self.db, self.rng = fleet, fleet_db.db, rng
        self.servers = [fleet.server(f"server-{i}", *SERVER_ARGS, wait=False) for i in (0, 1)]
        for server in self.servers:
            server.wait_until_serving()
        self.workers = [fleet.worker(f"worker-{i}", *WORKER_ARGS) for i in (0, 1, 2)]
        self.kills: list[Kill] = []
        self._restarts: list[tuple[float, FleetProcess]] = []
        self._next_kill = time.monotonic() + rng.uniform(1.0, 3.0)
        self._lock = threading.Lock()
        self._pick = random.Random(rng.random())  # the submitters': kills stay reproducible

    def server(self) -> ServerProcess:
        """A server of the fleet, at random (it may be down: callers retry)."""
        with self._lock:
            return self._pick.choice(self.servers)

    def tick(self, killing: bool) -> None:
        now = time.monotonic()
        if killing and now >= self._next_kill:
            self._kill_one(now)
            self._next_kill = now + self.rng.uniform(1.0, 3.0)
        for due, old in [entry for entry in self._restarts if entry[0] <= now or not killing]:
            self._restarts.remove((due, old))
            self._replace(old, self.fleet.restart(old, wait=False))
        for kill in self.kills:
            if kill.recovered_s is None and not self._still_held(kill):
                kill.recovered_s = time.monotonic() - kill.at

    def _kill_one(self, now: float) -> None:
        """Kill a process that is up, leaving at least one server and one worker up."""
        with self._lock:
            servers = [p for p in self.servers if p.alive() and p.answers()]
            workers = [p for p in self.workers if p.alive() and p.output()]  # said it started
        candidates = (servers if len(servers) > 1 else []) + (workers if len(workers) > 1 else [])
        if not candidates:
            return
        victim = self.rng.choice(candidates)
        victim.kill()
        self.kills.append(Kill(victim, time.monotonic(), self._held(victim)))
        self._restarts.append((now + self.rng.uniform(0.3, 2.0), victim))

    def _replace(self, old: FleetProcess, new: FleetProcess) -> None:
        with self._lock:
            if isinstance(old, ServerProcess) and isinstance(new, ServerProcess):
                self.servers[self.servers.index(old)] = new
            else:
                self.workers[self.workers.index(old)] = new

    def _held(self, victim: FleetProcess) -> list[tuple[str, int]]:
        if isinstance(victim, ServerProcess):
            found = self.db.execute(
                "SELECT run_id, 0 FROM runs WHERE owner LIKE %s AND status <> ALL(%s)",
                (victim.owner_prefix + "%", list(FINISHED)),
            ).fetchall()
        else:
            found = self.db.execute(
                "SELECT task_id, fencing_token FROM tasks WHERE owner = %s AND status = 'claimed'",
                (victim.name,),
            ).fetchall()
        return [(str(item), int(token)) for item, token in found]

    def _still_held(self, kill: Kill) -> bool:
        """Servers: a run still leased to the dead one. Workers: a task still claimed under
        the token it had (another claim bumps the token; a result or failure ends the claim)."""
        ids = [item for item, _ in kill.held]
        if isinstance(kill.process, ServerProcess):
            row = self.db.execute(
                "SELECT count(*) FROM runs WHERE run_id = ANY(%s) AND owner LIKE %s "
                "AND status <> ALL(%s)",
                (ids, kill.process.owner_prefix + "%", list(FINISHED)),
            ).fetchone()
        else:
            row = self.db.execute(
                "SELECT count(*) FROM tasks AS t "
                "JOIN unnest(%s::text[], %s::int[]) AS held (id, token) ON t.task_id = held.id "
                "WHERE t.status = 'claimed' AND t.fencing_token = held.token",
                (ids, [token for _, token in kill.held]),
            ).fetchone()
        return bool(row and row[0])

    def recoveries(self, servers: bool) -> list[float]:
        """Seconds from each kill of a process that held something to its takeover."""
        return [
            kill.recovered_s
            for kill in self.kills
            if kill.held
            and kill.recovered_s is not None
            and isinstance(kill.process, ServerProcess) is servers
        ]


@dataclass
class Submissions:
    """Runs the servers accepted (202), and POSTs whose answer a kill cut off."""

    accepted: list[str] = field(default_factory=list)
    answer_lost: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


def submit(chaos: Chaos, source: str, out: Submissions, began: float) -> None:
    """POST RUNS runs, evenly over CHAOS_S, each retried on another server when a kill hit."""
    body = {"source": source, "filename": "/fleet/workflow.toml"}

    def one(number: int) -> None:
        time.sleep(max(0.0, began + number * CHAOS_S / RUNS - time.monotonic()))
        while True:
            try:
                answer = httpx.post(f"{chaos.server().url}/api/v1/runs", json=body, timeout=30)
            except httpx.ConnectError:
                time.sleep(0.05)  # down, or not up again yet: nothing was sent
                continue
            except httpx.TransportError:
                with out.lock:
                    out.answer_lost += 1  # it may have been accepted: the store will tell
                continue
            if answer.status_code == 202:
                with out.lock:
                    out.accepted.append(str(answer.json()["run_id"]))
                return
            time.sleep(0.05)  # 503 while a server starts or stops

    try:
        with ThreadPoolExecutor(SUBMITTERS) as pool:
            list(pool.map(one, range(RUNS)))
    finally:
        out.done.set()


def settle(
    chaos: Chaos, submissions: Submissions, fleet_db: FleetDb, began: float
) -> dict[str, str]:
    """Kill during the chaos window, then wait until every run in the store has finished
    (and none waits in the queue of runs); their statuses."""
    give_up = began + CHAOS_S + 120
    statuses: dict[str, str] = {}
    while time.monotonic() < give_up:
        killing = time.monotonic() < began + CHAOS_S
        chaos.tick(killing)
        time.sleep(0.1)
        if killing or not submissions.done.is_set():
            continue
        statuses = run_statuses(fleet_db.db)
        queued = fleet_db.db.execute("SELECT count(*) FROM kv WHERE namespace = 'run-queue'")
        if all(s in FINISHED for s in statuses.values()) and not (queued.fetchone() or (0,))[0]:
            return statuses
        time.sleep(0.4)
    unfinished = {run: s for run, s in statuses.items() if s not in FINISHED}
    pytest.fail(f"{len(unfinished)} runs never finished, e.g. {list(unfinished.items())[:5]}")


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.1f}/{max(values):.1f}"


@pytest.mark.timeout(CHAOS_S + 240)
def test_runs_survive_kill_nine_of_servers_and_workers(fleet: Fleet, fleet_db: FleetDb) -> None:
    chaos = Chaos(fleet, fleet_db, random.Random(SEED))
    submissions = Submissions()
    began = time.monotonic()
    source = ledger_workflow(fleet_db.ledger)
    submitter = threading.Thread(target=submit, args=(chaos, source, submissions, began))
    submitter.start()
    try:
        statuses = settle(chaos, submissions, fleet_db, began)
    finally:
        submitter.join()
    elapsed = time.monotonic() - began

    ledger = read_ledger(fleet_db.books)
    lost = [run for run in submissions.accepted if statuses.get(run) != "succeeded"]
    failed = [run for run, status in statuses.items() if status != "succeeded"]
    effects = fleet_db.books.execute("SELECT run_id, step_id FROM fleet_effects").fetchall()
    missing = {(run, step) for run in statuses for step in STEPS} - set(effects)
    refused = fleet_db.db.execute(
        "SELECT coalesce(sum(value), 0) FROM counters WHERE name = 'duplicate_completions'"
    ).fetchone()
    server_kills = [k for k in chaos.kills if isinstance(k.process, ServerProcess)]
    figures_line(
        "kill -9",
        {
            "runs": len(statuses),
            "accepted": len(submissions.accepted),
            "answers_cut_off": submissions.answer_lost,
            "server_kills": len(server_kills),
            "worker_kills": len(chaos.kills) - len(server_kills),
            "runs_taken_over": sum(len(k.held) for k in server_kills),
            "tasks_taken_over": sum(len(k.held) for k in chaos.kills if k not in server_kills),
            "runs_lost": len(lost),
            "runs_failed": len(failed),
            "effects": ledger.effects,
            "missing_effects": len(missing),
            "duplicate_effects": ledger.duplicate_effects,
            "executions": ledger.executions,
            "absorbed_by_key": ledger.absorbed,
            "refused_completions": int(refused[0]) if refused else 0,
            "server_recovery_s_median/max": summary(chaos.recoveries(servers=True)),
            "worker_recovery_s_median/max": summary(chaos.recoveries(servers=False)),
            "seconds": f"{elapsed:.1f}",
        },
    )
    assert not lost and not failed, (lost[:5], failed[:5])
    assert len(statuses) >= RUNS
    assert not missing, sorted(missing)[:5]
    assert ledger.duplicate_effects == 0
    assert ledger.effects == len(statuses) * len(STEPS)
