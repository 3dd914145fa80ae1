"""A worker's ``--slots``, shared by the tasks it claims and the steps its driver runs.

A worker with ``--drive`` runs two kinds of work in its process: tasks it claims from the queues
and the steps of the runs its driver drives. Both count against its slots: the worker claims
only for slots that neither holds, and a driver's step waits for a slot as a claimed task would
have waited in its queue. Slots that come free go to waiting steps first, in the order they
asked (their runs are under way), then to the worker's claims.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable


class Slots:
    """``size`` slots; the worker counts its tasks through ``claimed``, a driver its steps
    through :meth:`hold` and :meth:`release`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.claimed: Callable[[], int] = lambda: 0
        self.driven = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._listeners: list[Callable[[], None]] = []

    def free(self) -> int:
        return self.size - self.claimed() - self.driven

    @property
    def waiting(self) -> int:
        """Driver's steps waiting for a slot: the next slots to come free are theirs. (A step
        cancelled while it waits leaves the queue as its cancellation reaches it.)"""
        return len(self._waiting)

    def on_freed(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever slots may have come free for claims."""
        self._listeners.append(listener)

    async def hold(self) -> None:
        """Take a slot for a driver's step, waiting for one if none is free."""
        if not self._waiting and self.free() > 0:
            self.driven += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            await waiter  # resolved with the slot already counted as this step's
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot as it was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):  # not handed one: stop waiting
                    self._waiting.remove(waiter)
            raise

    def release(self) -> None:
        """A driver's step ended: its slot goes to the next waiting step, or to claims."""
        self.driven -= 1
        self.wake()

    def wake(self) -> None:
        """Slots may have come free (the worker calls this when one of its tasks ends): hand
        them to the waiting steps in order, then tell the listeners."""
        while self._waiting and self.free() > 0:
            waiter = self._waiting.popleft()
            if not waiter.done():
                self.driven += 1
                waiter.set_result(None)
        for listener in self._listeners:
            listener()
