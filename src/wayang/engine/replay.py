"""Replay: check that a stored history is what the core decides from the same inputs.

A history interleaves what happened outside the core (an attempt finished, a timer fired, someone
cancelled) with what the core decided in response. Replay walks the recorded history, rebuilds
each outside input from the events that record it, asks the core to decide on a fresh state at
the recorded time, and compares the events it produces with the ones recorded next. The first
difference is reported. This is how a run is checked against the definition it is pinned to, and
how a new version of Wayang (or of a workflow) is checked against stored histories.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wayang.engine import events as ev
from wayang.engine.decide import decide, start_run
from wayang.engine.messages import (
    CancelRun,
    ChildFinished,
    Input,
    Signal,
    TaskFinished,
    TimerFired,
    TopicMessage,
)
from wayang.engine.runplan import GateFactory, RunPlan
from wayang.engine.state import RunState, StepStatus


@dataclass(frozen=True)
class Divergence:
    """Where replay first disagreed with the record: ``seq`` is 1-based in the history."""

    seq: int
    recorded: ev.Event | None
    replayed: ev.Event | None
    message: str


@dataclass(frozen=True)
class ReplayReport:
    events: int
    decisions: int
    state: RunState
    divergence: Divergence | None


def replay(
    run_id: str, history: Sequence[ev.Event], gates: GateFactory | None = None
) -> ReplayReport:
    """Replay ``history``; the report's ``divergence`` is None when it reproduces exactly.

    ``gates`` builds the run's policy gate (``wayang.policy.gate_for``) when it has a policy.
    """
    state = RunState(run_id)
    if not history or not isinstance(history[0], ev.RunStarted):
        first = history[0] if history else None
        return ReplayReport(0, 0, state, Divergence(1, first, None, "no RunStarted first"))
    started = history[0]
    plan = RunPlan.from_started(started, gates)
    reuse = {e.step_id: e.outputs for e in history if isinstance(e, ev.StepReused)}
    produced = start_run(plan, state, started, reuse).events
    position, decisions = 0, 1
    while True:
        divergence = _compare(history, position, produced)
        if divergence is not None:
            return ReplayReport(len(history), decisions, state, divergence)
        position += len(produced)
        if position >= len(history):
            return ReplayReport(len(history), decisions, state, None)
        recorded = history[position]
        message = _input_for(history, position, state)
        if message is None:
            why = f"{recorded.TYPE} does not follow from any input the core knows"
            return ReplayReport(
                len(history), decisions, state, Divergence(position + 1, recorded, None, why)
            )
        produced = decide(plan, state, message, _decided_at(history, position)).events
        decisions += 1
        if not produced:
            why = f"the core decided nothing where {recorded.TYPE} was recorded"
            return ReplayReport(
                len(history), decisions, state, Divergence(position + 1, recorded, None, why)
            )


def _compare(
    history: Sequence[ev.Event], position: int, produced: Sequence[ev.Event]
) -> Divergence | None:
    for offset, event in enumerate(produced):
        seq = position + offset + 1
        recorded = history[position + offset] if position + offset < len(history) else None
        if recorded != event:
            what = "the history ends" if recorded is None else f"{recorded.TYPE} was recorded"
            why = f"replay produced {event.TYPE} where {what}"
            return Divergence(seq, recorded, event, why)
    return None


def _decided_at(history: Sequence[ev.Event], position: int) -> float:
    """The time of the decision recorded at ``position``: a StepStarted carries the attempt's
    start, so the decision's own time is that of the outcome after it."""
    event = history[position]
    if isinstance(event, ev.StepStarted) and position + 1 < len(history):
        event = history[position + 1]
    return float(getattr(event, "at", 0.0))


def _input_for(history: Sequence[ev.Event], position: int, state: RunState) -> Input | None:
    """The outside input that the events recorded at ``position`` answer."""
    event = history[position]
    if isinstance(event, ev.RunCancelRequested):
        if event.as_failure:
            return TimerFired(f"{state.run_id}/run-timeout", "run-timeout")
        return CancelRun(event.reason)
    retrying = state.step(getattr(event, "step_id", "")).status is StepStatus.RETRYING
    if isinstance(event, ev.StepScheduled) and event.attempt > 1 and retrying:
        timer = f"{state.run_id}/{event.step_id}/{event.attempt - 1}/retry"
        return TimerFired(timer, "retry", event.step_id, event.attempt - 1)
    if isinstance(event, ev.StepStarted):
        outcome = history[position + 1] if position + 1 < len(history) else None
        return _finished(event, outcome)
    if isinstance(event, ev.StepSucceeded | ev.StepFailed | ev.StepCancelled):
        return _finished(None, event)
    return _wait_input(event, state)


def _wait_input(event: ev.Event, state: RunState) -> Input | None:
    """The input that a waiting step's events answer: a signal, a message, a timer, a child."""
    signal = _signal_input(event)
    if signal is not None:
        return signal
    if isinstance(event, ev.EventReceived):
        return TopicMessage(event.seq, event.topic, event.data)
    if isinstance(event, ev.StepTimerFired | ev.WaitTimedOut):
        step = state.step(event.step_id)
        kind = "sleep" if isinstance(event, ev.StepTimerFired) else "wait-timeout"
        return TimerFired(
            f"{state.run_id}/{event.step_id}/replay", kind, event.step_id, step.attempt
        )
    if isinstance(event, ev.SubworkflowFinished):
        return ChildFinished(
            event.step_id, event.child_run_id, event.status, event.outputs, event.error
        )
    return None


def _signal_input(event: ev.Event) -> Signal | None:  # noqa: PLR0911 - one return per event type
    if isinstance(event, ev.ApprovalVoted):
        data = {"comment": event.comment, "fields": event.fields}
        return Signal(
            event.signal, event.step_id, event.vote, event.actor, tuple(event.roles), data
        )
    if isinstance(event, ev.SignalRejected):
        roles = tuple(event.roles)
        return Signal(event.signal, event.step_id, event.kind, event.actor, roles, event.data)
    if isinstance(event, ev.OfferMade | ev.CounterOffered):
        data = {"terms": event.terms, "comment": event.comment}
        return Signal(event.signal, event.step_id, "offer", event.actor, tuple(event.roles), data)
    if isinstance(event, ev.AgreementReached):
        return Signal(event.signal, event.step_id, "accept", event.actor, tuple(event.roles))
    if isinstance(event, ev.NegotiationFailed) and event.signal:
        comment = event.reason.partition(": ")[2]
        data = {"comment": comment} if comment else {}
        return Signal(event.signal, event.step_id, "decline", event.actor, tuple(event.roles), data)
    if isinstance(event, ev.StepCompleted):
        data = {"outputs": event.outputs}
        return Signal(
            event.signal, event.step_id, "complete", event.actor, tuple(event.roles), data
        )
    return None


def _finished(started: ev.StepStarted | None, outcome: ev.Event | None) -> TaskFinished | None:
    at = started.at if started else None
    if isinstance(outcome, ev.StepSucceeded):
        return TaskFinished(
            outcome.step_id, outcome.attempt, "succeeded", outcome.outputs, None, None,
            outcome.duration_s, at,
        )  # fmt: skip
    if isinstance(outcome, ev.StepFailed):
        status = "timed_out" if outcome.timed_out else "failed"
        return TaskFinished(
            outcome.step_id, outcome.attempt, status, {}, outcome.error, outcome.exit_code,
            outcome.duration_s, at,
        )  # fmt: skip
    if isinstance(outcome, ev.StepCancelled):
        return TaskFinished(
            outcome.step_id, outcome.attempt, "failed", {}, "cancelled", None, 0.0, at
        )
    return None
