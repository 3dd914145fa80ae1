"""``decide``: from a run's state and one input, the next events and commands.

The decider appends each event it produces to the state it was given (the state is advanced in
place, exactly as folding those events would), so the caller's state always equals the fold of
the history plus the decision. If committing the decision fails, the caller reloads the state.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Mapping
from typing import Any

from wayang.engine import events as ev
from wayang.engine._base import StepsView
from wayang.engine.flow import FlowMixin
from wayang.engine.messages import (
    CancelRun,
    CancelTimer,
    ChildFinished,
    DeadLetter,
    Decision,
    DispatchTask,
    Input,
    NoteWorkspace,
    Signal,
    StartTimer,
    StopTask,
    TaskFinished,
    TimerFired,
    TopicMessage,
    Wake,
)
from wayang.engine.runplan import RunPlan
from wayang.engine.saga import SagaMixin
from wayang.engine.state import ACTIVE_STEP, TERMINAL_STEP, RunState, StepStatus
from wayang.engine.waits import WaitsMixin, waits
from wayang.errors import DefinitionError, ExpressionError
from wayang.model.expr import evaluate_condition
from wayang.model.placement import task_needs
from wayang.model.plan import PlannedStep, ResolvedStep, RetryPolicy, resolve_at_runtime

NOT_EXECUTED = {"agent": "agent steps run on the inference plane, which this version lacks"}


def start_run(
    run: RunPlan,
    state: RunState,
    started: ev.RunStarted,
    reuse: Mapping[str, dict[str, Any]] | None = None,
) -> Decision:
    """The first decision of a run: record its start, its deadline, and schedule what is ready.

    ``reuse`` maps steps of the run being retried (``started.retry_of``) to their outputs: those
    steps are recorded as reused instead of running again.
    """
    decider = _Decider(run, state, started.at)
    decider.emit(started)
    for step_id in run.order:
        if reuse and step_id in reuse:
            decider.emit(ev.StepReused(step_id, reuse[step_id], started.retry_of, started.at))
    if started.timeout_s:
        timer_id = f"{state.run_id}/run-timeout"
        due = started.at + started.timeout_s
        decider.commands.append(StartTimer(timer_id, due, "run-timeout"))
    decider.advance()
    return decider.decision


def decide(run: RunPlan, state: RunState, message: Input, now: float) -> Decision:
    """The events and commands that follow ``message`` (an empty decision for a duplicate)."""
    decider = _Decider(run, state, now)
    if not state.finished:
        decider.handle(message)
        decider.advance()
    elif isinstance(message, TimerFired):
        decider.commands.append(CancelTimer(message.timer_id))
    return decider.decision


def retry_delay(policy: RetryPolicy, attempt: int, seed: str) -> float:
    """Back-off before the attempt after ``attempt``; jitter is derived from ``seed`` (pure)."""
    base = policy.delay_s * (2 ** (attempt - 1) if policy.backoff == "exponential" else 1)
    delay = min(base, policy.max_delay_s)
    if policy.jitter:
        fraction = int.from_bytes(hashlib.blake2b(seed.encode(), digest_size=8).digest()) / 2**64
        delay *= 1 + policy.jitter * (2 * fraction - 1)
    return max(0.0, min(delay, policy.max_delay_s))


class _Decider(FlowMixin, WaitsMixin, SagaMixin):
    # --- inputs ---------------------------------------------------------------------------

    def handle(self, message: Input) -> None:
        if isinstance(message, TaskFinished):
            self._task_finished(message)
        elif isinstance(message, TimerFired):
            self._timer_fired(message)
        elif isinstance(message, CancelRun):
            self._cancel(message.reason)
        elif isinstance(message, Signal):
            self.on_signal(message)
        elif isinstance(message, TopicMessage):
            self.on_message(message)
        elif isinstance(message, ChildFinished):
            self.on_child_finished(message)
        elif isinstance(message, NoteWorkspace):
            self.emit(
                ev.WorkspaceNoted(
                    message.kind,
                    message.workspace_id,
                    message.path,
                    message.detail,
                    self.now,
                    message.step_id,
                )
            )
        elif not isinstance(message, Wake):
            raise TypeError(f"not an engine input: {message!r}")

    def _stopping_steps(self) -> bool:
        """Whether attempts are being stopped: a cancel, but never during compensation."""
        return self.state.cancel_requested and not self.state.compensating

    def _task_finished(self, done: TaskFinished) -> None:
        step = self.state.steps.get(done.step_id)
        if step is None or step.status not in ACTIVE_STEP or step.attempt != done.attempt:
            return  # a duplicate or stale completion: the first one recorded won
        if step.status is StepStatus.SCHEDULED:
            self.emit(ev.StepStarted(done.step_id, done.attempt, done.started_at or self.now))
        if done.status == "succeeded":
            event = ev.StepSucceeded(
                done.step_id, done.attempt, done.outputs, done.duration_s, self.now
            )
            self.emit(event)
        elif self._stopping_steps():
            self.emit(ev.StepCancelled(done.step_id, done.attempt, self.now))
        else:
            self._attempt_failed(done)

    def _attempt_failed(self, done: TaskFinished) -> None:
        planned = self.run.steps[done.step_id]
        policy = planned.retry
        error = done.error or done.status
        tries = done.attempt - self.state.step(done.step_id).first_attempt + 1
        final = tries >= policy.attempts or self._stopping_steps()
        timed_out = done.status == "timed_out"
        self.emit(
            ev.StepFailed(
                done.step_id,
                done.attempt,
                error,
                done.exit_code,
                done.duration_s,
                final,
                self.now,
                timed_out,
            )
        )
        if final:
            payload = {"step_id": done.step_id, "attempt": done.attempt}
            self.commands.append(DeadLetter(done.step_id, tries, error, payload))
            return
        seed = f"{self.state.run_id}/{done.step_id}/{done.attempt}"
        delay = retry_delay(policy, tries, seed)
        due = self.now + delay
        self.emit(ev.StepRetrying(done.step_id, done.attempt + 1, delay, due, self.now))
        timer_id = f"{seed}/retry"
        self.commands.append(StartTimer(timer_id, due, "retry", done.step_id, done.attempt))

    def _timer_fired(self, fired: TimerFired) -> None:
        if fired.kind in ("sleep", "wait-timeout"):
            self.wait_timer_fired(fired)  # re-arms itself if it fired early
            return
        self.commands.append(CancelTimer(fired.timer_id))
        if fired.kind == "run-timeout":
            timeout = self.state.started.timeout_s if self.state.started else None
            self._cancel(f"run timed out after {timeout}s", failed=True)
            return
        step = self.state.steps.get(fired.step_id or "")
        if step is None or step.status is not StepStatus.RETRYING or step.attempt != fired.attempt:
            return
        stopping = self.state.cancel_requested or self._failing()
        if stopping and fired.step_id not in self.state.compensation_all:
            return  # a stopping run resumes no back-off but a compensation step's
        self.dispatch(self.run.steps[fired.step_id or ""], fired.attempt + 1)

    def _cancel(self, reason: str, failed: bool = False) -> None:
        if self.state.cancel_requested:
            return
        self.emit(ev.RunCancelRequested(reason, self.now, failed))
        if self.state.compensating:
            return  # nothing but compensation runs now, and a compensation is never stopped
        for step_id, step in self.state.steps.items():
            if step.status in ACTIVE_STEP and step.task_id:
                self.commands.append(StopTask(step.task_id, step_id))
            elif step.status is StepStatus.RETRYING:
                timer = f"{self.state.run_id}/{step_id}/{step.attempt}/retry"
                self.commands.append(CancelTimer(timer))
        self.abandon_waits()

    # --- scheduling -------------------------------------------------------------------------

    def advance(self) -> None:
        """Schedule what is ready; compensate and finish the run when nothing is left to do."""
        stopping = self.state.cancel_requested or self._failing()
        if not stopping:
            self._schedule_ready()
            stopping = self._failing()
        if stopping and not self.state.compensating:
            self.abandon_waits()
        # A stopping run waits for running attempts, but not for back-offs: those never resume.
        busy = self.state.count(*ACTIVE_STEP, StepStatus.WAITING)
        if not stopping:
            busy += self.state.count(StepStatus.RETRYING)
        if busy and not self.state.compensating:
            return
        if stopping and self.compensate():
            return
        self._finish(stopping)

    def _failing(self) -> bool:
        if self.state.fail_reason:
            return True
        steps = self.run.steps
        return any(not steps[step_id].continue_on_error for step_id in self.state.failed)

    def _schedule_ready(self) -> None:
        """Settle or dispatch, in dependency order, every pending step that is ready.

        Only candidates are looked at: the dependents of steps settled in this decision, plus
        the steps the parallel limit held back last time (``state.ready_hint``). A state fresh
        from a fold has no hint, so every step is a candidate once. Both ways see the same
        ready steps in the same order, so a recovered run decides as the original would have.
        Loop transitions of settled steps are taken first, so a loop's next visit resets its
        steps before anything downstream of them is judged.

        The held-back steps are kept as the heap itself, and this decision's candidates are
        pushed into it: a wide fanout under a parallel limit holds back most of its steps, and
        listing them anew at each decision cost the square of its width.
        """
        hint = self.state.ready_hint
        order = self.run.order
        if hint is None:
            self._consider(order)
        else:
            self._take_held(*hint)
        limit = self._parallel_limit()
        active = self.state.count(*ACTIVE_STEP)
        candidates = self._candidates
        while True:
            if self._settled:
                self.take_loops()
                if self._failing():
                    break
                continue
            if not candidates:
                break
            position = heapq.heappop(candidates)
            self._queued.discard(position)
            planned = self.run.steps[order[position]]
            if not self._needs_worker(planned):
                continue
            if limit and active >= limit:
                heapq.heappush(candidates, position)
                self._queued.add(position)
                self.state.ready_hint = (candidates, self._queued)
                return
            if self.dispatch(planned, self.next_attempt(planned.id)):
                active += 1
        self.state.ready_hint = ([], set())

    def _take_held(self, held: list[int], queued: set[int]) -> None:
        """Make the steps held back last time this decision's candidates, with those it
        found already (the dependents of the steps it settled)."""
        for position in self._candidates:
            if position not in queued:
                queued.add(position)
                heapq.heappush(held, position)
        self._candidates, self._queued = held, queued

    def _needs_worker(self, planned: PlannedStep) -> bool:
        """Settle a candidate if it can be settled here; True if it is ready for a worker."""
        if self.state.step(planned.id).status is not StepStatus.PENDING:
            return False
        if planned.compensation_only:
            return False
        readiness = self.readiness(planned)
        if readiness.verdict == "wait":
            return False
        self.record_denials(readiness)
        if readiness.verdict == "skip":
            self.emit(ev.StepSkipped(planned.id, readiness.reason, self.now))
            return False
        if readiness.verdict == "fail":
            self.fail_without_running(planned, readiness.reason)
            return False
        return not self._settle_without_running(planned)

    def _parallel_limit(self) -> int:
        return self.state.started.parallel if self.state.started else 0

    def _settle_without_running(self, planned: PlannedStep) -> bool:
        """Skip, fail, complete or park a step that needs no worker; True if it was settled."""
        if planned.kind in NOT_EXECUTED:
            self.fail_without_running(planned, NOT_EXECUTED[planned.kind])
            return True
        try:
            go = planned.when is None or self._condition(planned)
        except ExpressionError as exc:
            self.fail_without_running(planned, f"when: {exc.message}")
            return True
        if not go:
            self.emit(ev.StepSkipped(planned.id, f"condition is false: {planned.when}", self.now))
            return True
        if planned.kind == "task":
            return False
        return self._start_other(planned)

    def _start_other(self, planned: PlannedStep) -> bool:
        """Start a step that is not a task: policy first, then by kind. Always settles it."""
        verdict = self.ask("execute", planned.id)
        if not verdict.allowed:
            self.fail_without_running(planned, _denial(verdict.rule, verdict.reason))
            return True
        spec = self.run.workflow.steps.get(planned.id)
        if planned.kind == "decision":
            self.decide_branch(planned)
        elif waits(planned, spec):
            try:
                inputs = self._resolve(planned, self.next_attempt(planned.id)).inputs
            except (ExpressionError, DefinitionError) as exc:
                self.fail_without_running(planned, f"cannot render the step: {exc}")
                return True
            self.begin_wait(planned, inputs)
        else:
            self.succeed_without_running(planned, {})
        return True

    def _condition(self, planned: PlannedStep) -> bool:
        spec = self.run.workflow.steps[planned.id]
        assert spec.when is not None
        return evaluate_condition(spec.when, self.scope(1))

    def dispatch(self, planned: PlannedStep, attempt: int) -> bool:
        if planned.kind != "task":  # a compensation step of another kind
            self._start_other(planned)
            return self.state.step(planned.id).status not in TERMINAL_STEP
        try:
            resolved = self._resolve(planned, attempt)
        except (ExpressionError, DefinitionError) as exc:
            self.fail_without_running(planned, f"cannot render the step: {exc}")
            return False
        if self.state.step(planned.id).status is StepStatus.PENDING:
            verdict = self.ask(
                "execute",
                planned.id,
                scope={"inputs": resolved.inputs},
                command=resolved.command,
                env_keys=tuple(resolved.env),
            )
            if not verdict.allowed:
                self.fail_without_running(planned, _denial(verdict.rule, verdict.reason))
                return False
        task_id = f"{self.state.run_id}/{planned.id}/{attempt}"
        key = self.key(planned.id)
        payload = {
            "command": resolved.command,
            "uses": resolved.uses,
            "inputs": resolved.inputs,
            "env": resolved.env,
            "timeout_s": planned.timeout_s,
            "workflow_id": self.run.workflow.id,
            "workspace": planned.workspace,
            "queue": planned.queue,
            "needs": task_needs(planned.runs_on, resolved.command, resolved.uses),
        }
        self.emit(ev.StepScheduled(planned.id, attempt, task_id, key, self.now))
        self.commands.append(DispatchTask(task_id, planned.id, attempt, key, payload))
        return True

    def _resolve(self, planned: PlannedStep, attempt: int) -> ResolvedStep:
        """The step's command, inputs and env: as planned, unless they read ``steps``/``run``
        or a transition maps outputs into its inputs."""
        mapped = self.mapped_inputs(planned) if planned.id in self.run.inbound else {}
        if not planned.deferred and not mapped:
            return ResolvedStep(planned.command, planned.uses, planned.inputs, planned.env)
        started = self.state.started
        assert started is not None
        if planned.id not in self.run.workflow.steps:  # a transition's event wait
            return ResolvedStep(None, None, {}, {})
        return resolve_at_runtime(
            self.run.workflow,
            planned.id,
            started.params,
            environ=started.env,
            env_overrides=started.env_overrides,
            steps=StepsView(self.state.steps),
            run=self.run_info(attempt),
            inputs=mapped,
        )

    # --- the end ----------------------------------------------------------------------------

    def _finish(self, stopping: bool) -> None:
        cancelled = self.state.cancel_requested and not self.state.stop_as_failure
        for step_id in self.run.order:
            step = self.state.step(step_id)
            if step.status in TERMINAL_STEP:
                continue
            if self.run.steps[step_id].compensation_only:
                self.emit(ev.StepSkipped(step_id, "compensation was not needed", self.now))
            elif cancelled:
                self.emit(ev.StepCancelled(step_id, step.attempt, self.now))
            else:
                self.emit(ev.StepSkipped(step_id, "the run stopped before this step", self.now))
        outputs: dict[str, Any] = {}
        if not stopping:
            try:
                outputs = self._outputs()
            except ExpressionError as exc:
                stopping, self.state.fail_reason = True, f"outputs: {exc.message}"
        if not stopping:
            self.emit(ev.RunSucceeded(self.now, outputs))
            return
        undo = self.state.compensation_failed
        after = f"; compensation failed: {', '.join(undo)}" if undo else ""
        if cancelled:
            self.emit(ev.RunCancelled((self.state.reason or "cancelled") + after, self.now))
            return
        failed = [s for s in self.run.order if self.state.step(s).status is StepStatus.FAILED]
        reason = self.state.fail_reason or (
            self.state.reason if self.state.cancel_requested else None
        )
        self.emit(ev.RunFailed((reason or "a step failed") + after, failed, self.now))

    def _outputs(self) -> dict[str, Any]:
        """The workflow's ``[outputs]``, rendered from the finished run."""
        scope = self.scope()
        rendered: dict[str, Any] = {}
        for name, template in self.run.workflow.outputs.items():
            single = len(template.parts) == 1 and not isinstance(template.parts[0], str)
            rendered[name] = template.parts[0].evaluate(scope) if single else template.render(scope)  # type: ignore[union-attr]
        return rendered


def _denial(rule: str, reason: str) -> str:
    return f"denied by policy rule '{rule}': {reason}" if rule else f"denied by policy: {reason}"
