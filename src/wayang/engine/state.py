"""A run's state: the fold of its history. ``RunState.apply`` is the evolve function."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from wayang.engine import events as ev


class StepStatus(StrEnum):
    PENDING = "pending"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STEP = frozenset(
    {StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED}
)
ACTIVE_STEP = frozenset({StepStatus.SCHEDULED, StepStatus.RUNNING})
TERMINAL_RUN = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})


@dataclass
class StepState:
    """One step's state within a run."""

    status: StepStatus = StepStatus.PENDING
    attempt: int = 0
    task_id: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    reason: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration_s: float = 0.0

    def snapshot(self) -> dict[str, Any]:
        """What expressions see as ``steps.<id>``."""
        return {"status": self.status.value, "outputs": self.outputs}


@dataclass
class RunState:
    """Everything known about a run, rebuilt by folding its events in order."""

    run_id: str
    status: RunStatus = RunStatus.PENDING
    version: int = 0
    started: ev.RunStarted | None = None
    steps: dict[str, StepState] = field(default_factory=dict)
    cancel_requested: bool = False
    stop_as_failure: bool = False
    reason: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    # Kept by the fold so the decider never scans every step: how many steps are in each
    # status (untouched steps are pending and not counted), and which failed for good.
    counts: dict[StepStatus, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    # The decider's memo of steps that were ready but not yet dispatched (the parallel limit);
    # None after a fold, which makes the next decision look at every step once.
    ready_hint: list[str] | None = field(default=None, compare=False, repr=False)

    def step(self, step_id: str) -> StepState:
        """Read a step's state; a step no event has touched yet is pending (and not stored)."""
        return self.steps.get(step_id) or StepState()

    def entry(self, step_id: str) -> StepState:
        """The stored state of a step, created on first write (only events write)."""
        state = self.steps.get(step_id)
        if state is None:
            state = self.steps[step_id] = StepState()
            self.counts[StepStatus.PENDING] = self.counts.get(StepStatus.PENDING, 0) + 1
        return state

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_RUN

    def count(self, *statuses: StepStatus) -> int:
        """How many steps are in any of ``statuses`` (not for PENDING: untouched steps)."""
        return sum(self.counts.get(status, 0) for status in statuses)

    def move(self, step: StepState, status: StepStatus) -> None:
        """Set a step's status, keeping :attr:`counts` in step."""
        counts = self.counts
        counts[step.status] -= 1
        counts[status] = counts.get(status, 0) + 1
        step.status = status

    def apply(self, event: ev.Event) -> None:
        """Advance by one event (the evolve function); unknown types are a programming error."""
        self.version += 1
        _APPLY[type(event)](self, event)


def fold(run_id: str, history: Iterable[ev.Event]) -> RunState:
    """The state a history describes."""
    state = RunState(run_id)
    for event in history:
        state.apply(event)
    return state


def _run_started(state: RunState, event: ev.RunStarted) -> None:
    state.started = event
    state.status = RunStatus.RUNNING
    state.started_at = event.at


def _scheduled(state: RunState, event: ev.StepScheduled) -> None:
    step = state.entry(event.step_id)
    state.move(step, StepStatus.SCHEDULED)
    step.attempt, step.task_id = event.attempt, event.task_id


def _reused(state: RunState, event: ev.StepReused) -> None:
    step = state.entry(event.step_id)
    state.move(step, StepStatus.SUCCEEDED)
    step.outputs, step.reason, step.finished_at = (
        event.outputs,
        f"reused from {event.from_run}",
        event.at,
    )


def _started(state: RunState, event: ev.StepStarted) -> None:
    step = state.entry(event.step_id)
    state.move(step, StepStatus.RUNNING)
    if step.started_at is None:
        step.started_at = event.at


def _succeeded(state: RunState, event: ev.StepSucceeded) -> None:
    step = state.entry(event.step_id)
    state.move(step, StepStatus.SUCCEEDED)
    step.outputs, step.error = event.outputs, None
    step.finished_at, step.duration_s = event.at, step.duration_s + event.duration_s


def _failed(state: RunState, event: ev.StepFailed) -> None:
    step = state.entry(event.step_id)
    step.error, step.duration_s = event.error, step.duration_s + event.duration_s
    if event.final:
        state.move(step, StepStatus.FAILED)
        step.finished_at = event.at
        state.failed.append(event.step_id)
    else:
        state.move(step, StepStatus.RETRYING)


def _retrying(state: RunState, event: ev.StepRetrying) -> None:
    step = state.entry(event.step_id)
    state.move(step, StepStatus.RETRYING)


def _skipped(state: RunState, event: ev.StepSkipped) -> None:
    step = state.entry(event.step_id)
    state.move(step, StepStatus.SKIPPED)
    step.reason, step.finished_at = event.reason, event.at


def _cancelled(state: RunState, event: ev.StepCancelled) -> None:
    step = state.entry(event.step_id)
    state.move(step, StepStatus.CANCELLED)
    step.finished_at = event.at


def _cancel_requested(state: RunState, event: ev.RunCancelRequested) -> None:
    state.cancel_requested, state.reason = True, event.reason
    state.stop_as_failure = event.as_failure


def _run_succeeded(state: RunState, event: ev.RunSucceeded) -> None:
    state.status, state.finished_at = RunStatus.SUCCEEDED, event.at


def _run_failed(state: RunState, event: ev.RunFailed) -> None:
    state.status, state.finished_at, state.reason = RunStatus.FAILED, event.at, event.reason


def _run_cancelled(state: RunState, event: ev.RunCancelled) -> None:
    state.status, state.finished_at, state.reason = RunStatus.CANCELLED, event.at, event.reason


_APPLY: dict[type[ev.Event], Any] = {
    ev.RunStarted: _run_started,
    ev.StepScheduled: _scheduled,
    ev.StepReused: _reused,
    ev.StepStarted: _started,
    ev.StepSucceeded: _succeeded,
    ev.StepFailed: _failed,
    ev.StepRetrying: _retrying,
    ev.StepSkipped: _skipped,
    ev.StepCancelled: _cancelled,
    ev.RunCancelRequested: _cancel_requested,
    ev.RunSucceeded: _run_succeeded,
    ev.RunFailed: _run_failed,
    ev.RunCancelled: _run_cancelled,
}
