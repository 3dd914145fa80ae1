"""What a run's history says in words: what a waiting step waits for, and the events of note
(policy decisions, votes, offers, events taken, timers, compensation) that ``wayang logs`` shows
between the steps' own output lines."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from wayang.engine import events as ev

RUN_NOTE = "(run)"
"""The step column of notes about the whole run (compensation)."""


def _when(at: float | None) -> str:
    return "-" if at is None else time.strftime("%H:%M:%S", time.localtime(at))


def _terms(terms: Any) -> str:
    return json.dumps(terms, sort_keys=True, default=str)


def _who(members: Sequence[str]) -> str:
    return ", ".join(members) if members else "anyone"


# ------------------------------------------------------------------------------ waiting steps


def wait_text(wait: dict[str, Any]) -> str:
    """One line on what a waiting step waits for, and until when."""
    kind = wait.get("kind", "")
    describe = _WAITS.get(kind)
    text = describe(wait) if describe else f"waiting ({kind})"
    due = wait.get("due_at")
    if due is not None and kind != "timer":
        text += f"; times out at {_when(due)}"
    return text


def _approval(wait: dict[str, Any]) -> str:
    quorum = int(wait.get("quorum") or 1)
    got = len(wait.get("approvals") or [])
    text = f"approval by {_who(wait.get('assignees') or [])} ({got}/{quorum} approvals)"
    return text + (", escalated" if wait.get("escalated") else "")


def _negotiation(wait: dict[str, Any]) -> str:
    parties = _who(wait.get("parties") or [])
    offer = wait.get("offer")
    rounds = f"round {wait.get('round', 0)}/{wait.get('max_rounds')}"
    if not offer:
        return f"negotiation between {parties}, {rounds}, no offer yet"
    by = offer.get("party") or offer.get("actor")
    return f"negotiation between {parties}, {rounds}, last offer {_terms(offer['terms'])} by {by}"


def _event(wait: dict[str, Any]) -> str:
    match = f" where {wait['correlate']}" if wait.get("correlate") else ""
    return f"an event on '{wait.get('topic')}'{match}"


_WAITS: dict[str, Callable[[dict[str, Any]], str]] = {
    "approval": _approval,
    "negotiation": _negotiation,
    "event": _event,
    "timer": lambda wait: f"the timer, due at {_when(wait.get('due_at'))}",
    "complete": lambda wait: "someone to complete it ('wayang complete')",
    "subworkflow": lambda wait: f"subworkflow run {wait.get('child_run_id')}",
}


# ------------------------------------------------------------------------------ events of note


@dataclass(frozen=True, slots=True)
class Note:
    """An event of note, as ``wayang logs`` prints it beside the steps' lines."""

    at: float
    step_id: str
    text: str


def notes(history: Iterable[ev.Event]) -> list[Note]:
    """The events of note in ``history``, in order."""
    found: list[Note] = []
    for event in history:
        describe = _NOTES.get(type(event))
        if describe is not None:
            step_id, text = describe(event)
            found.append(Note(float(getattr(event, "at", 0.0)), step_id, text))
    return found


def _denied(event: Any) -> tuple[str, str]:
    by = f" (by {event.actor})" if event.actor else ""
    return event.step_id, f"policy denied {event.action}{by}: rule '{event.rule}': {event.reason}"


def _signal_rejected(event: Any) -> tuple[str, str]:
    rule = f" (rule '{event.rule}')" if event.rule else ""
    return event.step_id, f"refused {event.kind} by {event.actor}{rule}: {event.reason}"


def _voted(event: Any) -> tuple[str, str]:
    comment = f": {event.comment}" if event.comment else ""
    return event.step_id, f"{event.actor} voted {event.vote}{comment}"


def _offer(event: Any) -> tuple[str, str]:
    what = "counter-offer" if isinstance(event, ev.CounterOffered) else "offer"
    return event.step_id, f"round {event.round}: {what} {_terms(event.terms)} by {event.actor}"


def _compensation(event: Any) -> tuple[str, str]:
    steps = ", ".join(event.steps) or "nothing"
    return RUN_NOTE, f"compensating ({event.reason}): {steps}"


def _compensated(event: Any) -> tuple[str, str]:
    failed = f"; failed: {', '.join(event.failed)}" if event.failed else ""
    return RUN_NOTE, f"compensation finished: {', '.join(event.compensated) or 'nothing'}{failed}"


def _key(key: str) -> str:
    return f" (key {key})" if key else ""


_NOTES: dict[type[ev.Event], Callable[[Any], tuple[str, str]]] = {
    ev.PolicyDenied: _denied,
    ev.SignalRejected: _signal_rejected,
    ev.DecisionMade: lambda e: (e.step_id, f"decision: chose '{e.chosen}'"),
    ev.VisitStarted: lambda e: (e.step_id, f"visit {e.visit} (back from '{e.via}')"),
    ev.VisitLimitReached: lambda e: (e.step_id, f"visit limit {e.limit} reached from '{e.via}'"),
    ev.ApprovalRequested: lambda e: (e.step_id, f"approval requested from {_who(e.assignees)}"),
    ev.ApprovalVoted: _voted,
    ev.ApprovalEscalated: lambda e: (e.step_id, f"escalated to {_who(e.assignees)}"),
    ev.ApprovalGranted: lambda e: (e.step_id, f"approved by {', '.join(e.approvers)}"),
    ev.ApprovalRejected: lambda e: (e.step_id, f"rejected: {e.reason}"),
    ev.NegotiationStarted: lambda e: (e.step_id, f"negotiation opened for {_who(e.parties)}"),
    ev.OfferMade: _offer,
    ev.CounterOffered: _offer,
    ev.AgreementReached: lambda e: (e.step_id, f"agreed on {_terms(e.terms)} by {e.actor}"),
    ev.NegotiationFailed: lambda e: (e.step_id, f"negotiation failed: {e.reason}"),
    ev.EventWaitStarted: lambda e: (e.step_id, f"waiting for an event on '{e.topic}'"),
    ev.EventReceived: lambda e: (e.step_id, f"took event {e.seq} on '{e.topic}'"),
    ev.MessagePublished: lambda e: (e.step_id, f"published on '{e.topic}'{_key(e.key)}"),
    ev.TimerStarted: lambda e: (e.step_id, f"timer set for {_when(e.due_at)}"),
    ev.StepTimerFired: lambda e: (e.step_id, "timer fired"),
    ev.StepCompleted: lambda e: (e.step_id, f"completed by {e.actor}"),
    ev.WaitTimedOut: lambda e: (e.step_id, f"wait timed out after {e.waited_s:.0f}s"),
    ev.SubworkflowStarted: lambda e: (e.step_id, f"started subworkflow run {e.child_run_id}"),
    ev.SubworkflowFinished: lambda e: (e.step_id, f"subworkflow run {e.status}"),
    ev.CompensationStarted: _compensation,
    ev.CompensationFinished: _compensated,
}
