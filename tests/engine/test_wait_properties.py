"""Properties of the core under random workflows that wait, and random orders of what happens.

Workflows mix tasks (some undone by compensation steps), approvals, negotiations, event waits,
timers, external steps, subworkflows and decisions over random ``needs``. The inputs are random
interleavings of task completions and failures, duplicate completions, votes (by assignees,
outsiders and repeat voters), offers, topic messages (matching or not), timers fired on time,
early or again, cancels, and restarts (the state refolded from the history, the plan rebuilt from
``RunStarted``).

Invariants, checked after every input: the state equals the fold of the history; every signal
gets exactly one answer, and a refused one changes nothing else; an approval is decided at most
once per visit, by enough distinct assignees; no wait ends before its deadline; compensations
start once, each compensation step runs at most once, one at a time, in reverse order of the
completion of the steps they undo, and never while a step of the run is still busy; a cancel
never stops a compensation; a restart decides nothing new; a run that has not finished always has
something that can move it on. At the end every outstanding task, wait and timer is answered:
the run must finish with every step settled, and replay must reproduce its history exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from engine_sim import Sim
from wayang.engine import events as ev
from wayang.engine._base import SETTLING
from wayang.engine.messages import (
    AnswerSignal,
    CancelRun,
    ChildFinished,
    Decision,
    DispatchTask,
    Input,
    Signal,
    StartTimer,
    StopTask,
    TaskFinished,
    TimerFired,
    TopicMessage,
    Wake,
)
from wayang.engine.replay import replay
from wayang.engine.runplan import RunPlan
from wayang.engine.state import ACTIVE_STEP, TERMINAL_STEP, RunState, StepStatus
from wayang.model.spec import ApprovalStep
from wayang.policy import gate_for

USERS = ("alice", "bob", "carol", "dave")
TOPICS = ("orders", "payments")
DURATIONS = {"10m": 600.0, "30m": 1800.0, "1h": 3600.0, "2h": 7200.0}
KINDS = (
    "task",
    "task",
    "task",
    "approval",
    "approval",
    "event",
    "timer",
    "negotiation",
    "external",
    "subworkflow",
    "decision",
    "noop",
)
# Who sends votes and offers in the random inputs: (actor, roles).
VOTERS = (
    ("alice", ()),
    ("bob", ()),
    ("carol", ()),
    ("dave", ()),
    ("mallory", ()),
    ("erin", ("ops",)),
    ("frank", ("ops",)),
)
PARTIES = (("alice", ()), ("bob", ()), ("bo", ("buyer",)), ("sam", ("seller",)), ("mallory", ()))


@dataclass(frozen=True)
class Flow:
    text: str
    actor: str
    parallel: int
    timeout_s: float | None
    failures: int = 2  # how much failing weighs among the inputs, against 4 for succeeding


def _timeout(draw: st.DrawFn, chance: bool = True) -> list[str]:
    if chance and draw(st.booleans()):
        return [f'timeout = "{draw(st.sampled_from(sorted(DURATIONS)))}"']
    return []


def _approval(draw: st.DrawFn) -> list[str]:
    assignees = draw(
        st.lists(st.sampled_from((*USERS, "role:ops")), min_size=1, max_size=3, unique=True)
    )
    most = len(assignees) + (1 if "role:ops" in assignees else 0)
    lines = [
        'kind = "approval"',
        f"assignees = {json.dumps(assignees)}",
        f"quorum = {draw(st.integers(1, most))}",
        f'on_reject = "{draw(st.sampled_from(["fail", "continue"]))}"',
    ]
    if draw(st.booleans()):
        lines.append(
            f"required_fields = {json.dumps(draw(st.sampled_from([['comment'], ['ticket']])))}"
        )
    if draw(st.booleans()):
        lines.append("allow_self_approval = true")
    on_timeout = draw(st.sampled_from(["reject", "approve", "escalate", "escalate"]))
    lines.append(f'on_timeout = "{on_timeout}"')
    if on_timeout == "escalate":
        escalate_to = draw(
            st.lists(st.sampled_from((*USERS, "role:ops")), min_size=1, max_size=2, unique=True)
        )
        lines.append(f"escalate_to = {json.dumps(escalate_to)}")
    return lines + _timeout(draw)


def _negotiation(draw: st.DrawFn) -> list[str]:
    parties = draw(st.sampled_from([["alice", "bob"], ["role:buyer", "role:seller"]]))
    return [
        'kind = "negotiation"',
        f"parties = {json.dumps(parties)}",
        f"max_rounds = {draw(st.integers(1, 4))}",
        'terms.price = { type = "number", min = 1, max = 80 }',
        *_timeout(draw),
    ]


def _event(draw: st.DrawFn) -> list[str]:
    lines = ['kind = "event"', f'topic = "{draw(st.sampled_from(TOPICS))}"']
    if draw(st.booleans()):
        lines.append(f'correlate = "event.k == {draw(st.integers(0, 2))}"')
    return lines + _timeout(draw)


def _task(draw: st.DrawFn) -> list[str]:
    attempts = draw(st.integers(1, 2))
    lines = ['run = "true"', f'retry = {{ attempts = {attempts}, delay = "1s", jitter = false }}']
    return lines + (["continue_on_error = true"] if draw(st.integers(0, 2)) == 0 else [])


def _timer(draw: st.DrawFn) -> list[str]:
    return ['kind = "timer"', f'for = "{draw(st.sampled_from(sorted(DURATIONS)))}"']


def _external(draw: st.DrawFn) -> list[str]:
    return ['kind = "noop"', "external = true", *_timeout(draw)]


def _subworkflow(draw: st.DrawFn) -> list[str]:
    return ['kind = "subworkflow"', 'workflow = "child.toml"', *_timeout(draw)]


def _noop(draw: st.DrawFn) -> list[str]:
    return ['kind = "noop"']


# The keys of a step of each kind (decisions are written by ``flows``: they name later steps).
KIND_LINES = {
    "task": _task,
    "approval": _approval,
    "negotiation": _negotiation,
    "event": _event,
    "timer": _timer,
    "external": _external,
    "subworkflow": _subworkflow,
    "noop": _noop,
}


@st.composite
def flows(
    draw: st.DrawFn, pool: tuple[str, ...] = KINDS, saga: bool | None = None, failures: int = 2
) -> Flow:
    """A workflow of 1 to 7 steps of the kinds in ``pool``; with ``saga`` (else by chance) it
    compensates on failure."""
    count = draw(st.integers(1, 7))
    compensating = draw(st.booleans()) if saga is None else saga
    kinds = [draw(st.sampled_from(pool)) for _ in range(count)]
    branches: dict[int, tuple[int, int]] = {}
    targeted: set[int] = set()
    for index, kind in enumerate(kinds):
        if kind != "decision":
            continue
        later = [j for j in range(index + 1, count) if j not in targeted]
        if len(later) < 2:
            kinds[index] = "task"
            continue
        first, second = draw(st.lists(st.sampled_from(later), min_size=2, max_size=2, unique=True))
        branches[index] = (first, second)
        targeted |= {first, second}
    lines = ['id = "waits"']
    if compensating:
        lines.append('on_failure = "compensate"')
    lines += [
        "[parameters.flag]",
        'type = "boolean"',
        f"default = {json.dumps(draw(st.booleans()))}",
    ]
    undo: list[str] = []
    for index, kind in enumerate(kinds):
        step = f"s{index}"
        lines.append(f"[steps.{step}]")
        earlier = [n for n in range(index) if kinds[n] != "decision" or index not in branches[n]]
        needs = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3)) if earlier else []
        lines.append(f"needs = {json.dumps([f's{n}' for n in needs])}")
        if kind == "decision":
            first, second = branches[index]
            lines.append('kind = "decision"')
            lines.append(f'cases = [{{ when = "params.flag", next = "s{first}" }}]')
            lines.append(f'default = "s{second}"')
        else:
            lines += KIND_LINES[kind](draw)
        if kind != "decision" and draw(st.integers(0, 5)) >= (2 if compensating else 4):
            lines.append(f'compensate = "u{index}"')
            undo += _compensation(draw, index)
    if draw(st.integers(0, 3)) == 0:
        lines += [
            "[policy]",
            "[[policy.rules]]",
            'name = "no-dave"',
            'action = "approve"',
            "require = \"actor.name != 'dave'\"",
            'message = "dave may not approve"',
        ]
    text = "\n".join(lines + undo) + "\n"
    actor = draw(st.sampled_from(["", "alice", "bob"]))
    timeout_s = draw(st.sampled_from([None, None, None, 5000.0]))
    return Flow(text, actor, draw(st.integers(0, 2)), timeout_s, failures)


def _compensation(draw: st.DrawFn, index: int) -> list[str]:
    lines = [f"[steps.u{index}]"]
    if draw(st.integers(0, 3)) == 0:
        return [*lines, 'kind = "noop"']
    if draw(st.booleans()):
        lines.append(f'needs = ["s{index}"]')
    attempts = draw(st.integers(1, 2))
    return [
        *lines,
        'run = "undo"',
        f'retry = {{ attempts = {attempts}, delay = "1s", jitter = false }}',
    ]


# --- driving the core ------------------------------------------------------------------------

# An input: which of the choices, two numbers it reads as it likes, and how far the clock moves.
INPUT = st.tuples(
    st.integers(0, 999), st.integers(0, 99), st.integers(0, 99), st.sampled_from((0.0, 1.0, 60.0))
)


def choices(driver: Driver) -> list[str]:
    """The inputs that can apply now (repeats weigh), plus some that never do."""
    sim, kinds = driver.sim, {p.kind for p in driver.sim.run.steps.values()}
    options = ["wake", "stray", "cancel", "restart"]
    if sim.tasks:
        options += ["ok"] * 4 + ["fail"] * driver.flow.failures + ["timeout"]
    if len(sim.dispatched) > len(sim.tasks):
        options.append("dup")
    if "approval" in kinds:
        options += ["approve"] * (4 if driver.waiting("approval") else 1) + ["reject"]
    if "negotiation" in kinds:
        options += ["offer"] * (4 if driver.waiting("negotiation") else 1) + ["accept", "decline"]
    if driver.waiting("complete") or "noop" in kinds:
        options.append("complete")
    if driver.waiting("subworkflow"):
        options.append("child")
    if "event" in kinds:
        options += ["message", "message"] + (["again"] if driver.messages else [])
    if sim.timers:
        options += ["timer", "timer", "early"]
    if driver.fired:
        options.append("refire")
    return options


@dataclass
class Driver:
    """A :class:`Sim` plus what the property needs to remember about the inputs it sent."""

    sim: Sim
    flow: Flow
    history: HistoryCheck
    signals: int = 0
    messages: list[TopicMessage] = field(default_factory=list)
    fired: list[StartTimer] = field(default_factory=list)
    stopped: list[tuple[StopTask, bool]] = field(default_factory=list)  # and: while compensating

    @property
    def state(self) -> RunState:
        return self.sim.state

    def send(self, message: Input) -> Decision:
        compensating = self.state.compensating
        decision = self.sim.send(message)
        for command in decision.commands:
            if isinstance(command, StopTask):
                self.stopped.append((command, compensating or self.state.compensating))
        return decision

    def signal(
        self, step_id: str, kind: str, actor: str, roles: tuple[str, ...] = (), **data: Any
    ) -> str:
        """Send a signal; every signal to a live run gets exactly one answer."""
        self.signals += 1
        seq = self.signals
        finished = self.state.finished
        decision = self.send(Signal(seq, step_id, kind, actor, roles, dict(data)))
        answers = [c for c in decision.commands if isinstance(c, AnswerSignal)]
        if finished:
            assert not decision.events and not answers
            return "ignored"
        assert [a.seq for a in answers] == [seq], decision
        rejected = [e for e in decision.events if isinstance(e, ev.SignalRejected)]
        if answers[0].status == "rejected":
            assert decision.events[:1] == rejected and len(rejected) == 1
            ends = any(isinstance(e, ev.NegotiationFailed) for e in decision.events)
            # A refused signal changes nothing else (unless it ends a negotiation's last round).
            assert ends or len(decision.events) == 1, decision.events
        else:
            assert answers[0].status == "accepted" and not rejected
        return answers[0].status

    def publish(self, topic: str, data: Any) -> None:
        message = TopicMessage(len(self.messages) + 1, topic, data)
        self.messages.append(message)
        self.send(message)

    def fire(self, timer: StartTimer) -> Decision:
        self.sim.now = max(self.sim.now, timer.due_at)
        self.fired.append(timer)
        return self.send(TimerFired(timer.timer_id, timer.kind, timer.step_id, timer.attempt))

    def finish(self, task: DispatchTask, status: str) -> None:
        self.sim.tasks.pop(task.task_id, None)
        error = None if status == "succeeded" else "boom"
        self.send(TaskFinished(task.step_id, task.attempt, status, {"n": 1}, error))

    def waiting(self, kind: str) -> list[str]:
        return [
            step_id
            for step_id, step in self.state.steps.items()
            if step.status is StepStatus.WAITING and step.wait and step.wait["kind"] == kind
        ]

    def steps_of(self, kind: str) -> list[str]:
        return [s for s, p in self.sim.run.steps.items() if p.kind == kind]

    def restart(self) -> None:
        """A crash between decisions: a fresh state from the history, a plan from RunStarted."""
        restored = self.sim.refold()
        assert restored == self.state
        started = self.sim.history[0]
        assert isinstance(started, ev.RunStarted)
        self.sim.state = restored
        self.sim.run = RunPlan.from_started(started, gate_for)
        self.wake()

    def wake(self) -> None:
        decision = self.send(Wake())
        assert not decision.events, decision.events  # nothing was left ready but unscheduled


def act(driver: Driver, action: str, a: int, b: int) -> None:  # noqa: C901, PLR0912
    """Send one input: ``action`` names it, ``a`` and ``b`` pick whom and what."""
    sim = driver.sim
    tasks = list(sim.tasks.values())
    if action in ("ok", "fail", "timeout") and tasks:
        status = {"ok": "succeeded", "fail": "failed", "timeout": "timed_out"}[action]
        driver.finish(tasks[a % len(tasks)], status)
    elif action == "dup":
        done = [t for t in sim.dispatched if t.task_id not in sim.tasks]
        if done:
            old = done[a % len(done)]
            decision = driver.send(TaskFinished(old.step_id, old.attempt, "succeeded"))
            assert not decision.events  # the first completion recorded won
    elif action in ("approve", "reject"):
        step_id = _target(driver, "approval", a)
        if step_id:
            wait = sim.state.step(step_id).wait or {}
            spec = sim.run.workflow.steps[step_id]
            assert isinstance(spec, ApprovalStep)
            seats = wait.get("assignees") or spec.assignees + spec.escalate_to
            actor, roles = _who(seats, VOTERS, b)
            data: dict[str, Any] = {}
            if a % 3:
                data["comment"] = "why not"
            if a % 2:
                data["fields"] = {"ticket": "T-1"}
            driver.signal(step_id, action, actor, roles, **data)
    elif action in ("offer", "accept", "decline"):
        step_id = _target(driver, "negotiation", a)
        if step_id:
            wait = sim.state.step(step_id).wait or {}
            parties = list(wait.get("parties", ()))
            offer = wait.get("offer")
            if offer and b % 3:  # most often the other party answers
                parties = [p for p in parties if p != offer["party"]]
            actor, roles = _who(parties, PARTIES, b)
            data = {"terms": {"price": a}} if action == "offer" else {}
            driver.signal(step_id, action, actor, roles, **data)
    elif action == "complete":
        steps = list(sim.run.steps)  # an external step, or one that is not: refused
        step_id = steps[a % len(steps)]
        outputs: Any = {"ticket": b} if b % 4 else "not an object"
        driver.signal(step_id, "complete", USERS[b % len(USERS)], outputs=outputs)
    elif action == "child":
        for step_id in driver.steps_of("subworkflow"):
            wait = sim.state.step(step_id).wait or {}
            child = wait.get("child_run_id", "r1--nobody") if b % 5 else "r1--stranger"
            status = "succeeded" if a % 3 else "failed"
            driver.send(ChildFinished(step_id, child, status, {"total": a}, "" if a % 3 else "x"))
            break
    elif action == "message":
        data = {"k": b % 3} if b % 4 else {"other": 1}
        driver.publish(TOPICS[a % len(TOPICS)], data)
    elif action == "again" and driver.messages:
        old = driver.messages[a % len(driver.messages)]
        consumed = old.seq in sim.state.consumed
        decision = driver.send(old)
        assert not (consumed and decision.events)  # each message is taken once per run
    elif action == "timer" and sim.timers:
        timers = sorted(sim.timers.values(), key=lambda t: (t.due_at, t.timer_id))
        driver.fire(timers[a % len(timers)])
    elif action == "early":
        early = [
            t
            for t in sim.timers.values()
            if t.kind in ("sleep", "wait-timeout") and sim.now < t.due_at
        ]
        if early:
            timer = sorted(early, key=lambda t: t.timer_id)[a % len(early)]
            decision = driver.send(
                TimerFired(timer.timer_id, timer.kind, timer.step_id, timer.attempt)
            )
            assert not decision.events, f"{timer} fired early at {sim.now}: {decision.events}"
            assert timer.timer_id in sim.timers  # still armed, for when it is due
    elif action == "refire" and driver.fired:
        driver.fire(driver.fired[a % len(driver.fired)])  # an at-least-once timer, again
    elif action == "cancel" and a % 8 == 0:
        driver.send(CancelRun("stop" if b % 2 else "stop again"))
    elif action == "restart":
        driver.restart()
    elif action == "wake":
        driver.wake()
    elif action == "stray":
        kind = ("approve", "offer", "complete", "poke")[a % 4]
        step_id = ("nowhere", *sim.run.steps)[b % (len(sim.run.steps) + 1)]
        driver.signal(step_id, kind, "mallory", comment="hm", terms={"price": 5})


def _target(driver: Driver, kind: str, a: int) -> str | None:
    """A step of ``kind`` to signal: most often one that waits, sometimes any."""
    waiting = driver.waiting(kind)
    steps = waiting if waiting and a % 4 else driver.steps_of(kind)
    return steps[a % len(steps)] if steps else None


def _who(
    seats: list[str], others: tuple[tuple[str, tuple[str, ...]], ...], b: int
) -> tuple[str, tuple[str, ...]]:
    """Someone holding one of ``seats`` (a name, or a role), or now and then anyone else."""
    if not seats or b % 4 == 0:
        return others[b % len(others)]
    return _holder(seats[b % len(seats)], b)


# --- invariants --------------------------------------------------------------------------------


def _deadline(run: RunPlan, step_id: str, wait: dict[str, Any]) -> float:
    """When a wait's timeout may end it (its current deadline, after any escalation)."""
    due = wait.get("due_at")
    if due is not None:
        return float(due)
    timeout = run.steps[step_id].timeout_s
    assert timeout is not None
    return float(wait["since"]) + timeout


class HistoryCheck:
    """Folds the history as it grows, checking at each event what must hold there."""

    def __init__(self, run: RunPlan) -> None:
        self.run = run
        self.undoes = {s: p.compensate for s, p in run.steps.items() if p.compensate}
        self.undoers = set(self.undoes.values())
        self.state = RunState("r1")
        self.seen = 0
        self.completed: list[str] = []  # steps with a compensation, in the order they succeeded
        self.open: dict[str, bool] = {}  # approval steps with an undecided request
        self.plan: list[str] | None = None  # the compensation steps, once compensation started
        self.began: list[str] = []  # compensation steps in the order they started
        self.compensated = False

    def catch_up(self, history: list[ev.Event]) -> RunState:
        for event in history[self.seen :]:
            self.see(event)
            self.state.apply(event)
        self.seen = len(history)
        if self.plan is not None:
            assert self.began == self.plan[: len(self.began)], (self.began, self.plan)
            assert self.run.workflow.on_failure == "compensate"
        return self.state

    def see(self, event: ev.Event) -> None:
        step_id = getattr(event, "step_id", "")
        if isinstance(event, ev.StepSucceeded) and step_id in self.undoes:
            self.completed.append(step_id)
        elif isinstance(event, ev.StepScheduled):
            self.scheduled(step_id)
        elif isinstance(event, ev.CompensationStarted):
            self.compensation_started(event)
        elif isinstance(event, ev.CompensationFinished):
            assert self.plan is not None and not self.compensated
            self.compensated = True
            assert all(self.state.step(s).status in TERMINAL_STEP for s in self.began)
        else:
            self.waits(event, step_id)
        settles = isinstance(event, SETTLING) and (
            not isinstance(event, ev.StepFailed) or event.final
        )
        if settles and step_id in self.open:
            self.open[step_id] = False

    def waits(self, event: ev.Event, step_id: str) -> None:
        """One decision per approval request, by distinct assignees; no wait ends early."""
        if isinstance(event, ev.ApprovalRequested):
            assert not self.open.get(step_id)
            self.open[step_id] = True
        elif isinstance(event, ev.ApprovalVoted):
            assert self.open.get(step_id), f"{event} after the approval was decided"
            wait = self.state.step(step_id).wait or {}
            assert event.actor not in wait["voters"], f"{event.actor} voted twice"
            seats = {event.actor, *(f"role:{role}" for role in event.roles)}
            assert seats & set(wait["assignees"]), f"{event.actor} is no assignee"
        elif isinstance(event, ev.OfferMade | ev.AgreementReached):
            self.negotiated(event)
        elif isinstance(event, ev.ApprovalGranted | ev.ApprovalRejected):
            assert self.open.get(step_id), f"a second decision on {step_id}: {event}"
            self.open[step_id] = False
            if isinstance(event, ev.ApprovalGranted):
                self.granted(event)
        elif isinstance(event, ev.StepTimerFired):
            wait = self.state.step(step_id).wait or {}
            assert event.at >= wait["due_at"], f"timer {step_id} fired early: {event}"
        if isinstance(event, ev.WaitTimedOut | ev.ApprovalEscalated):
            assert self.open.get(step_id, True), f"{event} after the approval was decided"
            wait = self.state.step(step_id).wait or {}
            deadline = _deadline(self.run, step_id, wait)
            assert event.at >= deadline, f"{step_id} timed out at {event.at} < {deadline}"

    def negotiated(self, event: ev.OfferMade | ev.AgreementReached) -> None:
        """Offers alternate between the parties within the round limit; the other party agrees."""
        wait = self.state.step(event.step_id).wait or {}
        offer = wait["offer"]
        assert event.party in wait["parties"] and (offer is None or offer["party"] != event.party)
        if isinstance(event, ev.AgreementReached):
            assert offer is not None and event.terms == offer["terms"]
            return
        assert isinstance(event, ev.CounterOffered) == (offer is not None)
        assert event.round == wait["round"] + 1 <= wait["max_rounds"]

    def granted(self, event: ev.ApprovalGranted) -> None:
        spec = self.run.workflow.steps[event.step_id]
        assert isinstance(spec, ApprovalStep)
        assert len(set(event.approvers)) == len(event.approvers)
        starter = self.state.started.actor if self.state.started else ""
        if not spec.allow_self_approval and starter:
            assert starter not in event.approvers
        if not event.reason.startswith("no decision within"):  # on_timeout = "approve"
            assert len(event.approvers) >= spec.quorum

    def scheduled(self, step_id: str) -> None:
        state = self.state
        if step_id not in self.undoers:
            # A stopping run starts nothing new and resumes no back-off (nor while compensating).
            stopping = (
                state.cancel_requested
                or state.fail_reason
                or any(not self.run.steps[s].continue_on_error for s in state.failed)
            )
            assert not stopping, f"{step_id} was scheduled while the run was stopping"
            return
        assert self.plan is not None and step_id in self.plan, f"{step_id} ran uncalled for"
        assert not self.compensated
        if state.step(step_id).status is StepStatus.PENDING:
            assert step_id not in self.began, f"compensation {step_id} ran twice"
            running = [s for s in self.began if state.step(s).status not in TERMINAL_STEP]
            assert not running, f"{step_id} started while {running} still ran"
            self.began.append(step_id)

    def compensation_started(self, event: ev.CompensationStarted) -> None:
        assert self.plan is None, "compensation started twice"
        busy = [
            s
            for s, step in self.state.steps.items()
            if s not in self.undoers and step.status in (*ACTIVE_STEP, StepStatus.WAITING)
        ]
        assert not busy, f"compensation started while {busy} were busy"
        expected: list[str] = []
        for forward in reversed(self.completed):  # the last to complete is undone first
            target = self.undoes[forward]
            if target not in expected and self.state.step(target).status not in TERMINAL_STEP:
                expected.append(target)
        assert event.steps == expected, (event.steps, expected, self.completed)
        self.plan = list(event.steps)


def check_live(driver: Driver) -> None:
    """A run that has not finished has something that can still move it on."""
    state, sim = driver.state, driver.sim
    if state.finished:
        return
    pending: list[str] = [t.step_id for t in sim.tasks.values()]
    pending += [t.timer_id for t in sim.timers.values()]
    for step_id, step in state.steps.items():
        if step.status in ACTIVE_STEP:
            assert any(
                t.step_id == step_id and t.attempt == step.attempt for t in sim.tasks.values()
            ), f"{step_id} is {step.status} with no task"
        if step.status is not StepStatus.WAITING or step.wait is None:
            continue
        wait = step.wait
        armed = any(t.step_id == step_id and t.attempt == step.attempt for t in sim.timers.values())
        if wait["kind"] == "timer":
            assert armed, f"timer {step_id} waits with no timer"
        elif wait.get("due_at") is not None or sim.run.steps[step_id].timeout_s:
            assert armed, f"{step_id} has a deadline but no timer"
        if wait["kind"] == "approval":
            open_seats = [
                a for a in wait["assignees"] if a.startswith("role:") or a not in wait["voters"]
            ]
            if open_seats:
                pending.append(step_id)
        elif wait["kind"] != "timer":
            pending.append(step_id)  # a message, an offer, a completion or a child can end it
    assert pending, f"run stuck: {sim.statuses()}"


def check(driver: Driver) -> None:
    assert driver.history.catch_up(driver.sim.history) == driver.state
    check_live(driver)
    for stop, compensating in driver.stopped:
        assert not (compensating and stop.step_id in driver.state.compensation_all), stop


# --- answering everything ------------------------------------------------------------------------


def _holder(seat: str, serial: int) -> tuple[str, tuple[str, ...]]:
    """Someone who holds ``seat``: the user it names, or a new user with the role it names."""
    return (f"{seat[5:]}{serial}", (seat[5:],)) if seat.startswith("role:") else (seat, ())


def answer_approval(driver: Driver, step_id: str) -> bool:
    """Approve (or else reject) as someone who has not voted yet; False if nobody can."""
    wait = driver.state.step(step_id).wait or {}
    starter = driver.state.started.actor if driver.state.started else ""
    seats = [a for a in wait["assignees"] if a.startswith("role:") or a not in wait["voters"]]
    seats.sort(key=lambda a: a == starter)  # the starter may not approve: ask them last
    data = {"comment": "ok", "fields": {"ticket": "T-9"}}
    for vote in ("approve", "reject"):
        for seat in seats:
            actor, roles = _holder(seat, driver.signals)
            if driver.signal(step_id, vote, actor, roles, **data) == "accepted":
                return True
    return False


def answer_negotiation(driver: Driver, step_id: str) -> bool:
    wait = driver.state.step(step_id).wait or {}
    parties = [_holder(p, driver.signals) for p in wait["parties"]]
    offer = wait.get("offer")
    if offer is None:
        return driver.signal(step_id, "offer", *parties[0], terms={"price": 40}) == "accepted"
    other = next(
        p for p, party in zip(parties, wait["parties"], strict=True) if party != offer["party"]
    )
    return driver.signal(step_id, "accept", *other) == "accepted"


def answer_wait(driver: Driver) -> bool:
    """Answer one waiting step by what it waits for (not by its timer); False if none could be."""
    for step_id in driver.waiting("approval"):
        if answer_approval(driver, step_id):
            return True
    for step_id in driver.waiting("negotiation"):
        if answer_negotiation(driver, step_id):
            return True
    for step_id in driver.waiting("event"):
        wait = driver.state.step(step_id).wait or {}
        correlate = wait["correlate"]
        key = int(correlate.rsplit("==", 1)[1]) if correlate else 0
        driver.publish(wait["topic"], {"k": key})
        return True
    for step_id in driver.waiting("complete"):
        driver.signal(step_id, "complete", "alice", outputs={"ticket": "OPS-1"})
        return True
    for step_id in driver.waiting("subworkflow"):
        wait = driver.state.step(step_id).wait or {}
        driver.send(ChildFinished(step_id, wait["child_run_id"], "succeeded", {"total": 1}))
        return True
    return False


def drain(driver: Driver) -> None:
    """Answer everything outstanding (tasks succeed, waits are answered, timers fire)."""
    sim = driver.sim
    for _ in range(500):
        if sim.state.finished and not sim.tasks:
            break
        if sim.tasks:
            driver.finish(next(iter(sim.tasks.values())), "succeeded")
        elif not sim.state.finished and answer_wait(driver):
            pass
        elif sim.timers:
            driver.fire(min(sim.timers.values(), key=lambda t: (t.due_at, t.timer_id)))
        else:
            break
        check(driver)
    assert sim.state.finished, f"run stuck after answering everything: {sim.statuses()}"


def run_inputs(flow: Flow, data: st.DataObject) -> None:
    """Start ``flow``, send it random inputs checking every invariant, then answer everything."""
    sim = Sim.begin(flow.text, parallel=flow.parallel, timeout_s=flow.timeout_s, actor=flow.actor)
    driver = Driver(sim, flow, HistoryCheck(sim.run))
    check(driver)
    after_end = 0
    for _ in range(data.draw(st.integers(5, 60), label="inputs")):
        pick, a, b, dt = data.draw(INPUT, label="input")
        options = choices(driver)
        action = options[pick % len(options)]
        note(f"{action} a={a} b={b} after {dt}s")
        sim.now += dt
        act(driver, action, a, b)
        check(driver)
        after_end += sim.state.finished
        if after_end > 3:  # a few inputs to a finished run are enough: all are ignored
            break
    drain(driver)
    assert all(s.status in TERMINAL_STEP for s in sim.state.steps.values()), sim.statuses()
    assert set(sim.state.steps) == set(sim.run.steps)
    # Compensation ran exactly when a failed or cancelled saga had something to undo, and then
    # each of its steps ran exactly once.
    checked = driver.history
    undo = sim.run.workflow.on_failure == "compensate" and sim.state.status != "succeeded"
    undo = undo and any(sim.state.step(s).status is StepStatus.SUCCEEDED for s in checked.undoes)
    assert (checked.plan is not None) == undo, (checked.plan, sim.statuses())
    if checked.plan is not None:
        assert checked.began == checked.plan and checked.compensated
        assert sim.state.compensation_done and not sim.state.compensating
    report = replay("r1", sim.history, gate_for)
    assert report.divergence is None, report.divergence
    assert report.state == sim.state


FAST = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


@settings(max_examples=300, **FAST)
@given(flows(), st.data())
def test_random_waits_keep_the_invariants_and_always_finish(
    flow: Flow, data: st.DataObject
) -> None:
    run_inputs(flow, data)


@settings(max_examples=300, **FAST)
@given(flows(("task", "task", "task", "timer", "noop"), saga=True, failures=4), st.data())
def test_compensation_runs_once_each_in_reverse_order(flow: Flow, data: st.DataObject) -> None:
    """Sagas under failures, retries, cancels and run timeouts."""
    run_inputs(flow, data)


@settings(max_examples=200, **FAST)
@given(flows(("approval", "approval", "task")), st.data())
def test_each_approval_is_decided_once(flow: Flow, data: st.DataObject) -> None:
    """Approvals under votes by anyone, repeat votes, escalations and timeouts."""
    run_inputs(flow, data)
