"""Pinning a Wayang process to chosen CPUs (``--cpus``), the shell steps it starts left free.

An engine's work crosses threads all the time: a step function runs on a thread and its result
goes back to the event loop; a commit runs on the store's thread. With the threads on different
CPUs each hand-off wakes another CPU, and on a virtual machine whose idle CPUs halt that costs
tens of microseconds, several times a step. The interpreter runs Python on one CPU at a time
anyway, so pinning the process to one CPU loses little and makes those hand-offs cheap
(docs/performance.md, session 17: a chain on PostgreSQL through the engine alone ran 2.1x
as fast pinned).

What the process's own threads start inherits the pin, since Linux copies a thread's CPUs to
the threads and processes it creates: a Python step's thread pools and the subprocesses it
starts (``make -j8`` would get one CPU), and the libraries that size their thread pools by the
CPUs they may use (NumPy's BLAS, PyTorch). Shell steps are the exception: each starts with the
CPUs the process had before it was pinned.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from wayang.errors import UsageError


def parse_cpus(text: str, where: str = "--cpus") -> frozenset[int]:
    """CPU numbers as ``taskset -c`` and cpusets write them: ``0``, ``0,2``, ``0-3,6``."""
    cpus: set[int] = set()
    for part in (piece.strip() for piece in text.split(",")):
        first, dash, last = part.partition("-")
        try:
            low = int(first)
            high = int(last) if dash else low
        except ValueError:
            raise UsageError(
                f"{where}: {part!r} is not a CPU number or a range (give e.g. 0, 0,2 or 0-3)"
            ) from None
        if low < 0 or high < low:
            raise UsageError(f"{where}: {part!r} is not a CPU range (give e.g. 0-3, low to high)")
        cpus.update(range(low, high + 1))
    return frozenset(cpus)


@dataclass(frozen=True)
class CpuPin:
    """The CPUs a process was pinned to, and those it had before (its children's)."""

    pinned: frozenset[int]
    free: frozenset[int]

    @classmethod
    def apply(cls, cpus: frozenset[int], where: str = "--cpus") -> CpuPin:
        """Pin the calling thread, and so every thread it starts from now on, to ``cpus``. Call
        it first thing, before the process starts any thread: those keep their CPUs."""
        if not hasattr(os, "sched_setaffinity"):
            raise UsageError(f"{where}: this system does not let a process choose its CPUs")
        free = frozenset(os.sched_getaffinity(0))
        outside = sorted(cpus - free)
        if outside:
            allowed = ",".join(str(cpu) for cpu in sorted(free))
            raise UsageError(
                f"{where}: CPU {','.join(map(str, outside))} is not among this process's "
                f"CPUs ({allowed}); choose from those"
            )
        os.sched_setaffinity(0, cpus)
        return cls(frozenset(cpus), free)

    def child_setup(self) -> Callable[[], None]:
        """What a child process runs before its program: take back the CPUs the process had
        before it was pinned (``preexec_fn``: it runs in the child, after the fork). Python
        warns that such code may deadlock beside threads when it takes a lock another thread
        held at the fork; this one makes one system call on a set built beforehand."""
        free = self.free

        def unpin() -> None:
            os.sched_setaffinity(0, free)

        return unpin
