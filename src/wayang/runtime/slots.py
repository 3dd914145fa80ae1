"""A worker's ``--slots``, shared by the tasks it claims and the steps its driver runs.

A worker with ``--drive`` runs two kinds of work in its process: tasks it claims from the queues
and the steps of the runs its driver drives. Both count against its slots: the worker claims
only for slots that neither holds, and a driver's step waits for a slot as a claimed task would
have waited in its queue. Slots that come free go to waiting steps first, in the order they
asked (their runs are under way), then to the worker's claims. The driver may take the last
waiting steps back out, to queue them for other workers (:meth:`Slots.take_last`, spill.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(eq=False)
class Waiter:
    """A driver's step waiting for a slot: ``future`` is resolved once it has one."""

    future: asyncio.Future[None]
    step: Any
    """Whatever the driver tagged the step with (:meth:`Slots.hold`)."""


class Slots:
    """``size`` slots; the worker counts its tasks through ``claimed``, a driver its steps
    through :meth:`hold` and :meth:`release`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.claimed: Callable[[], int] = lambda: 0
        self.driven = 0
        self._waiting: deque[Waiter] = deque()
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

    async def hold(self, step: Any = None) -> None:
        """Take a slot for a driver's step, waiting for one if none is free. ``step`` tags
        the wait (see :meth:`take_last`); a wait taken out ends in whatever it is given."""
        if not self._waiting and self.free() > 0:
            self.driven += 1
            return
        waiter = Waiter(asyncio.get_running_loop().create_future(), step)
        self._waiting.append(waiter)
        try:
            await waiter.future  # resolved with the slot already counted as this step's
        except asyncio.CancelledError:
            future = waiter.future
            if future.done() and not future.cancelled() and future.exception() is None:
                self.release()  # handed a slot as it was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):  # not handed one: stop waiting
                    self._waiting.remove(waiter)
            raise

    def take_last(self, count: int) -> list[Waiter]:
        """Take the ``count`` steps that asked last out of the wait, oldest first: they get no
        slot until :meth:`put_back`, and end their wait when their future is given an
        exception."""
        taken = [self._waiting.pop() for _ in range(min(count, len(self._waiting)))]
        taken.reverse()
        return taken

    def put_back(self, waiters: list[Waiter]) -> None:
        """Return steps taken out and not sent elsewhere to the end of the wait, in order."""
        self._waiting.extend(w for w in waiters if not w.future.done())
        self.wake()

    def release(self) -> None:
        """A driver's step ended: its slot goes to the next waiting step, or to claims."""
        self.driven -= 1
        self.wake()

    def wake(self) -> None:
        """Slots may have come free (the worker calls this when one of its tasks ends): hand
        them to the waiting steps in order, then tell the listeners."""
        while self._waiting and self.free() > 0:
            future = self._waiting.popleft().future
            if not future.done():
                self.driven += 1
                future.set_result(None)
        for listener in self._listeners:
            listener()
