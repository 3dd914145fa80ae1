"""``decide``: from a run's state and one input, the next events and commands.

The decider appends each event it produces to the state it was given (the state is advanced in
place, exactly as folding those events would), so the caller's state always equals the fold of
the history plus the decision. If committing the decision fails, the caller reloads the state.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from wayang.engine import events as ev
from wayang.engine.messages import (
    CancelRun,
    CancelTimer,
    DeadLetter,
    Decision,
    DispatchTask,
    Input,
    StartTimer,
    StopTask,
    TaskFinished,
    TimerFired,
    Wake,
)
from wayang.engine.runplan import RunPlan
from wayang.engine.state import ACTIVE_STEP, TERMINAL_STEP, RunState, StepState, StepStatus
from wayang.errors import DefinitionError, ExpressionError
from wayang.model.expr import evaluate_condition
from wayang.model.plan import PlannedStep, ResolvedStep, RetryPolicy, resolve_at_runtime

EXECUTABLE_KINDS = frozenset({"task", "noop"})


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


_SETTLING = (ev.StepSucceeded, ev.StepReused, ev.StepFailed, ev.StepSkipped, ev.StepCancelled)


def retry_delay(policy: RetryPolicy, attempt: int, seed: str) -> float:
    """Back-off before the attempt after ``attempt``; jitter is derived from ``seed`` (pure)."""
    base = policy.delay_s * (2 ** (attempt - 1) if policy.backoff == "exponential" else 1)
    delay = min(base, policy.max_delay_s)
    if policy.jitter:
        fraction = int.from_bytes(hashlib.blake2b(seed.encode(), digest_size=8).digest()) / 2**64
        delay *= 1 + policy.jitter * (2 * fraction - 1)
    return max(0.0, min(delay, policy.max_delay_s))


class _StepsView(Mapping[str, Any]):
    """``steps`` as expressions see it, built lazily so dispatch stays O(what is read)."""

    def __init__(self, steps: dict[str, StepState]) -> None:
        self._steps = steps

    def __getitem__(self, key: str) -> Any:
        return self._steps[key].snapshot()

    def __iter__(self) -> Iterator[str]:
        return iter(self._steps)

    def __len__(self) -> int:
        return len(self._steps)


class _Decider:
    def __init__(self, run: RunPlan, state: RunState, now: float) -> None:
        self.run = run
        self.state = state
        self.now = now
        self.decision = Decision()
        self.commands = self.decision.commands
        # Positions (in run.order) of steps to look at when scheduling; see _schedule_ready.
        self._candidates: list[int] = []
        self._queued: set[int] = set()

    def emit(self, event: ev.Event) -> None:
        self.state.apply(event)
        self.decision.events.append(event)
        if isinstance(event, _SETTLING) and (not isinstance(event, ev.StepFailed) or event.final):
            self._consider(self.run.dependents[event.step_id])

    def _consider(self, step_ids: Iterable[str]) -> None:
        index, queued = self.run.index, self._queued
        for step_id in step_ids:
            position = index[step_id]
            if position not in queued:
                queued.add(position)
                heapq.heappush(self._candidates, position)

    # --- inputs ---------------------------------------------------------------------------

    def handle(self, message: Input) -> None:
        if isinstance(message, TaskFinished):
            self._task_finished(message)
        elif isinstance(message, TimerFired):
            self._timer_fired(message)
        elif isinstance(message, CancelRun):
            self._cancel(message.reason)
        elif not isinstance(message, Wake):
            raise TypeError(f"not an engine input: {message!r}")

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
        elif self.state.cancel_requested:
            self.emit(ev.StepCancelled(done.step_id, done.attempt, self.now))
        else:
            self._attempt_failed(done)

    def _attempt_failed(self, done: TaskFinished) -> None:
        planned = self.run.steps[done.step_id]
        policy = planned.retry
        error = done.error or done.status
        final = done.attempt >= policy.attempts or self.state.cancel_requested
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
            self.commands.append(DeadLetter(done.step_id, done.attempt, error, payload))
            return
        seed = f"{self.state.run_id}/{done.step_id}/{done.attempt}"
        delay = retry_delay(policy, done.attempt, seed)
        due = self.now + delay
        self.emit(ev.StepRetrying(done.step_id, done.attempt + 1, delay, due, self.now))
        timer_id = f"{seed}/retry"
        self.commands.append(StartTimer(timer_id, due, "retry", done.step_id, done.attempt))

    def _timer_fired(self, fired: TimerFired) -> None:
        self.commands.append(CancelTimer(fired.timer_id))
        if fired.kind == "run-timeout":
            timeout = self.state.started.timeout_s if self.state.started else None
            self._cancel(f"run timed out after {timeout}s", failed=True)
            return
        step = self.state.steps.get(fired.step_id or "")
        if step is None or step.status is not StepStatus.RETRYING or step.attempt != fired.attempt:
            return
        if self.state.cancel_requested:
            return
        self._dispatch(self.run.steps[fired.step_id or ""], fired.attempt + 1)

    def _cancel(self, reason: str, failed: bool = False) -> None:
        if self.state.cancel_requested:
            return
        self.emit(ev.RunCancelRequested(reason, self.now, failed))
        for step_id, step in self.state.steps.items():
            if step.status in ACTIVE_STEP and step.task_id:
                self.commands.append(StopTask(step.task_id, step_id))
            elif step.status is StepStatus.RETRYING:
                timer = f"{self.state.run_id}/{step_id}/{step.attempt}/retry"
                self.commands.append(CancelTimer(timer))

    # --- scheduling -------------------------------------------------------------------------

    def advance(self) -> None:
        """Schedule what is ready; finish the run when nothing is left to do."""
        stopping = self.state.cancel_requested or self._failing()
        if not stopping:
            self._schedule_ready()
            stopping = self._failing()
        # A stopping run waits for running attempts, but not for back-offs: those never resume.
        waiting = self.state.count(*ACTIVE_STEP)
        if not stopping:
            waiting += self.state.count(StepStatus.RETRYING)
        if not waiting:
            self._finish(stopping)

    def _failing(self) -> bool:
        steps = self.run.steps
        return any(not steps[step_id].continue_on_error for step_id in self.state.failed)

    def _schedule_ready(self) -> None:
        """Settle or dispatch, in dependency order, every pending step whose needs are done.

        Only candidates are looked at: the dependents of steps settled in this decision, plus
        the steps the parallel limit held back last time (``state.ready_hint``). A state fresh
        from a fold has no hint, so every step is a candidate once. Both ways see the same
        ready steps in the same order, so a recovered run decides as the original would have.
        """
        hint = self.state.ready_hint
        order = self.run.order
        self._consider(order if hint is None else hint)
        limit = self._parallel_limit()
        active = self.state.count(*ACTIVE_STEP)
        candidates = self._candidates
        while candidates:
            position = heapq.heappop(candidates)
            planned = self.run.steps[order[position]]
            if self.state.step(planned.id).status is not StepStatus.PENDING:
                continue
            if planned.compensation_only or not self._ready(planned):
                continue
            if self._settle_without_running(planned):
                continue
            if limit and active >= limit:
                heapq.heappush(candidates, position)
                self.state.ready_hint = [order[p] for p in sorted(candidates)]
                return
            if self._dispatch(planned, 1):
                active += 1
        self.state.ready_hint = []

    def _parallel_limit(self) -> int:
        return self.state.started.parallel if self.state.started else 0

    def _ready(self, planned: PlannedStep) -> bool:
        return all(self.state.step(n).status in TERMINAL_STEP for n in planned.needs)

    def _settle_without_running(self, planned: PlannedStep) -> bool:
        """Skip, fail or complete a step that needs no worker; True if it was settled."""
        blocked = self._blocked_by(planned)
        if blocked is not None:
            self.emit(ev.StepSkipped(planned.id, blocked, self.now))
            return True
        if planned.kind not in EXECUTABLE_KINDS:
            error = f"{planned.kind} steps are not executed by this version of Wayang yet"
            self._fail_without_running(planned, error)
            return True
        try:
            go = planned.when is None or self._condition(planned)
        except ExpressionError as exc:
            self._fail_without_running(planned, f"when: {exc.message}")
            return True
        if not go:
            self.emit(ev.StepSkipped(planned.id, f"condition is false: {planned.when}", self.now))
            return True
        if planned.kind == "noop":
            self.emit(ev.StepScheduled(planned.id, 1, "", "", self.now))
            self.emit(ev.StepSucceeded(planned.id, 1, {}, 0.0, self.now))
            return True
        return False

    def _blocked_by(self, planned: PlannedStep) -> str | None:
        for need in planned.needs:
            status = self.state.step(need).status
            if status in (StepStatus.SKIPPED, StepStatus.CANCELLED):
                return f"needs '{need}', which was {status.value}"
            if status is StepStatus.FAILED and not self.run.steps[need].continue_on_error:
                return f"needs '{need}', which failed"
        return None

    def _condition(self, planned: PlannedStep) -> bool:
        spec = self.run.workflow.steps[planned.id]
        assert spec.when is not None
        return evaluate_condition(spec.when, self._scope(1))

    def _scope(self, attempt: int) -> dict[str, Any]:
        started = self.state.started
        return {
            "params": started.params if started else {},
            "env": {
                **(started.env if started else {}),
                **(started.env_overrides if started else {}),
            },
            "steps": _StepsView(self.state.steps),
            "run": self._run_info(attempt),
        }

    def _run_info(self, attempt: int) -> dict[str, Any]:
        return {"id": self.state.run_id, "workflow": self.run.workflow.id, "attempt": attempt}

    def _fail_without_running(self, planned: PlannedStep, error: str) -> None:
        self.emit(ev.StepScheduled(planned.id, 1, "", "", self.now))
        self.emit(ev.StepFailed(planned.id, 1, error, None, 0.0, True, self.now))

    def _dispatch(self, planned: PlannedStep, attempt: int) -> bool:
        try:
            resolved = self._resolve(planned, attempt)
        except (ExpressionError, DefinitionError) as exc:
            self._fail_without_running(planned, f"cannot render the step: {exc}")
            return False
        task_id = f"{self.state.run_id}/{planned.id}/{attempt}"
        key = f"{self.state.run_id}/{planned.id}"
        payload = {
            "command": resolved.command,
            "uses": resolved.uses,
            "inputs": resolved.inputs,
            "env": resolved.env,
            "timeout_s": planned.timeout_s,
            "workflow_id": self.run.workflow.id,
            "workspace": planned.workspace,
        }
        self.emit(ev.StepScheduled(planned.id, attempt, task_id, key, self.now))
        self.commands.append(DispatchTask(task_id, planned.id, attempt, key, payload))
        return True

    def _resolve(self, planned: PlannedStep, attempt: int) -> ResolvedStep:
        """The step's command, inputs and env: as planned, unless they read ``steps``/``run``."""
        if not planned.deferred:
            return ResolvedStep(planned.command, planned.uses, planned.inputs, planned.env)
        started = self.state.started
        assert started is not None
        return resolve_at_runtime(
            self.run.workflow,
            planned.id,
            started.params,
            environ=started.env,
            env_overrides=started.env_overrides,
            steps=_StepsView(self.state.steps),
            run=self._run_info(attempt),
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
        if not stopping:
            self.emit(ev.RunSucceeded(self.now))
        elif cancelled:
            self.emit(ev.RunCancelled(self.state.reason or "cancelled", self.now))
        else:
            failed = [s for s in self.run.order if self.state.step(s).status is StepStatus.FAILED]
            reason = self.state.reason if self.state.cancel_requested else "a step failed"
            self.emit(ev.RunFailed(reason or "a step failed", failed, self.now))
