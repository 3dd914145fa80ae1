"""The step registry: a project's steps by name, by topic, by route and by flow, checked as a whole.

Built once from what discovery found (:meth:`StepRegistry.build`). Per-file problems arrive as
diagnostics already; the registry adds the ones that need every step at once:

- two steps with one name (error, naming both places);
- two API steps on the same method and an equivalent path (``/orders/:id`` and ``/orders/:key``
  clash; error);
- a topic emitted but subscribed by no step, or subscribed but emitted by none (warnings;
  ``virtualEmits``/``virtualSubscribes`` count, and so do ``known_topics`` the rest of the project
  emits or waits on, such as ``workflow.toml`` event nodes).

Activation: every step is active unless its name is in the ``inactive`` set given at build time
(the persisted per-environment registry state lives elsewhere). A deactivated step receives
nothing: :meth:`StepRegistry.subscribers` and :attr:`StepRegistry.crons` leave it out. Routes are
matched whether or not the step is active, so the HTTP layer can answer "deactivated" (503) rather
than "no such route" (404); it checks :meth:`StepRegistry.is_active`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from wayang.errors import Diagnostic, Severity, UsageError
from wayang.model.keys import did_you_mean
from wayang.steps.model import StepDef, StepType

__all__ = ["FlowEdge", "FlowGraph", "FlowNode", "StepRegistry", "route_pattern"]


@dataclass(frozen=True, slots=True)
class FlowNode:
    """A step in a flow drawing."""

    name: str
    type: StepType
    file: str
    line: int
    active: bool = True
    description: str = ""
    trigger: str = ""  # "POST /orders", "*/5 * * * *", or the subscribed topics

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.name,
            "name": self.name,
            "type": self.type,
            "file": self.file,
            "line": self.line,
            "active": self.active,
            "description": self.description,
            "trigger": self.trigger,
        }


@dataclass(frozen=True, slots=True)
class FlowEdge:
    """A topic carrying messages from one step to another; ``virtual`` edges are drawn only."""

    source: str
    target: str
    topic: str
    label: str = ""
    conditional: bool = False
    virtual: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "topic": self.topic,
            "label": self.label,
            "conditional": self.conditional,
            "virtual": self.virtual,
        }


@dataclass(frozen=True, slots=True)
class FlowGraph:
    """One flow: the steps labelled with it and the topics between them."""

    name: str
    nodes: tuple[FlowNode, ...]
    edges: tuple[FlowEdge, ...]

    def to_dict(self) -> dict[str, Any]:
        """The form of ``wayang flows --json``: nodes and edges for the Workbench."""
        return {
            "name": self.name,
            "nodes": [node.to_dict() for node in self.nodes],
            "edges": [edge.to_dict() for edge in self.edges],
        }

    def to_text(self) -> str:
        """The form of ``wayang flows``: the steps, then one line per edge."""
        lines = [f"flow {self.name} ({len(self.nodes)} steps)"]
        for node in self.nodes:
            state = "" if node.active else "  (inactive)"
            lines.append(f"  {node.name} [{node.type}{_spaced(node.trigger)}]{state}")
        for edge in self.edges:
            arrow = "-.->" if edge.virtual else "-->"
            notes = [note for note in (edge.label, "conditional" * edge.conditional) if note]
            extra = f" ({', '.join(notes)})" if notes else ""
            lines.append(f"  {edge.source} {arrow} {edge.target}  via {edge.topic}{extra}")
        return "\n".join(lines)


def _spaced(text: str) -> str:
    return f" {text}" if text else ""


def route_pattern(path: str) -> tuple[str, ...]:
    """The segments of an API path with placeholders blanked: ``/a/:id/`` → ``("a", ":")``."""
    return tuple(":" if part.startswith(":") else part for part in path.strip("/").split("/"))


@dataclass(frozen=True, slots=True)
class _Route:
    step: StepDef
    segments: tuple[str, ...]  # as written, placeholders included


@dataclass
class StepRegistry:
    """A project's steps, indexed, with the diagnostics found while loading and checking them."""

    steps: dict[str, StepDef]
    diagnostics: list[Diagnostic] = field(default_factory=list)
    inactive: set[str] = field(default_factory=set)
    _subscribers: dict[str, list[StepDef]] = field(init=False, repr=False, default_factory=dict)
    _static_routes: dict[tuple[str, str], StepDef] = field(
        init=False, repr=False, default_factory=dict
    )
    _param_routes: dict[tuple[str, int], list[_Route]] = field(
        init=False, repr=False, default_factory=dict
    )

    @classmethod
    def build(
        cls,
        steps: Iterable[StepDef],
        diagnostics: Iterable[Diagnostic] = (),
        *,
        inactive: Iterable[str] = (),
        known_topics: Iterable[str] = (),
    ) -> StepRegistry:
        """Index ``steps`` and check them together; the first of two same-named steps wins."""
        found = list(diagnostics)
        unique = _unique_steps(steps, found)
        registry = cls(unique, found, set(inactive) & set(unique))
        registry._index(found)
        found.extend(_topic_warnings(list(unique.values()), set(known_topics)))
        return registry

    # --- what was found ------------------------------------------------------------------------

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.WARNING]

    def get(self, name: str) -> StepDef:
        """The step called ``name``; a UsageError naming the closest one if there is none."""
        try:
            return self.steps[name]
        except KeyError:
            hint = did_you_mean(name, self.steps) or "; 'wayang steps list' shows them all"
            raise UsageError(f"no step is named '{name}'{hint}") from None

    # --- activation ----------------------------------------------------------------------------

    def is_active(self, name: str) -> bool:
        return name in self.steps and name not in self.inactive

    def activate(self, name: str) -> None:
        self.inactive.discard(self.get(name).name)

    def deactivate(self, name: str) -> None:
        self.inactive.add(self.get(name).name)

    # --- lookups -------------------------------------------------------------------------------

    def subscribers(self, topic: str) -> list[StepDef]:
        """The active steps that receive messages on ``topic`` (virtual subscriptions do not)."""
        return [s for s in self._subscribers.get(topic, ()) if s.name not in self.inactive]

    def subscriptions(self) -> dict[str, list[tuple[str, int]]]:
        """Every topic with its active subscribers and their attempt limits (for the fan-out)."""
        found: dict[str, list[tuple[str, int]]] = {}
        for topic, steps in self._subscribers.items():
            active = [(s.name, s.retry.attempts) for s in steps if s.name not in self.inactive]
            if active:
                found[topic] = active
        return found

    @property
    def crons(self) -> list[StepDef]:
        """The active cron steps."""
        return [s for s in self.steps.values() if s.type == "cron" and s.name not in self.inactive]

    @property
    def api_routes(self) -> dict[tuple[str, str], StepDef]:
        """Every API step by (method, path as written)."""
        return {(s.method, s.path): s for s in self.steps.values() if s.type == "api"}

    def match(self, method: str, path: str) -> tuple[StepDef, dict[str, str]] | None:
        """The API step serving ``method path`` and the values of its ``:name`` placeholders.

        A path written without placeholders wins over one with them (``/orders/new`` before
        ``/orders/:id``); active or not, see the module docstring.
        """
        method = method.upper()
        segments = tuple(path.strip("/").split("/"))
        static = self._static_routes.get((method, "/".join(segments)))
        if static is not None:
            return static, {}
        for route in self._param_routes.get((method, len(segments)), ()):
            params = _bind(route.segments, segments)
            if params is not None:
                return route.step, params
        return None

    def flows(self) -> dict[str, FlowGraph]:
        """Every flow by name, sorted, with its nodes and edges."""
        members: dict[str, list[StepDef]] = defaultdict(list)
        for step in self.steps.values():
            for flow in step.flows:
                members[flow].append(step)
        return {name: self._flow(name, members[name]) for name in sorted(members)}

    # --- building ------------------------------------------------------------------------------

    def _index(self, found: list[Diagnostic]) -> None:
        routes: dict[tuple[str, tuple[str, ...]], StepDef] = {}
        for step in self.steps.values():
            for topic in step.subscribes:
                self._subscribers.setdefault(topic, []).append(step)
            if step.type == "api" and step.path:
                self._add_route(step, routes, found)

    def _add_route(
        self,
        step: StepDef,
        routes: dict[tuple[str, tuple[str, ...]], StepDef],
        found: list[Diagnostic],
    ) -> None:
        key = (step.method, route_pattern(step.path))
        first = routes.setdefault(key, step)
        if first is not step:
            found.append(_clash(step, first))
            return
        segments = tuple(step.path.strip("/").split("/"))
        if ":" in key[1]:
            self._param_routes.setdefault((step.method, len(segments)), []).append(
                _Route(step, segments)
            )
        else:
            self._static_routes[(step.method, "/".join(segments))] = step

    def _flow(self, name: str, steps: Sequence[StepDef]) -> FlowGraph:
        nodes = tuple(_node(step, self.is_active(step.name)) for step in steps)
        return FlowGraph(name, nodes, tuple(_edges(steps)))


# --- checks ------------------------------------------------------------------------------------


def _unique_steps(steps: Iterable[StepDef], found: list[Diagnostic]) -> dict[str, StepDef]:
    unique: dict[str, StepDef] = {}
    for step in steps:
        first = unique.setdefault(step.name, step)
        if first is not step:
            found.append(
                _at(
                    step,
                    f"step name '{step.name}' is already used by the step at {first.where}; "
                    "step names must be unique — rename one of them",
                    "step-duplicate",
                )
            )
    return unique


def _clash(step: StepDef, first: StepDef) -> Diagnostic:
    return _at(
        step,
        f"API route {step.method} {step.path} of step '{step.name}' clashes with "
        f"{first.method} {first.path} of step '{first.name}' at {first.where}; change one path "
        "or method",
        "step-path-clash",
    )


def _topic_warnings(steps: list[StepDef], known: set[str]) -> list[Diagnostic]:
    emitted = {e.topic for s in steps for e in (*s.emits, *s.virtual_emits)} | known
    subscribed = {t for s in steps for t in (*s.subscribes, *s.virtual_subscribes)} | known
    found = []
    for step in steps:
        for topic in dict.fromkeys(e.topic for e in step.emits):
            if topic not in subscribed:
                message = (
                    f"step '{step.name}' emits '{topic}' but no step subscribes to it; add a "
                    "subscriber, or fix the topic name" + did_you_mean(topic, subscribed)
                )
                found.append(_at(step, message, "topic-unsubscribed", Severity.WARNING))
        for topic in dict.fromkeys(step.subscribes):
            if topic not in emitted:
                message = (
                    f"step '{step.name}' subscribes to '{topic}' but no step emits it; it only "
                    "runs for 'wayang emit' or external emits" + did_you_mean(topic, emitted)
                )
                found.append(_at(step, message, "topic-unemitted", Severity.WARNING))
    return found


def _at(step: StepDef, message: str, code: str, severity: Severity = Severity.ERROR) -> Diagnostic:
    return Diagnostic(str(step.where.file), step.where.line, 1, message, severity, code)


# --- lookups and drawings ----------------------------------------------------------------------


def _bind(pattern: tuple[str, ...], segments: tuple[str, ...]) -> dict[str, str] | None:
    params: dict[str, str] = {}
    for want, got in zip(pattern, segments, strict=True):
        if want.startswith(":"):
            if not got:
                return None
            params[want[1:]] = got
        elif want != got:
            return None
    return params


def _node(step: StepDef, active: bool) -> FlowNode:
    return FlowNode(
        step.name,
        step.type,
        str(step.where.file),
        step.where.line,
        active,
        step.description,
        _trigger(step),
    )


def _trigger(step: StepDef) -> str:
    if step.type == "api":
        return f"{step.method} {step.path}"
    if step.type == "cron":
        return step.cron
    return ", ".join(step.subscribes)


def _edges(steps: Sequence[StepDef]) -> list[FlowEdge]:
    listeners: dict[str, list[tuple[StepDef, bool]]] = defaultdict(list)
    for step in steps:
        for topic in step.subscribes:
            listeners[topic].append((step, False))
        for topic in step.virtual_subscribes:
            listeners[topic].append((step, True))
    edges: dict[tuple[str, str, str], FlowEdge] = {}
    for step in steps:
        sent = [(e, False) for e in step.emits] + [(e, True) for e in step.virtual_emits]
        for emit, virtual_emit in sent:
            for target, virtual_listen in listeners.get(emit.topic, ()):
                virtual = virtual_emit or virtual_listen
                edge = FlowEdge(
                    step.name, target.name, emit.topic, emit.label, emit.conditional, virtual
                )
                key = (step.name, target.name, emit.topic)
                old = edges.get(key)
                # A real edge wins over a virtual one drawn between the same steps.
                if old is None or (old.virtual and not virtual):
                    edges[key] = edge
    return list(edges.values())
