"""Claim latency on PostgreSQL with 10,000 tasks queued for workers (issue 7).

Queues ``--depth`` worker tasks (a Python step's, needing ``cap:python``) in a fresh schema,
plus ``--history`` finished ones (status ``consumed``, as a store that has run for a while
holds), then runs ``--claimers`` worker-like processes. Each loops as ``wayang worker`` does:
``store.claim(owner, now, lease, limit=--batch, queue, offers=…)`` and then ``store.complete``
for each task it got, timing every call. Enough extra tasks are queued that the queue never
holds fewer than ``--depth`` while the claims are timed. Prints one ``BENCH_RESULT {json}``
line: claim latency p50/p90/p99/max (ms), completions likewise, and claims/s overall::

    .venv/bin/python bench/claim_bench.py                      # 1 claimer, 1 task per claim
    .venv/bin/python bench/claim_bench.py --claimers 2 --batch 8
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pg_probe import (
    DEFAULT_BASE,
    Probe,
    drop_schema,
    ensure_database,
    fresh_schema,
    store_url,
)

from wayang import __version__
from wayang.model.placement import LOCAL_CAPABILITIES, offer_tokens
from wayang.store.port import Append, NewTask, RunRecord, Store
from wayang.store.urls import open_store

QUEUE = "default"
NEEDS = ("cap:python",)
LEASE_S = 60.0


@dataclass(frozen=True)
class Options:
    pg: str
    depth: int
    history: int
    claims: int
    batch: int
    claimers: int
    synchronous_commit: str
    keep: bool


def parse_options() -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default=DEFAULT_BASE, help="PostgreSQL database URL")
    parser.add_argument("--depth", type=int, default=10_000, help="tasks queued throughout")
    parser.add_argument("--history", type=int, default=0, help="finished tasks in the table")
    parser.add_argument("--claims", type=int, default=2_000, help="claims timed per claimer")
    parser.add_argument("--batch", type=int, default=1, help="tasks per claim (limit)")
    parser.add_argument("--claimers", type=int, default=1, help="claiming processes at once")
    parser.add_argument(
        "--synchronous-commit",
        choices=["on", "off"],
        default="on",
        help="off: a diagnostic, commits do not wait for the disk (the query's own cost)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the schema")
    args = parser.parse_args()
    return Options(
        args.pg,
        args.depth,
        args.history,
        args.claims,
        args.batch,
        args.claimers,
        args.synchronous_commit,
        args.keep,
    )


# ---------------------------------------------------------------------------------- filling


def fill(store: Store, options: Options, schema: str) -> None:
    """One run holding the queued tasks (through the store, as the engine writes them) and
    the finished ones (plain SQL, for speed)."""
    now = time.time()
    total = options.depth + options.claims * options.batch * options.claimers
    tasks = [_task(i, now) for i in range(total)]
    record = RunRecord("bench-run", "bench", "running", now, now)
    for start in range(0, total, 5_000):
        first = start == 0
        append = Append("bench-run", 0, [], tasks=tasks[start : start + 5_000])
        if first:
            store.create_run(record, append)
        else:
            store.commit([append], now)
    if options.history:
        _fill_history(options, schema, now)


def _task(i: int, now: float) -> NewTask:
    payload = {"uses": "python:bench_steps:noop", "inputs": {"i": i}, "needs": list(NEEDS)}
    return NewTask(
        task_id=f"bench-run/s{i}/1",
        run_id="bench-run",
        step_id=f"s{i}",
        attempt=1,
        idempotency_key=f"bench-run/s{i}",
        payload=payload,
        available_at=now + i * 1e-6,
        queue=QUEUE,
        needs=NEEDS,
    )


def _fill_history(options: Options, schema: str, now: float) -> None:
    query = f"""
        INSERT INTO {schema}.tasks (task_id, run_id, step_id, attempt, idempotency_key, queue,
            payload, status, available_at, fencing_token, result, completed_at, needs, remote)
        SELECT 'old/' || g, 'bench-run', 'old' || g, 1, 'old/' || g, %s, '{{}}', 'consumed',
            %s - 86400 + g * 1e-3, 1, '{{}}', %s - 86400 + g * 1e-3, '["cap:python"]', true
        FROM generate_series(1, %s) AS g
    """
    with psycopg.connect(options.pg, autocommit=True) as conn:
        conn.execute(query, [QUEUE, now, now, options.history])
        conn.execute(f"ANALYZE {schema}.tasks")


# ---------------------------------------------------------------------------------- claiming


@dataclass(frozen=True)
class Job:
    url: str
    options: Options
    index: int
    start_at: float


def claimer(job: Job, results: Queue[dict[str, list[float]]], release: Event) -> None:
    """One worker-like loop: puts the duration of each claim and each completion (seconds),
    then keeps its connections (so their backends' CPU can be read) until ``release``."""
    options = job.options
    store = open_store(job.url)
    offers = offer_tokens(LOCAL_CAPABILITIES, {})
    owner = f"bench-claimer-{job.index}"
    claims: list[float] = []
    completes: list[float] = []
    got = 0
    time.sleep(max(0.0, job.start_at - time.time()))
    try:
        for _ in range(options.claims):
            started = time.perf_counter()
            found = store.claim(owner, time.time(), LEASE_S, options.batch, QUEUE, offers=offers)
            claims.append(time.perf_counter() - started)
            got += len(found)
            for task in found:
                started = time.perf_counter()
                store.complete(task.task_id, task.fencing_token, {"status": "succeeded"}, 0.0)
                completes.append(time.perf_counter() - started)
        results.put({"claims": claims, "completes": completes, "got": [float(got)]})
        release.wait(60)
    finally:
        store.close()


def run_claimers(
    url: str, options: Options, probe: Probe
) -> tuple[list[dict[str, list[float]]], float, float]:
    """Start the claimers, wait for their figures: theirs, the seconds they took, and the CPU
    seconds of their backends (read before they disconnect)."""
    context = multiprocessing.get_context("spawn")
    results: Queue[dict[str, list[float]]] = context.Queue()
    release = context.Event()
    start_at = time.time() + 1.5  # every process imported and connected by then
    procs = [
        context.Process(target=claimer, args=(Job(url, options, i, start_at), results, release))
        for i in range(options.claimers)
    ]
    for proc in procs:
        proc.start()
    time.sleep(max(0.0, start_at - time.time()))
    probe.start()
    found = [results.get(timeout=600) for _ in procs]
    elapsed = time.time() - start_at
    pg_cpu, _ = probe.stop()
    release.set()
    for proc in procs:
        proc.join()
    return found, elapsed, pg_cpu


# ---------------------------------------------------------------------------------- output


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    cut = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "p50_ms": 1000 * cut[49],
        "p90_ms": 1000 * cut[89],
        "p99_ms": 1000 * cut[98],
        "max_ms": 1000 * ordered[-1],
        "mean_ms": 1000 * statistics.fmean(ordered),
    }


def measure(options: Options, schema: str) -> dict[str, Any]:
    url = store_url(options.pg, schema, synchronous_commit=options.synchronous_commit)
    store = open_store(url)
    try:
        fill(store, options, schema)
    finally:
        store.close()
    probe = Probe(options.pg, schema)
    results, elapsed, pg_cpu = run_claimers(url, options, probe)
    claims = [value for result in results for value in result["claims"]]
    completes = [value for result in results for value in result["completes"]]
    tasks = int(sum(result["got"][0] for result in results))
    return {
        "claim": percentiles(claims),
        "complete": percentiles(completes),
        "claims": len(claims),
        "tasks_claimed": tasks,
        "t_work": elapsed,
        "claims_per_s": len(claims) / elapsed,
        "tasks_per_s": tasks / elapsed,
        "pg_cpu_s": pg_cpu,
        **probe.counted(),
    }


def main() -> None:
    options = parse_options()
    ensure_database(options.pg)
    schema = fresh_schema("wayang_claim")
    try:
        figures = measure(options, schema)
    finally:
        if not options.keep:
            drop_schema(options.pg, schema)
    figures["commits_per_s"] = figures["xact_commit"] / figures["t_work"]
    result = {
        "peer": "wayang",
        "version": __version__,
        "backend": "postgres",
        "workload": "claim",
        "depth": options.depth,
        "history": options.history,
        "batch": options.batch,
        "claimers": options.claimers,
        "synchronous_commit": options.synchronous_commit,
        "unit": "claims",
        "rate_per_s": figures["claims_per_s"],
        "loadavg_1m": os.getloadavg()[0],
        **figures,
        "pid": os.getpid(),
        "python": sys.version.split()[0],
    }
    print("BENCH_RESULT " + json.dumps(result, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
