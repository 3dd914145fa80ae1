"""What a run looks like while it runs: a live view on terminals, one line per step elsewhere.

Every view folds the run's *durable* events into its own :class:`RunState` and shows only that;
the one live thing shown is the tail of a running step's output. Lines are timestamped with the
time the event records, not the time it was printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from wayang.cli.run_render import (
    RUN_STYLE,
    STATUS_STYLE,
    RunOutline,
    attempts_text,
    clock,
    next_steps,
    seconds,
    step_detail,
    summary,
    try_number,
)
from wayang.engine import events as ev
from wayang.engine.runplan import RunPlan
from wayang.engine.state import ACTIVE_STEP, RunState
from wayang.store.port import LogLine

TAIL_LINES = 3
REFRESH_S = 0.1


class Progress:
    """Folds a run's durable events; the subclasses decide what to show. This one shows nothing
    (``--json``: only the final object is printed) except notes, on stderr.

    ``plan`` is the run's plan, or only its outline (a run followed through a server)."""

    def __init__(self, plan: RunPlan | RunOutline, state: RunState, err: Console) -> None:
        self.outline = plan if isinstance(plan, RunOutline) else RunOutline.of_plan(plan)
        self.state = state
        self.err = err
        self.since: dict[str, float] = {}  # when each step's current attempt was scheduled

    @property
    def run_id(self) -> str:
        return self.state.run_id

    def on_events(self, run_id: str, events: Sequence[ev.Event]) -> None:
        if run_id != self.run_id:
            return
        for event in events:
            self.state.apply(event)
            if isinstance(event, ev.StepScheduled):
                self.since[event.step_id] = event.at
            self.shown(event)

    def shown(self, event: ev.Event) -> None:
        """Called after ``event`` is folded into :attr:`state`."""

    def on_log(self, line: LogLine) -> None:
        """A line a step printed, live (not yet durable)."""

    def note(self, message: str) -> None:
        """Something the user should know now (an interrupt, a hint)."""
        self.err.print(escape(message), soft_wrap=True)

    @contextlib.asynccontextmanager
    async def showing(self) -> AsyncIterator[None]:
        """While the run is driven."""
        yield

    def finish(self, state: RunState) -> None:
        """The run has ended (or this process stops driving it)."""

    def attempts(self, step_id: str) -> int:
        return self.outline.attempts.get(step_id, 1)


class LineProgress(Progress):
    """One line per durable step transition, for pipes, CI logs and detached runs."""

    def __init__(
        self, plan: RunPlan | RunOutline, state: RunState, out: Console, err: Console
    ) -> None:
        super().__init__(plan, state, err)
        self.out = out
        self._lines: dict[type[ev.Event], Callable[[Any], str | None]] = {
            ev.RunStarted: self._run_started,
            ev.StepScheduled: self._scheduled,
            ev.StepReused: lambda e: f"{e.step_id} reused from {e.from_run}",
            ev.StepSucceeded: self._succeeded,
            ev.StepFailed: self._failed,
            ev.StepRetrying: self._retrying,
            ev.StepSkipped: lambda e: f"{e.step_id} skipped: {e.reason}",
            ev.StepCancelled: lambda e: f"{e.step_id} cancelled",
            ev.RunCancelRequested: self._stopping,
            ev.WorkspaceNoted: self._workspace,
        }

    def shown(self, event: ev.Event) -> None:
        render = self._lines.get(type(event))
        text = render(event) if render else None
        if text is not None:
            self._print(getattr(event, "at", time.time()), text)

    def note(self, message: str) -> None:
        self._print(time.time(), message)

    def finish(self, state: RunState) -> None:
        self.out.print(escape(summary(state)), soft_wrap=True)
        hint = next_steps(state)
        if hint:
            self.err.print(escape(hint), soft_wrap=True)

    def _print(self, at: float, text: str) -> None:
        self.out.print(f"{clock(at)} {escape(text)}", soft_wrap=True)

    def _try(self, step_id: str, attempt: int) -> int:
        return try_number(self.state.step(step_id), attempt)

    def _attempt(self, step_id: str, attempt: int) -> str:
        limit = self.attempts(step_id)
        return f" (attempt {self._try(step_id, attempt)}/{limit})" if limit > 1 else ""

    def _visit(self, step_id: str) -> str:
        visits = self.state.step(step_id).visits
        return f" (visit {visits})" if visits > 1 else ""

    def _run_started(self, event: ev.RunStarted) -> str:
        count = len(self.outline.order)
        retry = f", retrying {event.retry_of}" if event.retry_of else ""
        return (
            f"run {self.run_id} started: {event.workflow_id} {event.workflow_version}, "
            f"{count} step{'s' if count != 1 else ''}{retry}"
        )

    def _workspace(self, event: ev.WorkspaceNoted) -> str | None:
        """Where the run works, and what it should know about that; not steps' own ones."""
        if event.step_id:
            return None
        if event.kind in ("created", "reused"):
            return f"workspace {event.kind}: {event.path}"
        return f"workspace: {event.detail}" if event.kind == "note" else None

    def _scheduled(self, event: ev.StepScheduled) -> str:
        tries = self._try(event.step_id, event.attempt)
        retry = self._attempt(event.step_id, event.attempt) if tries > 1 else ""
        return f"{event.step_id} started{retry}{self._visit(event.step_id)}"

    def _succeeded(self, event: ev.StepSucceeded) -> str:
        limit = self.attempts(event.step_id)
        tries = self._try(event.step_id, event.attempt)
        retry = f" on attempt {tries}/{limit}" if tries > 1 else ""
        return f"{event.step_id} succeeded{retry} ({seconds(event.duration_s)})"

    def _failed(self, event: ev.StepFailed) -> str | None:
        if not event.final:
            return None  # the StepRetrying right after says it, with the back-off
        return f"{event.step_id} failed{self._attempt(event.step_id, event.attempt)}: {event.error}"

    def _retrying(self, event: ev.StepRetrying) -> str:
        step = self.state.step(event.step_id)
        attempt = self._attempt(event.step_id, event.next_attempt - 1)
        wait = seconds(event.delay_s) if event.delay_s < 1 else f"{event.delay_s:.0f}s"
        return f"{event.step_id} failed{attempt}: {step.error}, retrying in {wait}"

    def _stopping(self, event: ev.RunCancelRequested) -> str:
        return f"{'stopping' if event.as_failure else 'cancelling'} the run: {event.reason}"


class LiveProgress(Progress):
    """A live table on a terminal: a row per step, the tail of running steps' output."""

    def __init__(
        self, plan: RunPlan | RunOutline, state: RunState, out: Console, err: Console
    ) -> None:
        super().__init__(plan, state, err)
        self.out = out
        self.tails: dict[str, deque[str]] = {}
        self._live: Live | None = None

    def shown(self, event: ev.Event) -> None:
        if isinstance(event, ev.StepScheduled):
            self.tails.pop(event.step_id, None)  # a new attempt starts a new tail

    def on_log(self, line: LogLine) -> None:
        if line.run_id == self.run_id:
            self.tails.setdefault(line.step_id, deque(maxlen=TAIL_LINES)).append(line.line)

    def note(self, message: str) -> None:
        console = self._live.console if self._live is not None else self.out
        console.print(Text(message, style="yellow"), soft_wrap=True)

    @contextlib.asynccontextmanager
    async def showing(self) -> AsyncIterator[None]:
        live = Live(self.render(), console=self.out, auto_refresh=False, transient=False)
        with live:
            self._live = live
            ticker = asyncio.create_task(self._tick(live))
            try:
                yield
            finally:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
                live.update(self.render(), refresh=True)
                self._live = None

    def finish(self, state: RunState) -> None:
        style = RUN_STYLE.get(state.status, "")
        self.out.print(f"[{style}]{escape(summary(state))}[/]", soft_wrap=True)
        hint = next_steps(state)
        if hint:
            self.err.print(escape(hint), soft_wrap=True)

    async def _tick(self, live: Live) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            live.update(self.render(), refresh=True)

    def render(self, now: float | None = None) -> RenderableType:
        """The whole view: a header, the step table, the tails of running steps."""
        now = time.time() if now is None else now
        state = self.state
        header = Text.assemble(
            ("run ", ""),
            (self.run_id, "bold"),
            (f"  {self.outline.workflow_id} {self.outline.version}  ", ""),
            (state.status.value, RUN_STYLE.get(state.status, "")),
            (f"  {seconds(self._elapsed(now))}", "dim"),
        )
        parts: list[RenderableType] = [header, self._table(now)]
        for step_id in self.outline.order:
            if state.step(step_id).status in ACTIVE_STEP:
                parts.extend(
                    Text.assemble((f"  {step_id} │ ", "dim"), (line, ""))
                    for line in self.tails.get(step_id, ())
                )
        return Group(*parts)

    def _elapsed(self, now: float) -> float:
        state = self.state
        start = state.started_at if state.started_at is not None else now
        return max(0.0, (state.finished_at or now) - start)

    def _table(self, now: float) -> Table:
        table = Table(box=None, header_style="bold", pad_edge=False, show_edge=False)
        for name in ("step", "status", "attempt", "time", "detail"):
            table.add_column(name, no_wrap=name != "detail", overflow="ellipsis")
        for step_id in self.outline.order:
            step = self.state.step(step_id)
            active = step.status in ACTIVE_STEP
            label = "running" if active else step.status.value
            elapsed = now - self.since.get(step_id, now) if active else step.duration_s
            table.add_row(
                escape(step_id),
                Text(label, style=STATUS_STYLE.get(step.status, "")),
                attempts_text(step, self.attempts(step_id)),
                seconds(elapsed) if step.attempt else "",
                Text(step_detail(step), style="dim"),
            )
        return table


def progress_for(
    mode: str, plan: RunPlan | RunOutline, state: RunState, out: Console, err: Console
) -> Progress:
    """``json`` (silent), ``live`` or ``lines``; ``auto`` picks live on a terminal."""
    if mode == "auto":
        mode = "live" if out.is_terminal else "lines"
    if mode == "json":
        return Progress(plan, state, err)
    if mode == "live":
        return LiveProgress(plan, state, out, err)
    return LineProgress(plan, state, out, err)
