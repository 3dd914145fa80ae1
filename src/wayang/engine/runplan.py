"""The definition a run is pinned to, rebuilt from its ``RunStarted`` event."""

from __future__ import annotations

from dataclasses import dataclass, field

from wayang.engine.events import RunStarted
from wayang.model.loader import parse_workflow
from wayang.model.plan import Plan, PlannedStep, plan_workflow
from wayang.model.spec import Workflow


@dataclass(frozen=True)
class RunPlan:
    """A run's workflow spec and plan: steps by id, in dependency order.

    ``index`` gives each step's position in ``order``; ``dependents`` the steps that need it.
    """

    workflow: Workflow
    plan: Plan
    steps: dict[str, PlannedStep]
    order: tuple[str, ...]
    index: dict[str, int] = field(default_factory=dict)
    dependents: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def build(cls, workflow: Workflow, started: RunStarted) -> RunPlan:
        plan = plan_workflow(
            workflow, started.params, environ=started.env, env_overrides=started.env_overrides
        )
        steps = {step.id: step for step in plan.steps}
        dependents: dict[str, list[str]] = {step_id: [] for step_id in steps}
        for step in plan.steps:
            for need in step.needs:
                dependents[need].append(step.id)
        index = {step_id: position for position, step_id in enumerate(steps)}
        frozen = {step_id: tuple(after) for step_id, after in dependents.items()}
        return cls(workflow, plan, steps, tuple(steps), index, frozen)

    @classmethod
    def from_started(cls, started: RunStarted) -> RunPlan:
        """Rebuild from the definition text pinned in the history (recovery, replay)."""
        return cls.build(parse_workflow(started.source, started.filename), started)
