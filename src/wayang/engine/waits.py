"""Steps that wait: approvals, negotiations, event waits, timers, external work, sub-workflows.

A waiting step is ``waiting`` in the run's state until an input settles it: a :class:`Signal`
(a vote, an offer, ``wayang complete``), a :class:`TopicMessage`, a timer, or the end of a child
run. Every signal gets an answer: accepted (with the events it caused) or rejected with the
reason (a ``SignalRejected`` event, nothing else changed) — exactly one decision wins.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from wayang.engine import events as ev
from wayang.engine._base import DeciderBase
from wayang.engine.messages import (
    AnswerSignal,
    CancelChildRun,
    CancelTimer,
    ChildFinished,
    Signal,
    StartChildRun,
    StartTimer,
    TimerFired,
    TopicMessage,
)
from wayang.engine.state import StepState, StepStatus
from wayang.errors import ExpressionError
from wayang.model.expr import Expression, evaluate_condition
from wayang.model.plan import PlannedStep
from wayang.model.spec import (
    ApprovalStep,
    NegotiationStep,
    NoopStep,
    SubworkflowStep,
    Term,
    TimerStep,
)

WAIT_STEP_KINDS = frozenset({"approval", "negotiation", "event", "timer", "subworkflow"})
SIGNAL_KINDS = {
    "approve": "approval",
    "reject": "approval",
    "offer": "negotiation",
    "accept": "negotiation",
    "decline": "negotiation",
    "complete": "complete",
}


class RejectedError(Exception):
    """A signal that cannot apply; ``rule`` names the policy rule when one decided."""

    def __init__(self, reason: str, rule: str = "", ends: str = "") -> None:
        super().__init__(reason)
        self.reason, self.rule = reason, rule
        self.ends = ends  # the wait this rejection ends (a negotiation past its round limit)


def waits(planned: PlannedStep, spec: Any) -> bool:
    """Whether a step parks instead of running a task."""
    return planned.kind in WAIT_STEP_KINDS or (isinstance(spec, NoopStep) and spec.external)


def parse_until(value: Any) -> float:
    """A timer's ``until``: seconds since the epoch, or an ISO-8601 time (UTC unless it says)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    raise ExpressionError(
        f"until must give a time (seconds since the epoch or ISO-8601), got {value!r}"
    )


class WaitsMixin(DeciderBase):
    # --- starting a wait -------------------------------------------------------------------------

    def begin_wait(self, planned: PlannedStep, inputs: dict[str, Any]) -> None:
        spec = self.run.workflow.steps.get(planned.id)
        try:
            self._begin(planned, spec, inputs)
        except ExpressionError as exc:
            self.fail_without_running(planned, f"cannot start the wait: {exc.message}")

    def _begin(self, planned: PlannedStep, spec: Any, inputs: dict[str, Any]) -> None:
        scope = self.scope(inputs=inputs)
        due = self.now + planned.timeout_s if planned.timeout_s else None
        if isinstance(spec, TimerStep):
            due_at = self.now + spec.for_ if spec.for_ is not None else self._until(spec, scope)
            attempt = self.mark_scheduled(planned)
            self.emit(ev.TimerStarted(planned.id, due_at, self.now))
            timer = self.timer_id(planned.id, attempt, "sleep")
            self.commands.append(StartTimer(timer, due_at, "sleep", planned.id, attempt))
            return
        prompt = getattr(spec, "prompt", None)
        text = prompt.render(scope) if prompt is not None else ""
        attempt = self.mark_scheduled(planned)
        if isinstance(spec, ApprovalStep):
            self.emit(
                ev.ApprovalRequested(
                    planned.id, list(spec.assignees), spec.quorum, text,
                    list(spec.required_fields), due, self.now,
                )
            )  # fmt: skip
        elif isinstance(spec, NegotiationStep):
            terms = {k: t.model_dump(exclude_none=True) for k, t in spec.terms.items()}
            self.emit(
                ev.NegotiationStarted(
                    planned.id, list(spec.parties), terms, spec.max_rounds, text, due, self.now
                )
            )
        elif isinstance(spec, SubworkflowStep):
            child = f"{self.state.run_id}--{planned.id}-{attempt}"
            self.emit(ev.SubworkflowStarted(planned.id, child, spec.workflow, inputs, self.now))
            self.commands.append(StartChildRun(child, planned.id, spec.workflow, inputs))
        elif planned.id in self.run.events:
            wait = self.run.events[planned.id]
            source = wait.correlate.source if isinstance(wait.correlate, Expression) else ""
            self.emit(ev.EventWaitStarted(planned.id, wait.topic, source, due, self.now))
        else:
            self.emit(ev.CompletionRequested(planned.id, due, self.now))
        if due is not None:
            timer = self.timer_id(planned.id, attempt, "wait")
            self.commands.append(StartTimer(timer, due, "wait-timeout", planned.id, attempt))

    def _until(self, spec: TimerStep, scope: dict[str, Any]) -> float:
        assert spec.until is not None
        return parse_until(spec.until.evaluate(scope))

    def timer_id(self, step_id: str, attempt: int, what: str) -> str:
        return f"{self.state.run_id}/{step_id}/{attempt}/{what}"

    def _waiting(self, step_id: str, kind: str | None = None) -> StepState | None:
        step = self.state.steps.get(step_id)
        if step is None or step.status is not StepStatus.WAITING or step.wait is None:
            return None
        return step if kind is None or step.wait["kind"] == kind else None

    def end_wait(self, step_id: str) -> None:
        """Cancel the timers of a wait that is over."""
        step = self.state.step(step_id)
        for what in ("wait", "wait-2", "sleep"):
            self.commands.append(CancelTimer(self.timer_id(step_id, step.attempt, what)))

    def succeed_wait(self, step_id: str, outputs: dict[str, Any]) -> None:
        self.end_wait(step_id)
        self.succeed_without_running(self.run.steps[step_id], outputs)

    def fail_wait(self, step_id: str, error: str, timed_out: bool = False) -> None:
        self.end_wait(step_id)
        self.fail_without_running(self.run.steps[step_id], error, timed_out)

    def abandon_waits(self) -> None:
        """The run is stopping: every wait ends cancelled (a child run is cancelled too)."""
        for step_id, step in list(self.state.steps.items()):
            if step.status is StepStatus.WAITING:
                self.end_wait(step_id)
                child = (step.wait or {}).get("child_run_id")
                if child:
                    self.commands.append(CancelChildRun(child, "the parent run stopped"))
                self.emit(ev.StepCancelled(step_id, step.attempt, self.now))

    # --- timers --------------------------------------------------------------------------------

    def wait_timer_fired(self, fired: TimerFired) -> None:
        step = self._waiting(fired.step_id or "")
        if step is None or step.attempt != fired.attempt or step.wait is None:
            if fired.kind != "sleep":
                self.commands.append(CancelTimer(fired.timer_id))
            return
        step_id, wait = fired.step_id or "", step.wait
        due = self._deadline(step_id, wait) if fired.kind != "sleep" else wait["due_at"]
        if self.now < due:  # never early: a clock that fired too soon waits more
            self.commands.append(StartTimer(fired.timer_id, due, fired.kind, step_id, step.attempt))
            return
        if fired.kind == "sleep":
            self.emit(ev.StepTimerFired(step_id, wait["due_at"], self.now))
            self.succeed_wait(step_id, {"due_at": wait["due_at"], "fired_at": self.now})
            return
        self.commands.append(CancelTimer(fired.timer_id))
        self.emit(ev.WaitTimedOut(step_id, self.now - wait["since"], self.now))
        self._timed_out(step_id, wait)

    def _deadline(self, step_id: str, wait: dict[str, Any]) -> float:
        """When a wait times out: its ``due_at`` (moved on by an escalation), else (a child run)
        its start plus the step's timeout."""
        if wait.get("due_at") is not None:
            return float(wait["due_at"])
        return float(wait["since"]) + (self.run.steps[step_id].timeout_s or 0.0)

    def _timed_out(self, step_id: str, wait: dict[str, Any]) -> None:
        kind, planned = wait["kind"], self.run.steps[step_id]
        waited = _duration(planned.timeout_s)
        if kind == "approval":
            self._approval_timed_out(step_id, wait, waited)
        elif kind == "negotiation":
            reason = f"no agreement before the deadline ({waited})"
            self.emit(ev.NegotiationFailed(step_id, reason, "", self.now))
            self.fail_wait(step_id, reason, timed_out=True)
        elif kind == "event":
            self.fail_wait(step_id, f"no event on '{wait['topic']}' matched within {waited}", True)
        elif kind == "subworkflow":
            self.commands.append(CancelChildRun(wait["child_run_id"], "the parent step timed out"))
            error = f"subworkflow run {wait['child_run_id']} did not finish within {waited}"
            self.fail_wait(step_id, error, timed_out=True)
        else:
            self.fail_wait(step_id, f"nobody completed '{step_id}' within {waited}", True)

    def _approval_timed_out(self, step_id: str, wait: dict[str, Any], waited: str) -> None:
        spec = self.run.workflow.steps[step_id]
        assert isinstance(spec, ApprovalStep)
        if spec.on_timeout == "escalate" and not wait["escalated"]:
            timeout = self.run.steps[step_id].timeout_s
            due = self.now + timeout if timeout else None
            self.emit(ev.ApprovalEscalated(step_id, list(spec.escalate_to), due, self.now))
            if due is not None:
                attempt = self.state.step(step_id).attempt
                timer = self.timer_id(step_id, attempt, "wait-2")
                self.commands.append(StartTimer(timer, due, "wait-timeout", step_id, attempt))
            return
        if spec.on_timeout == "approve":
            reason = f"no decision within {waited}: approved by on_timeout = 'approve'"
            self.emit(ev.ApprovalGranted(step_id, list(wait["approvals"]), reason, self.now))
            self.succeed_wait(step_id, _approval_outputs(True, wait, reason))
            return
        reason = f"no decision within {waited}"
        if wait["escalated"]:
            reason += " (also after escalation)"
        self._rejected(step_id, "", "", reason)

    # --- signals -------------------------------------------------------------------------------

    def on_signal(self, signal: Signal) -> None:
        try:
            outcome = self._apply_signal(signal)
        except RejectedError as no:
            self.emit(
                ev.SignalRejected(
                    signal.seq, signal.step_id, signal.kind, signal.actor, no.reason,
                    self.now, no.rule, list(signal.roles), dict(signal.data),
                )
            )  # fmt: skip
            self.commands.append(AnswerSignal(signal.seq, "rejected", no.reason))
            if no.ends:
                self.emit(ev.NegotiationFailed(signal.step_id, no.ends, signal.actor, self.now))
                self.fail_wait(signal.step_id, no.ends)
            return
        self.commands.append(AnswerSignal(signal.seq, "accepted", outcome))

    def _apply_signal(self, signal: Signal) -> str:
        kind = SIGNAL_KINDS.get(signal.kind)
        planned = self.run.steps.get(signal.step_id)
        if kind is None:
            raise RejectedError(f"unknown signal kind '{signal.kind}'")
        if planned is None:
            raise RejectedError(f"run {self.state.run_id} has no step '{signal.step_id}'")
        step = self.state.step(signal.step_id)
        wait = step.wait if step.status is StepStatus.WAITING else None
        if wait is None or wait["kind"] != kind:
            raise RejectedError(self._not_waiting(signal, planned, step, kind))
        if signal.kind == "offer":
            spec = self.run.workflow.steps[signal.step_id]
            assert isinstance(spec, NegotiationStep)
            problems = _term_problems(spec.terms, signal.data.get("terms"))
            if problems:
                raise RejectedError("malformed terms: " + "; ".join(problems))
        self._authorize(signal, wait, kind)
        if kind == "approval":
            return self._vote(signal, wait)
        if kind == "negotiation":
            return self._negotiate(signal, wait)
        outputs = signal.data.get("outputs", {})
        if not isinstance(outputs, dict):
            raise RejectedError('outputs must be a JSON object, e.g. {"ticket": "OPS-1"}')
        self.emit(
            ev.StepCompleted(
                signal.step_id, signal.seq, signal.actor, outputs, self.now, list(signal.roles)
            )
        )
        self.succeed_wait(signal.step_id, outputs)
        return f"step '{signal.step_id}' completed by {signal.actor}"

    def _not_waiting(self, signal: Signal, planned: PlannedStep, step: StepState, kind: str) -> str:
        name = {"approval": "an approval", "negotiation": "a negotiation"}.get(kind)
        what = name or "an external step (kind = 'noop' with external = true)"
        if planned.kind != kind and not (kind == "complete" and planned.kind == "noop"):
            return f"step '{planned.id}' is a {planned.kind} step, not {what}"
        if step.status in (StepStatus.PENDING, StepStatus.SCHEDULED):
            return f"step '{planned.id}' is not waiting yet (it is {step.status.value})"
        if step.status is StepStatus.WAITING:
            return f"step '{planned.id}' waits for something else"
        decided = {"approval": "already decided", "negotiation": "already over"}.get(kind, "done")
        return f"{planned.kind} '{planned.id}' is {decided} (it {step.status.value})"

    def _authorize(self, signal: Signal, wait: dict[str, Any], kind: str) -> None:
        if kind == "approval":
            members = wait["assignees"]
        elif kind == "negotiation":
            members = wait["parties"]
        else:
            members = []
        if members and _party(signal, members) is None:
            who = "an assignee" if kind == "approval" else "a party"
            raise RejectedError(
                f"{signal.actor} is not {who} of '{signal.step_id}' ({', '.join(members)})"
            )
        fields = {
            "vote": {"decision": signal.kind, **signal.data},
            "offer": {"terms": signal.data.get("terms", {}), "round": wait.get("round", 0) + 1},
        }
        action = signal.kind if signal.kind != "decline" else "reject"
        verdict = self.ask(
            action, signal.step_id, actor=signal.actor, roles=signal.roles, record=False,
            scope=fields,
        )  # fmt: skip
        if not verdict.allowed:
            raise RejectedError(
                f"denied by policy rule '{verdict.rule}': {verdict.reason}", verdict.rule
            )

    # --- approvals -----------------------------------------------------------------------------

    def _vote(self, signal: Signal, wait: dict[str, Any]) -> str:
        spec = self.run.workflow.steps[signal.step_id]
        assert isinstance(spec, ApprovalStep)
        started = self.state.started
        if signal.actor in wait["voters"]:
            raise RejectedError(f"{signal.actor} has already voted on '{signal.step_id}'")
        starter = started.actor if started is not None else ""
        self_vote = bool(starter) and signal.actor == starter
        if signal.kind == "approve" and not spec.allow_self_approval and self_vote:
            raise RejectedError(
                f"{signal.actor} started this run and cannot approve it "
                "(allow_self_approval = false)"
            )
        comment = str(signal.data.get("comment") or "")
        fields = signal.data.get("fields") or {}
        if not isinstance(fields, dict):
            raise RejectedError("fields must be a JSON object")
        if signal.kind == "reject" and not comment:
            raise RejectedError("a rejection needs a comment: pass --comment")
        given = {**fields, **({"comment": comment} if comment else {})}
        missing = [f for f in spec.required_fields if given.get(f) in (None, "")]
        if missing and signal.kind == "approve":
            raise RejectedError(
                f"approval '{signal.step_id}' needs {', '.join(missing)}: pass "
                + " ".join(f"--{m}" if m == "comment" else f"--field {m}=…" for m in missing)
            )
        self.emit(
            ev.ApprovalVoted(
                signal.step_id, signal.seq, signal.actor, list(signal.roles), signal.kind,
                comment, fields, self.now,
            )
        )  # fmt: skip
        if signal.kind == "reject":
            self._rejected(signal.step_id, signal.actor, comment, f"rejected by {signal.actor}")
            return f"approval '{signal.step_id}' rejected by {signal.actor}"
        approvals = self.state.step(signal.step_id).wait or wait
        count = len(approvals["approvals"])
        if count < spec.quorum:
            return f"vote recorded ({count} of {spec.quorum} approvals)"
        reason = f"quorum reached ({count} of {spec.quorum})"
        self.emit(
            ev.ApprovalGranted(signal.step_id, list(approvals["approvals"]), reason, self.now)
        )
        self.succeed_wait(signal.step_id, _approval_outputs(True, approvals, reason))
        return f"approval '{signal.step_id}' granted ({count} of {spec.quorum})"

    def _rejected(self, step_id: str, actor: str, comment: str, reason: str) -> None:
        spec = self.run.workflow.steps[step_id]
        assert isinstance(spec, ApprovalStep)
        wait = self.state.step(step_id).wait or {}
        self.emit(ev.ApprovalRejected(step_id, actor, comment, reason, self.now))
        if spec.on_reject == "continue":
            outputs = _approval_outputs(False, wait, reason)
            self.succeed_wait(step_id, {**outputs, "rejected_by": actor, "comment": comment})
        else:
            self.fail_wait(step_id, reason + (f": {comment}" if comment else ""))

    # --- negotiations --------------------------------------------------------------------------

    def _negotiate(self, signal: Signal, wait: dict[str, Any]) -> str:
        spec = self.run.workflow.steps[signal.step_id]
        assert isinstance(spec, NegotiationStep)
        party = _party(signal, wait["parties"]) or signal.actor
        offer, step_id = wait.get("offer"), signal.step_id
        if signal.kind == "decline":
            reason = f"declined by {signal.actor}"
            comment = str(signal.data.get("comment") or "")
            self.emit(
                ev.NegotiationFailed(
                    step_id, reason + (f": {comment}" if comment else ""), signal.actor,
                    self.now, signal.seq, list(signal.roles),
                )
            )  # fmt: skip
            self.fail_wait(step_id, reason + (f": {comment}" if comment else ""))
            return f"negotiation '{step_id}' {reason}"
        if signal.kind == "accept":
            if offer is None:
                raise RejectedError(f"there is no offer on '{step_id}' to accept yet")
            if offer["party"] == party:
                raise RejectedError(
                    f"{signal.actor} made the current offer; the other party accepts"
                )
            terms, rounds = offer["terms"], wait["round"]
            self.emit(
                ev.AgreementReached(
                    step_id, signal.seq, signal.actor, party, terms, rounds, self.now,
                    list(signal.roles),
                )
            )  # fmt: skip
            agreed = {**terms, "rounds": rounds, "agreed_by": [offer["actor"], signal.actor]}
            self.succeed_wait(step_id, agreed)
            return f"agreement on '{step_id}' after {rounds} round(s)"
        terms = signal.data.get("terms")
        assert isinstance(terms, dict)  # checked in _apply_signal
        if offer is not None and offer["party"] == party:
            raise RejectedError(f"{signal.actor} made the current offer; wait for a counter-offer")
        if wait["round"] >= spec.max_rounds:
            reason = f"the round limit ({spec.max_rounds}) was reached without agreement"
            raise RejectedError(reason + "; the negotiation failed", ends=reason)
        round_ = wait["round"] + 1
        comment = str(signal.data.get("comment") or "")
        made = ev.CounterOffered if offer is not None else ev.OfferMade
        self.emit(
            made(
                step_id, signal.seq, signal.actor, party, terms, round_, comment, self.now,
                list(signal.roles),
            )
        )  # fmt: skip
        noun = "counter-offer" if offer is not None else "offer"
        return f"{noun} recorded on '{step_id}' (round {round_} of {spec.max_rounds})"

    # --- events and child runs -----------------------------------------------------------------

    def on_message(self, message: TopicMessage) -> None:
        if message.seq in self.state.consumed:
            return
        waiting = [
            step_id
            for step_id, step in self.state.steps.items()
            if step.status is StepStatus.WAITING
            and step.wait is not None
            and step.wait["kind"] == "event"
            and step.wait["topic"] == message.topic
        ]
        for step_id in sorted(waiting, key=self.run.index.__getitem__):
            if self._matches(step_id, message):
                self.emit(
                    ev.EventReceived(step_id, message.topic, message.seq, message.data, self.now)
                )
                data = message.data
                outputs = dict(data) if isinstance(data, dict) else {"value": data}
                self.succeed_wait(step_id, {**outputs, "event": data, "seq": message.seq})
                return

    def _matches(self, step_id: str, message: TopicMessage) -> bool:
        correlate = self.run.events[step_id].correlate
        if correlate is None:
            return True
        try:
            return evaluate_condition(correlate, self.scope(event=message.data))
        except ExpressionError:
            return False  # a payload without the correlated field is not this wait's event

    def on_child_finished(self, done: ChildFinished) -> None:
        step = self._waiting(done.step_id, "subworkflow")
        if step is None or step.wait is None or step.wait["child_run_id"] != done.child_run_id:
            return
        self.emit(
            ev.SubworkflowFinished(
                done.step_id, done.child_run_id, done.status, done.outputs, done.error, self.now
            )
        )
        if done.status == "succeeded":
            self.succeed_wait(done.step_id, dict(done.outputs))
        else:
            why = f": {done.error}" if done.error else ""
            self.fail_wait(done.step_id, f"subworkflow run {done.child_run_id} {done.status}{why}")


def _party(signal: Signal, members: list[str]) -> str | None:
    """The assignee or party entry the actor answers as: their name, or one of their roles."""
    if signal.actor in members:
        return signal.actor
    return next((m for m in members if m.startswith("role:") and m[5:] in signal.roles), None)


def _approval_outputs(approved: bool, wait: dict[str, Any], reason: str) -> dict[str, Any]:
    return {"approved": approved, "approvers": list(wait.get("approvals", [])), "reason": reason}


def _duration(seconds: float | None) -> str:
    if not seconds:
        return "the timeout"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _term_problems(declared: dict[str, Term], terms: Any) -> list[str]:
    """What is wrong with offered terms: every declared term, each of its type, within bounds."""
    if not isinstance(terms, dict):
        return ['terms must be a JSON object such as {"price": 90}']
    problems = [f"unknown term '{k}'" for k in terms if k not in declared]
    for name, term in declared.items():
        if name not in terms:
            problems.append(f"missing term '{name}'")
            continue
        problems.extend(_value_problems(name, term, terms[name]))
    return problems


def _value_problems(name: str, term: Term, value: Any) -> list[str]:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    kinds = {
        "number": numeric,
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
    }
    if not kinds[term.type]:
        return [f"{name} must be a {term.type}, got {value!r}"]
    problems = []
    if term.choices is not None and value not in term.choices:
        problems.append(f"{name} must be one of {', '.join(map(str, term.choices))}")
    if numeric and term.min is not None and value < term.min:
        problems.append(f"{name} must be ≥ {term.min:g} (got {value})")
    if numeric and term.max is not None and value > term.max:
        problems.append(f"{name} must be ≤ {term.max:g} (got {value})")
    return problems
