"""The fleet as a server sees it: workers that reach the store through this server over HTTP
(``wayang worker --server URL``; the protocol is in docs/workers.md), the task queues' limits
(backpressure on new runs), and the fleet's gauges.

Every store call runs on a thread, never on the event loop: a claim or a result is a write
transaction that may wait for the disk, or for PostgreSQL.

The server's clock decides leases (``now`` is the server's, never the worker's), so a worker
whose host clock is off still holds its tasks for exactly the lease it asked for. Queue limits
are the store's (``wayang queues limit``), read at most once a second: a claim's
``max_running`` may tighten them, never loosen them.

A worker repeats a request whose answer it did not get (a timeout, a dropped connection). A
claim, a batch of results and a batch of log lines carry a ``request_id``, a result its task's
fencing token: a
repeat of one in flight, or answered within the last minute, gets the first answer instead of
claiming again (tasks leased to a worker that never learnt of them), appending the lines twice
or being refused as a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any, Generic, TypeVar

from wayang import wire
from wayang.engine.runplan import RunPlan
from wayang.errors import WayangError
from wayang.observe import Metrics
from wayang.observe.metrics import TaskQueueLevel
from wayang.runtime.liveness import WORKER_STATES, worker_state
from wayang.runtime.queues import (
    QUEUE_LIMITS,
    check_queue_room,
    max_depth_of,
    max_running_of,
    run_queues,
)
from wayang.server.views import iso
from wayang.store.port import (
    ClaimedTask,
    FencedResult,
    LogLine,
    Store,
    WorkerBeat,
    WorkerRecord,
)

T = TypeVar("T")
log = logging.getLogger("wayang.server")

LIMITS_KEPT_S = 1.0
ANSWERS_KEPT_S = 60.0
ANSWERS_KEPT = 10_000


class Remembered(Generic[T]):
    """Answers to requests a client may repeat, by key: a repeat of a request still in flight,
    or answered within ``keep_s``, gets the same answer; a failed one may be tried again."""

    def __init__(
        self,
        keep_s: float = ANSWERS_KEPT_S,
        most: int = ANSWERS_KEPT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keep_s = keep_s
        self._most = most
        self._clock = clock
        self._answers: dict[Hashable, tuple[float, asyncio.Future[T]]] = {}

    async def once(self, key: Hashable, make: Callable[[], Awaitable[T]]) -> T:
        self._forget_old()
        found = self._answers.get(key)
        if found is None:
            future = asyncio.ensure_future(make())
            future.add_done_callback(lambda done: self._settled(key, done))
            found = self._answers[key] = (self._clock(), future)
        # Shielded: a client that hangs up does not cancel the work its repeat will want.
        return await asyncio.shield(found[1])

    def _settled(self, key: Hashable, future: asyncio.Future[T]) -> None:
        if future.cancelled() or future.exception() is not None:
            self._answers.pop(key, None)  # not answered: a repeat tries again

    def _forget_old(self) -> None:
        oldest = self._clock() - self._keep_s
        while self._answers:
            key, (at, future) = next(iter(self._answers.items()))
            if (at > oldest and len(self._answers) < self._most) or not future.done():
                return
            del self._answers[key]


class Fleet:
    """The worker routes' operations, task-queue backpressure and the fleet's gauges."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock
        self._limits: Remembered[Mapping[str, Any]] = Remembered(keep_s=LIMITS_KEPT_S)
        self._claims: Remembered[list[ClaimedTask]] = Remembered()
        self._logs: Remembered[int] = Remembered()
        self._results: Remembered[bool] = Remembered()
        self._batches: Remembered[list[bool]] = Remembered()
        self._gauges = threading.Lock()

    async def _store(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    # ------------------------------------------------------------------ queue limits

    async def limits(self) -> Mapping[str, Any]:
        """The task queues' limits (the ``queue-limits`` namespace), at most a second old (one
        read a second however many runs start)."""
        return await self._limits.once(
            QUEUE_LIMITS, lambda: self._store(self.store.kv_scan, QUEUE_LIMITS)
        )

    async def queue_limits(self) -> wire.QueueLimits:
        limits = await self.limits()
        return wire.QueueLimits(
            limits={
                queue: wire.QueueLimit(
                    max_running=max_running_of(limits, queue), max_depth=max_depth_of(limits, queue)
                )
                for queue in sorted(limits)
            }
        )

    async def check_room(self, plan: RunPlan) -> None:
        """Refuse a run that would add tasks to a queue at its ``max_depth``
        (:class:`~wayang.runtime.queues.TaskQueueFullError`: a 429)."""
        limits = await self.limits()
        if any(max_depth_of(limits, queue) for queue in run_queues(plan)):
            await self._store(check_queue_room, self.store, plan, limits=limits)

    # ------------------------------------------------------------------ workers

    async def register(self, hello: wire.WorkerHello) -> wire.WorkerRegistered:
        now = self._clock()
        record = WorkerRecord(
            worker_id=hello.worker_id,
            host=hello.host,
            pid=hello.pid,
            version=hello.version,
            capabilities=list(hello.capabilities),
            labels=dict(hello.labels),
            queues=list(hello.queues),
            slots=hello.slots,
            state="running",
            started_at=now,
            heartbeat_at=now,
        )
        await self._store(self.store.register_worker, record)
        return wire.WorkerRegistered(worker_id=hello.worker_id, registered_at=iso(now) or "")

    async def heartbeat(self, beat: wire.WorkerHeartbeat) -> wire.HeldTasks:
        tasks = tuple(beat.tasks) if beat.tasks is not None else None
        said = WorkerBeat(beat.worker_id, beat.state, beat.running, beat.done, beat.failed, tasks)
        held = await self._store(self.store.heartbeat_worker, said, self._clock(), beat.lease_s)
        return wire.HeldTasks(held=held)

    async def claim(self, ask: wire.ClaimTasks) -> wire.ClaimedTasks:
        if ask.request_id:
            key = (ask.worker_id, ask.request_id)
            tasks = await self._claims.once(key, lambda: self._claim(ask))
        else:
            tasks = await self._claim(ask)
        return wire.ClaimedTasks(tasks=[_task_view(task) for task in tasks])

    async def _claim(self, ask: wire.ClaimTasks) -> list[ClaimedTask]:
        limit = max_running_of(await self.limits(), ask.queue)
        max_running = _tighter(limit, ask.max_running)
        return await self._store(
            self.store.claim,
            ask.worker_id,
            self._clock(),
            ask.lease_s,
            ask.limit,
            ask.queue,
            offers=frozenset(ask.offers),
            max_claims=ask.max_claims,
            max_running=max_running,
        )

    async def complete(self, ask: wire.CompleteTask) -> wire.TaskCompleted:
        key = (ask.task_id, ask.fencing_token)
        counted = await self._results.once(
            key,
            lambda: self._store(
                self.store.complete, ask.task_id, ask.fencing_token, ask.result, self._clock()
            ),
        )
        return wire.TaskCompleted(task_id=ask.task_id, counted=counted)

    async def complete_batch(self, ask: wire.CompleteTasks) -> wire.TasksCompleted:
        """Record several results and their output in one transaction."""
        results = [FencedResult(r.task_id, r.fencing_token, r.result) for r in ask.results]
        lines = _log_lines(ask.output)

        async def record() -> list[bool]:
            reported = await self._store(self.store.complete_many, results, self._clock(), lines)
            return list(reported.counted)

        counted = await self._batches.once(ask.request_id, record)
        return wire.TasksCompleted(
            completed=[
                wire.TaskCompleted(task_id=result.task_id, counted=was)
                for result, was in zip(ask.results, counted, strict=True)
            ]
        )

    async def append_logs(self, ask: wire.TaskLogs) -> wire.LogsAppended:
        lines = _log_lines(ask.lines)

        async def append() -> int:
            await self._store(self.store.append_logs, lines)
            return len(lines)

        appended = await (self._logs.once(ask.request_id, append) if ask.request_id else append())
        return wire.LogsAppended(appended=appended)

    # ------------------------------------------------------------------ gauges

    def observe(self, metrics: Metrics) -> None:
        """Set the task-queue and worker gauges from the store (blocking: call it on a
        thread, as the ``/metrics`` route does)."""
        now = self._clock()
        try:
            stats = self.store.queue_stats()
            records = self.store.list_workers()
        except WayangError as exc:  # the store is away: the gauges keep what they said
            log.warning("cannot read the task queues and workers for the metrics: %s", exc)
            return
        levels = [
            TaskQueueLevel(
                s.queue,
                s.queued,
                s.running,
                max(0.0, now - s.oldest_at) if s.oldest_at is not None else 0.0,
            )
            for s in stats
        ]
        by_state = dict.fromkeys(WORKER_STATES, 0)
        for record in records:
            state = worker_state(record, now)
            by_state[state] = by_state.get(state, 0) + 1
        with self._gauges:
            metrics.set_task_queues(levels)
            metrics.set_workers(by_state)


def _log_lines(lines: list[wire.TaskLogLine]) -> list[LogLine]:
    return [
        LogLine(
            line.run_id, line.step_id, line.attempt, line.stream, line.line, line.at.timestamp()
        )
        for line in lines
    ]


def _tighter(limit: int | None, asked: int | None) -> int | None:
    """The stricter of two ``max_running`` limits (None: no limit)."""
    if limit is None:
        return asked
    return limit if asked is None else min(limit, asked)


def _task_view(task: ClaimedTask) -> wire.ClaimedTaskView:
    return wire.ClaimedTaskView(
        task_id=task.task_id,
        run_id=task.run_id,
        step_id=task.step_id,
        attempt=task.attempt,
        idempotency_key=task.idempotency_key,
        payload=task.payload,
        fencing_token=task.fencing_token,
        lease_expires_at=iso(task.lease_expires_at) or "",
        tenant=task.tenant,
    )


__all__ = ["Fleet", "Remembered"]
