"""Benchmark the Wayang engine on the peer workloads (see ../shared/bench/peers/README.md).

Run one workload per process, like the peers' scripts, and print one ``BENCH_RESULT {json}`` line
that ``run_bench.py`` (the peers' driver) reads::

    .venv/bin/python bench/wayang_bench.py --workload chain --n 500
    .venv/bin/python bench/wayang_bench.py --workload fanout --n 1000
    .venv/bin/python bench/wayang_bench.py --workload many --n 200
    .venv/bin/python bench/wayang_bench.py --workload trivial
    .venv/bin/python bench/wayang_bench.py --workload shell --n 200

Every run uses a fresh SQLite store (``synchronous=FULL``, WAL) in a temporary folder: every
decision is on disk, fsynced, before it is reported, as with DBOS on SQLite. Steps are Python
functions (``bench/bench_steps.py:noop``) run by the real executors, sync functions off the
event loop in a thread; shell steps run ``/bin/sh -c true``. Phases: ``t_import`` (importing
Wayang), ``t_setup`` (opening the store, starting the engine, parsing and planning the
workflow), ``t_work`` (first run started to last run durable), ``t_teardown``.
"""

from __future__ import annotations

import time

PROCESS_T0 = time.perf_counter()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bench_steps, for the python: references

T_PRE = time.perf_counter() - PROCESS_T0
_mark = time.perf_counter()

from wayang import __version__  # noqa: E402
from wayang.app import App, Settings  # noqa: E402
from wayang.cli.driver import defer_full_collections  # noqa: E402
from wayang.engine.state import RunState  # noqa: E402
from wayang.ids import new_run_id  # noqa: E402
from wayang.runtime.operations import prepare_run  # noqa: E402

T_IMPORT = time.perf_counter() - _mark


def workflow_text(workload: str, n: int) -> str:
    """The workload as a workflow.toml."""
    lines = [f'id = "bench-{workload}"']
    step = f'uses = "python:bench_steps:{os.environ.get("BENCH_FN", "noop")}"'
    if workload == "chain":
        for i in range(n):
            lines += [f"[steps.s{i}]", step, f"inputs = {{ i = {i} }}"]
            lines += [f'needs = ["s{i - 1}"]'] if i else []
    elif workload == "fanout":
        for i in range(n):
            lines += [f"[steps.s{i}]", step, f"inputs = {{ i = {i} }}"]
        needs = ", ".join(f'"s{i}"' for i in range(n))
        lines += ["[steps.join]", 'kind = "noop"', f"needs = [{needs}]"]
    elif workload == "many":
        for i in range(3):
            lines += [f"[steps.s{i}]", step, f"inputs = {{ i = {i} }}"]
            lines += [f'needs = ["s{i - 1}"]'] if i else []
    elif workload == "trivial":
        lines += ["[steps.only]", step, "inputs = { i = 7 }"]
    elif workload == "shell":
        for i in range(n):
            lines += [f"[steps.s{i}]", 'run = "true"']
            lines += [f'needs = ["s{i - 1}"]'] if i else []
    return "\n".join(lines) + "\n"


async def run_workload(app: App, path: Path, runs: int, parallel: int) -> list[RunState]:
    async with app.engine() as engine:
        requests = [
            prepare_run(path, {}, {}, parallel=parallel, timeout_s=None) for _ in range(runs)
        ]
        setup_done = time.perf_counter()
        futures = [engine.start(r.plan, r.started, new_run_id(), reuse=r.reuse) for r in requests]
        states = await asyncio.gather(*futures)
        work = time.perf_counter() - setup_done
    return [*states, work]  # type: ignore[list-item]


def plain_sh_seconds(n: int) -> float:
    """The same commands without Wayang: ``/bin/sh -c true`` n times, one after another."""
    started = time.perf_counter()
    for _ in range(n):
        subprocess.run(["/bin/sh", "-c", "true"], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workload", choices=["chain", "fanout", "many", "trivial", "shell"], required=True
    )
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument(
        "--parallel",
        type=int,
        default=0,
        help="steps in flight per run (0: no limit, as the peers run; wayang run defaults to CPUs)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the store folder")
    args = parser.parse_args()
    defaults = {"chain": 500, "fanout": 1000, "many": 200, "trivial": 1, "shell": 200}
    n = args.n if args.n is not None else defaults[args.workload]

    setup_started = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="wayang-bench-"))
    path = folder / "workflow.toml"
    kind = "trivial" if args.workload == "many" else args.workload
    path.write_text(workflow_text("many" if args.workload == "many" else kind, n), "utf-8")
    app = App(Settings(store=str(folder / "wayang.db")))
    runs = n if args.workload == "many" else 1
    defer_full_collections()  # as 'wayang run' does
    *states, work = asyncio.run(run_workload(app, path, runs, args.parallel))
    total_setup = time.perf_counter() - setup_started
    teardown_started = time.perf_counter()
    settings = app.store.settings()  # type: ignore[attr-defined]
    app.close()
    db_bytes = sum(f.stat().st_size for f in folder.iterdir())
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    t_teardown = time.perf_counter() - teardown_started
    failed = [s.run_id for s in states if s.status.value != "succeeded"]
    if failed:
        sys.exit(f"runs did not succeed: {failed}")

    unit, count = {
        "chain": ("steps", n),
        "fanout": ("tasks", n),
        "many": ("workflows", n),
        "trivial": ("workflows", 1),
        "shell": ("steps", n),
    }[args.workload]
    result: dict[str, Any] = {
        "peer": "wayang",
        "version": __version__,
        "backend": "sqlite",
        "synchronous": settings["synchronous"],
        "journal_mode": settings["journal_mode"],
        "workload": args.workload,
        "parallel": args.parallel,
        "n": n,
        "unit": unit,
        "rate_per_s": count / work,
        "ms_per_unit": 1000 * work / count,
        "db_bytes": db_bytes,
        "t_pre": T_PRE,
        "t_import": T_IMPORT,
        "t_setup": total_setup - work,
        "t_work": work,
        "t_teardown": t_teardown,
        "pid": os.getpid(),
        "python": sys.version.split()[0],
    }
    if args.workload == "shell":
        sh = plain_sh_seconds(n)
        result["plain_sh_s"] = sh
        result["overhead_ms_per_step"] = 1000 * (work - sh) / n
    print("BENCH_RESULT " + json.dumps(result, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
