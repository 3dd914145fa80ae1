"""Steps for the engine benchmarks: no-ops that return their integer argument, as the peers' do,
and `spin`, which burns CPU first (the fleet benchmark's CPU-bound variant)."""

from __future__ import annotations

import os
import time


def noop(i: int) -> int:
    return i


async def noop_async(i: int) -> int:
    return i


# BENCH_SPIN_MS: the CPU each spin step burns, in milliseconds (the workers inherit the
# environment of the benchmark that starts them).
SPIN_S = float(os.environ.get("BENCH_SPIN_MS", "5")) / 1000


def spin(i: int) -> int:
    """Burn ``SPIN_S`` of this thread's CPU, then return ``i``: a step whose cost is the CPU
    it needs (so more worker processes on more cores finish more of them)."""
    until = time.thread_time() + SPIN_S
    while time.thread_time() < until:
        pass
    return i
