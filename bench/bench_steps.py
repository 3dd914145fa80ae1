"""No-op steps for the engine benchmarks: each returns its integer argument, as the peers' do."""

from __future__ import annotations


def noop(i: int) -> int:
    return i


async def noop_async(i: int) -> int:
    return i
