"""Prometheus metrics of a Wayang server: runs, steps, waits, queues, leases, deliveries, HTTP.

Each :class:`Metrics` owns its registry, so two servers (or two tests) in one process never share
counts and nothing is registered at import. :meth:`Metrics.on_events` is an engine observer and
runs on the engine's hot path: an event costs a lookup of its type and one or two metric updates.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from wayang.engine import events as ev

UNKNOWN_WORKFLOW = "unknown"
"""The workflow label of a run whose ``RunStarted`` this process never saw (an adopted run)."""

STEP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

_RUN_ENDS: Mapping[type[ev.Event], str] = {
    ev.RunSucceeded: "succeeded",
    ev.RunFailed: "failed",
    ev.RunCancelled: "cancelled",
}
_WAIT_STARTS = (ev.ApprovalRequested, ev.NegotiationStarted, ev.CompletionRequested)
_WAIT_ENDS = (
    ev.ApprovalGranted,
    ev.ApprovalRejected,
    ev.AgreementReached,
    ev.NegotiationFailed,
    ev.StepCompleted,
    ev.WaitTimedOut,
    ev.StepCancelled,
    ev.StepSkipped,
)


@dataclass(frozen=True, slots=True)
class TaskQueueLevel:
    """One task queue now: tasks waiting, tasks running, and the oldest wait (0: none waits)."""

    queue: str
    waiting: int
    running: int
    oldest_wait_s: float


class _OfStep(Protocol):
    """An event about one step (every wait start and end is one)."""

    @property
    def step_id(self) -> str: ...


@dataclass(slots=True)
class _Run:
    """What the observer keeps about a live run: its labels and the waits it has open."""

    workflow: str
    kinds: Mapping[str, str]
    waiting: set[str] = field(default_factory=set)


class Metrics:
    """The server's metrics, in a registry of their own. Feed engine events to :meth:`on_events`;
    the server reports queues, leases, deliveries and HTTP requests through the other methods."""

    def __init__(self, *, max_runs: int = 10_000) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._max_runs = max_runs
        self._runs: dict[str, _Run] = {}
        self._kinds: dict[str, Mapping[str, str]] = {}  # workflow source → step kinds
        self._task_queues: set[str] = set()  # the task queues the gauges report
        self._define_run_metrics()
        self._define_server_metrics()
        self._handlers = self._event_handlers()

    def _define_run_metrics(self) -> None:
        reg = self.registry
        self.runs_started = Counter(
            "wayang_runs_started", "Runs started.", ["workflow"], registry=reg
        )
        self.runs_finished = Counter(
            "wayang_runs_finished",
            "Runs finished, by status.",
            ["workflow", "status"],
            registry=reg,
        )
        self.step_duration = Histogram(
            "wayang_step_duration_seconds",
            "Duration of step attempts.",
            ["workflow", "step_kind", "status"],
            buckets=STEP_BUCKETS,
            registry=reg,
        )
        self.step_retries = Counter(
            "wayang_step_retries", "Step attempts retried.", ["workflow"], registry=reg
        )
        self.dead_letters = Counter(
            "wayang_dead_letters", "Dead letters (step or delivery).", ["kind"], registry=reg
        )
        self.active_approvals = Gauge(
            "wayang_active_approvals",
            "Approvals, negotiations and external completions waiting.",
            registry=reg,
        )

    def _define_server_metrics(self) -> None:
        reg = self.registry
        self.queue_depth = Gauge("wayang_queue_depth", "Items waiting.", ["queue"], registry=reg)
        self.queue_oldest_age = Gauge(
            "wayang_queue_oldest_age_seconds", "Age of the oldest item.", ["queue"], registry=reg
        )
        self.lease_expiries = Counter(
            "wayang_lease_expiries", "Leases that ran out before renewal.", registry=reg
        )
        self.delivery_latency = Histogram(
            "wayang_delivery_latency_seconds",
            "Duration of delivery attempts.",
            ["step", "status"],
            buckets=DELIVERY_BUCKETS,
            registry=reg,
        )
        self._define_fleet_metrics()
        self.http_requests = Counter(
            "wayang_http_requests", "HTTP requests.", ["method", "route", "status"], registry=reg
        )
        self.http_duration = Histogram(
            "wayang_http_request_duration_seconds",
            "Duration of HTTP requests.",
            ["method", "route"],
            registry=reg,
        )

    def _define_fleet_metrics(self) -> None:
        reg = self.registry
        self.task_queue_waiting = Gauge(
            "wayang_task_queue_waiting", "Tasks waiting in a task queue.", ["queue"], registry=reg
        )
        self.task_queue_running = Gauge(
            "wayang_task_queue_running",
            "Tasks of a task queue held by a worker or an engine.",
            ["queue"],
            registry=reg,
        )
        self.task_queue_oldest_wait = Gauge(
            "wayang_task_queue_oldest_wait_seconds",
            "How long the oldest waiting task of a task queue has waited.",
            ["queue"],
            registry=reg,
        )
        self.workers = Gauge(
            "wayang_workers", "Workers of the store, by state.", ["state"], registry=reg
        )

    def _event_handlers(self) -> dict[type[ev.Event], Callable[[str, Any], None]]:
        handlers: dict[type[ev.Event], Callable[[str, Any], None]] = {
            ev.RunStarted: self._run_started,
            ev.StepSucceeded: self._step_succeeded,
            ev.StepFailed: self._step_failed,
            ev.StepRetrying: self._step_retrying,
        }
        handlers |= dict.fromkeys(_RUN_ENDS, self._run_finished)
        handlers |= dict.fromkeys(_WAIT_STARTS, self._wait_started)
        handlers |= dict.fromkeys(_WAIT_ENDS, self._wait_ended)
        return handlers

    # --- engine events ---------------------------------------------------------------------

    def on_events(self, run_id: str, events: Sequence[ev.Event]) -> None:
        """The engine observer: count what ``events`` of run ``run_id`` record."""
        handlers = self._handlers
        for event in events:
            handle = handlers.get(type(event))
            if handle is not None:
                handle(run_id, event)

    def _run_started(self, run_id: str, event: ev.RunStarted) -> None:
        self._remember(run_id, _Run(event.workflow_id, self._step_kinds(event.source)))
        self.runs_started.labels(event.workflow_id).inc()

    def _run_finished(self, run_id: str, event: ev.Event) -> None:
        run = self._runs.pop(run_id, None)
        workflow = UNKNOWN_WORKFLOW if run is None else run.workflow
        self.runs_finished.labels(workflow, _RUN_ENDS[type(event)]).inc()
        if run is not None and run.waiting:
            self.active_approvals.dec(len(run.waiting))

    def _step_succeeded(self, run_id: str, event: ev.StepSucceeded) -> None:
        self._step_finished(run_id, event.step_id, "succeeded", event.duration_s)

    def _step_failed(self, run_id: str, event: ev.StepFailed) -> None:
        status = "timed_out" if event.timed_out else "failed"
        self._step_finished(run_id, event.step_id, status, event.duration_s)
        if event.final:
            self.dead_letters.labels("step").inc()

    def _step_finished(self, run_id: str, step_id: str, status: str, duration_s: float) -> None:
        run = self._runs.get(run_id)
        if run is None:
            self.step_duration.labels(UNKNOWN_WORKFLOW, "", status).observe(duration_s)
            return
        kind = run.kinds.get(step_id, "")
        self.step_duration.labels(run.workflow, kind, status).observe(duration_s)
        if run.waiting:
            self._settle(run, step_id)

    def _step_retrying(self, run_id: str, event: ev.StepRetrying) -> None:
        self.step_retries.labels(self._workflow(run_id)).inc()

    def _wait_started(self, run_id: str, event: _OfStep) -> None:
        run = self._runs.get(run_id) or self._remember(run_id, _Run(UNKNOWN_WORKFLOW, {}))
        if event.step_id not in run.waiting:
            run.waiting.add(event.step_id)
            self.active_approvals.inc()

    def _wait_ended(self, run_id: str, event: _OfStep) -> None:
        run = self._runs.get(run_id)
        if run is not None and run.waiting:
            self._settle(run, event.step_id)

    def _settle(self, run: _Run, step_id: str) -> None:
        """A wait ended. Waits that began before this process saw the run are not counted, so
        only waits it saw begin are taken off (the gauge never goes below zero)."""
        if step_id in run.waiting:
            run.waiting.discard(step_id)
            self.active_approvals.dec()

    def _workflow(self, run_id: str) -> str:
        run = self._runs.get(run_id)
        return UNKNOWN_WORKFLOW if run is None else run.workflow

    def _remember(self, run_id: str, run: _Run) -> _Run:
        """Keep ``run`` until it finishes; past ``max_runs`` live runs the oldest is forgotten
        (its open waits leave the gauge, which then undercounts rather than grows forever)."""
        self._runs[run_id] = run
        if len(self._runs) > self._max_runs:
            forgotten = self._runs.pop(next(iter(self._runs)))
            if forgotten.waiting:
                self.active_approvals.dec(len(forgotten.waiting))
        return run

    def _step_kinds(self, source: str) -> Mapping[str, str]:
        """Each step's kind, read from the definition once per distinct source (runs of one
        workflow share it), with a bounded cache."""
        kinds = self._kinds.get(source)
        if kinds is None:
            kinds = step_kinds(source)
            if len(self._kinds) >= 256:
                del self._kinds[next(iter(self._kinds))]
            self._kinds[source] = kinds
        return kinds

    # --- what the server reports -----------------------------------------------------------

    def set_queue(self, queue: str, depth: int, oldest_age_s: float) -> None:
        self.queue_depth.labels(queue).set(depth)
        self.queue_oldest_age.labels(queue).set(oldest_age_s)

    def set_task_queues(self, queues: Sequence[TaskQueueLevel]) -> None:
        """The task queues as read from the store now; queues no longer there are dropped."""
        gauges = (self.task_queue_waiting, self.task_queue_running, self.task_queue_oldest_wait)
        for level in queues:
            self.task_queue_waiting.labels(level.queue).set(level.waiting)
            self.task_queue_running.labels(level.queue).set(level.running)
            self.task_queue_oldest_wait.labels(level.queue).set(level.oldest_wait_s)
        now = {level.queue for level in queues}
        for gone in self._task_queues - now:
            for gauge in gauges:
                gauge.remove(gone)
        self._task_queues = now

    def set_workers(self, by_state: Mapping[str, int]) -> None:
        """How many workers are in each state (every state is reported, 0 when none)."""
        for state, count in by_state.items():
            self.workers.labels(state).set(count)

    def lease_expired(self) -> None:
        self.lease_expiries.inc()

    def delivery_finished(self, step: str, status: str, latency_s: float) -> None:
        """A delivery attempt ended: ``succeeded``, ``retry`` or ``dead`` (a dead letter)."""
        self.delivery_latency.labels(step, status).observe(latency_s)
        if status == "dead":
            self.dead_letters.labels("delivery").inc()

    def http_request(self, method: str, route: str, status: int | str, duration_s: float) -> None:
        """One HTTP request; ``route`` is the route's template, never the raw path (bounded)."""
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_duration.labels(method, route).observe(duration_s)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type, for ``GET /metrics``."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def step_kinds(source: str) -> dict[str, str]:
    """``{step id: kind}`` of a ``workflow.toml`` text (``task`` when no kind is given); empty
    when the text does not parse, since a label is not worth an error."""
    try:
        steps = tomllib.loads(source).get("steps")
    except tomllib.TOMLDecodeError:
        return {}
    if not isinstance(steps, dict):
        return {}
    return {
        str(step_id): str(spec.get("kind", "task"))
        for step_id, spec in steps.items()
        if isinstance(spec, dict)
    }
