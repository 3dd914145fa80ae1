"""The engine's side of tasks that workers run (``wayang worker``, DESIGN.md §4, §5).

A step the engine cannot run itself (its ``runs_on`` asks for what the engine does not offer, or
the engine runs no tasks at all) is written to the store queued, in the same transaction as the
event that schedules it. A worker claims it under a lease, runs it and records its result with
its fencing token; the engine folds that result into the run like its own tasks' results, and
acknowledges it in the same append.

What can go wrong is the engine's to notice, since it holds the run:

* A worker that dies or hangs stops renewing its lease; another worker claims the task again
  (the same attempt, the same idempotency key, a new fencing token). After the store's
  ``max_claims`` claims the attempt fails instead, and the step's retry policy decides: a task
  that kills every worker reaches the dead letters rather than going round for ever.
* A worker that keeps its lease but returns nothing within the step's timeout (plus a grace
  period, since the worker enforces the timeout itself) gets its attempt failed as timed out.
* Cancelling a run finishes its workers' tasks at once; the worker's next heartbeat finds the
  task gone and stops it, and its late result is refused by the store.

In each case the task is finished in the same append that records the failure, so the worker's
completion, if it ever comes, is rejected by fencing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wayang.engine.messages import DispatchTask, TaskFinished
from wayang.engine.state import ACTIVE_STEP
from wayang.runtime.records import finished_from_record
from wayang.store.port import DEFAULT_MAX_CLAIMS

if TYPE_CHECKING:
    from wayang.runtime.engine import Engine, _LiveRun


@dataclass(eq=False)
class _Outstanding:
    live: _LiveRun
    step_id: str
    attempt: int
    deadline: asyncio.TimerHandle | None = None


class RemoteTasks:
    """Tracks the workers' tasks of the runs one engine drives; see the module docstring."""

    def __init__(self, engine: Engine, *, grace_s: float, max_claims: int = DEFAULT_MAX_CLAIMS):
        self.engine = engine
        self.grace_s = grace_s
        self.max_claims = max_claims
        self._outstanding: dict[str, _Outstanding] = {}
        # The same tasks by run: a run that ends forgets its own without a look at every run's.
        self._by_run: dict[str, set[str]] = {}

    def __bool__(self) -> bool:
        return bool(self._outstanding)

    def dispatched(self, live: _LiveRun, command: DispatchTask) -> None:
        """A task of ``live`` went to the queue for a worker."""
        if command.task_id in self._outstanding:
            return
        entry = _Outstanding(live, command.step_id, command.attempt)
        timeout = command.payload.get("timeout_s")
        if timeout:
            loop = asyncio.get_running_loop()
            entry.deadline = loop.call_later(
                float(timeout) + self.grace_s, self._overdue, command.task_id, float(timeout)
            )
        self._outstanding[command.task_id] = entry
        self._by_run.setdefault(live.run_id, set()).add(command.task_id)

    def adopted(self, live: _LiveRun, running_here: set[str], completed: set[str]) -> None:
        """After ``live`` was adopted: its active steps' tasks that neither this engine runs
        nor a worker finished are with workers (their timeouts start again from now)."""
        for step_id, step in live.state.steps.items():
            task_id = step.task_id
            if step.status not in ACTIVE_STEP or not task_id:
                continue
            if task_id in running_here or task_id in completed:
                continue
            planned = live.plan.steps.get(step_id)
            payload = {"timeout_s": planned.timeout_s if planned else None}
            self.dispatched(live, DispatchTask(task_id, step_id, step.attempt, "", payload))

    def owns(self, task_id: str) -> bool:
        return task_id in self._outstanding

    def stop(self, task_id: str) -> None:
        """Cancel a worker's task: recorded cancelled now, taken from the worker by the append."""
        entry = self._outstanding.get(task_id)
        if entry is not None:
            message = TaskFinished(entry.step_id, entry.attempt, "failed", {}, "cancelled")
            self._settle(task_id, message, finished=True)

    def forget_run(self, run_id: str) -> None:
        for task_id in list(self._by_run.get(run_id, ())):
            self._drop(task_id)

    async def poll(self, *, lapsed: bool = True) -> None:
        """Fold in what workers finished, and (``lapsed``) fail attempts whose workers kept
        dying."""
        if not self._outstanding:
            return
        engine = self.engine
        committer = engine._require_committer()
        store, owner = engine.store, engine.owner
        for done in await committer.call(store.worker_completions, owner):
            if done.task_id in self._outstanding:
                message = finished_from_record(done.step_id, done.attempt, done.result)
                self._settle(done.task_id, message, finished=False)
        if not lapsed:
            return
        now = engine._clock()
        for task in await committer.call(store.lapsed_tasks, owner, now, self.max_claims):
            if task.task_id in self._outstanding:
                error = (
                    f"lost its worker {task.fencing_token} times (the lease lapsed each time: "
                    f"the worker died or hung); last held by {task.owner}"
                )
                message = TaskFinished(task.step_id, task.attempt, "failed", {}, error)
                self._settle(task.task_id, message, finished=True)

    def _overdue(self, task_id: str, timeout: float) -> None:
        entry = self._outstanding.get(task_id)
        if entry is None:
            return
        error = f"no result from its worker within the step's timeout ({timeout:g}s)"
        message = TaskFinished(entry.step_id, entry.attempt, "timed_out", {}, error)
        self._settle(task_id, message, finished=True)

    def _settle(self, task_id: str, message: TaskFinished, *, finished: bool) -> None:
        """Feed the outcome to the run. ``finished``: the engine decided it (the task is
        taken from its worker); else it is the worker's result (acknowledged)."""
        entry = self._outstanding.get(task_id)
        if entry is None:
            return
        self._drop(task_id)
        if finished:
            self.engine._feed(entry.live, message, finished=task_id)
        else:
            self.engine._feed(entry.live, message, acknowledge=task_id)

    def _drop(self, task_id: str) -> None:
        entry = self._outstanding.pop(task_id, None)
        if entry is None:
            return
        if entry.deadline is not None:
            entry.deadline.cancel()
        run_id = entry.live.run_id
        of_run = self._by_run.get(run_id)
        if of_run is not None:
            of_run.discard(task_id)
            if not of_run:
                del self._by_run[run_id]
