"""Turn the JSON lines of ``bench/compare_fleet.sh`` into the tables of docs/performance.md.

    python3 bench/fleet_table.py /tmp/peers/bench/results/fleet.jsonl

Each cell is the median over the repetitions that succeeded; ratios are Wayang's rate over
DBOS's: its headline mode for the workload (as in the peers' README) and its fastest one.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from typing import Any

WORKLOADS = [
    # title, wayang label stem, DBOS headline label, DBOS labels to take the fastest of
    ("chain 500 (steps/s)", "chain", "dbos-pg-chain", ["dbos-pg-chain"]),
    (
        "fanout 1000 (tasks/s)",
        "fanout",
        "dbos-pg-fanout-queue",
        ["dbos-pg-fanout-queue", "dbos-pg-fanout-start", "dbos-pg-fanout-gather"],
    ),
    (
        "many 200×3 (workflows/s)",
        "many",
        "dbos-pg-many-start",
        ["dbos-pg-many-start", "dbos-pg-many-queue"],
    ),
]
MODES = [
    ("engine alone", "engine"),
    *((f"{k} worker(s)", f"workers{k}") for k in (1, 2, 4)),
    *((f"{k} driver(s)", f"drivers{k}") for k in (1, 2, 4)),
]
MODES += [(f"{title}, pinned", f"{mode}-pinned") for title, mode in MODES]  # ONLY=pinned
Reps = dict[str, list[dict[str, Any]]]


def load(path: str) -> Reps:
    """The successful repetitions of each label."""
    found: Reps = defaultdict(list)
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if record.get("kind") == "rep" and record.get("rc") == 0:
                found[record["label"]].append(record)
    return found


def median(reps: Reps, label: str, key: str) -> float | None:
    values = [float(r[key]) for r in reps.get(label, []) if isinstance(r.get(key), int | float)]
    return statistics.median(values) if values else None


def cell(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def ratio(ours: float | None, theirs: float | None) -> str:
    return "—" if ours is None or not theirs else f"**{ours / theirs:.2f}×**"


def versus_dbos(reps: Reps) -> None:
    print("| workload | Wayang on PostgreSQL | rate | DBOS (mode) | DBOS rate | Wayang ÷ DBOS |")
    print("|---|---|---:|---|---:|---:|")
    for title, stem, headline, candidates in WORKLOADS:
        fastest = max(candidates, key=lambda label: median(reps, label, "rate_per_s") or 0.0)
        for mode_title, mode in MODES:
            ours = median(reps, f"wayang-pg-{stem}-{mode}", "rate_per_s")
            if ours is None:
                continue  # not in this file (ONLY=… ran other configurations)
            for label in dict.fromkeys([headline, fastest]):
                theirs = median(reps, label, "rate_per_s")
                name = label.removeprefix("dbos-pg-")
                print(
                    f"| {title} | {mode_title} | {cell(ours)} | {name} | {cell(theirs, 1)} "
                    f"| {ratio(ours, theirs)} |"
                )


def scaling(reps: Reps) -> None:
    if not any(label.endswith(("workers1", "drivers1")) for label in reps):
        return  # ONLY=pinned, sweep or claim: no such rows
    print("| workload | 1 worker | 2 workers | 4 workers | 2 ÷ 1 | 4 ÷ 1 |")
    print("|---|---:|---:|---:|---:|---:|")
    stems = [(title, stem) for title, stem, _, _ in WORKLOADS]
    rows = [(t, s, "workers") for t, s in stems]
    rows += [("fanout 1000, 5 ms of CPU per step (tasks/s)", "spin", "workers")]
    rows += [(f"{t}, drivers", s, "drivers") for t, s in stems]
    rows += [("fanout 1000, 5 ms of CPU per step (tasks/s), drivers", "spin", "drivers")]
    for title, stem, kind in rows:
        rates = [median(reps, f"wayang-pg-{stem}-{kind}{k}", "rate_per_s") for k in (1, 2, 4)]
        if not any(rates):
            continue
        one, two, four = rates
        print(
            f"| {title} | {cell(one, 1)} | {cell(two, 1)} | {cell(four, 1)} "
            f"| {ratio(two, one)} | {ratio(four, one)} |"
        )


def sweep(reps: Reps) -> None:
    """1 worker against 2 on CPU-bound steps of several costs (compare_fleet.sh ONLY=sweep)."""
    runs: dict[tuple[float, int], dict[int, float | None]] = defaultdict(dict)
    for label in reps:
        if label.startswith("wayang-pg-sweep-"):
            ms, slots, workers = label.removeprefix("wayang-pg-sweep-").split("-")
            key = (float(ms.removesuffix("ms")), int(slots.removeprefix("slots")))
            runs[key][int(workers.removeprefix("workers"))] = median(reps, label, "rate_per_s")
    if not runs:
        return
    print("| CPU per step | slots | 1 worker (tasks/s) | 2 workers (tasks/s) | 2 ÷ 1 |")
    print("|---:|---:|---:|---:|---:|")
    for (ms, slots), rates in sorted(runs.items()):
        one, two = rates.get(1), rates.get(2)
        print(f"| {ms:g} ms | {slots} | {cell(one, 1)} | {cell(two, 1)} | {ratio(two, one)} |")


def costs(reps: Reps) -> None:
    print(
        "| run | rate | commits/s | CPU s: engine / workers / PostgreSQL | PostgreSQL's share "
        "of the CPU used | CPU of the machine used by these | load average (1 min) |"
    )
    print("|---|---:|---:|---|---:|---:|---:|")
    for label in sorted(reps):
        if not label.startswith("wayang-pg-") or "claim" in label:
            continue

        def get(key: str, label: str = label) -> float | None:
            return median(reps, label, key)

        share, busy = get("pg_cpu_share"), get("cpu_used")
        print(
            f"| {label.removeprefix('wayang-pg-')} | {cell(get('rate_per_s'))} "
            f"| {cell(get('commits_per_s'))} | {cell(get('engine_cpu_s'), 2)} / "
            f"{cell(get('workers_cpu_s'), 2)} / {cell(get('pg_cpu_s'), 2)} "
            f"| {cell(100 * share if share is not None else None)}% "
            f"| {cell(100 * busy if busy is not None else None)}% | {cell(get('loadavg_1m'), 1)} |"
        )


def claims(reps: Reps) -> None:
    if not any("claim" in label for label in reps):
        return
    print(
        "| claimers × tasks per claim | finished rows | commit waits for the disk | claim p50 / "
        "p99 (ms) | complete p50 / p99 (ms) | claims/s | tasks/s | commits/s | PostgreSQL CPU s |"
    )
    print("|---|---:|---|---|---|---:|---:|---:|---:|")
    for label in sorted(label for label in reps if "claim" in label):
        for rep in reps[label]:
            claim, complete = rep["claim"], rep["complete"]
            waits = "yes" if rep.get("synchronous_commit", "on") == "on" else "no (diagnostic)"
            print(
                f"| {rep['claimers']} × {rep['batch']} | {rep['history']:,} | {waits} "
                f"| {claim['p50_ms']:.2f} / {claim['p99_ms']:.2f} "
                f"| {complete['p50_ms']:.2f} / {complete['p99_ms']:.2f} "
                f"| {rep['claims_per_s']:,.0f} | {rep['tasks_per_s']:,.0f} "
                f"| {rep['commits_per_s']:,.0f} | {rep['pg_cpu_s']:.2f} |"
            )


def main() -> None:
    reps = load(sys.argv[1])
    for table in (versus_dbos, scaling, sweep, costs, claims):
        table(reps)
        print()


if __name__ == "__main__":
    main()
