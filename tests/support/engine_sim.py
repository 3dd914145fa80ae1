"""A pure simulator for the engine core: drives ``decide`` the way the runtime will."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

from wayang.engine import events as ev
from wayang.engine.decide import decide, start_run
from wayang.engine.messages import (
    CancelTimer,
    Decision,
    DispatchTask,
    Input,
    StartTimer,
    TaskFinished,
    TimerFired,
)
from wayang.engine.runplan import RunPlan
from wayang.engine.state import RunState, fold
from wayang.model.loader import parse_workflow
from wayang.model.plan import resolve_parameters
from wayang.policy import gate_for


@dataclass
class Sim:
    run: RunPlan
    state: RunState
    history: list[ev.Event] = field(default_factory=list)
    tasks: dict[str, DispatchTask] = field(default_factory=dict)
    timers: dict[str, StartTimer] = field(default_factory=dict)
    dispatched: list[DispatchTask] = field(default_factory=list)
    now: float = 0.0

    @classmethod
    def begin(
        cls,
        text: str,
        params: dict | None = None,
        parallel: int = 0,
        timeout_s: float | None = None,
        actor: str = "",
    ) -> Sim:
        source = textwrap.dedent(text)
        workflow = parse_workflow(source)
        values = resolve_parameters(workflow, params or {})
        started = ev.RunStarted(
            workflow.id,
            workflow.version,
            source,
            "w.toml",
            values,
            {},
            {},
            0.0,
            timeout_s,
            parallel,
            actor=actor,
        )
        sim = cls(RunPlan.build(workflow, started, gate_for), RunState("r1"))
        sim.absorb(start_run(sim.run, sim.state, started))
        return sim

    def absorb(self, decision: Decision) -> None:
        self.history.extend(decision.events)
        for command in decision.commands:
            if isinstance(command, DispatchTask):
                self.tasks[command.task_id] = command
                self.dispatched.append(command)
            elif isinstance(command, StartTimer):
                self.timers[command.timer_id] = command
            elif isinstance(command, CancelTimer):
                self.timers.pop(command.timer_id, None)

    def send(self, message: Input) -> Decision:
        decision = decide(self.run, self.state, message, self.now)
        self.absorb(decision)
        return decision

    def finish(self, step_id: str, status: str = "succeeded", **outputs: object) -> Decision:
        task = next(t for t in self.tasks.values() if t.step_id == step_id)
        del self.tasks[task.task_id]
        error = None if status == "succeeded" else "boom"
        return self.send(TaskFinished(step_id, task.attempt, status, dict(outputs), error))

    def fire_timers(self) -> None:
        for timer in sorted(self.timers.values(), key=lambda t: t.due_at):
            self.now = max(self.now, timer.due_at)
            self.send(TimerFired(timer.timer_id, timer.kind, timer.step_id, timer.attempt))

    def statuses(self) -> dict[str, str]:
        return {k: v.status.value for k, v in self.state.steps.items()}

    def refold(self) -> RunState:
        return fold(self.state.run_id, self.history)
