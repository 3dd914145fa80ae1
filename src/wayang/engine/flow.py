"""The flow between steps: which edges were taken, join rules, decisions and loops.

An edge into a step is *taken* when its source ended well (succeeded, or failed with
``continue_on_error``) and its condition holds: a decision's branch holds for the chosen target,
a transition's ``when`` must be true. It is *dead* when the source was skipped, cancelled or
failed, or the condition is false. A step runs by its ``join``: ``all`` edges taken (any dead one
skips it — skips propagate, so joins never hang), ``any`` one taken, or ``n`` taken.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wayang.engine import events as ev
from wayang.engine._base import DeciderBase
from wayang.engine.state import TERMINAL_STEP, StepStatus
from wayang.errors import ExpressionError
from wayang.model.expr import evaluate_condition
from wayang.model.graph import Edge
from wayang.model.plan import PlannedStep
from wayang.model.spec import DecisionStep


@dataclass(frozen=True, slots=True)
class Readiness:
    """``verdict`` is wait, run, skip or fail; ``reason`` says why for skip and fail."""

    verdict: str
    reason: str = ""
    denials: tuple[tuple[Edge, str, str], ...] = ()  # (edge, rule, reason) denied by policy


_WAIT = Readiness("wait")
# A step in one of these may leave an edge dead; SUCCEEDED never does.
_ENDED_BADLY = (StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED)


@dataclass(slots=True)
class _Scan:
    """Where a readiness scan of a join's inbound edges got to. The leading ``known`` edges
    were known taken before it began; they are listed only if the scan gets to a verdict (a
    wide join mostly stops at its first open edge, and copying them each time cost the square
    of its width)."""

    edges: tuple[Edge, ...]
    known: int  # the leading edges known taken, kept for next time
    newly_taken: list[Edge] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    open: int = 0
    stopped: bool = False  # at an open edge, which decided "wait"
    contiguous: bool = True  # every edge so far was taken and plain
    start: int = field(init=False)  # where this scan began: ``known`` then

    def __post_init__(self) -> None:
        self.start = self.known

    @property
    def taken(self) -> list[Edge]:
        return [*self.edges[: self.start], *self.newly_taken]

    def take(self, edge: Edge) -> None:
        self.newly_taken.append(edge)
        if self.contiguous and _plain(edge):
            self.known += 1
        else:
            self.contiguous = False


def _plain(edge: Edge) -> bool:
    """An edge taken exactly when its source ends well: no branch choice, no condition."""
    return edge.kind != "branch" and edge.when is None


class FlowMixin(DeciderBase):
    def readiness(self, planned: PlannedStep) -> Readiness:
        """Whether a pending step can run now, by its inbound edges and its join rule.

        A join of many steps is asked again after each of them ends, so two shortcuts keep that
        from costing the square of its width, both giving what the full scan would: the edges
        already known taken are not looked at again (``state.join_hint``, in runs without
        loops, where an ended step stays ended), and an ``all`` join of plain edges waits at the
        first open one when no step of the run has ended badly (no edge can be dead then).
        """
        edges = self.run.inbound.get(planned.id, ())
        if not edges:
            return Readiness("run")
        hints = self.state.join_hint if not self.run.loops else None
        scan = _Scan(edges, hints.get(planned.id, 0) if hints is not None else 0)
        failure = self._scan(scan, self._waits_at_first_open(planned, edges))
        if hints is not None:
            hints[planned.id] = scan.known
        if failure is not None:
            return failure
        if scan.stopped:
            return _WAIT
        taken, dead, open_ = scan.taken, scan.dead, scan.open
        first = self._join(planned, len(taken), dead, open_)
        if first.verdict != "run":
            return first
        denials = tuple(self._denied(edge) for edge in taken if edge.kind in ("transition", "next"))
        denied = tuple(d for d in denials if d is not None)
        if not denied:
            return first
        reasons = [f"policy rule '{rule}' denied {e.before} → {e.after}" for e, rule, _ in denied]
        verdict = self._join(planned, len(taken) - len(denied), dead + reasons, open_)
        return Readiness(verdict.verdict, verdict.reason, denied)

    def _join(self, planned: PlannedStep, taken: int, dead: list[str], open_: int) -> Readiness:
        rule = self.join_rule(planned)
        total = taken + len(dead) + open_
        if rule == "all":
            if dead:
                return Readiness("skip", dead[0])
            return Readiness("run") if not open_ else _WAIT
        need = 1 if rule == "any" else min(int(rule), total)
        if taken >= need:
            return Readiness("run")
        if taken + open_ < need:
            why = (
                "no inbound transition was taken"
                if rule == "any"
                else (f"only {taken} of the {need} inbound transitions it joins could be taken")
            )
            return Readiness("skip", f"{why} ({'; '.join(dead)})" if dead else why)
        return _WAIT

    def _scan(self, scan: _Scan, wait_early: bool) -> Readiness | None:
        """Sort the edges past the known ones into taken, dead and open (see readiness)."""
        edges = scan.edges
        for at in range(scan.start, len(edges)):  # no slice: a copy of the rest each time
            edge = edges[at]
            try:
                outcome = self._outcome(edge)
            except ExpressionError as exc:
                where = f"transition {edge.before} → {edge.after}"
                return Readiness("fail", f"{where}: when: {exc.message}")
            if outcome is True:
                scan.take(edge)
                continue
            scan.contiguous = False
            if outcome is not None:
                scan.dead.append(str(outcome))
            elif wait_early:
                scan.stopped = True
                return None
            else:
                scan.open += 1
        return None

    def _waits_at_first_open(self, planned: PlannedStep, edges: tuple[Edge, ...]) -> bool:
        """Whether an open edge alone decides ``wait``: an ``all`` join whose edges can only be
        dead if their source ended badly, in a run where no step has."""
        if self.join_rule(planned) != "all":
            return False
        counts = self.state.counts
        if any(counts.get(status, 0) for status in _ENDED_BADLY):
            return False
        plain = self.run.plain_joins.get(planned.id)
        if plain is None:
            plain = self.run.plain_joins[planned.id] = all(_plain(edge) for edge in edges)
        return plain

    def join_rule(self, planned: PlannedStep) -> str | int:
        spec = self.run.workflow.steps.get(planned.id)
        return spec.join if spec is not None else "all"

    def _outcome(self, edge: Edge) -> bool | str | None:
        """True if taken, None while open, else the reason it is dead."""
        source = self.state.step(edge.before)
        status = source.status
        if status not in TERMINAL_STEP:
            return None
        ended_well = status is StepStatus.SUCCEEDED or (
            status is StepStatus.FAILED and self.run.steps[edge.before].continue_on_error
        )
        if not ended_well:
            verb = "failed" if status is StepStatus.FAILED else f"was {status.value}"
            return f"needs '{edge.before}', which {verb}"
        if edge.kind == "branch":
            chosen = source.outputs.get("chosen")
            return True if chosen == edge.after else f"decision '{edge.before}' chose '{chosen}'"
        if edge.when is not None:
            scope = self.scope(**self._event_scope(edge.before))
            if not evaluate_condition(edge.when, scope):
                return f"the transition from '{edge.before}' was not taken ({edge.when.source})"
        return True

    def _event_scope(self, step_id: str) -> dict[str, Any]:
        """After an event wait, ``event`` is the payload it received."""
        if step_id in self.run.events:
            step = self.state.step(step_id)
            return {"event": step.outputs.get("event", step.outputs)}
        return {}

    def _denied(self, edge: Edge) -> tuple[Edge, str, str] | None:
        verdict = self.ask(
            "transition",
            edge.after,
            record=False,
            scope={"transition": {"from": edge.before, "to": edge.after}},
        )
        return None if verdict.allowed else (edge, verdict.rule, verdict.reason)

    def record_denials(self, readiness: Readiness) -> None:
        started = self.state.started
        actor = started.actor if started else ""
        for edge, rule, reason in readiness.denials:
            self.emit(ev.PolicyDenied(edge.after, "transition", rule, reason, actor, self.now))

    def mapped_inputs(self, planned: PlannedStep) -> dict[str, Any]:
        """Inputs that taken transitions copy from their source's outputs (``map``)."""
        inputs: dict[str, Any] = {}
        edges = list(self.run.inbound.get(planned.id, ()))
        via = self.state.step(planned.id).via
        edges += [e for e in self.run.loops.get(via, ()) if e.after == planned.id]
        for edge in edges:
            if edge.map and self.state.step(edge.before).status is StepStatus.SUCCEEDED:
                outputs = self.state.step(edge.before).outputs
                source = (
                    outputs.get("event", outputs) if edge.before in self.run.events else outputs
                )
                for target, name in edge.map.items():
                    if isinstance(source, dict) and name in source:
                        inputs[target] = source[name]
        return inputs

    # --- decisions ------------------------------------------------------------------------------

    def decide_branch(self, planned: PlannedStep) -> None:
        """Run a decision: the first case that holds, else the default; the rest are skipped."""
        spec = self.run.workflow.steps[planned.id]
        assert isinstance(spec, DecisionStep)
        scope = self.scope()
        chosen, case = spec.default, -1
        try:
            for index, branch in enumerate(spec.cases):
                if evaluate_condition(branch.when, scope):
                    chosen, case = branch.next, index
                    break
        except ExpressionError as exc:
            self.fail_without_running(planned, f"cases[{index}].when: {exc.message}")
            return
        if chosen is None:
            cases = "; ".join(c.when.source for c in spec.cases)
            error = f"no case held ({cases}) and the decision has no default"
            self.fail_without_running(planned, error)
            return
        self.mark_scheduled(planned)
        self.emit(ev.DecisionMade(planned.id, chosen, case, self.now))
        self.succeed_without_running(planned, {"chosen": chosen, "case": case})

    # --- loops ---------------------------------------------------------------------------------

    def take_loops(self) -> None:
        """Start new visits for the loop transitions taken by steps settled so far."""
        while self._settled:
            step_id = self._settled.pop(0)
            for edge in self.run.loops.get(step_id, ()):
                try:
                    taken = self._outcome(edge) is True
                except ExpressionError as exc:
                    error = f"transition {edge.before} → {edge.after}: when: {exc.message}"
                    self.state.fail_reason = error
                    return
                if taken:
                    self._revisit(edge)
                    break  # one loop back per settle: the first taken in written order

    def _revisit(self, edge: Edge) -> None:
        target = edge.after
        visits, limit = self.state.step(target).visits, self.run.max_visits(target)
        if visits >= limit:
            self.emit(ev.VisitLimitReached(target, visits, limit, edge.before, self.now))
            return
        body = self.run.body.get(target, (target,))
        reset = [s for s in body if self.state.step(s).status in TERMINAL_STEP]
        self.emit(ev.VisitStarted(target, visits + 1, edge.before, reset, self.now))
        self._consider([target])
