"""Compensation (saga): undo what succeeded when a run fails or is cancelled.

With ``on_failure = "compensate"``, once nothing of the run is running any more, the steps named
by ``compensate`` on the steps that succeeded run one at a time, in reverse order of completion,
each once. A compensation that fails is retried by its own retry policy; if it still fails, it is
recorded and the next one runs. Cancelling again does not stop a compensation.
"""

from __future__ import annotations

from wayang.engine import events as ev
from wayang.engine._base import DeciderBase
from wayang.engine.state import ACTIVE_STEP, TERMINAL_STEP, StepStatus

_BUSY = frozenset({*ACTIVE_STEP, StepStatus.RETRYING, StepStatus.WAITING})


class SagaMixin(DeciderBase):
    def compensate(self) -> bool:
        """Advance compensation; True while a compensation step is still busy."""
        if self.run.workflow.on_failure != "compensate" or self.state.compensation_done:
            return False
        if not self.state.compensating:
            steps, undoing = self._compensation_plan()
            if not steps:
                return False
            reason = self.state.reason or self.state.fail_reason or "a step failed"
            self.emit(ev.CompensationStarted(reason, steps, undoing, self.now))
        if any(self.state.step(s).status in _BUSY for s in self.state.compensation_all):
            return True
        while self.state.compensation:
            step_id = self.state.compensation[0]
            if self.dispatch(self.run.steps[step_id], self.next_attempt(step_id)):
                return True
        done = [
            s
            for s in self.state.compensation_all
            if self.state.step(s).status is StepStatus.SUCCEEDED
        ]
        self.emit(ev.CompensationFinished(done, list(self.state.compensation_failed), self.now))
        return False

    def _compensation_plan(self) -> tuple[list[str], list[str]]:
        """Compensation steps in reverse completion order of the steps they undo."""
        succeeded = [
            step_id
            for step_id in self.run.order
            if self.run.steps[step_id].compensate
            and self.state.step(step_id).status is StepStatus.SUCCEEDED
        ]
        succeeded.sort(key=lambda s: self.state.step(s).succeeded_seq, reverse=True)
        steps: list[str] = []
        undoing: list[str] = []
        for step_id in succeeded:
            undo = self.run.steps[step_id].compensate or ""
            if undo not in steps and self.state.step(undo).status not in TERMINAL_STEP:
                steps.append(undo)
                undoing.append(step_id)
        return steps, undoing
