"""``wayang worker``: a process that claims tasks from the store and runs them (DESIGN.md §5).

A worker registers itself (id, host, capabilities, labels, slots, queues, version) and then loops:
it claims as many tasks as it has free slots, only from its queues and only tasks whose needs it
offers (``runs_on``), runs each on the local executors, and records the result with the task's
fencing token. A heartbeat renews its leases and tells it which tasks it still holds: a task
taken from it (the run was cancelled, or the lease lapsed and another worker has it) is stopped.
A completion the store refuses (a stale token) is dropped: the first completion recorded wins.

Every claim and every result is a transaction, so the loop spends them with care. Results go to
the store in batches (:meth:`~wayang.store.port.Store.complete_many`): the results that end while
a batch is on its way go together in the next, a result waits a moment (``report_gather_s``) for
others still running, and the batch's transaction also claims the tasks that take the slots it
frees. The claim loop itself claims only when a slot is free and no result is on its way. On a
store that sends wake-ups (PostgreSQL's LISTEN/NOTIFY) an idle worker claims as soon as a task is
queued for it, and asks unprompted only every ``wakeup_poll_s``. Without them (SQLite, or while
the server restarts) an empty queue is asked again soon after the worker last had work (a step's
successor usually follows its result), then less and less often, down to ``idle_poll_s``.

The worker talks to the store through a :class:`WorkerLink`: the store itself, or a server over
HTTP for hosts that must not reach the database (``wayang worker --server URL``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from wayang import __version__
from wayang.executors.base import Executor, TaskResult
from wayang.model.placement import LOCAL_CAPABILITIES, offer_tokens
from wayang.runtime.outage import RETRY_MAX_S, Outage
from wayang.runtime.owner import new_owner_id
from wayang.runtime.queues import QUEUE_LIMITS
from wayang.runtime.records import result_record
from wayang.runtime.slots import Slots
from wayang.runtime.tasks import finished_message, task_spec, workspace_for
from wayang.store.port import (
    DEFAULT_MAX_CLAIMS,
    ClaimedTask,
    ClaimRequest,
    FencedResult,
    LogLine,
    Reported,
    Store,
    Wakeable,
    Wakeups,
    WorkerBeat,
    WorkerRecord,
    task_wakeup,
)

log = logging.getLogger("wayang.worker")


class WorkerLink(Protocol):
    """What a worker needs from the store (or from a server standing in for it)."""

    def register_worker(self, worker: WorkerRecord) -> None: ...
    def heartbeat_worker(self, beat: WorkerBeat, now: float, lease_s: float) -> list[str]: ...
    def claim(
        self,
        owner: str,
        now: float,
        lease_s: float,
        limit: int = 1,
        queue: str = "default",
        *,
        offers: Collection[str] | None = None,
        max_claims: int = DEFAULT_MAX_CLAIMS,
        max_running: int | None = None,
    ) -> list[ClaimedTask]: ...
    def complete_many(
        self,
        results: Sequence[FencedResult],
        now: float,
        logs: Sequence[LogLine] = (),
        *,
        then_claim: ClaimRequest | None = None,
    ) -> Reported: ...
    def kv_scan(self, namespace: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker offers and how it keeps time. ``slots``: tasks it runs at once."""

    capabilities: tuple[str, ...] = LOCAL_CAPABILITIES
    labels: Mapping[str, str] = field(default_factory=dict)
    slots: int = field(default_factory=lambda: os.cpu_count() or 1)
    queues: tuple[str, ...] = ("default",)
    worker_id: str = ""
    cwd: str = field(default_factory=os.getcwd)
    lease_s: float = 15.0
    heartbeat_every_s: float = 3.0
    idle_poll_s: float = 0.2
    # With wake-ups from the store, an idle worker still asks this often (a wake-up may be lost).
    wakeup_poll_s: float = 2.0
    # The first pause after work; each empty claim doubles it, up to idle_poll_s.
    busy_poll_s: float = 0.005
    drain_s: float = 30.0
    max_claims: int = DEFAULT_MAX_CLAIMS
    # A result waits this long for others that are ending too (so they share a transaction).
    report_gather_s: float = 0.001
    # Store calls at once (results, claims, heartbeats): keep within the store's pool.
    store_calls: int = 4

    def offers(self) -> frozenset[str]:
        return offer_tokens(self.capabilities, self.labels)


@dataclass(eq=False)
class _Running:
    task: ClaimedTask
    job: asyncio.Task[None]
    logs: list[LogLine] = field(default_factory=list)
    reporting: bool = False
    """The step ended and its result is on its way: stopping the job would only lose count."""


@dataclass(eq=False)
class _Report:
    """A finished task's result, waiting in the outbox for the next batch to the store."""

    running: _Running
    result: TaskResult
    record: FencedResult
    sent: asyncio.Future[bool | None]
    """The store's answer: counted or refused; None when the store could not be reached."""


@dataclass
class WorkerCounts:
    done: int = 0
    failed: int = 0
    refused: int = 0
    """Completions the store refused: the task had been taken from this worker."""


class Worker:
    """Runs tasks for the fleet; see the module docstring. ``await worker.run(stop)``."""

    def __init__(
        self,
        link: WorkerLink,
        executor: Executor,
        settings: WorkerSettings,
        *,
        clock: Callable[[], float] = time.time,
        on_task: Callable[[ClaimedTask, TaskResult, bool], None] | None = None,
        slots: Slots | None = None,
    ) -> None:
        """``on_task(task, result, counted)`` hears of every task this worker finishes;
        ``slots``: its ``settings.slots``, shared with its driver's steps (slots.py)."""
        self.link = link
        self.settings = settings
        self.worker_id = settings.worker_id or new_owner_id()
        self.counts = WorkerCounts()
        self._executor = executor
        self._clock = clock
        self._on_task = on_task
        self._offers = settings.offers()
        self._running: dict[str, _Running] = {}
        self._reporting = 0  # tasks whose results are on their way to the store
        self._outbox: list[_Report] = []
        self._posted = asyncio.Event()  # a result joined the outbox
        self._claiming = asyncio.Lock()  # one claim at a time: the claim loop's or a report's
        self._dry = False  # the last claim found fewer tasks than it asked for
        self._turn = 0  # the queue a report claims from next, for workers of several queues
        self._stop = asyncio.Event()
        self._finished = 0  # tasks finished so far (a change means recent work)
        self._limits: dict[str, Any] = {}
        self._io = ThreadPoolExecutor(
            max(2, settings.store_calls), thread_name_prefix="wayang-worker-io"
        )
        self._state = "running"
        self._freed = asyncio.Event()
        # Shared with the steps of the worker's driver, if it has one (slots.py).
        self.slots = slots or Slots(settings.slots)
        self.slots.claimed = lambda: len(self._running)
        self.slots.on_freed(self._freed.set)
        self._wakeups: Wakeups | None = None
        self._claims = Outage(log, "claiming tasks", cap=min(RETRY_MAX_S, settings.lease_s / 3))

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io, lambda: fn(*args, **kwargs))

    # ------------------------------------------------------------------ lifetime

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then drain: finish what runs within ``drain_s``."""
        self._stop = stop
        await self._register()
        if isinstance(self.link, Wakeable):
            self._wakeups = self.link.wakeups({task_wakeup(q) for q in self.settings.queues})
        beats = asyncio.create_task(self._heartbeats(), name="wayang-worker-heartbeat")
        reporter = asyncio.create_task(self._reporter(), name="wayang-worker-reporter")
        try:
            await self._claim_loop(stop)
            self._state = "draining"
            await self._drain()
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
            if self._wakeups is not None:
                await asyncio.to_thread(self._wakeups.close)
            beats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beats
            self._state = "stopped"
            with contextlib.suppress(Exception):
                await self._beat()
            self._io.shutdown(wait=False)

    async def _register(self) -> None:
        settings, now = self.settings, self._clock()
        record = WorkerRecord(
            worker_id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=__version__,
            capabilities=list(settings.capabilities),
            labels=dict(settings.labels),
            queues=list(settings.queues),
            slots=settings.slots,
            state="running",
            started_at=now,
            heartbeat_at=now,
        )
        await self._call(self.link.register_worker, record)
        self._limits = await self._call(self.link.kv_scan, QUEUE_LIMITS)

    async def _drain(self) -> None:
        jobs = [running.job for running in self._running.values()]
        if not jobs:
            return
        log.info("draining: %d task(s) still run, up to %gs", len(jobs), self.settings.drain_s)
        _, late = await asyncio.wait(jobs, timeout=self.settings.drain_s)
        for job in late:  # handed back: their leases lapse and another worker takes them
            job.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    # ------------------------------------------------------------------ claiming

    async def _claim_loop(self, stop: asyncio.Event) -> None:
        settings = self.settings
        pause = settings.busy_poll_s
        while not stop.is_set():
            await self._until_worth_claiming(stop)
            if stop.is_set():
                break
            if not self._dry:  # a report's claim may just have found the queues empty
                async with self._claiming:
                    got = await self._claim_free(stop)
                if got:
                    pause = settings.busy_poll_s
                if not self._dry:
                    continue  # every slot asked for was filled: more may wait
            # The queues ran dry. With wake-ups the store says when a task is queued; without,
            # ask again soon after the last work (a successor follows), then less often.
            finished = self._finished
            await self._idle(stop, settings.wakeup_poll_s if self._listening() else pause)
            self._dry = False
            active = self._finished != finished
            pause = settings.busy_poll_s if active else min(pause * 2, settings.idle_poll_s)

    async def _claim_free(self, stop: asyncio.Event) -> int:
        """Claim for every free slot, queue by queue; how many it got (``_dry`` says whether
        that was fewer than it asked for)."""
        asked = got = 0
        for queue in self.settings.queues:
            free = self.slots.free()
            if free <= 0 or stop.is_set():
                break
            tasks = await self._claim(queue, free)
            asked, got = asked + free, got + len(tasks)
            for task in tasks:
                self._start(task)
        self._dry = got < asked
        return got

    async def _until_worth_claiming(self, stop: asyncio.Event) -> None:
        """Wait until a slot is free and no result is on its way to the store: a result's
        report claims for the slots it frees (and those free already), in its transaction."""
        while not stop.is_set():
            if self.slots.free() > 0 and not self._reporting:
                return
            self._freed.clear()
            await _first_of(stop.wait(), self._freed.wait())

    def _listening(self) -> bool:
        """Whether the store wakes this worker when a task is queued for it."""
        return self._wakeups is not None and self._wakeups.listening

    async def _idle(self, stop: asyncio.Event, seconds: float) -> None:
        """Wait ``seconds``, or until stopped, or woken by the store: a task was queued (or
        wake-ups started or stopped coming, which changes how long to wait)."""
        wakeups = self._wakeups
        if wakeups is not None:
            await _first_of(stop.wait(), wakeups.until(seconds))
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await stop.wait()

    def _claim_request(self, queue: str, free: int) -> ClaimRequest:
        max_running = (self._limits.get(queue) or {}).get("max_running")
        return ClaimRequest(
            self.worker_id,
            self.settings.lease_s,
            free,
            queue,
            self._offers,
            self.settings.max_claims,
            int(max_running) if max_running is not None else None,
        )

    async def _claim(self, queue: str, free: int) -> list[ClaimedTask]:
        ask = self._claim_request(queue, free)
        try:
            found: list[ClaimedTask] = await self._call(
                self.link.claim,
                ask.owner,
                self._clock(),
                ask.lease_s,
                ask.limit,
                ask.queue,
                offers=ask.offers,
                max_claims=ask.max_claims,
                max_running=ask.max_running,
            )
        except Exception as exc:  # the store is away: say so once, try again with backoff
            await asyncio.sleep(self._claims.failed(exc))
            return []
        self._claims.recovered()
        return found

    def _start(self, task: ClaimedTask) -> None:
        job = asyncio.get_running_loop().create_task(self._execute(task))
        self._running[task.task_id] = _Running(task, job)

    # ------------------------------------------------------------------ running

    async def _execute(self, task: ClaimedTask) -> None:
        running = self._running[task.task_id]
        kind = str(task.payload.get("workspace") or "inherit")
        cwd, scratch = workspace_for(self.settings.cwd, kind)
        spec = task_spec(task.run_id, task, cwd)
        started = self._clock()

        def sink(stream: str, line: str) -> None:
            record = LogLine(task.run_id, task.step_id, task.attempt, stream, line, self._clock())
            running.logs.append(record)

        try:
            result = await self._executor.execute(spec, sink)
        except asyncio.CancelledError:
            self._running.pop(task.task_id, None)
            self.slots.wake()
            raise
        except Exception as exc:  # an executor bug: the attempt fails, the worker goes on
            result = TaskResult.failed(f"the executor failed: {exc!r}", self._clock() - started)
        finally:
            if scratch:
                shutil.rmtree(cwd, ignore_errors=True)
        self._reporting += 1
        running.reporting = True
        try:
            await self._report(running, result, started)
        finally:
            self._reporting -= 1
            self._finished += 1
            self._running.pop(task.task_id, None)
            self.slots.wake()

    async def _report(self, running: _Running, result: TaskResult, started: float) -> None:
        """Put the result in the outbox and wait for the store's answer."""
        task = running.task
        record = FencedResult(
            task.task_id, task.fencing_token, result_record(finished_message(task, result, started))
        )
        sent: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
        self._outbox.append(_Report(running, result, record, sent))
        self._posted.set()
        counted = await asyncio.shield(sent)  # a drain that gives up still lets it be sent
        if counted is None:
            return
        if not counted:
            self.counts.refused += 1
            log.warning(
                "the result of %s was refused: the task was taken from this worker", task.task_id
            )
        elif result.status == "succeeded":
            self.counts.done += 1
        else:
            self.counts.failed += 1
        if self._on_task is not None:
            self._on_task(task, result, counted)

    async def _reporter(self) -> None:
        """Send the outbox to the store, all of it in one transaction each time: the results
        that end while one batch is on its way go together in the next (a group commit)."""
        gather = self.settings.report_gather_s
        while True:
            await self._posted.wait()
            if gather and len(self._running) > self._reporting:
                await asyncio.sleep(gather)  # others end too: let them join this batch
            self._posted.clear()
            batch, self._outbox = self._outbox, []
            if batch:
                await self._send(batch)

    async def _send(self, batch: list[_Report]) -> None:
        """Record ``batch`` and claim for the slots it frees (and those free already) in the
        same transaction; not when stopping, when the claim loop is claiming, or when the last
        claim found the queues empty (the claim loop waits for news of a task first)."""
        claiming = not (self._stop.is_set() or self._claiming.locked() or self._dry)
        free = self.slots.free() + len(batch) - self.slots.waiting  # the driver's steps first
        if not claiming or free <= 0:
            await self._record(batch, None)
            return
        async with self._claiming:
            queues = self.settings.queues
            self._turn = (self._turn + 1) % len(queues)
            await self._record(batch, self._claim_request(queues[self._turn], free))

    async def _record(self, batch: list[_Report], ask: ClaimRequest | None) -> None:
        logs = [line for report in batch for line in report.running.logs]
        results = [report.record for report in batch]
        now = self._clock()
        answers: Sequence[bool | None]
        try:
            reported: Reported = await self._retrying(
                lambda: self.link.complete_many(results, now, logs, then_claim=ask)
            )
        except Exception as exc:  # given up: their leases lapse and other workers run them
            log.error("could not record %d result(s): %s", len(batch), exc)
            answers, claimed = [None] * len(batch), []
        else:
            answers, claimed = reported.counted, reported.claimed
            if ask is not None:
                self._dry = len(claimed) < ask.limit
        for report, answer in zip(batch, answers, strict=True):
            self._running.pop(report.running.task.task_id, None)  # its slot is the claim's
            if not report.sent.done():
                report.sent.set_result(answer)
        for task in claimed:
            self._start(task)
        self.slots.wake()

    async def _retrying(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call the store until it answers: a result is not given up while the lease may hold
        (once it lapsed, the store refuses the result anyway)."""
        delay = 0.1
        deadline = self._clock() + self.settings.lease_s * 2
        while True:
            try:
                return await self._call(fn, *args)
            except Exception as exc:
                if self._clock() > deadline:
                    raise
                log.warning("the store did not answer (%s); trying again in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    # ------------------------------------------------------------------ heartbeats

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_every_s)
            before = set(self._running)  # a task claimed meanwhile is not judged by this beat
            try:
                held = set(await self._beat())
                self._limits = await self._call(self.link.kv_scan, QUEUE_LIMITS)
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
                continue
            for task_id in before - held:
                running = self._running.get(task_id)
                if running is not None and not running.reporting and not running.job.done():
                    log.info("%s was taken from this worker; stopping it", task_id)
                    running.job.cancel()

    async def _beat(self) -> list[str]:
        beat = WorkerBeat(
            self.worker_id,
            self._state,
            len(self._running) + self.slots.driven,  # its driver's steps hold slots too
            self.counts.done,
            self.counts.failed,
            tuple(self._running),
        )
        found: list[str] = await self._call(
            self.link.heartbeat_worker, beat, self._clock(), self.settings.lease_s
        )
        return found


async def _first_of(*waits: Any) -> None:
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def store_link(store: Store) -> WorkerLink:
    """The store itself, as a worker's link."""
    return store
