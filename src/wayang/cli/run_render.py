"""How runs look: JSON objects for scripts, tables on terminals and aligned lines elsewhere."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from wayang.engine import events as ev
from wayang.engine.events import Event
from wayang.engine.replay import ReplayReport
from wayang.engine.runplan import RunPlan
from wayang.engine.state import RunState, RunStatus, StepState, StepStatus
from wayang.errors import WayangError
from wayang.model.durations import format_duration
from wayang.policy import gate_for
from wayang.runtime.history_text import Note, notes, wait_text
from wayang.runtime.operations import RunView
from wayang.store.port import DeadLetter, LogLine, RunRecord

STATUS_STYLE = {
    StepStatus.PENDING: "dim",
    StepStatus.SCHEDULED: "cyan",
    StepStatus.RUNNING: "cyan",
    StepStatus.RETRYING: "yellow",
    StepStatus.SUCCEEDED: "green",
    StepStatus.FAILED: "bold red",
    StepStatus.SKIPPED: "dim",
    StepStatus.CANCELLED: "magenta",
    StepStatus.WAITING: "yellow",
}
RUN_STYLE = {
    RunStatus.PENDING: "dim",
    RunStatus.RUNNING: "cyan",
    RunStatus.SUCCEEDED: "bold green",
    RunStatus.FAILED: "bold red",
    RunStatus.CANCELLED: "bold magenta",
}


# ------------------------------------------------------------------------------ values


def seconds(value: float) -> str:
    """A duration as people read it: ``0.31s``, ``1.2s``, ``2m5s``."""
    if value < 1:
        return f"{value:.2f}s"
    if value < 60:
        return f"{value:.1f}s"
    return format_duration(value)


def clock(at: float) -> str:
    """Local wall-clock time of day, for progress and log lines."""
    return time.strftime("%H:%M:%S", time.localtime(at))


def local_time(at: float | None) -> str:
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def iso_time(at: float | None) -> str | None:
    """ISO 8601 in UTC, for JSON."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class RunOutline:
    """What the views of a run need of its plan: the workflow, its steps in order, and how many
    attempts each may take (steps not listed: unknown, shown without a limit)."""

    workflow_id: str
    version: str
    order: tuple[str, ...]
    attempts: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of_plan(cls, plan: RunPlan) -> RunOutline:
        attempts = {step_id: plan.steps[step_id].retry.attempts for step_id in plan.order}
        return cls(plan.workflow.id, plan.workflow.version, tuple(plan.order), attempts)


def outline_of(state: RunState) -> RunOutline:
    """The outline of the plan pinned in the run's first event; when that definition cannot be
    read (this version no longer reads it), the steps the history shows, with no limits."""
    started = state.started
    if started is None:
        return RunOutline("", "", tuple(state.steps))
    try:
        return RunOutline.of_plan(RunPlan.from_started(started, gate_for))
    except WayangError:
        return RunOutline(started.workflow_id, started.workflow_version, tuple(state.steps))


def step_order(state: RunState) -> list[str]:
    """The run's steps in plan order (the definition is pinned in its first event)."""
    return list(outline_of(state).order)


def run_elapsed(state: RunState) -> float | None:
    if state.started_at is None or state.finished_at is None:
        return None
    return max(0.0, state.finished_at - state.started_at)


# ------------------------------------------------------------------------------ JSON


def run_json(state: RunState, order: Sequence[str]) -> dict[str, Any]:
    """``{"run_id", "status", "steps": {id: {...}}}``: what ``run --json`` prints."""
    return {
        "run_id": state.run_id,
        "status": state.status.value,
        "steps": {step_id: _step_json(state.step(step_id)) for step_id in order},
    }


def _step_json(step: StepState) -> dict[str, Any]:
    data: dict[str, Any] = {
        "status": step.status.value,
        "attempts": step.attempt,
        "outputs": step.outputs,
        "duration_s": round(step.duration_s, 3),
    }
    if step.status is StepStatus.WAITING and step.wait is not None:
        data["waiting_for"] = wait_text(step.wait)
    return data


def status_json(view: RunView, outline: RunOutline | None = None) -> dict[str, Any]:
    """:func:`run_json` plus the run's workflow, times and reason: what ``status --json`` prints."""
    record, state = view.record, view.state
    order = (outline or outline_of(state)).order
    return {
        **run_json(state, order),
        "workflow_id": record.workflow_id,
        "created_at": iso_time(record.created_at),
        "updated_at": iso_time(record.updated_at),
        "reason": state.reason,
        "workspace": state.workspace or None,
        "policy_denials": [_denial_json(e) for e in view.history if isinstance(e, ev.PolicyDenied)],
    }


def _denial_json(event: ev.PolicyDenied) -> dict[str, Any]:
    return {
        "at": iso_time(event.at),
        "step": event.step_id,
        "action": event.action,
        "rule": event.rule,
        "reason": event.reason,
        "actor": event.actor,
    }


def record_json(record: RunRecord) -> dict[str, Any]:
    return {
        "run_id": record.run_id,
        "workflow_id": record.workflow_id,
        "status": record.status,
        "created_at": iso_time(record.created_at),
        "updated_at": iso_time(record.updated_at),
    }


def note_json(note: Note) -> dict[str, Any]:
    """An event of note in ``logs --json``: like a log line, on the stream ``event``."""
    return {
        "seq": None,
        "at": iso_time(note.at),
        "step": note.step_id,
        "attempt": None,
        "stream": "event",
        "line": note.text,
    }


def note_line(note: Note) -> str:
    """``HH:MM:SS step event | text``."""
    return f"{clock(note.at)} {note.step_id} event | {note.text}"


def log_json(line: LogLine) -> dict[str, Any]:
    return {
        "seq": line.seq,
        "at": iso_time(line.at),
        "step": line.step_id,
        "attempt": line.attempt,
        "stream": line.stream,
        "line": line.line,
    }


def letter_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.dlq_id,
        "run_id": letter.run_id,
        "step": letter.step_id,
        "attempts": letter.attempts,
        "error": letter.error,
        "at": iso_time(letter.at),
    }


def replay_json(run_id: str, report: ReplayReport) -> dict[str, Any]:
    divergence = report.divergence
    return {
        "run_id": run_id,
        "events": report.events,
        "decisions": report.decisions,
        "reproduced": divergence is None,
        "divergence": None
        if divergence is None
        else {
            "seq": divergence.seq,
            "message": divergence.message,
            "recorded": _event_json(divergence.recorded),
            "replayed": _event_json(divergence.replayed),
        },
    }


def _event_json(event: Event | None) -> dict[str, Any] | None:
    return None if event is None else {"type": event.TYPE, "data": event.to_data()}


# ------------------------------------------------------------------------------ text


def text_line(line: LogLine) -> str:
    """``HH:MM:SS step[attempt] stream | line``."""
    return f"{clock(line.at)} {line.step_id}[{line.attempt}] {line.stream} | {line.line}"


def summary(state: RunState) -> str:
    """The last line of a run: ``run ID succeeded in 1.2s`` (with why, when it did not)."""
    elapsed = run_elapsed(state)
    text = f"run {state.run_id} {state.status.value}"
    if elapsed is not None:
        text += f" in {seconds(elapsed)}"
    if state.status is RunStatus.FAILED and state.failed:
        return f"{text}: {state.reason or 'failed'} ({', '.join(state.failed)})"
    if state.status in (RunStatus.FAILED, RunStatus.CANCELLED) and state.reason:
        return f"{text}: {state.reason}"
    return text


def next_steps(state: RunState) -> str | None:
    """What to do after a run that did not succeed, or None."""
    run_id = state.run_id
    if state.status is RunStatus.FAILED:
        step = f" --step {state.failed[0]}" if state.failed else ""
        return f"next: 'wayang logs {run_id}{step}' shows why; 'wayang retry {run_id}' reruns it"
    if state.status is RunStatus.CANCELLED:
        return f"next: 'wayang retry {run_id}' runs it again, reusing the steps that succeeded"
    return None


def step_detail(step: StepState) -> str:
    """Why a step is where it is: its error, what it waits for, or why it was skipped."""
    if step.status in (StepStatus.FAILED, StepStatus.RETRYING) and step.error:
        return step.error
    if step.status is StepStatus.WAITING and step.wait is not None:
        return "waiting for " + wait_text(step.wait)
    return step.reason or ""


def try_number(step: StepState, attempt: int) -> int:
    """Which try of the step's current visit ``attempt`` is (attempts number on across loop
    visits; retry limits count per visit)."""
    return attempt - step.first_attempt + 1


def attempts_text(step: StepState, limit: int | None) -> str:
    if step.attempt == 0:
        return ""
    tries = try_number(step, step.attempt)
    text = f"{tries}/{limit}" if limit and limit > 1 else str(tries)
    return f"{text} (visit {step.visits})" if step.visits > 1 else text


def columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells as lines with aligned columns."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def print_rows(console: Console, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table on a terminal; aligned plain lines (header first) elsewhere."""
    if console.is_terminal:
        table = Table(show_edge=False, header_style="bold", box=None, pad_edge=False)
        for name in header:
            table.add_column(name, overflow="fold")
        for row in rows:
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)
        return
    for line in columns([list(header), *rows]):
        console.print(escape(line), soft_wrap=True)


def print_status(console: Console, view: RunView, outline: RunOutline | None = None) -> None:
    """``wayang status``: the run, then one row per step."""
    record, state = view.record, view.state
    outline = outline or outline_of(state)
    style = RUN_STYLE.get(state.status, "")
    version = state.started.workflow_version if state.started else ""
    console.print(
        f"run [bold]{escape(state.run_id)}[/]  {escape(record.workflow_id)} {escape(version)}  "
        f"[{style}]{state.status.value}[/]",
        soft_wrap=True,
    )
    elapsed = run_elapsed(state)
    took = f" ({seconds(elapsed)})" if elapsed is not None else ""
    times = f"started {local_time(state.started_at)}"
    if state.finished_at is not None:
        times += f"  finished {local_time(state.finished_at)}{took}"
    console.print(times, soft_wrap=True)
    if state.started is not None and state.started.retry_of:
        console.print(f"retry of {escape(state.started.retry_of)}", soft_wrap=True)
    if state.workspace:
        console.print(f"workspace {escape(state.workspace)}", soft_wrap=True)
    if state.reason:
        console.print(f"reason: {escape(state.reason)}", soft_wrap=True)
    limits = outline.attempts
    rows = [_status_row(s, state.step(s), limits.get(s)) for s in outline.order]
    print_rows(console, ("step", "status", "attempts", "duration", "detail"), rows)
    denials = notes(e for e in view.history if isinstance(e, ev.PolicyDenied))
    if denials:
        console.print("policy denials:", soft_wrap=True)
        for note in denials:
            console.print(
                f"  {clock(note.at)} {escape(note.step_id)}: {escape(note.text)}", soft_wrap=True
            )


def _status_row(step_id: str, step: StepState, limit: int | None) -> list[str]:
    duration = seconds(step.duration_s) if step.attempt else ""
    return [
        step_id,
        step.status.value,
        attempts_text(step, limit),
        duration,
        step_detail(step),
    ]


def print_runs(console: Console, records: Sequence[RunRecord]) -> None:
    """``wayang runs``: newest first."""
    rows = [
        [r.run_id, r.workflow_id, r.status, local_time(r.created_at), local_time(r.updated_at)]
        for r in records
    ]
    print_rows(console, ("run", "workflow", "status", "created", "updated"), rows)


def print_letters(console: Console, letters: Sequence[DeadLetter]) -> None:
    """``wayang dlq list``."""
    rows = [
        [d.dlq_id, d.run_id, d.step_id, str(d.attempts), local_time(d.at), d.error] for d in letters
    ]
    print_rows(console, ("id", "run", "step", "attempts", "at", "error"), rows)


def replay_text(run_id: str, report: ReplayReport) -> list[str]:
    """``run X: N events, M decisions, reproduced``, or where replay first disagreed."""
    counts = f"{report.events} events, {report.decisions} decisions"
    divergence = report.divergence
    if divergence is None:
        return [f"run {run_id}: {counts}, reproduced"]
    return [
        f"run {run_id}: {counts}; diverges at event {divergence.seq}: {divergence.message}",
        f"  recorded: {_event_text(divergence.recorded)}",
        f"  replayed: {_event_text(divergence.replayed)}",
    ]


def _event_text(event: Event | None) -> str:
    if event is None:
        return "(nothing)"
    fields = ", ".join(f"{key}={_short(value)}" for key, value in event.to_data().items())
    return f"{event.TYPE}({fields})"


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
