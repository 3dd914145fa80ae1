"""What every part of the decider shares: the state it advances, the events it emits, the scope
expressions see, the policy gate, and settling a step without a worker."""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from wayang.engine import events as ev
from wayang.engine.gate import ALLOW, PolicyRequest, Verdict
from wayang.engine.messages import Decision, PublishMessage
from wayang.engine.runplan import RunPlan
from wayang.engine.state import RunState, StepState, StepStatus
from wayang.errors import ExpressionError
from wayang.model.expr import evaluate_condition, evaluate_value
from wayang.model.plan import PlannedStep

SETTLING = (ev.StepSucceeded, ev.StepReused, ev.StepFailed, ev.StepSkipped, ev.StepCancelled)


class StepsView(Mapping[str, Any]):
    """``steps`` as expressions see it, built lazily so dispatch stays O(what is read)."""

    def __init__(self, steps: dict[str, StepState]) -> None:
        self._steps = steps

    def __getitem__(self, key: str) -> Any:
        return self._steps[key].snapshot()

    def __iter__(self) -> Iterator[str]:
        return iter(self._steps)

    def __len__(self) -> int:
        return len(self._steps)


class DeciderBase(ABC):
    """The decider's shared state and primitives; the flow, waits and saga parts build on it."""

    @abstractmethod
    def dispatch(self, planned: PlannedStep, attempt: int) -> bool:
        """Hand an attempt of a task step to a worker; False if it failed without running."""

    def __init__(self, run: RunPlan, state: RunState, now: float) -> None:
        self.run = run
        self.state = state
        self.now = now
        self.decision = Decision()
        self.commands = self.decision.commands
        # Positions (in run.order) of steps to look at when scheduling; see _schedule_ready.
        self._candidates: list[int] = []
        self._queued: set[int] = set()
        # Steps settled in this decision whose loop transitions are still to be looked at.
        self._settled: list[str] = []

    def emit(self, event: ev.Event) -> None:
        published: list[PublishMessage] = []
        if isinstance(event, ev.StepSucceeded) and event.step_id in self.run.emits:
            event, published = self._publishing(event)
        self.state.apply(event)
        self.decision.events.append(event)
        for message in published:
            self.emit(ev.MessagePublished(message.step_id, message.topic, message.key, self.now))
            self.commands.append(message)
        if isinstance(event, SETTLING) and (not isinstance(event, ev.StepFailed) or event.final):
            self._consider(self.run.dependents.get(event.step_id, ()))
            if event.step_id in self.run.loops:
                self._settled.append(event.step_id)

    def _publishing(
        self, succeeded: ev.StepSucceeded
    ) -> tuple[ev.StepSucceeded | ev.StepFailed, list[PublishMessage]]:
        """The messages a succeeding step's ``emit`` publishes. One that cannot be built (an
        expression fails on the outputs) fails the step for good: publishing is part of its
        result, and running it again would give the same outputs."""
        scope = self.scope(succeeded.attempt, outputs=succeeded.outputs)
        messages: list[PublishMessage] = []
        for index, spec in enumerate(self.run.emits[succeeded.step_id]):
            try:
                if spec.when is not None and not evaluate_condition(spec.when, scope):
                    continue
                data = evaluate_value(spec.data, scope)
                key = spec.key.render(scope) if spec.key is not None else ""
            except ExpressionError as exc:
                error = f"emit[{index}] (topic '{spec.topic}'): {exc.message}"
                failed = ev.StepFailed(
                    succeeded.step_id,
                    succeeded.attempt,
                    error,
                    None,
                    succeeded.duration_s,
                    True,
                    succeeded.at,
                )
                return failed, []
            messages.append(PublishMessage(succeeded.step_id, spec.topic, data, key))
        return succeeded, messages

    def _consider(self, step_ids: Iterable[str]) -> None:
        index, queued = self.run.index, self._queued
        for step_id in step_ids:
            position = index[step_id]
            if position not in queued:
                queued.add(position)
                heapq.heappush(self._candidates, position)

    # --- what expressions see ------------------------------------------------------------------

    def scope(self, attempt: int = 1, **extra: Any) -> dict[str, Any]:
        started = self.state.started
        return {
            "params": started.params if started else {},
            "env": {
                **(started.env if started else {}),
                **(started.env_overrides if started else {}),
            },
            "steps": StepsView(self.state.steps),
            "run": self.run_info(attempt),
            **extra,
        }

    def run_info(self, attempt: int) -> dict[str, Any]:
        started = self.state.started
        return {
            "id": self.state.run_id,
            "workflow": self.run.workflow.id,
            "attempt": attempt,
            "started_by": started.actor if started else "",
            "started_at": started.at if started else 0.0,
        }

    # --- policy ---------------------------------------------------------------------------------

    def ask(
        self,
        action: str,
        step_id: str,
        *,
        actor: str | None = None,
        roles: Iterable[str] | None = None,
        record: bool = True,
        **fields: Any,
    ) -> Verdict:
        """Ask the gate; a denial (and an allow by named rules) is recorded as an event."""
        if getattr(self.run.gate, "allows_everything", False):
            return ALLOW  # no policy: keep the dispatch path free of request building
        started = self.state.started
        who = actor if actor is not None else (started.actor if started else "")
        their_roles = tuple(
            roles if roles is not None else (started.actor_roles if started else ())
        )
        planned = self.run.steps.get(step_id)
        request = PolicyRequest(
            action=action,
            step_id=step_id,
            step_kind=planned.kind if planned else "",
            actor=who,
            roles=their_roles,
            scope=self.scope(**fields.pop("scope", {})),
            **fields,
        )
        verdict = self.run.gate.check(request)
        if record and not verdict.allowed:
            self.emit(ev.PolicyDenied(step_id, action, verdict.rule, verdict.reason, who, self.now))
        elif record and verdict.applied:
            self.emit(ev.PolicyAllowed(step_id, action, list(verdict.applied), who, self.now))
        return verdict

    # --- settling without a worker ------------------------------------------------------------

    def key(self, step_id: str) -> str:
        """The idempotency key of the step's current (or next) visit."""
        step = self.state.step(step_id)
        visit = step.visits + (1 if step.status is StepStatus.PENDING else 0)
        base = f"{self.state.run_id}/{step_id}"
        return base if visit <= 1 else f"{base}#{visit}"

    def next_attempt(self, step_id: str) -> int:
        return self.state.step(step_id).attempt + 1

    def mark_scheduled(self, planned: PlannedStep) -> int:
        """Record a step that runs no task as scheduled; its attempt number."""
        step = self.state.step(planned.id)
        if step.status is not StepStatus.PENDING:
            return step.attempt
        attempt = self.next_attempt(planned.id)
        self.emit(ev.StepScheduled(planned.id, attempt, "", self.key(planned.id), self.now))
        return attempt

    def fail_without_running(
        self, planned: PlannedStep, error: str, timed_out: bool = False
    ) -> None:
        attempt = self.mark_scheduled(planned)
        self.emit(ev.StepFailed(planned.id, attempt, error, None, 0.0, True, self.now, timed_out))

    def succeed_without_running(self, planned: PlannedStep, outputs: dict[str, Any]) -> None:
        attempt = self.mark_scheduled(planned)
        step = self.state.step(planned.id)
        since = step.started_at if step.started_at is not None else self.now
        self.emit(ev.StepSucceeded(planned.id, attempt, outputs, self.now - since, self.now))
