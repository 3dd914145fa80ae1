"""The latency of the three store calls one step through a worker costs, one after another.

A chain run through ``wayang worker`` processes pays, for each step, a worker's claim, its
completion, and the engine's commit of the next decision (it also reads the completion, a plain
``SELECT``). Each is a PostgreSQL transaction; here they run alone, from one thread, with
nothing else on the machine, so their figures are the floor under that chain's step::

    .venv/bin/python bench/store_ops_bench.py              # 300 rounds
    .venv/bin/python bench/store_ops_bench.py --rounds 1000

It prints the median and 90th percentile of each, in milliseconds, and one ``BENCH_RESULT`` JSON
line. Uses a fresh schema in the database ``wayang_bench`` (created on first use), dropped after.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pg_probe import DEFAULT_BASE, drop_schema, ensure_database, fresh_schema, store_url

from wayang.store.port import Append, NewEvent, NewTask, RunRecord, Store
from wayang.store.urls import open_store

T0 = 1_000.0


def new_task(index: int) -> NewTask:
    return NewTask(
        task_id=f"t{index}",
        run_id="r1",
        step_id=f"s{index}",
        attempt=1,
        idempotency_key=f"r1/s{index}/1",
        payload={"uses": "python:bench_steps:noop", "inputs": {}},
        available_at=T0,
    )


def timed(into: list[float], call: Callable[..., Any], *args: Any) -> Any:
    started = time.perf_counter()
    value = call(*args)
    into.append(time.perf_counter() - started)
    return value


def measure(store: Store, rounds: int) -> dict[str, list[float]]:
    """Claim the step's task, complete it, commit the decision that queues the next one."""
    run = RunRecord("r1", "wf", "running", created_at=T0, updated_at=T0)
    store.create_run(run, Append("r1", 0, [NewEvent("run_started", {})], tasks=[new_task(0)]))
    figures: dict[str, list[float]] = {"claim": [], "complete": [], "commit": []}
    version = 1
    for index in range(1, rounds + 1):
        [task] = timed(figures["claim"], store.claim, "worker", T0, 30.0)
        result = {"status": "succeeded", "outputs": {"n": index}}
        timed(figures["complete"], store.complete, task.task_id, task.fencing_token, result, T0)
        events = [NewEvent("step_succeeded", {"n": index}), NewEvent("step_started", {})]
        append = Append("r1", version, events, tasks=[new_task(index)], acknowledge=[task.task_id])
        timed(figures["commit"], store.commit, [append], T0)
        version += len(events)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--pg", default=DEFAULT_BASE, help="PostgreSQL database URL")
    args = parser.parse_args()
    ensure_database(args.pg)
    schema = fresh_schema()
    store = open_store(store_url(args.pg, schema))
    try:
        figures = measure(store, args.rounds)
    finally:
        store.close()
        drop_schema(args.pg, schema)
    summary = {}
    for name, seconds in figures.items():
        ordered = sorted(seconds)
        p50 = statistics.median(ordered) * 1000
        p90 = ordered[int(0.9 * (len(ordered) - 1))] * 1000
        summary[name] = {"p50_ms": round(p50, 3), "p90_ms": round(p90, 3)}
        print(f"{name:9} p50 {p50:.2f} ms   p90 {p90:.2f} ms")
    print("BENCH_RESULT " + json.dumps({"rounds": args.rounds, **summary}, sort_keys=True))


if __name__ == "__main__":
    main()
