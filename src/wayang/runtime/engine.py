"""The engine runtime: the shell around the pure core (DESIGN.md §4).

One asyncio loop drives many runs. For each run it keeps the state folded from the run's history
and the plan the run is pinned to; every input (a task finished, a timer fired, a cancel) goes
through :func:`~wayang.engine.decide.decide`, and the decision's events and the tasks and timers
it creates are appended in one transaction (:class:`~wayang.runtime.committer.Committer`).

Tasks run in this process, on the local executors. A task is written to the store already leased
to this engine, so nobody else claims it while the lease is renewed; the engine starts it at once,
before its append is durable, and records its result with the next commit. A crash loses at most
results that were not yet durable: those steps run again, with the same idempotency key, when
another engine adopts the run (:meth:`Engine.adopt`). Nothing is reported (observers, the futures
of :meth:`Engine.wait`) before it is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wayang.engine import events as ev
from wayang.engine.decide import decide, start_run
from wayang.engine.messages import (
    AnswerSignal,
    CancelChildRun,
    CancelRun,
    CancelTimer,
    DeadLetter,
    Decision,
    DispatchTask,
    Input,
    NoteWorkspace,
    PublishMessage,
    StartChildRun,
    StartTimer,
    StopTask,
    TaskFinished,
    TimerFired,
    Wake,
)
from wayang.engine.runplan import RunPlan
from wayang.engine.state import ACTIVE_STEP, RunState, RunStatus, fold
from wayang.errors import WayangError
from wayang.executors.base import Executor, TaskResult, TaskSpec
from wayang.model.placement import LOCAL_CAPABILITIES, offer_tokens
from wayang.policy import gate_for
from wayang.runtime.committer import Committer, Pending
from wayang.runtime.hand_off import Definitions, HandOffs, can_hand_off
from wayang.runtime.lost_runs import LostRuns
from wayang.runtime.names import CANCEL_REQUESTS, RunBusyError, RunLostError, RunNotFoundError
from wayang.runtime.outage import Outage
from wayang.runtime.owner import new_owner_id, owner_is_gone
from wayang.runtime.records import finished_from_record, read_events, to_new_event
from wayang.runtime.remote import RemoteTasks
from wayang.runtime.slots import Slots
from wayang.runtime.spill import Spill, StepSpilled
from wayang.runtime.tasks import finished_message, task_spec, workspace_for
from wayang.runtime.waits import WaitWatcher
from wayang.runtime.workspaces import RunFolder, RunWorkspaces
from wayang.store.port import (
    DEFAULT_MAX_CLAIMS,
    DEFAULT_TENANT,
    DRIVER_SUFFIX,
    HANDED_OFF,
    Append,
    ClaimedTask,
    LogLine,
    NewTask,
    NewTopicMessage,
    RunRecord,
    SignalAnswer,
    Store,
    TakenRun,
    Timer,
    Wakeups,
    completion_wakeup,
    runs_wakeup,
)
from wayang.store.port import DeadLetter as DeadLetterRecord
from wayang.workspace.artifacts import ArtifactDeclaration
from wayang.workspace.manager import WorkspaceEvent

_TERMINAL_EVENTS = (ev.RunSucceeded, ev.RunFailed, ev.RunCancelled)

log = logging.getLogger("wayang.engine")


@dataclass(frozen=True)
class EngineSettings:
    """Timings of one engine. ``lease_s`` is how long a silent engine keeps its runs."""

    lease_s: float = 15.0
    renew_every_s: float = 3.0
    poll_every_s: float = 0.2
    adopt_orphans: bool = False
    # Which tasks the engine runs itself: those needing no more than it offers, if it runs
    # tasks at all; the rest wait in their queue for a worker (runtime/remote.py).
    run_tasks: bool = True
    offers: frozenset[str] = offer_tokens(LOCAL_CAPABILITIES, {})
    # How long past a worker's task's timeout the engine waits for its result.
    remote_grace_s: float = 30.0
    max_claims: int = DEFAULT_MAX_CLAIMS
    # Record the runs this engine starts and leave them to drivers (runtime/hand_off.py); a
    # run with a workspace or artifacts it drives itself.
    hand_off: bool = False
    # Be a driver: take and drive runs handed off (``wayang worker --drive``), up to
    # ``drive_runs`` at once (the rest are left to other drivers). 128 beat 32 through 1, 2
    # and 4 drivers (docs/performance.md, session 11).
    drive: bool = False
    drive_runs: int = 128
    # Where the tasks of runs without a workspace work, instead of the folder each run was
    # started in (a driver's: the run may have started on another host).
    work_in: str | None = None
    # A driver's: its steps that its slots would not start within this long go to the queue
    # for other workers (0: they wait), if a queue of ``worker_queues`` (runtime/spill.py).
    spill_after_s: float = 0.0
    worker_queues: tuple[str, ...] = ("default",)


@dataclass(eq=False)
class _LiveRun:
    """A run this engine drives: its plan, its state (ahead of the store) and what runs for it."""

    plan: RunPlan
    state: RunState
    tenant: str
    cwd: str
    done: asyncio.Future[RunState]
    handed_off: bool = False  # recorded for a driver; this engine only waits for its end
    # Who waits for the run's end elsewhere (the engine that handed it off), woken by it.
    waiter: str | None = None
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    lost: bool = False
    # Waits: signals handed to the core but not yet answered durably, and per topic the last
    # message offered to the run's event waits (reset when a new wait starts: it sees all).
    fed_signals: set[int] = field(default_factory=set)
    cursors: dict[str, int] = field(default_factory=dict)
    folder: RunFolder | None = None  # where its tasks work, once known (its workspace made)

    @property
    def run_id(self) -> str:
        return self.state.run_id


EventObserver = Callable[[str, Sequence[ev.Event]], None]
LogObserver = Callable[[LogLine], None]


class Engine:
    """Drives runs against ``store``, running their tasks on ``executor``.

    Use as ``async with Engine(...) as engine``; leaving the block stops the engine: runs still
    going are left to be adopted later (their leases are released), nothing durable is lost.
    """

    def __init__(
        self,
        store: Store,
        executor: Executor,
        *,
        settings: EngineSettings | None = None,
        clock: Callable[[], float] = time.time,
        on_events: EventObserver | None = None,
        on_log: LogObserver | None = None,
        on_orphan: Callable[[str], None] | None = None,
        workspaces: RunWorkspaces | None = None,
        slots: Slots | None = None,
        owner: str | None = None,
    ) -> None:
        """``on_orphan(run_id)`` hears of each run taken over because its lease lapsed;
        ``workspaces`` makes and closes runs' own workspaces (none: runs work in place);
        ``slots``: a driver's steps each hold one of its worker's slots while they run;
        ``owner``: the id it leases runs under (a driver's ends in ``DRIVER_SUFFIX``)."""
        self.store = store
        self.settings = settings or EngineSettings()
        drives = DRIVER_SUFFIX if self.settings.drive else ""
        self.owner = owner or new_owner_id() + drives
        if not self.owner.endswith(drives):
            raise ValueError(f"a driver's owner id ends in {DRIVER_SUFFIX!r}: {self.owner!r}")
        self._on_orphan = on_orphan
        self._executor = executor
        self._clock = clock
        self._on_events = on_events
        self._on_log = on_log
        self._workspaces = workspaces or RunWorkspaces()
        self._spill = Spill(self, slots, self.settings.spill_after_s, self.settings.worker_queues)
        self._finishing: set[asyncio.Task[None]] = set()  # runs ended, their workspace closing
        self._runs: dict[str, _LiveRun] = {}
        self._waits = WaitWatcher(self)
        self._remote = RemoteTasks(
            self, grace_s=self.settings.remote_grace_s, max_claims=self.settings.max_claims
        )
        self._lost_runs = LostRuns(self)
        self._hand_offs = HandOffs(self)
        self._definitions = Definitions()
        self._committer: Committer | None = None
        self._wakeups: Wakeups | None = None
        self._background: list[asyncio.Task[None]] = []
        self._stopping: set[asyncio.Task[None]] = set()  # tasks of dropped runs, ending
        self._closing = False
        self._draining = False  # starts no more tasks (drain)

    # ------------------------------------------------------------------ lifetime

    async def __aenter__(self) -> Engine:
        self._committer = Committer(
            self.store,
            self._clock,
            self._durable,
            self._lost,
            closing_grace_s=self.settings.lease_s,
        )
        # Woken when a worker records a result for one of this engine's runs (PostgreSQL), and
        # a driver when a run is handed off.
        kinds = {completion_wakeup(self.owner)}
        if self.settings.drive:
            kinds.add(runs_wakeup())
        self._wakeups = self.store.wakeups(kinds)
        self._background = [
            asyncio.create_task(self._committer.run(), name="wayang-committer"),
            asyncio.create_task(self._renew_leases(), name="wayang-leases"),
            asyncio.create_task(self._poll(), name="wayang-poll"),
        ]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop running tasks (unrecorded: they run again after adoption), flush, hand back."""
        if self._closing:
            return
        self._closing = True
        running = [task for live in self._runs.values() for task in live.tasks.values()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, *self._stopping, return_exceptions=True)
        await asyncio.gather(*self._finishing, return_exceptions=True)
        await self._lost_runs.close()
        self._hand_offs.close()
        self._spill.close()
        committer = self._require_committer()
        committer.close()
        committer_task, *others = self._background
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        if self._wakeups is not None:  # joins the listening thread: off the loop
            await asyncio.to_thread(self._wakeups.close)
        with contextlib.suppress(Exception):
            await committer_task
        for live in list(self._runs.values()):
            self._drop(live, RunLostError(f"the engine stopped before run {live.run_id} ended"))
            with contextlib.suppress(Exception):
                await committer.call(self.store.release_run, live.run_id, self.owner)
        committer.shutdown()

    async def drain(self, timeout_s: float) -> None:
        """Before :meth:`close`: start no more tasks or runs, and let the tasks running here
        finish for up to ``timeout_s`` seconds, their results recorded. What they would start
        next is left to whoever adopts the run (a driver stopping: hand_off.py)."""
        self._draining = True
        running = [task for live in self._runs.values() for task in live.tasks.values()]
        if running:
            await asyncio.wait(running, timeout=timeout_s)
        with contextlib.suppress(Exception):  # the store away: close() hands back what it can
            await self._require_committer().flush()

    def _require_committer(self) -> Committer:
        if self._committer is None:
            raise RuntimeError("use the engine inside 'async with'")
        return self._committer

    # ------------------------------------------------------------------ starting runs

    def start(
        self,
        plan: RunPlan,
        started: ev.RunStarted,
        run_id: str,
        *,
        tenant: str = DEFAULT_TENANT,
        reuse: Mapping[str, dict[str, Any]] | None = None,
    ) -> asyncio.Future[RunState]:
        """Start a run; the future resolves with its final state once that state is durable.

        The run's row, its first events and its first tasks join the next group commit; its
        first steps start at once.
        """
        committer = self._require_committer()
        if committer.failure is not None:
            raise committer.failure
        now = self._clock()
        state = RunState(run_id)
        decision = start_run(plan, state, started, reuse)
        if self.settings.hand_off and can_hand_off(plan, started, decision):
            done = asyncio.get_running_loop().create_future()
            live = _LiveRun(plan, state, tenant, started.cwd, done, handed_off=True)
            self._hand_offs.handed_off(live)
            owner, lease_expires_at = HANDED_OFF, None
        else:
            live = self._track(plan, state, tenant, started.cwd)
            owner, lease_expires_at = self.owner, now + self.settings.lease_s
        record = RunRecord(
            run_id=run_id,
            workflow_id=plan.workflow.id,
            status=RunStatus.PENDING.value,
            created_at=now,
            updated_at=now,
            spec=self._spec(started, handed_off=owner == HANDED_OFF),
            tenant=tenant,
            owner=owner,
            lease_expires_at=lease_expires_at,
        )
        self._carry_out(live, 0, RunStatus.PENDING, decision, create=record)
        return live.done

    def _spec(self, started: ev.RunStarted, *, handed_off: bool) -> dict[str, Any]:
        """The run's ``spec``; a handed-off run's names this engine, which its driver wakes
        when the run ends (hand_off.py)."""
        spec: dict[str, Any] = {"version": started.workflow_version, "filename": started.filename}
        if handed_off:
            spec["handed_off_by"] = self.owner
        return spec

    def _track(
        self,
        plan: RunPlan,
        state: RunState,
        tenant: str,
        cwd: str,
        done: asyncio.Future[RunState] | None = None,
    ) -> _LiveRun:
        """Drive ``state`` from now on; ``done`` is the future of a run taken up again."""
        done = done or asyncio.get_running_loop().create_future()
        live = _LiveRun(plan, state, tenant, cwd or str(Path.cwd()), done)
        self._runs[state.run_id] = live
        return live

    # ------------------------------------------------------------------ adopting runs

    async def adopt(
        self, run_id: str, *, tenant: str = DEFAULT_TENANT, cancel: str | None = None
    ) -> asyncio.Future[RunState]:
        """Take over an unfinished run from the store and drive it to its end.

        Steps recorded as succeeded never run again; an attempt that was in flight runs again
        with the same idempotency key. With ``cancel`` the run is cancelled instead: its
        in-flight attempts are recorded cancelled without running. A finished run resolves at
        once. Raises :class:`RunBusyError` if a live engine holds the run.
        """
        committer = self._require_committer()
        live = self._runs.get(run_id)
        if live is not None:
            if cancel is not None:
                self.cancel(run_id, cancel)
            return live.done
        record = await committer.call(self.store.get_run, run_id, tenant)
        if record is None:
            raise RunNotFoundError(f"no run {run_id!r} in this store; 'wayang runs' lists runs")
        history = read_events(await committer.call(self.store.load_history, run_id))
        state = fold(run_id, history)
        if state.finished or state.started is None:
            return _resolved(state)
        await self._take_lease(record)
        live = self._track_adopted(state, record)
        await self._resume(live, cancel)
        return live.done

    async def drive(self, taken: TakenRun) -> None:
        """Drive a run this driver took, from what was read with it (runtime/hand_off.py).
        A run it cannot take up is let go: its lease is released (the run goes back to the
        drivers) rather than renewed with nobody driving it."""
        state = fold(taken.record.run_id, read_events(taken.history))
        if state.finished or state.started is None:
            return
        live = self._track_adopted(state, taken.record)
        try:
            await self._resume(live, None, taken)
        except Exception as exc:  # the store away mid-way, or a bug: another driver tries
            log.warning(
                "could not take up run %s (%s); it goes back to the drivers", live.run_id, exc
            )
            self._drop(live, None)
            self._lost_runs.let_go(live.run_id)

    def _track_adopted(self, state: RunState, record: RunRecord) -> _LiveRun:
        started = state.started
        assert started is not None
        plan = self._definitions.plan(started, gate_for)
        live = self._track(plan, state, record.tenant, self.settings.work_in or started.cwd)
        live.waiter = record.spec.get("handed_off_by")
        return live

    async def _take_lease(self, record: RunRecord) -> None:
        committer = self._require_committer()
        now = self._clock()
        lease_s = self.settings.lease_s
        if await committer.call(self.store.lease_run, record.run_id, self.owner, now, lease_s):
            return
        if owner_is_gone(record.owner) and await committer.call(
            self.store.steal_run, record.run_id, self.owner, record.owner, now, lease_s
        ):
            return
        until = time.strftime("%H:%M:%S", time.localtime(record.lease_expires_at or now))
        raise RunBusyError(
            f"run {record.run_id} is being driven by {record.owner} (lease until {until}); "
            "wait for it, or cancel it with 'wayang cancel'"
        )

    async def _resume(
        self, live: _LiveRun, cancel: str | None, taken: TakenRun | None = None
    ) -> None:
        """Carry on with an adopted run; ``taken``: what was read with it already."""
        committer = self._require_committer()
        now, run_id = self._clock(), live.run_id
        if taken is None:
            completions = await committer.call(self.store.completions, run_id)
            claimed = await committer.call(
                self.store.adopt_tasks, run_id, self.owner, now, self.settings.lease_s
            )
        else:
            completions, claimed = taken.completions, taken.tasks
        # Tasks neither finished nor adopted are with workers: wait for their results.
        finished = {completion.task_id for completion in completions}
        self._remote.adopted(live, {task.task_id for task in claimed}, finished)
        for completion in completions:
            message = finished_from_record(
                completion.step_id, completion.attempt, completion.result
            )
            self._feed(live, message, acknowledge=completion.task_id)
        timers = taken.timers if taken else await committer.call(self.store.run_timers, run_id)
        overdue = [timer.due_at for timer in timers if timer.due_at <= now]
        arrived = None
        if overdue and cancel is None:
            arrived = await self._waits.arrived(live, min(overdue))
        for timer in timers:
            self._arm(live, timer)
        if arrived is not None:
            # Votes and events that reached the waits while nobody drove the run, before a
            # deadline that passed meanwhile, go in first: the overdue timers armed above
            # fire only once this returns to the loop.
            self._waits.take(live, arrived)
        if cancel is not None:
            self._feed(live, CancelRun(cancel))
        else:
            await self._waits.resume(live)
        # A run whose cancel is already recorded does not run its in-flight attempts again.
        stopping = live.state.cancel_requested
        for task in claimed:
            self._resume_task(live, task, running=not stopping)
        self._feed(live, Wake())

    def _resume_task(self, live: _LiveRun, task: ClaimedTask, running: bool) -> None:
        step = live.state.steps.get(task.step_id)
        current = step is not None and step.status in ACTIVE_STEP and step.attempt == task.attempt
        if current and running:
            command = DispatchTask(
                task.task_id, task.step_id, task.attempt, task.idempotency_key, task.payload
            )
            self._start_task(live, command)
        elif current:  # cancelling: the attempt is not run again, it is recorded cancelled
            message = TaskFinished(task.step_id, task.attempt, "failed", {}, "cancelled")
            self._feed(live, message, finished=task.task_id)
        else:  # left over from an attempt the history already settled
            self._feed(live, Wake(), finished=task.task_id)

    # ------------------------------------------------------------------ waiting, cancelling

    def cancel(self, run_id: str, reason: str = "cancelled by request") -> bool:
        """Cancel a run this engine drives; False if it drives no such run."""
        live = self._runs.get(run_id)
        if live is None:
            return False
        self._feed(live, CancelRun(reason))
        return True

    def live_state(self, run_id: str) -> RunState | None:
        """The state of a run this engine drives (ahead of the store), or None."""
        live = self._runs.get(run_id)
        return live.state if live is not None else None

    @property
    def active_runs(self) -> list[str]:
        return list(self._runs)

    async def flush(self) -> None:
        await self._require_committer().flush()

    # ------------------------------------------------------------------ deciding

    def _feed(
        self,
        live: _LiveRun,
        message: Input,
        *,
        finished: str | None = None,
        acknowledge: str | None = None,
    ) -> None:
        if live.lost or self._closing:
            return
        before, status = live.state.version, live.state.status
        decision = decide(live.plan, live.state, message, self._clock())
        self._carry_out(
            live,
            before,
            status,
            decision,
            finished=(finished,) if finished else (),
            acknowledge=(acknowledge,) if acknowledge else (),
        )

    def _carry_out(
        self,
        live: _LiveRun,
        version: int,
        status: RunStatus,
        decision: Decision,
        *,
        create: RunRecord | None = None,
        finished: Sequence[str] = (),
        acknowledge: Sequence[str] = (),
    ) -> None:
        """Queue the decision's append and carry out its commands (see the module docstring)."""
        work = _Work(self, live)
        for command in decision.commands:
            work.take(command)
        if live.state.finished:
            work.cancel_all_timers()
        if not (decision.events or work.any() or finished or acknowledge or create):
            return
        append = Append(
            run_id=live.run_id,
            expected_version=version,
            events=[to_new_event(event) for event in decision.events],
            tasks=work.tasks,
            timers=work.timers,
            cancel_timers=work.cancel_timers,
            acknowledge=acknowledge,
            status=live.state.status.value if live.state.status is not status else None,
            create=create,
            finish_tasks=finished,
            dead_letters=work.letters,
            answer_signals=work.answers,
            publish=work.publish,
            wake=(completion_wakeup(live.waiter),) if live.waiter and live.state.finished else (),
        )
        self._require_committer().add(live, append, decision.events)
        if live.handed_off:
            return  # a driver carries out the rest (hand_off.py)
        self._waits.noticed(live, decision.events)
        for command in work.dispatch:
            self._start_task(live, command)
        for command in work.remote:
            self._remote.dispatched(live, command)
        for child in work.children:
            self._waits.start_child(live, child)
        for stop in work.stop_children:
            self._waits.cancel_child(stop)

    # ------------------------------------------------------------------ durable or lost

    def _durable(self, pending: Pending) -> None:
        live: _LiveRun = pending.owner
        if self._on_events is not None and pending.events:
            self._on_events(live.run_id, pending.events)
        if any(isinstance(event, _TERMINAL_EVENTS) for event in pending.events):
            if live.handed_off:
                self._hand_offs.ended(live)
            elif self.settings.drive:
                self._hand_offs.room()  # take the next runs waiting for a driver
            if self._runs.get(live.run_id) is live:  # not a copy since dropped (lost_runs.py)
                self._runs.pop(live.run_id)
                self._remote.forget_run(live.run_id)
            if live.done.done():
                return
            started = live.state.started
            if live.plan.workflow.artifacts or (started is not None and started.workspace):
                finishing = asyncio.get_running_loop().create_task(self._finish(live))
                self._finishing.add(finishing)
                finishing.add_done_callback(self._finishing.discard)
            else:
                live.done.set_result(live.state)

    async def _finish(self, live: _LiveRun) -> None:
        """Close the run's workspace and collect its artifacts, then report it ended."""
        try:
            declared = [
                ArtifactDeclaration(name, artifact.path, artifact.retention)
                for name, artifact in live.plan.workflow.artifacts.items()
            ]
            lines = await self._workspaces.finish(live.run_id, live.state, live.cwd, declared)
            for line in lines:
                self._run_log(live, "", line)
            if lines:
                await self._require_committer().flush()
        finally:
            if not live.done.done():
                live.done.set_result(live.state)

    def _lost(self, run_id: str, why: str) -> None:
        live = self._runs.get(run_id)
        if live is None:
            return
        if self._closing:  # its lease, if still this engine's, lapses: nobody renews it
            self._drop(live, RunLostError(f"run {run_id} was taken over by another engine: {why}"))
        else:
            self._lost_runs.lost(live, why)  # taken up again from the store if still ours

    def _drop(self, live: _LiveRun, error: BaseException | None) -> None:
        """Stop driving ``live``; its future gets ``error``, or stays pending for a copy of the
        run taken up again (lost_runs.py)."""
        live.lost = True
        self._require_committer().discard(live)
        self._runs.pop(live.run_id, None)
        self._remote.forget_run(live.run_id)
        self._workspaces.forget(live.run_id)
        for task in live.tasks.values():
            task.cancel()
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)
        for handle in live.timers.values():
            handle.cancel()
        if error is not None and not live.done.done():
            live.done.set_exception(error)
            # Whoever awaits the future still gets the error; nobody awaiting it is no bug.
            live.done.exception()

    # ------------------------------------------------------------------ tasks

    def _runs_here(self, payload: Mapping[str, Any]) -> bool:
        """Whether this engine runs a task itself, or leaves it to a worker."""
        settings = self.settings
        return settings.run_tasks and settings.offers.issuperset(payload.get("needs") or ())

    def _start_task(self, live: _LiveRun, command: DispatchTask) -> None:
        if command.task_id in live.tasks:
            return  # already running here (a decision repeated after a conflict)
        if self._draining:
            return  # its row is this engine's: whoever adopts the run next runs it
        task = asyncio.get_running_loop().create_task(self._execute(live, command))
        live.tasks[command.task_id] = task

    async def _execute(self, live: _LiveRun, command: DispatchTask) -> None:
        started = self._clock()
        ephemeral = ""
        try:
            folder = await self._task_folder(live, command)
            ephemeral = folder.workspace_id if folder is not live.folder else ""
            workspace, scratch = workspace_for(folder.cwd, self._workspace_kind(live, command))
            spec = task_spec(
                live.run_id, command, workspace, launcher=folder.launcher, extra_env=folder.env
            )
        except Exception as exc:  # WayangError, or a bug: the attempt fails, the run goes on
            live.tasks.pop(command.task_id, None)
            why = str(exc) if isinstance(exc, WayangError) else repr(exc)
            result = TaskResult.failed(f"its workspace could not be made: {why}", 0.0)
            self._feed(live, finished_message(command, result, started), finished=command.task_id)
            return
        try:
            async with self._spill.slot(live, command):
                if self._draining:  # waited for a slot past the drain's start: not started
                    return  # its row stays this engine's: whoever adopts the run next runs it
                began = time.monotonic()
                result = await self._executor.execute(spec, self._log_sink(live, spec))
                self._spill.ran(time.monotonic() - began)
        except StepSpilled:
            return  # a worker runs it: its result comes in as any worker's (remote.py)
        except asyncio.CancelledError:
            result = TaskResult.failed("cancelled", self._clock() - started)
        except Exception as exc:  # an executor bug: the attempt fails, the engine goes on
            result = TaskResult.failed(f"the executor failed: {exc!r}", self._clock() - started)
        finally:
            live.tasks.pop(command.task_id, None)
            if scratch:
                shutil.rmtree(workspace, ignore_errors=True)
        if ephemeral and not live.lost:
            await self._end_ephemeral(live, command, ephemeral, result.status != "succeeded")
        self._feed(live, finished_message(command, result, started), finished=command.task_id)

    def _workspace_kind(self, live: _LiveRun, command: DispatchTask) -> str:
        kind = str(command.payload.get("workspace") or "inherit")
        has_own = live.state.started is not None and bool(live.state.started.workspace)
        return "inherit" if kind == "ephemeral" and has_own else kind

    async def _task_folder(self, live: _LiveRun, command: DispatchTask) -> RunFolder:
        """Where the attempt works: the run's folder (its workspace, made on first use), or a
        fresh workspace of its own for an ``ephemeral`` step of a run that has one."""
        started = live.state.started
        if started is None or (self.settings.work_in and not started.workspace):
            return RunFolder(live.cwd)
        note = self._workspace_note(live)
        if live.folder is None:
            live.folder = await self._workspaces.folder(live.run_id, started, note)
            live.cwd = live.folder.cwd
        if command.payload.get("workspace") == "ephemeral" and started.workspace:
            return await self._workspaces.ephemeral(
                live.run_id, started, command.step_id, command.attempt, note
            )
        return live.folder

    async def _end_ephemeral(
        self, live: _LiveRun, command: DispatchTask, workspace_id: str, failed: bool
    ) -> None:
        started = live.state.started
        if started is None:
            return
        try:
            await self._workspaces.end_ephemeral(
                started, workspace_id, failed, command.step_id, self._workspace_note(live)
            )
        except WayangError as exc:
            self._run_log(live, command.step_id, f"workspace {workspace_id}: {exc}")

    def _workspace_note(self, live: _LiveRun) -> Callable[[WorkspaceEvent, str], None]:
        def note(event: WorkspaceEvent, step_id: str) -> None:
            message = NoteWorkspace(
                event.kind, event.workspace_id, event.path, event.detail, step_id
            )
            self._feed(live, message)
            self._run_log(
                live, step_id, f"workspace {event.workspace_id} {event.kind}: {event.detail}"
            )

        return note

    def _run_log(self, live: _LiveRun, step_id: str, line: str) -> None:
        record = LogLine(live.run_id, step_id, 0, "log", line, self._clock())
        self._require_committer().log(record)
        if self._on_log is not None:
            self._on_log(record)

    def _log_sink(self, live: _LiveRun, spec: TaskSpec) -> Callable[[str, str], None]:
        committer = self._require_committer()
        on_log = self._on_log

        def sink(stream: str, line: str) -> None:
            record = LogLine(live.run_id, spec.step_id, spec.attempt, stream, line, self._clock())
            committer.log(record)
            if on_log is not None:
                on_log(record)

        return sink

    # ------------------------------------------------------------------ timers

    def _arm(self, live: _LiveRun, timer: Timer) -> None:
        previous = live.timers.pop(timer.timer_id, None)
        if previous is not None:
            previous.cancel()
        delay = max(0.0, timer.due_at - self._clock())
        payload = timer.payload
        fired = TimerFired(
            timer.timer_id,
            str(payload.get("kind", "")),
            payload.get("step_id"),
            int(payload.get("attempt") or 0),
        )
        loop = asyncio.get_running_loop()
        live.timers[timer.timer_id] = loop.call_later(delay, self._fire, live, fired)

    def _fire(self, live: _LiveRun, fired: TimerFired) -> None:
        live.timers.pop(fired.timer_id, None)
        self._feed(live, fired)

    # ------------------------------------------------------------------ background

    async def _renew_leases(self) -> None:
        committer = self._require_committer()
        outage = Outage(log, "renewing leases")
        while True:
            await asyncio.sleep(self.settings.renew_every_s)
            with outage.absorbing():  # a store away stops no loop: the next round tries again
                await self._lost_runs.release()
                if self._runs:
                    await committer.call(
                        self.store.renew_leases, self.owner, self._clock(), self.settings.lease_s
                    )

    async def _poll(self) -> None:
        """Pick up cancel requests left in the store, workers' results, and (if asked)
        orphaned runs. A wake-up from the store (a worker's result) reads only the results;
        the rest waits for its turn, every ``poll_every_s``."""
        committer = self._require_committer()
        outage = Outage(log, "polling the store")
        every = self.settings.poll_every_s
        last_full = 0.0
        while True:
            woken = await self._nap(every)
            now = time.monotonic()
            full = not woken or now - last_full >= every
            with outage.absorbing():
                if self._runs and full:
                    requests = await committer.call(self.store.kv_scan, CANCEL_REQUESTS)
                    for run_id, reason in requests.items():
                        if self.cancel(run_id, str(reason or "cancelled by request")):
                            await committer.call(self.store.kv_delete, CANCEL_REQUESTS, run_id)
                    await self._waits.poll(list(self._runs.values()))
                if self._runs:
                    await self._remote.poll(lapsed=full)
                if self._hand_offs.waiting and (full or woken):
                    await self._hand_offs.watch()
                if self.settings.drive:
                    await self._hand_offs.look(woken)
                if full and self.settings.adopt_orphans:
                    await self._adopt_orphans()
            if full:
                last_full = now

    async def _nap(self, seconds: float) -> bool:
        """Wait between polls; a worker's result for one of this engine's runs (a wake-up from
        the store) ends the wait early, and then this says True."""
        if self._wakeups is None:
            await asyncio.sleep(seconds)
            return False
        return await self._wakeups.until(seconds)

    async def _adopt_orphans(self) -> None:
        committer = self._require_committer()
        for record in await committer.call(self.store.orphaned_runs, self._clock()):
            if record.run_id not in self._runs:
                with contextlib.suppress(RunBusyError, RunNotFoundError):
                    await self.adopt(record.run_id, tenant=record.tenant)
                    if self._on_orphan is not None:
                        self._on_orphan(record.run_id)


class _Work:
    """What one decision's commands ask for: rows for its append, and tasks to start after."""

    def __init__(self, engine: Engine, live: _LiveRun) -> None:
        self.engine, self.live = engine, live
        self.now = engine._clock()
        self.tasks: list[NewTask] = []
        self.timers: list[Timer] = []
        self.cancel_timers: list[str] = []
        self.letters: list[DeadLetterRecord] = []
        self.dispatch: list[DispatchTask] = []
        self.remote: list[DispatchTask] = []
        self.answers: list[SignalAnswer] = []
        self.children: list[StartChildRun] = []
        self.stop_children: list[CancelChildRun] = []
        self.publish: list[NewTopicMessage] = []

    def any(self) -> bool:
        return bool(
            self.tasks
            or self.timers
            or self.cancel_timers
            or self.letters
            or self.answers
            or self.publish
        )

    def take(self, command: Any) -> None:
        live = self.live
        if isinstance(command, DispatchTask):
            if live.handed_off:  # held for the run's driver, unless it needs a worker
                held = self.engine.settings.offers.issuperset(command.payload.get("needs") or ())
                self.tasks.append(self._task_row(command, HANDED_OFF if held else None))
                return
            here = self.engine._runs_here(command.payload)
            self.tasks.append(self._task_row(command, self.engine.owner if here else None))
            (self.dispatch if here else self.remote).append(command)
        elif isinstance(command, StartTimer):
            self._start_timer(command)
        elif isinstance(command, CancelTimer):
            self._cancel_timer(command.timer_id)
        elif isinstance(command, StopTask):
            task = live.tasks.get(command.task_id)
            if task is not None:
                task.cancel()
            elif self.engine._remote.owns(command.task_id):
                # After this decision's append: a worker's task is recorded cancelled at once.
                asyncio.get_running_loop().call_soon(self.engine._remote.stop, command.task_id)
        else:
            self._record(command)

    def _record(self, command: Any) -> None:
        """Commands that only add rows to the append, or work for after it."""
        if isinstance(command, DeadLetter):
            self.letters.append(self._letter(command))
        elif isinstance(command, AnswerSignal):
            self.answers.append(SignalAnswer(command.seq, command.status, command.outcome))
        elif isinstance(command, StartChildRun):
            self.children.append(command)
        elif isinstance(command, CancelChildRun):
            self.stop_children.append(command)
        elif isinstance(command, PublishMessage):
            self.publish.append(self._message(command))

    def _start_timer(self, command: StartTimer) -> None:
        live = self.live
        timer = Timer(
            command.timer_id,
            live.run_id,
            command.due_at,
            {"kind": command.kind, "step_id": command.step_id, "attempt": command.attempt},
            live.tenant,
        )
        # A timer may be armed again under its id (a sleep that fired early): the store
        # deletes before it inserts, so the new row replaces the old one.
        self.cancel_timers.append(command.timer_id)
        self.timers.append(timer)
        if not live.handed_off:  # else its driver arms it, from the store
            self.engine._arm(live, timer)

    def cancel_all_timers(self) -> None:
        for timer_id in list(self.live.timers):
            self._cancel_timer(timer_id)

    def _cancel_timer(self, timer_id: str) -> None:
        # A timer started by this same decision is never written (deletes go before inserts).
        self.timers = [timer for timer in self.timers if timer.timer_id != timer_id]
        self.cancel_timers.append(timer_id)
        handle = self.live.timers.pop(timer_id, None)
        if handle is not None:
            handle.cancel()

    def _task_row(self, command: DispatchTask, owner: str | None) -> NewTask:
        """The task's row: leased to this engine already, held for a driver, or queued for a
        worker (no ``owner``)."""
        payload, now = command.payload, self.now
        here = owner is not None
        leased = owner == self.engine.owner
        return NewTask(
            task_id=command.task_id,
            run_id=self.live.run_id,
            step_id=command.step_id,
            attempt=command.attempt,
            idempotency_key=command.idempotency_key,
            payload=payload,
            available_at=now,
            queue="default" if here else str(payload.get("queue") or "default"),
            tenant=self.live.tenant,
            owner=owner,
            lease_expires_at=now + self.engine.settings.lease_s if leased else None,
            needs=() if here else tuple(payload.get("needs") or ()),
        )

    def _message(self, command: PublishMessage) -> NewTopicMessage:
        # The run is the trace: `wayang logs --trace <run id>` follows what its emits caused.
        live = self.live
        return NewTopicMessage(
            topic=command.topic,
            data=command.data,
            created_at=self.now,
            key=command.key,
            trace_id=live.run_id,
            source=f"run:{live.run_id}/{command.step_id}",
            tenant=live.tenant,
        )

    def _letter(self, command: DeadLetter) -> DeadLetterRecord:
        run_id = self.live.run_id
        return DeadLetterRecord(
            dlq_id=f"{run_id}/{command.step_id}/{command.attempts}",
            run_id=run_id,
            step_id=command.step_id,
            attempts=command.attempts,
            error=command.error,
            payload={**command.payload, "workflow_id": self.live.plan.workflow.id},
            at=self.now,
            tenant=self.live.tenant,
        )


def _resolved(state: RunState) -> asyncio.Future[RunState]:
    future: asyncio.Future[RunState] = asyncio.get_running_loop().create_future()
    future.set_result(state)
    return future
