"""What handing a sync call to a thread and back costs the event loop: asyncio's
``run_in_executor`` on a ``ThreadPoolExecutor`` against Wayang's ``StepThreads``.

    .venv/bin/python bench/hop_bench.py [--calls 5000] [--rounds 3]

Prints one ``BENCH_RESULT {json}`` line: microseconds per call, each way, per round (rounds
alternate the two ways, so both meet the same machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from wayang.executors.threads import StepThreads, default_max_threads


def noop() -> int:
    return 0


async def per_call_us(calls: int, hop: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        await hop()
    return 1e6 * (time.perf_counter() - started) / calls


async def measure(calls: int, rounds: int) -> dict[str, list[float]]:
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(default_max_threads())
    threads = StepThreads(default_max_threads())
    found: dict[str, list[float]] = {"run_in_executor_us": [], "step_threads_us": []}
    try:
        for _ in range(rounds):
            found["run_in_executor_us"].append(
                await per_call_us(calls, lambda: loop.run_in_executor(pool, noop))
            )
            found["step_threads_us"].append(await per_call_us(calls, lambda: threads.run(noop)))
    finally:
        pool.shutdown()
        threads.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    found = asyncio.run(measure(args.calls, args.rounds))
    rounded = {key: [round(value, 1) for value in values] for key, values in found.items()}
    print("BENCH_RESULT " + json.dumps({"calls": args.calls, **rounded}), flush=True)


if __name__ == "__main__":
    main()
