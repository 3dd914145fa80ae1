"""What a server answers, as the objects the CLI's renderers take: runs as :class:`RunView`
(history folded to a state), log lines, pending waits, dead letters.

The API hands a run's history out without its definition (``RunStarted`` comes without
``source`` and ``policy_source``), so a run read through it has no plan; its
:class:`RunOutline` is what the API gives instead: the steps in the order of the definition,
and no attempt limits.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from wayang import wire
from wayang.cli.run_render import RunOutline
from wayang.client import Client
from wayang.engine import events as ev
from wayang.engine.state import TERMINAL_RUN, fold
from wayang.errors import UsageError
from wayang.runtime.operations import RunView
from wayang.runtime.signals import PendingWait
from wayang.store.port import DeadLetter, LogLine, RunRecord

PAGE = 1000
TERMINAL = frozenset(status.value for status in TERMINAL_RUN)


def seconds(at: str | None) -> float | None:
    """An API time (ISO 8601) as seconds since the epoch."""
    return None if at is None else datetime.fromisoformat(at).timestamp()


def event_of(view: wire.EventView) -> ev.Event:
    data = dict(view.data)
    if view.type == ev.RunStarted.TYPE:  # the API leaves the definition out
        data.setdefault("source", "")
        data.setdefault("policy_source", "")
    return ev.from_record(view.type, ev.EVENT_VERSION, data)


def log_line_of(run_id: str, view: wire.LogLineView) -> LogLine:
    return LogLine(
        run_id=run_id,
        step_id=view.step,
        attempt=view.attempt or 0,
        stream=view.stream,
        line=view.line,
        at=seconds(view.at) or 0.0,
        seq=view.seq or 0,
    )


def record_of(summary: wire.RunSummary) -> RunRecord:
    created = seconds(summary.created_at) or 0.0
    updated = seconds(summary.updated_at)
    return RunRecord(
        run_id=summary.run_id,
        workflow_id=summary.workflow_id,
        status=summary.status,
        created_at=created,
        updated_at=created if updated is None else updated,
    )


def pending_of(view: wire.PendingWaitView) -> PendingWait:
    since = seconds(view.since) or 0.0
    return PendingWait(view.run_id, view.workflow_id, view.step_id, view.kind, since, view.wait)


def letter_of(view: wire.DeadLetterView) -> DeadLetter:
    at = seconds(view.at) or 0.0
    return DeadLetter(view.id, view.run_id, view.step, view.attempts, view.error, {}, at)


# ------------------------------------------------------------------------------ runs


def history_pages(client: Client, run_id: str, after: int = 0) -> Iterator[wire.EventView]:
    """Every event of the run after ``after``, page by page."""
    while True:
        page = client.events(run_id, after, PAGE)
        yield from page.items
        if page.next is None or not page.items:
            return
        after = page.items[-1].seq


def run_view(client: Client, run_id: str) -> tuple[RunView, RunOutline, int]:
    """The run as the server has it, its outline, and the sequence number of its last event."""
    detail = client.run(run_id)
    stored = list(history_pages(client, run_id))
    history = [event_of(view) for view in stored]
    view = RunView(record_of(detail), history, fold(run_id, history))
    return view, outline_of(detail, view), stored[-1].seq if stored else 0


def outline_of(detail: wire.RunDetail, view: RunView) -> RunOutline:
    started = view.state.started
    version = started.workflow_version if started is not None else ""
    attempts = {step_id: step.max_attempts for step_id, step in detail.steps.items()}
    return RunOutline(detail.workflow_id, version, tuple(detail.order), attempts)


def latest_run_id(client: Client) -> str:
    """The newest run the server has started, else the first one it has queued."""
    items = client.runs(limit=1).items  # the first queued run, then the newest stored
    started = [item for item in items if item.status != "queued"]
    if started or items:
        return (started or items)[0].run_id
    raise UsageError("this store has no runs yet; start one with 'wayang run FILE'")
