"""Memory against the number of finished runs: batches of runs one after another, RSS after each.

    .venv/bin/python bench/memory_bench.py --batches 10 --runs 200

Prints one JSON line per batch: runs finished so far and the process's resident set size. The
engine forgets a run once its end is durable, so RSS should stay flat as finished runs pile up.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wayang_bench import workflow_text

from wayang.app import App, Settings
from wayang.ids import new_run_id
from wayang.runtime.operations import prepare_run


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def batches(app: App, path: Path, count: int, runs: int) -> None:
    async with app.engine() as engine:
        for batch in range(1, count + 1):
            futures = []
            for _ in range(runs):
                request = prepare_run(path, {}, {}, parallel=0, timeout_s=None)
                futures.append(engine.start(request.plan, request.started, new_run_id()))
            await asyncio.gather(*futures)
            gc.collect()
            line = {"bench": "memory", "finished_runs": batch * runs, "rss_mb": round(rss_mb(), 1)}
            print(json.dumps(line), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="wayang-memory-"))
    path = folder / "workflow.toml"
    path.write_text(workflow_text("many", 3), "utf-8")
    app = App(Settings(store=str(folder / "wayang.db")))
    try:
        asyncio.run(batches(app, path, args.batches, args.runs))
    finally:
        app.close()


if __name__ == "__main__":
    main()
