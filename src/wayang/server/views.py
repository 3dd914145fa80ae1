"""Store records, run states and definitions as the API's wire models (:mod:`wayang.wire`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from wayang import wire
from wayang.engine import events as ev
from wayang.engine.state import RunState, StepState, StepStatus
from wayang.model.placement import describe_needs
from wayang.model.spec import Workflow
from wayang.model.validate import build_graph
from wayang.runtime.history_text import wait_text
from wayang.runtime.operations import RunView, load_run
from wayang.server.queue import RunQueue
from wayang.store.port import (
    DeadLetter,
    Delivery,
    LogLine,
    RunRecord,
    Store,
    StoredEvent,
    TaskRecord,
)
from wayang.workspace.artifacts import ArtifactManifest

if TYPE_CHECKING:
    from wayang.steps.registry import FlowGraph, StepRegistry

EVENT_STEP_OF = "step_id"


def iso(at: float | None) -> str | None:
    """Seconds since the epoch as ISO-8601 UTC with milliseconds, or None."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")


def run_summary(record: RunRecord) -> wire.RunSummary:
    return wire.RunSummary(
        run_id=record.run_id,
        workflow_id=record.workflow_id,
        status=record.status,
        created_at=iso(record.created_at),
        updated_at=iso(record.updated_at),
    )


def run_detail(
    view: RunView, workflow: Workflow | None, tasks: Sequence[TaskRecord] = ()
) -> wire.RunDetail:
    """The run as its history has it, with what its tasks add: the attempts running now (their
    start is recorded only with their result) and what each last attempt ran."""
    record, state = view.record, view.state
    started = state.started
    order = _order(state, workflow)
    specs = workflow.steps if workflow is not None else {}
    defaults = workflow.defaults.retry if workflow is not None else None
    latest = {t.step_id: t for t in tasks}  # oldest first: the last one per step wins
    steps = {}
    for step_id in order:
        spec = specs.get(step_id)
        view_ = step_view(step_id, state.step(step_id), getattr(spec, "kind", "task"))
        retry = (getattr(spec, "retry", None) if spec is not None else None) or defaults
        view_.max_attempts = retry.attempts if retry is not None else 1
        task = latest.get(step_id)
        if task is not None:
            _add_task(view_, task)
        steps[step_id] = view_
    graph = workflow_graph(workflow, state) if workflow is not None else None
    if graph is not None:
        for node in graph.nodes:
            node.status = steps[node.id].status if node.id in steps else node.status
    summary = run_summary(record).model_dump()
    summary["status"] = state.status.value  # the live state may be ahead of the row
    return wire.RunDetail(
        **summary,
        reason=state.reason,
        params=dict(started.params) if started else {},
        started_by=started.actor if started else "",
        retry_of=started.retry_of if started else "",
        workspace=state.workspace,
        order=order,
        steps=steps,
        graph=graph,
    )


def _add_task(view: wire.StepView, task: TaskRecord) -> None:
    payload = task.payload
    if payload.get("command") is not None:
        view.inputs = {"run": payload["command"]}
    elif payload.get("uses") is not None:
        view.inputs = {"uses": payload["uses"], "with": payload.get("inputs") or {}}
    current = view.status == StepStatus.SCHEDULED.value and task.attempt == view.attempts
    running = task.status == "claimed" and task.owner is not None
    if running and current:
        view.status = StepStatus.RUNNING.value
        view.started_at = iso(task.available_at)
    elif task.status == "queued" and current:
        queue = payload.get("queue") or "default"
        needs = describe_needs(payload.get("needs") or ())
        view.waiting_for = f"a worker of queue {queue} offering {needs}"


def _order(state: RunState, workflow: Workflow | None) -> list[str]:
    declared = list(workflow.steps) if workflow is not None else []
    return declared + [s for s in state.steps if s not in declared]


def step_view(step_id: str, step: StepState, kind: str) -> wire.StepView:
    return wire.StepView(
        id=step_id,
        kind=kind,
        status=step.status.value,
        attempts=step.attempt,
        tries=step.attempt - step.first_attempt + 1 if step.attempt else 0,
        visits=step.visits,
        outputs=step.outputs,
        error=step.error,
        reason=step.reason,
        started_at=iso(step.started_at),
        finished_at=iso(step.finished_at),
        duration_s=round(step.duration_s, 3),
        waiting_for=wait_text(step.wait)
        if step.wait and step.status is StepStatus.WAITING
        else None,
    )


def workflow_graph(workflow: Workflow, state: RunState | None = None) -> wire.GraphView:
    """The workflow's steps and edges, with each step's status when ``state`` is given."""
    graph = build_graph(workflow)
    nodes = [
        wire.GraphNode(
            id=step_id,
            kind=getattr(spec, "kind", "task"),
            label=spec.name or step_id,
            status=state.step(step_id).status.value if state is not None else None,
        )
        for step_id, spec in workflow.steps.items()
    ]
    edges = [
        wire.GraphEdge(
            source=e.before,
            target=e.after,
            kind="loop" if graph.is_back(e.before, e.after) else ("on" if e.on else e.kind),
            label=e.on or (getattr(e.when, "source", "") or ""),
        )
        for e in graph.edges
    ]
    for step_id, spec in workflow.steps.items():
        if spec.compensate:
            edges.append(
                wire.GraphEdge(
                    source=step_id,
                    target=spec.compensate,
                    kind="compensate",
                    label="undo",
                    virtual=True,
                )
            )
    return wire.GraphView(nodes=nodes, edges=edges)


def event_view(stored: StoredEvent, event: ev.Event) -> wire.EventView:
    data = event.to_data()
    if isinstance(event, ev.RunStarted):  # the definition is large and has its own route
        data = {k: v for k, v in data.items() if k not in ("source", "policy_source")}
    return wire.EventView(
        seq=stored.seq, type=event.TYPE, at=iso(getattr(event, "at", None)), data=data
    )


def log_view(line: LogLine) -> wire.LogLineView:
    return wire.LogLineView(
        seq=line.seq,
        at=iso(line.at),
        step=line.step_id,
        attempt=line.attempt,
        stream=line.stream,
        line=line.line,
    )


def run_trace(record: RunRecord, history: Sequence[ev.Event], state: RunState) -> wire.RunTrace:
    """Each step attempt (and wait) as a bar from its start to its end."""
    spans: list[wire.SpanView] = []
    open_spans: dict[tuple[str, int | str], wire.SpanView] = {}
    for event in history:
        step_id = getattr(event, EVENT_STEP_OF, None)
        attempt = int(getattr(event, "attempt", 0) or 0)
        at = float(getattr(event, "at", 0.0) or 0.0)
        if isinstance(event, ev.StepStarted):
            span = wire.SpanView(
                step=event.step_id, attempt=attempt, status="running", start=at, end=None
            )
            open_spans[(event.step_id, attempt)] = span
            spans.append(span)
        elif isinstance(event, (ev.StepSucceeded, ev.StepFailed, ev.StepCancelled)):
            found = open_spans.pop((event.step_id, attempt), None)
            if found is None:  # a wait's start names no attempt; its end does
                found = open_spans.pop((event.step_id, WAITING), None)
            status = {ev.StepSucceeded: "succeeded", ev.StepFailed: "failed"}.get(
                type(event), "cancelled"
            )
            if found is not None:
                found.end, found.status, found.attempt = at, status, attempt
            else:  # settled without running (a wait, a decision, a skip of a noop)
                start = state.step(event.step_id).started_at or at
                spans.append(
                    wire.SpanView(
                        step=event.step_id,
                        attempt=attempt,
                        status=status,
                        start=min(start, at),
                        end=at,
                        kind="wait",
                    )
                )
        elif step_id and type(event) in _WAIT_STARTS:
            span = wire.SpanView(
                step=step_id, attempt=attempt, status="waiting", start=at, end=None, kind="wait"
            )
            open_spans[(step_id, WAITING)] = span
            spans.append(span)
    return wire.RunTrace(
        run_id=record.run_id,
        workflow_id=record.workflow_id,
        status=state.status.value,
        start=state.started_at,
        end=state.finished_at,
        spans=spans,
    )


WAITING = "waiting"
_WAIT_STARTS = (
    ev.ApprovalRequested,
    ev.NegotiationStarted,
    ev.EventWaitStarted,
    ev.TimerStarted,
    ev.CompletionRequested,
    ev.SubworkflowStarted,
)


def trace_of(store: Store, queue: RunQueue, run_id: str) -> wire.RunTrace:
    """``run_id``'s timeline; a run still in ``queue`` has none yet."""
    queued = queue.find(run_id)
    if queued is not None:
        return wire.RunTrace(
            run_id=run_id,
            workflow_id=queued.workflow_id,
            status="queued",
            start=None,
            end=None,
            spans=[],
        )
    view = load_run(store, run_id)
    found = run_trace(view.record, view.history, view.state)
    have = {(span.step, span.attempt) for span in found.spans}
    for task in store.run_tasks(run_id):  # attempts running now: their start is not recorded yet
        if task.status == "claimed" and task.owner and (task.step_id, task.attempt) not in have:
            found.spans.append(
                wire.SpanView(
                    step=task.step_id,
                    attempt=task.attempt,
                    status="running",
                    start=task.available_at,
                    end=None,
                )
            )
    return found


def letter_view(letter: DeadLetter) -> wire.DeadLetterView:
    return wire.DeadLetterView(
        id=letter.dlq_id,
        kind="step",
        run_id=letter.run_id,
        step=letter.step_id,
        attempts=letter.attempts,
        error=letter.error,
        at=iso(letter.at),
    )


def dead_delivery_view(delivery: Delivery) -> wire.DeadLetterView:
    return wire.DeadLetterView(
        id=delivery.delivery_id,
        kind="delivery",
        run_id=delivery.trace_id,
        step=delivery.step,
        attempts=delivery.attempt,
        error=delivery.error,
        at=iso(delivery.finished_at or delivery.created_at),
        topic=delivery.topic,
        message=delivery.message_seq,
        created_at=iso(delivery.created_at),
        finished_at=iso(delivery.finished_at),
    )


def delivery_view(delivery: Delivery) -> wire.DeliveryView:
    return wire.DeliveryView(
        id=delivery.delivery_id,
        step=delivery.step,
        topic=delivery.topic,
        status=delivery.status,
        attempt=delivery.attempt,
        trace_id=delivery.trace_id,
        error=delivery.error,
    )


def parameters(workflow: Workflow) -> dict[str, wire.ParameterView]:
    return {
        name: wire.ParameterView(
            type=p.type,
            required=p.required,
            default=p.default,
            description=p.description,
            choices=list(p.enum) if p.enum else None,
        )
        for name, p in workflow.parameters.items()
    }


def diagnostics(found: Iterable[Any]) -> list[wire.DiagnosticView]:
    return [wire.DiagnosticView(**d.to_dict()) for d in found]


# ------------------------------------------------------------------------------ steps


def step_info(registry: StepRegistry, name: str) -> wire.StepInfo:
    step = registry.steps[name]
    trigger = {
        "api": f"{step.method} {step.path}",
        "cron": step.cron or "",
        "event": ", ".join(step.subscribes),
        "noop": "-",
    }[step.type]
    return wire.StepInfo(
        name=name,
        type=step.type,
        trigger=trigger,
        emits=list(step.emit_topics),
        flows=list(step.flows),
        active=registry.is_active(name),
        file=str(step.where),
    )


def flow_view(flow: FlowGraph) -> wire.FlowView:
    """A flow: its nodes and edges as ``wayang flows --json`` has them, and drawn."""
    data = flow.to_dict()
    nodes = [wire.FlowNodeView(**node) for node in data["nodes"]]
    edges = [wire.FlowEdgeView(**edge) for edge in data["edges"]]
    graph = wire.GraphView(
        nodes=[wire.GraphNode(id=n.id, kind=n.type, label=n.name, active=n.active) for n in nodes],
        edges=[
            wire.GraphEdge(
                source=e.source,
                target=e.target,
                kind="topic",
                label=e.topic + (f" ({e.label})" if e.label else ""),
                virtual=e.virtual,
            )
            for e in edges
        ],
    )
    return wire.FlowView(name=flow.name, nodes=nodes, edges=edges, graph=graph)


def artifacts_view(run_id: str, manifest: ArtifactManifest | None) -> wire.RunArtifacts:
    if manifest is None:
        return wire.RunArtifacts(run_id=run_id, collected_at=None)
    files = [
        wire.ArtifactFileView(
            name=file.name,
            path=file.path,
            size=file.size,
            sha256=file.sha256,
            expires_at=iso(manifest.expires_at.get(file.name)),
        )
        for file in manifest.files
    ]
    return wire.RunArtifacts(
        run_id=run_id,
        collected_at=iso(manifest.collected_at),
        files=files,
        missing=list(manifest.missing),
        refused=list(manifest.refused),
    )
