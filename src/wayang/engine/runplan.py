"""The definition a run is pinned to, rebuilt from its ``RunStarted`` event."""

from __future__ import annotations

from dataclasses import dataclass

from wayang.engine.events import RunStarted
from wayang.model.loader import parse_workflow
from wayang.model.plan import Plan, PlannedStep, plan_workflow
from wayang.model.spec import Workflow


@dataclass(frozen=True)
class RunPlan:
    """A run's workflow spec and plan: steps by id, in dependency order."""

    workflow: Workflow
    plan: Plan
    steps: dict[str, PlannedStep]
    order: tuple[str, ...]

    @classmethod
    def build(cls, workflow: Workflow, started: RunStarted) -> RunPlan:
        plan = plan_workflow(
            workflow, started.params, environ=started.env, env_overrides=started.env_overrides
        )
        steps = {step.id: step for step in plan.steps}
        return cls(workflow, plan, steps, tuple(steps))

    @classmethod
    def from_started(cls, started: RunStarted) -> RunPlan:
        """Rebuild from the definition text pinned in the history (recovery, replay)."""
        return cls.build(parse_workflow(started.source, started.filename), started)
