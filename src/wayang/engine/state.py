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
    WAITING = "waiting"  # parked on a person, an event, a timer or a sub-workflow
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
# The waits each kind parks on, by the event that starts it.
WAIT_KINDS = {
    ev.ApprovalRequested: "approval",
    ev.NegotiationStarted: "negotiation",
    ev.EventWaitStarted: "event",
    ev.TimerStarted: "timer",
    ev.CompletionRequested: "complete",
    ev.SubworkflowStarted: "subworkflow",
}
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
    visits: int = 0  # how many times the step has left 'pending' (loops bring it back)
    first_attempt: int = 1  # the first attempt of the current visit (retries count from it)
    via: str = ""  # the step whose loop transition started the current visit
    wait: dict[str, Any] | None = None  # what a waiting step waits for, and what came so far
    # When it last succeeded, as the run's version then: the order of completion (compensation
    # undoes in reverse of it), which timestamps cannot give (equal, or a clock set back).
    succeeded_seq: int = 0

    def snapshot(self) -> dict[str, Any]:
        """What expressions see as ``steps.<id>``."""
        return {"status": self.status.value, "outputs": self.outputs, "visits": self.visits}


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
    # The decider's memo of steps that were ready but not yet dispatched (the parallel limit):
    # their positions in the plan's order, as a heap, and the same as a set; None after a
    # fold, which makes the next decision look at every step once.
    ready_hint: tuple[list[int], set[int]] | None = field(default=None, compare=False, repr=False)
    # The decider's memo, per join, of how many of its first inbound edges are known taken
    # (flow.readiness); only for runs without loops, and empty after a fold.
    join_hint: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    # Topic messages an event wait of this run has consumed (each matches one wait only).
    consumed: set[int] = field(default_factory=set)
    # Compensation (saga): the compensation steps still to run, in order, once started.
    compensating: bool = False
    compensation: list[str] = field(default_factory=list)
    compensation_all: list[str] = field(default_factory=list)
    compensation_done: bool = False
    compensation_failed: list[str] = field(default_factory=list)
    fail_reason: str | None = None  # why the run fails when it is not "a step failed"
    outputs: dict[str, Any] = field(default_factory=dict)  # the workflow's [outputs], at the end
    workspace: str = ""  # the path of the run's own workspace, once made

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
    if step.status is StepStatus.PENDING:
        step.visits += 1
        step.first_attempt = event.attempt
        step.wait = None
        if state.compensation[:1] == [event.step_id]:
            state.compensation.pop(0)
    state.move(step, StepStatus.SCHEDULED)
    step.attempt, step.task_id = event.attempt, event.task_id


def _reused(state: RunState, event: ev.StepReused) -> None:
    step = state.entry(event.step_id)
    step.visits += 1
    state.move(step, StepStatus.SUCCEEDED)
    step.outputs, step.reason, step.finished_at = (
        event.outputs,
        f"reused from {event.from_run}",
        event.at,
    )
    step.succeeded_seq = state.version


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
    step.succeeded_seq = state.version


def _failed(state: RunState, event: ev.StepFailed) -> None:
    step = state.entry(event.step_id)
    step.error, step.duration_s = event.error, step.duration_s + event.duration_s
    if event.final:
        state.move(step, StepStatus.FAILED)
        step.finished_at = event.at
        state.failed.append(event.step_id)
        if state.compensating:
            state.compensation_failed.append(event.step_id)
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


def _wait_started(state: RunState, event: Any) -> None:
    step = state.entry(event.step_id)
    state.move(step, StepStatus.WAITING)
    if step.started_at is None:
        step.started_at = event.at
    data = {k: v for k, v in event.to_data().items() if k not in ("step_id", "at")}
    step.wait = {"kind": WAIT_KINDS[type(event)], "since": event.at, **data}
    if isinstance(event, ev.ApprovalRequested):
        step.wait.update(approvals=[], voters=[], escalated=False)
    elif isinstance(event, ev.NegotiationStarted):
        step.wait.update(round=0, offer=None)


def _voted(state: RunState, event: ev.ApprovalVoted) -> None:
    wait = state.entry(event.step_id).wait
    if wait is not None:
        wait["voters"] = [*wait["voters"], event.actor]
        if event.vote == "approve":
            wait["approvals"] = [*wait["approvals"], event.actor]


def _escalated(state: RunState, event: ev.ApprovalEscalated) -> None:
    wait = state.entry(event.step_id).wait
    if wait is not None:
        wait.update(assignees=list(event.assignees), due_at=event.due_at, escalated=True)


def _offered(state: RunState, event: ev.OfferMade | ev.CounterOffered) -> None:
    wait = state.entry(event.step_id).wait
    if wait is not None:
        offer = {"actor": event.actor, "party": event.party, "terms": event.terms}
        wait.update(round=event.round, offer=offer)


def _received(state: RunState, event: ev.EventReceived) -> None:
    state.consumed.add(event.seq)


def _visit_started(state: RunState, event: ev.VisitStarted) -> None:
    for step_id in event.reset:
        step = state.entry(step_id)
        if step.status is StepStatus.FAILED and step_id in state.failed:
            state.failed.remove(step_id)
        state.move(step, StepStatus.PENDING)
        step.error, step.reason, step.wait = None, None, None
    state.entry(event.step_id).via = event.via


def _visit_limit(state: RunState, event: ev.VisitLimitReached) -> None:
    state.failed.append(event.step_id)
    state.fail_reason = (
        f"step '{event.step_id}' reached its visit limit ({event.limit}, max_visits) "
        f"when '{event.via}' led back to it; the loop did not end"
    )


def _compensation_started(state: RunState, event: ev.CompensationStarted) -> None:
    state.compensating = True
    state.compensation = list(event.steps)
    state.compensation_all = list(event.steps)


def _compensation_finished(state: RunState, event: ev.CompensationFinished) -> None:
    state.compensating, state.compensation_done = False, True


def _noted(state: RunState, event: ev.Event) -> None:
    """Events that record what happened (audit) without changing what comes next."""


def _run_succeeded(state: RunState, event: ev.RunSucceeded) -> None:
    state.status, state.finished_at = RunStatus.SUCCEEDED, event.at
    state.outputs = event.outputs


def _run_failed(state: RunState, event: ev.RunFailed) -> None:
    state.status, state.finished_at, state.reason = RunStatus.FAILED, event.at, event.reason


def _workspace_noted(state: RunState, event: ev.WorkspaceNoted) -> None:
    if event.kind in ("created", "reused") and not event.step_id:
        state.workspace = event.path


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
    ev.WorkspaceNoted: _workspace_noted,
    **dict.fromkeys(WAIT_KINDS, _wait_started),
    ev.ApprovalVoted: _voted,
    ev.ApprovalEscalated: _escalated,
    ev.OfferMade: _offered,
    ev.CounterOffered: _offered,
    ev.EventReceived: _received,
    ev.VisitStarted: _visit_started,
    ev.VisitLimitReached: _visit_limit,
    ev.CompensationStarted: _compensation_started,
    ev.CompensationFinished: _compensation_finished,
    **dict.fromkeys(
        (
            ev.DecisionMade,
            ev.MessagePublished,
            ev.PolicyDenied,
            ev.PolicyAllowed,
            ev.SignalRejected,
            ev.ApprovalGranted,
            ev.ApprovalRejected,
            ev.AgreementReached,
            ev.NegotiationFailed,
            ev.StepTimerFired,
            ev.StepCompleted,
            ev.WaitTimedOut,
            ev.SubworkflowFinished,
        ),
        _noted,
    ),
}
