"""The definition a run is pinned to, rebuilt from its ``RunStarted`` event.

Besides the planned steps, a :class:`RunPlan` holds the flow the decider walks: each step's
forward inbound edges (``needs``, decision branches, transitions), the loop edges leaving each
step, the steps a loop runs again, what each waiting step waits for, and the policy gate.

A transition with ``on`` (it waits for an event) becomes a step of its own, ``<from>~<to>``, of
kind ``event``: it shows in the history and status like any wait, and the transition's ``when``
and ``map`` read the event it received.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wayang.engine.events import RunStarted
from wayang.engine.gate import AllowAll, PolicyGate
from wayang.model.graph import Edge, StepGraph
from wayang.model.loader import parse_pinned
from wayang.model.plan import Plan, PlannedStep, RetryPolicy, plan_workflow
from wayang.model.spec import EventStep, StepEmit, Workflow
from wayang.model.validate import build_graph

GateFactory = Callable[[Workflow, RunStarted], PolicyGate]


@dataclass(frozen=True, slots=True)
class EventWait:
    """What an event wait listens for: a topic, and a correlation expression (or None)."""

    topic: str
    correlate: Any


@dataclass(frozen=True)
class RunPlan:
    """A run's workflow spec and plan: steps by id, in dependency order.

    ``index`` gives each step's position in ``order``; ``dependents`` the steps whose readiness
    a step's end can change; ``inbound`` each step's forward edges in; ``loops`` the edges
    leaving a step that start a new visit of their target; ``body`` the steps such a visit runs
    again.
    """

    workflow: Workflow
    plan: Plan
    steps: dict[str, PlannedStep]
    order: tuple[str, ...]
    index: dict[str, int] = field(default_factory=dict)
    dependents: dict[str, tuple[str, ...]] = field(default_factory=dict)
    inbound: dict[str, tuple[Edge, ...]] = field(default_factory=dict)
    loops: dict[str, tuple[Edge, ...]] = field(default_factory=dict)
    body: dict[str, tuple[str, ...]] = field(default_factory=dict)
    events: dict[str, EventWait] = field(default_factory=dict)
    gate: PolicyGate = field(default_factory=AllowAll)
    emits: dict[str, tuple[StepEmit, ...]] = field(default_factory=dict)
    # flow.readiness's memo: whether each join's inbound edges are all plain (no branch, no when).
    plain_joins: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(
        cls,
        workflow: Workflow,
        started: RunStarted,
        gates: GateFactory | None = None,
        *,
        plan: Plan | None = None,
    ) -> RunPlan:
        """``plan`` is the workflow planned with ``started``'s parameters and environment, when
        the caller made it already."""
        if gates is None and _has_policy(workflow, started):
            raise ValueError("this run has a policy: build its plan with wayang.policy.plan_run")
        graph = build_graph(workflow)
        if plan is None:
            plan = plan_workflow(
                workflow,
                started.params,
                environ=started.env,
                env_overrides=started.env_overrides,
                graph=graph,
            )
        flow = _Flow(workflow, plan, graph)
        gate = gates(workflow, started) if gates is not None else AllowAll()
        return cls(
            workflow,
            plan,
            flow.steps,
            tuple(flow.order),
            {step_id: position for position, step_id in enumerate(flow.order)},
            {k: tuple(v) for k, v in flow.dependents.items()},
            {k: tuple(v) for k, v in flow.inbound.items()},
            {k: tuple(v) for k, v in flow.loops.items() if v},
            {k: tuple(flow.graph.loop_body(k)) for k in flow.loop_targets},
            flow.events,
            gate,
            {k: tuple(s.emit) for k, s in workflow.steps.items() if s.emit},
        )

    @classmethod
    def from_started(
        cls,
        started: RunStarted,
        gates: GateFactory | None = None,
        workflow: Workflow | None = None,
    ) -> RunPlan:
        """Rebuild from the definition text pinned in the history (recovery, replay);
        ``workflow``: that text parsed already (it is, for every run of one definition)."""
        parsed = workflow or parse_pinned(started.source, started.filename)
        return cls.build(parsed, started, gates)

    def max_visits(self, step_id: str) -> int:
        spec = self.workflow.steps.get(step_id)
        own = spec.max_visits if spec is not None else None
        return own if own is not None else self.workflow.defaults.max_visits


def _has_policy(workflow: Workflow, started: RunStarted) -> bool:
    policy = workflow.policy
    return bool(
        started.policy_source
        or policy.rules
        or policy.allowed_tools is not None
        or policy.allowed_env is not None
        or policy.engine
    )


class _Flow:
    """Works out the flow of one plan: synthetic event steps, edges in, loops, order."""

    def __init__(self, workflow: Workflow, plan: Plan, graph: StepGraph) -> None:
        self.steps: dict[str, PlannedStep] = {step.id: step for step in plan.steps}
        self.events: dict[str, EventWait] = {
            step_id: EventWait(spec.topic, spec.correlate)
            for step_id, spec in workflow.steps.items()
            if isinstance(spec, EventStep)
        }
        edges: list[Edge] = []
        back: set[tuple[str, str]] = set(graph.back)
        order = list(self.steps)
        waits_on_events = False
        for edge in _unique(graph.edges):
            if edge.on is None:
                edges.append(edge)
                continue
            waits_on_events = True
            waiter = self._event_step(edge)
            order.insert(order.index(edge.before) + 1, waiter.id)
            edges.append(Edge(edge.before, waiter.id, edge.path))
            edges.append(Edge(waiter.id, edge.after, edge.path, edge.kind, edge.when, edge.map))
            if (edge.before, edge.after) in back:
                back.add((waiter.id, edge.after))
        if not waits_on_events:
            # No transition waits on an event: the flow is the workflow's own graph, and the
            # plan lists the steps in its topological order already.
            self.graph, self.order = graph, order
        else:
            pairs = {(e.before, e.after) for e in edges}
            self.graph = StepGraph(order, edges, frozenset(back & pairs))
            self.order = [s for s in self.graph.topological_order() if s in self.steps]
        self.inbound: dict[str, list[Edge]] = {s: [] for s in self.order}
        self.loops: dict[str, list[Edge]] = {s: [] for s in self.order}
        self.dependents: dict[str, list[str]] = {s: [] for s in self.order}
        depends: set[tuple[str, str]] = set()  # not list lookups: a fan-out of 1,000 stays linear
        for edge in edges:
            if edge.before not in self.steps or edge.after not in self.steps:
                continue
            if self.graph.is_back(edge.before, edge.after):
                self.loops[edge.before].append(edge)
            else:
                self.inbound[edge.after].append(edge)
                if (edge.before, edge.after) not in depends:
                    depends.add((edge.before, edge.after))
                    self.dependents[edge.before].append(edge.after)
        self.loop_targets = {e.after for edges_out in self.loops.values() for e in edges_out}

    def _event_step(self, edge: Edge) -> PlannedStep:
        step_id = f"{edge.before}~{edge.after}"
        correlate = getattr(edge.correlate, "source", None)
        waiter = PlannedStep(
            id=step_id,
            kind="event",
            name=f"{edge.before} → {edge.after} on {edge.on}",
            needs=(edge.before,),
            command=None,
            uses=None,
            inputs={},
            env={},
            deferred=(),
            when=None,
            workspace="inherit",
            timeout_s=edge.timeout,
            retry=RetryPolicy(),
            continue_on_error=False,
            compensate=None,
            config={"topic": edge.on, "correlate": correlate},
        )
        self.steps[step_id] = waiter
        self.events[step_id] = EventWait(edge.on or "", edge.correlate)
        return waiter


def _unique(edges: list[Edge]) -> list[Edge]:
    """One edge per (before, after): ``needs`` written beside a branch is the same edge."""
    seen: dict[tuple[str, str], Edge] = {}
    for edge in edges:
        key = (edge.before, edge.after)
        if key not in seen or (seen[key].kind == "needs" and edge.kind != "needs"):
            seen[key] = edge
    return list(seen.values())
