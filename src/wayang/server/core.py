"""What ``wayang server`` does, apart from HTTP: its engine, the queue of submitted runs, the
step runtime of a steps project, and every operation the API offers, as plain methods.

One :class:`ServerCore` per server process. It drives runs with one engine that also adopts
runs nobody drives (their lease lapsed: a CLI that exited, a server that was killed), so a
restart carries every unfinished run on. Stopping it (SIGTERM) stops taking runs from the queue,
lets busy runs finish for a grace period, then hands the rest back to the store, where the next
server adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wayang import wire
from wayang.app import App, WorkspacePlanner
from wayang.engine import events as ev
from wayang.engine.state import ACTIVE_STEP, RunState, StepStatus
from wayang.errors import UsageError
from wayang.ids import new_run_id, new_trace_id
from wayang.model.durations import parse_duration
from wayang.model.loader import parse_workflow
from wayang.model.spec import Workflow
from wayang.observe import EventLogger, Metrics, Tracing
from wayang.policy import PolicyFiles
from wayang.requirements import check_requirements
from wayang.runtime.engine import Engine
from wayang.runtime.hand_off import for_drivers
from wayang.runtime.names import RunBusyError, RunNotFoundError
from wayang.runtime.operations import (
    RunRequest,
    current_actor,
    load_run,
    needs_adoption,
    prepare_letter_replay,
    prepare_retry,
    prepare_source_run,
    record_unstarted_cancel,
    request_cancel,
)
from wayang.runtime.records import read_events
from wayang.runtime.signals import deliver, pending_waits, publish, send_signal
from wayang.runtime.workspaces import WorkspaceChoice, with_workspace
from wayang.server import views
from wayang.server.fleet import Fleet
from wayang.server.queue import Limits, Queued, RunQueue
from wayang.server.retention import RetentionLoop
from wayang.server.workflows import WorkflowRegistry
from wayang.store.port import Store
from wayang.workspace.artifacts import load_manifest

log = logging.getLogger("wayang.server")

PUMP_EVERY_S = 0.2
DEFINITIONS_KEPT = 256
SIGNAL_WAIT_S = 30.0
SERVERS = "servers"
"""The key-value namespace where a running server says where it listens (per store)."""


@dataclass(frozen=True)
class CoreSettings:
    limits: Limits = field(default_factory=Limits)
    project: Path | None = None
    grace_s: float = 30.0
    # Steps a run runs at once, at most (0: as many as are ready; workers' slots bound them).
    parallel: int = field(default_factory=lambda: os.cpu_count() or 1)
    retention_every_s: float = 0.0  # clean workspaces this often (server/retention.py); 0: never


class ServerCore:
    """The server's parts and operations; use ``async with``."""

    def __init__(
        self,
        app: App,
        settings: CoreSettings,
        *,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.tracing = tracing or Tracing.off()
        self.event_log = EventLogger()
        self.queue = RunQueue(app.store, settings.limits)
        self.fleet = Fleet(app.store)
        """Workers over HTTP, task-queue backpressure, the fleet's gauges."""
        self.workflows = WorkflowRegistry(app.store)
        self.engine: Engine | None = None
        self.steps: Any = None  # a StepsProject when serving a steps project
        self.steps_server: Any = None
        self.state = "starting"
        self._runs: dict[str, asyncio.Future[RunState]] = {}
        self._pump_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._exits = contextlib.AsyncExitStack()
        self._listeners: list[Callable[[str, Sequence[ev.Event]], None]] = []
        self._definitions: dict[tuple[str, str], Workflow] = {}
        self._policy_files = PolicyFiles()
        self._cwd = os.getcwd()  # where runs of registered workflows work, unless told
        self._workspace_plans = WorkspacePlanner()
        self.user = current_actor({})
        """Who a request acts as when it does not say (the user the server runs as)."""

    @property
    def store(self) -> Store:
        return self.app.store

    # ------------------------------------------------------------------ lifetime

    async def __aenter__(self) -> ServerCore:
        engine = self.app.engine(
            on_events=self._on_events,
            executor=self.tracing.wrap(self.app.executor),
            on_orphan=lambda _: self.metrics.lease_expired(),
        )
        self.engine = await self._exits.enter_async_context(engine)
        if self.settings.project is not None:
            await self._serve_steps(self.settings.project)
        await self._adopt_left_over()
        if self.settings.retention_every_s > 0:
            every = self.settings.retention_every_s
            retention = RetentionLoop.for_app(self.app, Path(self._cwd), every)
            await self._exits.enter_async_context(retention)
        self._pump_task = asyncio.create_task(self._pump_loop(), name="wayang-queue")
        self.state = "ok"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _serve_steps(self, root: Path) -> None:
        from wayang.steps.project import load_project  # noqa: PLC0415 - only with --project
        from wayang.steps.service import StepsProject, StepsServer  # noqa: PLC0415

        steps = StepsProject(load_project(root), self.store)
        self._exits.callback(steps.close)
        registry = steps.load()
        for diagnostic in registry.diagnostics:
            log.warning(diagnostic.format())
        assert self.engine is not None
        server = StepsServer(
            steps,
            owner=self.engine.owner,
            on_finished=self._delivery_finished,
            around=self.tracing.traced_delivery,
        )
        self.steps_server = await self._exits.enter_async_context(server)
        self.steps = steps

    async def _adopt_left_over(self) -> None:
        """Carry on at once the unfinished runs whose driver is gone (a killed server or CLI on
        this machine); runs whose lease merely lapsed are adopted by the engine's own poll."""
        engine = self._require_engine()
        now = time.time()
        for status in ("running", "pending"):
            for record in self.store.list_runs(status=status, limit=10_000):
                if record.run_id in engine.active_runs or not needs_adoption(record, now):
                    continue
                if for_drivers(record):
                    continue  # the drivers' first; the orphan poll takes it if they do not
                with contextlib.suppress(RunBusyError, RunNotFoundError):
                    future = await engine.adopt(record.run_id, tenant=record.tenant)
                    self.metrics.lease_expired()
                    if not future.done():
                        self._track(record.run_id, future)
                        log.info("carrying on run %s", record.run_id)

    def _delivery_finished(self, done: Any) -> None:
        latency = max(0.0, time.time() - done.delivery.created_at)
        self.metrics.delivery_finished(done.delivery.step, done.status, latency)

    async def stop(self) -> None:
        """Stop taking queued runs, let busy runs finish within the grace period, hand back."""
        if self.state == "stopping":
            return
        self.state = "stopping"
        if self._pump_task is not None:
            self._pump_task.cancel()
            await asyncio.gather(self._pump_task, return_exceptions=True)
        deadline = time.monotonic() + self.settings.grace_s
        while self._busy_runs() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self._exits.aclose()

    def _require_engine(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("use the server core inside 'async with'")
        return self.engine

    # ------------------------------------------------------------------ events

    def listen(self, listener: Callable[[str, Sequence[ev.Event]], None]) -> Callable[[], None]:
        """Call ``listener(run_id, events)`` for every batch the engine records; returns a
        function that stops it (the live event streams use this)."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _on_events(self, run_id: str, events: Sequence[ev.Event]) -> None:
        self.metrics.on_events(run_id, events)
        self.tracing.on_events(run_id, events)
        self.event_log.on_events(run_id, events)
        for listener in list(self._listeners):
            with contextlib.suppress(Exception):
                listener(run_id, events)
        self._wake.set()

    # ------------------------------------------------------------------ the queue

    def _busy_runs(self) -> dict[str, int]:
        """Busy runs this server drives, by workflow id."""
        engine = self._require_engine()
        busy: dict[str, int] = {}
        for run_id in engine.active_runs:
            state = engine.live_state(run_id)
            if state is None or state.started is None or state.finished:
                continue
            if state.count(*ACTIVE_STEP, StepStatus.RETRYING):
                workflow_id = state.started.workflow_id
                busy[workflow_id] = busy.get(workflow_id, 0) + 1
        return busy

    def _has_slot(self, workflow_id: str) -> bool:
        limits, busy = self.settings.limits, self._busy_runs()
        if sum(busy.values()) >= limits.max_runs:
            return False
        return not limits.per_workflow or busy.get(workflow_id, 0) < limits.per_workflow

    async def _pump_loop(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow the cancel of stop()
            # when it lands as the timeout fires, and stop() then waits for ever.
            ticked = False
            try:
                async with asyncio.timeout(PUMP_EVERY_S):
                    await self._wake.wait()
            except TimeoutError:
                ticked = True
            self._wake.clear()
            if not ticked and self.queue.looks_empty():
                continue  # a run ended and nothing waits: no need to read the queue
            try:
                await self.pump()
            except Exception:  # a bad queue entry must not stop the queue
                log.exception("starting queued runs failed")

    async def pump(self) -> None:
        """Start the queued runs the limits allow now. Each entry is claimed first and
        deleted once its run is durable (see server/queue.py): killed in between, this server
        leaves it for another to start."""
        if self.state != "ok":
            return
        engine = self._require_engine()
        now = time.time()
        first = self.queue.oldest()
        oldest = now - first.submitted_at if first is not None else 0.0
        self.metrics.set_queue("runs", self.queue.count() if first is not None else 0, oldest)
        started = [
            claimed
            for entry in self.queue.startable(self._busy_runs(), now)
            if (claimed := self._start_queued(entry, engine, now)) is not None
        ]
        if started:
            await engine.flush()
            for claimed in started:
                self.queue.started(claimed)

    def _start_queued(self, entry: Queued, engine: Engine, now: float) -> Queued | None:
        """Claim ``entry`` and start its run; the claimed entry, or None if there was nothing
        to start (another server claimed it, or its run is in the store already)."""
        if entry.run_id in engine.active_runs and self.store.get_run(entry.run_id) is None:
            return None  # started here, its row not yet stored (the store was away)
        claimed = self.queue.claim(entry, engine.owner, now + engine.settings.lease_s)
        if claimed is None:
            return None
        if entry.claimed_by is not None and self.store.get_run(entry.run_id) is not None:
            self.queue.started(claimed)  # its claimer stored the run, then died
            return None
        try:
            run_id, request = entry.request()
            future = engine.start(request.plan, request.started, run_id, reuse=request.reuse)
        except BaseException:
            self.queue.restore(entry)  # not started: it stays first in line
            raise
        self._track(run_id, future)
        return claimed

    def _track(self, run_id: str, future: asyncio.Future[RunState]) -> None:
        self._runs[run_id] = future
        future.add_done_callback(lambda _: self._finished(run_id))

    def _finished(self, run_id: str) -> None:
        self._runs.pop(run_id, None)
        self._wake.set()

    async def _enqueue(self, request: RunRequest) -> wire.RunAccepted:
        """Start ``request`` now or queue it; either way it is in the store when this returns
        (an accepted run survives a crash of the server right after)."""
        if self.state != "ok":
            raise ServerStoppingError("the server is stopping; it takes no new runs")
        run_id = new_run_id()
        workflow_id = request.started.workflow_id
        if self.queue.looks_empty() and self._has_slot(workflow_id):
            # Nothing waits ahead of it: start at once (the run's row is its durable record).
            future = self._require_engine().start(
                request.plan, request.started, run_id, reuse=request.reuse
            )
            self._track(run_id, future)
            await self._require_engine().flush()  # its row joins the next group commit
            return wire.RunAccepted(run_id=run_id, status="running")
        key, position = self.queue.put(request, run_id)
        await self.pump()
        await self._require_engine().flush()
        status = "queued" if self.queue.holds(key) else "running"
        return wire.RunAccepted(
            run_id=run_id, status=status, position=position if status == "queued" else None
        )

    # ------------------------------------------------------------------ workflows

    def register(self, body: wire.WorkflowSource) -> tuple[wire.WorkflowDetail, bool]:
        entry, created = self.workflows.register(body.source, body.filename)
        return self.workflow(entry.workflow_id), created

    def workflow(self, workflow_id: str, version: str | None = None) -> wire.WorkflowDetail:
        history = self.workflows.history(workflow_id)
        chosen = self.workflows.get(workflow_id, version)
        workflow = chosen.parse()
        return wire.WorkflowDetail(
            id=workflow_id,
            name=workflow.name or workflow_id,
            description=workflow.description,
            latest=history[-1].version,
            versions=len(history),
            parameters=views.parameters(workflow),
            steps=list(workflow.steps),
            history=[
                wire.WorkflowVersion(
                    version=e.version,
                    sha256=e.sha256,
                    filename=e.filename,
                    registered_at=views.iso(e.registered_at) or "",
                )
                for e in history
            ],
            source=chosen.source,
            graph=views.workflow_graph(workflow),
        )

    def list_workflows(self) -> list[wire.WorkflowSummary]:
        found = []
        for workflow_id in self.workflows.ids():
            history = self.workflows.history(workflow_id)
            workflow = history[-1].parse()
            found.append(
                wire.WorkflowSummary(
                    id=workflow_id,
                    name=workflow.name or workflow_id,
                    description=workflow.description,
                    latest=history[-1].version,
                    versions=len(history),
                )
            )
        return found

    # ------------------------------------------------------------------ runs

    async def start_run(self, body: wire.StartRun, actor: str) -> wire.RunAccepted:
        if body.source is not None:
            source, filename = body.source, body.filename
            cwd = body.cwd or str(Path(filename).resolve().parent)
        elif body.workflow is not None:
            entry = self.workflows.get(body.workflow, body.version)
            source, filename = entry.source, entry.filename
            cwd = body.cwd or self._cwd
        else:
            raise UsageError("give 'workflow' (a registered id) or 'source' (workflow.toml text)")
        timeout_s = _timeout(body.timeout)
        request = prepare_source_run(
            source,
            filename,
            body.params,
            body.env,
            cwd=cwd,
            parallel=self._parallel(body.parallel),
            timeout_s=timeout_s,
            actor=actor,
            params_are_text=body.params_are_text,
            workflow=self._parsed(source, filename),
            policy_of=self._policy_files,
        )
        choice = WorkspaceChoice(body.workspace_id, body.base, body.uncommitted, body.in_place)
        plan = self._workspace_plans.plan(Path(filename), choice, folder=Path(cwd))
        request = with_workspace(request, plan)
        await self.fleet.check_room(request.plan)
        return await self._enqueue(request)

    def _parallel(self, requested: int | None) -> int:
        """What a run may run at once: what it asks for, at most the server's ``--workers``
        (0: no bound of the server's; a run asking for none then has none either)."""
        cap = self.settings.parallel
        if not cap:
            return requested or 0
        return min(requested or cap, cap)

    def list_runs(
        self,
        *,
        status: str | None,
        workflow: str | None,
        limit: int,
        cursor: str | None,
    ) -> wire.Page[wire.RunSummary]:
        items: list[wire.RunSummary] = []
        if cursor is None and status in (None, "queued"):
            listed = (q for q in self.queue.oldest_first() if workflow in (None, q.workflow_id))
            items = [
                wire.RunSummary(
                    run_id=q.run_id,
                    workflow_id=q.workflow_id,
                    status="queued",
                    created_at=views.iso(q.submitted_at),
                    updated_at=None,
                )
                for q in itertools.islice(listed, limit)  # read a page at a time, as needed
            ]
        if status == "queued":
            return wire.Page(items=items)
        before = _cursor(cursor)
        records = self.store.page_runs(
            status=status, workflow_id=workflow, before=before, limit=limit + 1
        )
        more = len(records) > limit
        records = records[:limit]
        items += [views.run_summary(r) for r in records]
        last = records[-1] if records and more else None
        next_cursor = f"{last.created_at!r}|{last.run_id}" if last is not None else None
        return wire.Page(items=items, next=next_cursor)

    def run(self, run_id: str) -> wire.RunDetail:
        # A run in the store is not queued: only one that is not needs the queue read (every
        # entry of it, so the queue is the slow place to look when thousands wait).
        queued = self.queue.find(run_id) if self.store.get_run(run_id) is None else None
        if queued is not None:
            return wire.RunDetail(
                run_id=run_id,
                workflow_id=queued.workflow_id,
                status="queued",
                created_at=views.iso(queued.submitted_at),
                updated_at=None,
            )
        view = load_run(self.store, run_id)  # what is durable, not the engine's state ahead of it
        started = view.state.started
        workflow = self._parsed(started.source, started.filename) if started else None
        return views.run_detail(view, workflow, self.store.run_tasks(run_id))

    def _parsed(self, source: str, filename: str) -> Workflow:
        """A definition parsed once per text: runs of one workflow share it (a bounded cache)."""
        key = (source, filename)
        found = self._definitions.get(key)
        if found is None:
            if len(self._definitions) >= DEFINITIONS_KEPT:
                self._definitions.pop(next(iter(self._definitions)))
            found = self._definitions[key] = parse_workflow(source, filename)
        return found

    def events(self, run_id: str, after: int, limit: int) -> wire.Page[wire.EventView]:
        self._known(run_id)
        stored = self.store.load_history(run_id, after_seq=after)[:limit]
        events = read_events(stored)
        items = [views.event_view(s, e) for s, e in zip(stored, events, strict=True)]
        following = str(stored[-1].seq) if len(stored) == limit else None
        return wire.Page(items=items, next=following)

    def logs(
        self, run_id: str, step: str | None, after: int, limit: int
    ) -> wire.Page[wire.LogLineView]:
        self._known(run_id)
        lines = self.store.read_logs(run_id, step, after_seq=after, limit=limit)
        following = str(lines[-1].seq) if len(lines) == limit else None
        return wire.Page(items=[views.log_view(line) for line in lines], next=following)

    def trace(self, run_id: str) -> wire.RunTrace:
        return views.trace_of(self.store, self.queue, run_id)

    def artifacts(self, run_id: str) -> wire.RunArtifacts:
        """The run's collected artifacts; none until it has ended (or when it declared none)."""
        self._known(run_id)
        manifest = load_manifest(self.app.artifacts_root, run_id)
        return views.artifacts_view(run_id, manifest)

    def ended(self, run_id: str) -> bool:
        """Whether the run's end is durable (its row says so)."""
        record = self.store.get_run(run_id)
        return record is not None and record.status in ("succeeded", "failed", "cancelled")

    def _known(self, run_id: str) -> None:
        if self.store.get_run(run_id) is None and self.queue.find(run_id) is None:
            raise RunNotFoundError(f"no run {run_id!r}; GET /api/v1/runs lists runs")

    async def cancel(self, run_id: str, reason: str) -> wire.RunSummary:
        queued = self.queue.find(run_id)
        if queued is not None and self.queue.remove(queued):
            _, request = queued.request()
            events = record_unstarted_cancel(
                self.store, run_id, request.started, reason, now=time.time()
            )
            self._on_events(run_id, events)
            return views.run_summary(self._record(run_id))
        engine = self._require_engine()
        if not engine.cancel(run_id, reason):
            record = request_cancel(self.store, run_id, reason)
            if needs_adoption(record, time.time()):
                with contextlib.suppress(RunBusyError):
                    self._track(run_id, await engine.adopt(run_id, cancel=reason))
        await self._settle(run_id)
        return views.run_summary(self._record(run_id))

    async def resume(self, run_id: str) -> wire.RunSummary:
        engine = self._require_engine()
        if run_id not in engine.active_runs:
            future = await engine.adopt(run_id)
            if not future.done():
                self._track(run_id, future)
        await engine.flush()
        return views.run_summary(self._record(run_id))

    async def retry(self, run_id: str, from_step: str | None) -> wire.RunAccepted:
        request = prepare_retry(self.store, run_id, from_step)
        await self._check_requirements(request)
        await self.fleet.check_room(request.plan)
        return await self._enqueue(request)

    @staticmethod
    async def _check_requirements(request: RunRequest) -> None:
        """A run started again (retry, replay) needs what its ``[requirements]`` list, as in
        process; tools are asked for their versions, so off the event loop."""
        started = request.started
        workflow = request.plan.workflow
        await asyncio.to_thread(check_requirements, workflow, started.env_overrides)

    async def _settle(self, run_id: str, timeout_s: float = 5.0) -> None:
        """Wait (briefly) for a run this server drives to stop running."""
        future = self._runs.get(run_id)
        if future is not None:
            with contextlib.suppress(TimeoutError, Exception):
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(future)
        await self._require_engine().flush()

    def _record(self, run_id: str) -> Any:
        record = self.store.get_run(run_id)
        if record is None:
            raise RunNotFoundError(f"no run {run_id!r}; GET /api/v1/runs lists runs")
        return record

    # ------------------------------------------------------------------ people

    def pending(self, actor: str | None) -> list[wire.PendingWaitView]:
        return [
            wire.PendingWaitView(
                run_id=p.run_id,
                workflow_id=p.workflow_id,
                step_id=p.step_id,
                kind=p.kind,
                since=views.iso(p.since),
                prompt=str(p.wait.get("prompt") or ""),
                assignees=list(p.wait.get("assignees") or p.wait.get("parties") or []),
                wait=p.wait,
            )
            for p in pending_waits(self.store, actor)
        ]

    async def signal(
        self, run_id: str, step_id: str, kind: str, actor: str, data: dict[str, Any]
    ) -> wire.SignalAnswer:
        seq = send_signal(self.store, run_id, step_id, kind=kind, actor=actor, data=data)
        answer = await deliver(self._require_engine(), run_id, seq, SIGNAL_WAIT_S)
        run = self.engine.live_state(run_id) if self.engine is not None else None
        if run is not None and not run.finished:
            self._wake.set()
        return wire.SignalAnswer(seq=seq, status=answer.status, outcome=answer.outcome)

    # ------------------------------------------------------------------ topics, steps

    def emit(self, body: wire.Emit, actor: str) -> wire.Emitted:
        trace_id = new_trace_id()
        seq = publish(
            self.store, body.topic, body.data, actor=actor, key=body.key, trace_id=trace_id
        )
        return wire.Emitted(seq=seq, topic=body.topic, trace_id=trace_id)

    def require_steps(self) -> Any:
        if self.steps is None:
            raise NoStepsProjectError(
                "this server serves no steps project; start it with 'wayang server --project DIR'"
            )
        return self.steps

    def step_list(self) -> wire.StepList:
        steps = self.require_steps()
        registry = steps.registry
        return wire.StepList(
            steps=[views.step_info(registry, name) for name in sorted(registry.steps)],
            diagnostics=views.diagnostics(registry.diagnostics),
            root=str(steps.root),
            folders=list(steps.project.config.steps.folders),
        )

    def flows(self) -> list[wire.FlowView]:
        registry = self.require_steps().registry
        return [views.flow_view(flow) for flow in registry.flows().values()]

    def set_active(self, name: str, active: bool) -> wire.StepInfo:
        steps = self.require_steps()
        step_name = steps.set_active(name, active)
        return views.step_info(steps.registry, step_name)

    async def state_groups(self) -> list[str]:
        self.require_steps()
        return list(await self.steps_server.runtime.state.groups())

    async def state_group(self, group: str) -> wire.StateGroup:
        self.require_steps()
        values = await self.steps_server.runtime.state.get_group(group)
        return wire.StateGroup(group=group, values=list(values))

    # ------------------------------------------------------------------ dead letters

    def dead_letters(self, limit: int) -> list[wire.DeadLetterView]:
        letters = [views.letter_view(d) for d in self.store.dead_letters(limit=limit)]
        dead = self.store.list_deliveries(status="dead", limit=limit)
        return letters + [views.dead_delivery_view(d) for d in dead]

    async def replay(self, letter_id: str) -> wire.Replayed:
        delivery = self.store.replay_delivery(letter_id, time.time())
        if delivery is not None:
            return wire.Replayed(id=letter_id, delivery_id=delivery.delivery_id)
        letter, request = prepare_letter_replay(self.store, letter_id)
        await self._check_requirements(request)
        await self.fleet.check_room(request.plan)  # before the letter is taken off the list
        if self.store.remove_dead_letter(letter.dlq_id) is None:
            raise UsageError(f"dead letter {letter_id!r} was replayed already")
        accepted = await self._enqueue(request)
        return wire.Replayed(id=letter_id, run_id=accepted.run_id)

    # ------------------------------------------------------------------ health

    def health(self) -> wire.Health:
        from wayang import __version__  # noqa: PLC0415

        engine = self.engine
        return wire.Health(
            status=self.state,
            version=__version__,
            store=self.app.settings.store,
            runs_active=len(engine.active_runs) if engine is not None else 0,
            runs_queued=self.queue.count(),
        )


class ServerStoppingError(UsageError):
    """The server is shutting down and takes no new work."""


class NoStepsProjectError(UsageError):
    """A steps route on a server started without ``--project``."""


def _timeout(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"timeout: {exc}") from None


def _cursor(cursor: str | None) -> tuple[float, str] | None:
    if cursor is None:
        return None
    at, _, run_id = cursor.partition("|")
    try:
        return float(at), run_id
    except ValueError:
        raise UsageError(
            f"cursor {cursor!r} is not one this server gave; pass the 'next' of the last page"
        ) from None


__all__ = ["CoreSettings", "NoStepsProjectError", "ServerCore", "ServerStoppingError"]
