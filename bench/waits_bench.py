"""What runs parked at a wait cost an idle engine: its CPU while ``--runs`` runs of a one-step
workflow wait, for a human's approval or for an event on a topic (``--wait``), nothing coming
(the engine looks at their waits at each full poll, every 0.2 s).

    .venv/bin/python bench/waits_bench.py --runs 1000                # SQLite, a fresh file
    .venv/bin/python bench/waits_bench.py --runs 1000 --wait event
    .venv/bin/python bench/waits_bench.py --runs 1000 \\
        --store 'postgresql://postgres@127.0.0.1:5432/test?schema=wayang_waits'

Prints one ``BENCH_RESULT {json}`` line: the engine's CPU over ``--seconds`` as a share of one
core. Figures are printed, never checked: keep the machine otherwise idle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
from pathlib import Path

from wayang.app import App, Settings
from wayang.ids import new_run_id
from wayang.runtime.engine import EngineSettings
from wayang.runtime.operations import prepare_run

WORKFLOWS = {
    "approval": 'id = "parked"\n[steps.ok]\nkind = "approval"\nassignees = ["alice"]\n',
    "event": 'id = "parked"\n[steps.shipped]\nkind = "event"\ntopic = "shipping.dispatched"\n',
}


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(app: App, path: Path, runs: int, settle_s: float, seconds: float) -> float:
    async with app.engine() as engine:
        for _ in range(runs):
            request = prepare_run(path, {}, {}, parallel=0, timeout_s=None)
            engine.start(request.plan, request.started, new_run_id(), reuse=request.reuse)
        await asyncio.sleep(settle_s)  # every run started and parked at its approval
        cpu_before, started = cpu_s(), time.perf_counter()
        await asyncio.sleep(seconds)
        return (cpu_s() - cpu_before) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--wait", choices=sorted(WORKFLOWS), default="approval")
    parser.add_argument("--store", default="", help="a store URL [default: a fresh SQLite file]")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to let runs park")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds measured")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "workflow.toml"
        path.write_text(WORKFLOWS[args.wait], "utf-8")
        store = args.store or str(Path(folder) / "wayang.db")
        app = App(Settings(store=store, engine=EngineSettings()))
        try:
            share = asyncio.run(measure(app, path, args.runs, args.settle, args.seconds))
        finally:
            app.close()
    result = {
        "runs": args.runs,
        "wait": args.wait,
        "store": store.split("://")[0] if args.store else "sqlite",
    }
    print("BENCH_RESULT " + json.dumps({**result, "engine_cpu_share": round(share, 3)}))


if __name__ == "__main__":
    main()
