"""A driver's steps that would wait too long for its slots go to the queue, for any worker.

A driver runs the steps of its runs in its worker's slots (slots.py). A run that fans out to
more steps than the slots hold would start them a slot at a time, while other workers and
drivers stand idle. So a driver with steps waiting keeps as many as its slots will start within
``spill_after_s``, judged by how long its steps held a slot lately, and sends the rest to their
queue (:meth:`~wayang.store.port.Store.spill_tasks`), as it sends a step that needs what it
lacks (remote.py). Any worker offering what they need takes them, this driver's own worker too
once no step of its own waits for a slot, and the driver folds their results in as any engine
does a worker's.

Quick steps stay. A step that holds its slot less than ``SPILL_MIN_STEP_S`` costs the fleet
less run here than sent through the store, where a worker's task costs a claim, a result, a
wake-up and a fold of its own: no-op steps held their slot 2.6 ms in a driver fanning out 1,000
of them, and queueing the rest cost 30% of the rate; steps of 5 ms of CPU held it 42 ms, eight
of them sharing the process. Nor does a step move while no other live worker serves its queue
and offers what it needs: the trip through the store pays only when someone else runs it.

A step moves only before it starts. It is taken out of the wait first, and goes back to it if
the store did not move it (the store was away, or the task was finished meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wayang.engine.messages import DispatchTask
from wayang.model.placement import offer_tokens
from wayang.runtime.hand_off import worker_of_driver
from wayang.runtime.outage import Outage
from wayang.runtime.slots import Slots, Waiter
from wayang.store.port import SpilledTask

if TYPE_CHECKING:
    from wayang.runtime.engine import Engine, _LiveRun

log = logging.getLogger("wayang.engine")

SPILL_AFTER_S = 0.05
"""A driver's default: steps its slots would not start within this long go to the queue."""
SPILL_MIN_STEP_S = 0.01
"""Steps that held a slot less than this lately stay with the driver (see the module docstring)."""
LOOK_EVERY_S = 0.02
"""How often a driver with steps waiting for its slots weighs them."""
FLEET_FRESH_S = 1.0
"""How long what a driver read of the other workers holds before it reads again."""
_RECENT = 0.2
"""The weight of the latest step's time in the average (the last five or so count most)."""


class StepSpilled(Exception):  # noqa: N818 -- not an error: the wait ends, the queue has it
    """A waiting step's task went to the queue: a worker runs it, not this driver."""


@dataclass(frozen=True, slots=True)
class WaitingStep:
    """What a driver's step waiting for a slot is, to send it elsewhere."""

    live: _LiveRun
    command: DispatchTask

    def spilled(self) -> SpilledTask:
        payload = self.command.payload
        needs = tuple(payload.get("needs") or ())
        return SpilledTask(self.command.task_id, queue_of(self.command), needs)


def queue_of(command: DispatchTask) -> str:
    return str(command.payload.get("queue") or "default")


class Spill:
    """Sends a driver's waiting steps to the queue; see the module docstring. Without slots
    (an engine that is no driver) or with ``after_s`` 0, steps only wait."""

    def __init__(
        self, engine: Engine, slots: Slots | None, after_s: float, queues: Collection[str]
    ) -> None:
        self.engine = engine
        self.slots = slots
        self.after_s = after_s if slots is not None else 0.0
        self.queues = frozenset(queues)
        self._step_s = 0.0  # how long a step ran here lately; 0 before the first
        self._look: asyncio.TimerHandle | None = None
        self._round: asyncio.Task[None] | None = None
        self._fleet_read_at = -math.inf
        self._helpers: list[_Helper] = []
        self._early: asyncio.Task[None] | None = None
        self._outage = Outage(log, "queueing steps for other workers")

    def slot(
        self, live: _LiveRun, command: DispatchTask
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold one of the driver's slots while the step runs (nothing to hold for an engine
        that is no driver). Raises :class:`StepSpilled` if the step went to the queue."""
        if self.slots is None:
            return contextlib.nullcontext()  # an engine's every step: keep it cheap
        return self._held(self.slots, live, command)

    @contextlib.asynccontextmanager
    async def _held(
        self, slots: Slots, live: _LiveRun, command: DispatchTask
    ) -> AsyncIterator[None]:
        if self.after_s and (slots.waiting or slots.free() <= 0):
            self._soon()
        await slots.hold(WaitingStep(live, command))
        try:
            yield
        finally:
            slots.release()

    def ran(self, seconds: float) -> None:
        """A step ran here for ``seconds`` (its slot held)."""
        known = self._step_s
        self._step_s = seconds if not known else known + (seconds - known) * _RECENT

    def close(self) -> None:
        for pending in (self._look, self._round, self._early):
            if pending is not None:
                pending.cancel()

    def _soon(self) -> None:
        if self._look is None and self._round is None:
            loop = asyncio.get_running_loop()
            self._look = loop.call_later(LOOK_EVERY_S, self._weigh)
            self._read_fleet_early()

    def _read_fleet_early(self) -> None:
        """Steps began to wait for the slots: read the other workers now, while the loop is
        free. The steps about to run may keep it busy (Python that computes holds the
        interpreter: with 32 such steps running, reading the workers when the steps were
        weighed took 0.3 s)."""
        stale = time.monotonic() - self._fleet_read_at >= FLEET_FRESH_S
        if stale and self._early is None:
            self._early = asyncio.get_running_loop().create_task(self._read_fleet())

    async def _read_fleet(self) -> None:
        try:
            with self._outage.absorbing():
                await self._helpers_now()
        finally:
            self._early = None

    def _weigh(self) -> None:
        self._look = None
        if self._excess() > 0:
            self._round = asyncio.get_running_loop().create_task(self._spill())
        elif self.slots is not None and self.slots.waiting:
            self._soon()

    def _excess(self) -> int:
        """How many waiting steps the slots would not start within ``after_s``."""
        slots = self.slots
        if slots is None or self._step_s < SPILL_MIN_STEP_S:
            return 0
        if self.engine._draining or self.engine._closing:
            return 0
        keep = math.ceil(slots.size * self.after_s / self._step_s)
        return slots.waiting - keep

    async def _spill(self) -> None:
        try:
            if self._early is not None:
                await asyncio.wait([self._early])  # the read already on its way
            with self._outage.absorbing():
                helpers = await self._helpers_now()
                if helpers:
                    await self._move(self._excess(), helpers)
        finally:
            self._round = None
            if self.slots is not None and self.slots.waiting:
                self._soon()

    async def _helpers_now(self) -> list[_Helper]:
        """The other live workers serving a queue of ours (as read within the last
        ``FLEET_FRESH_S``)."""
        now = time.monotonic()
        if now - self._fleet_read_at >= FLEET_FRESH_S:
            engine = self.engine
            workers = await engine._require_committer().call(engine.store.list_workers)
            me = worker_of_driver(engine.owner)
            since = engine._clock() - engine.settings.lease_s
            self._helpers = [
                _Helper(self.queues.intersection(w.queues), offer_tokens(w.capabilities, w.labels))
                for w in workers
                if w.worker_id != me and w.state == "running" and w.heartbeat_at >= since
            ]
            self._helpers = [helper for helper in self._helpers if helper.queues]
            self._fleet_read_at = now
        return self._helpers

    async def _move(self, count: int, helpers: list[_Helper]) -> None:
        slots = self.slots
        if slots is None or count <= 0:
            return
        taken = slots.take_last(count)
        moving = [w for w in taken if _may_move(w, helpers)]
        moved: set[str] = set()
        try:
            if moving:
                engine = self.engine
                tasks = [waiting(w).spilled() for w in moving]
                call = engine._require_committer().call
                moved = set(await call(engine.store.spill_tasks, engine.owner, tasks))
        finally:
            for waiter in taken:
                step = waiting(waiter)
                if step.command.task_id in moved and not waiter.future.done():
                    self.engine._remote.dispatched(step.live, step.command)
                    waiter.future.set_exception(StepSpilled())
            slots.put_back([w for w in taken if waiting(w).command.task_id not in moved])
        if moved:
            log.debug("queued %d waiting step(s) for other workers", len(moved))


def waiting(waiter: Waiter) -> WaitingStep:
    step = waiter.step
    assert isinstance(step, WaitingStep), step  # every driver's wait is tagged (Spill.slot)
    return step


@dataclass(frozen=True, slots=True)
class _Helper:
    """Another live worker: which of the driver's queues it serves, and what it offers."""

    queues: frozenset[str]
    offers: frozenset[str]

    def takes(self, task: SpilledTask) -> bool:
        return task.queue in self.queues and self.offers.issuperset(task.needs)


def _may_move(waiter: Waiter, helpers: list[_Helper]) -> bool:
    step = waiting(waiter)
    if waiter.future.done() or step.live.lost:
        return False
    task = step.spilled()
    return any(helper.takes(task) for helper in helpers)
