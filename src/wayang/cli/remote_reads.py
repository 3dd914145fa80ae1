"""The commands that read or signal through a server: ``status``, ``runs``, ``logs``,
``approvals`` and the signal verbs, ``emit``, ``dlq list``, ``steps`` and ``flows``. Each
prints with the renderer of its in-process twin.

Where the API gives less than the store: a run's plan (``status`` shows no attempt limits, and
its steps in the definition's order), a dead delivery's topic and message, the environment of a
step project.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from wayang import wire
from wayang.cli.authoring import parse_assignments
from wayang.cli.context import CliContext
from wayang.cli.dlq import show_letters
from wayang.cli.remote_views import (
    TERMINAL,
    event_of,
    history_pages,
    latest_run_id,
    letter_of,
    log_line_of,
    pending_of,
    record_of,
    run_view,
)
from wayang.cli.reports import LOG_PAGE, print_logs, show_runs, show_status
from wayang.cli.steps import (
    exit_if_errors,
    no_step_files,
    print_load_problems,
    show_flows,
    show_steps,
)
from wayang.cli.waits import (
    actor_of,
    parse_json,
    print_waits,
    report_answer,
    report_emitted,
)
from wayang.client import Client, diagnostic_of
from wayang.engine import events as ev
from wayang.errors import Diagnostic, Severity
from wayang.store.port import LogLine, RunRecord

if TYPE_CHECKING:
    from wayang.steps.model import StepType
    from wayang.steps.registry import FlowGraph

RUNS_PAGE = 1000
STEP_LETTERS = 100  # what 'dlq list' shows in process
LETTERS = 1000


# ------------------------------------------------------------------------------ runs


def status(cli: CliContext, client: Client, run_id: str | None, as_json: bool) -> None:
    view, outline, _ = run_view(client, run_id or latest_run_id(client))
    show_status(cli, view, as_json, outline)


def runs(
    cli: CliContext, client: Client, status_filter: str | None, limit: int, as_json: bool
) -> None:
    records: list[RunRecord] = []
    cursor: str | None = None
    while len(records) < limit:
        page = client.runs(status_filter, None, min(limit - len(records), RUNS_PAGE), cursor)
        records += [record_of(summary) for summary in page.items]
        if page.next is None:
            break
        cursor = page.next
    show_runs(cli, records[:limit], status_filter, as_json)


def logs(
    cli: CliContext,
    client: Client,
    *,
    run_id: str | None,
    step_id: str | None,
    follow: bool,
    trace_id: str | None,
    as_json: bool,
) -> None:
    run_id = run_id or latest_run_id(client)
    order = client.run(run_id).order
    print_logs(ServedLogs(client, run_id), order, step_id, follow=follow, as_json=as_json)


class ServedLogs:
    """A run's log lines and history, read from the server (a :class:`LogSource`)."""

    def __init__(self, client: Client, run_id: str) -> None:
        self.client, self.run_id = client, run_id
        self.events: list[ev.Event] = []
        self.after = 0

    def lines(self, step_id: str | None, after_seq: int) -> list[LogLine]:
        page = self.client.logs(self.run_id, step_id, after_seq, LOG_PAGE)
        return [log_line_of(self.run_id, line) for line in page.items]

    def history(self) -> list[ev.Event]:
        for view in history_pages(self.client, self.run_id, self.after):
            self.events.append(event_of(view))
            self.after = view.seq
        return self.events

    def finished(self) -> bool:
        return self.client.run(self.run_id).status in TERMINAL


# ------------------------------------------------------------------------------ people


def approvals(
    cli: CliContext, client: Client, mine: bool, as_user: str | None, as_json: bool
) -> None:
    found = client.acting_as(actor_of(as_user)).approvals(mine)
    print_waits(cli, [pending_of(p) for p in found], as_json)


def approve(
    cli: CliContext,
    client: Client,
    run_id: str,
    step_id: str,
    *,
    comment: str | None,
    fields: tuple[str, ...],
    as_user: str | None,
    as_json: bool,
) -> None:
    values = parse_assignments(fields, "--field")
    answer = client.acting_as(actor_of(as_user)).approve(run_id, step_id, comment or "", values)
    _report(cli, answer, as_json)


def reject(
    cli: CliContext,
    client: Client,
    run_id: str,
    step_id: str,
    *,
    comment: str,
    as_user: str | None,
    as_json: bool,
) -> None:
    _report(cli, client.acting_as(actor_of(as_user)).reject(run_id, step_id, comment), as_json)


def offer(
    cli: CliContext,
    client: Client,
    run_id: str,
    step_id: str,
    *,
    terms: str,
    comment: str | None,
    as_user: str | None,
    as_json: bool,
) -> None:
    parsed = parse_json(terms, "--terms", want_object=True)
    answer = client.acting_as(actor_of(as_user)).offer(run_id, step_id, parsed, comment or "")
    _report(cli, answer, as_json)


def accept(
    cli: CliContext,
    client: Client,
    run_id: str,
    step_id: str,
    *,
    as_user: str | None,
    as_json: bool,
) -> None:
    _report(cli, client.acting_as(actor_of(as_user)).accept(run_id, step_id), as_json)


def decline(
    cli: CliContext,
    client: Client,
    run_id: str,
    step_id: str,
    *,
    comment: str | None,
    as_user: str | None,
    as_json: bool,
) -> None:
    answer = client.acting_as(actor_of(as_user)).decline(run_id, step_id, comment or "")
    _report(cli, answer, as_json)


def complete(
    cli: CliContext,
    client: Client,
    run_id: str,
    step_id: str,
    *,
    outputs: str,
    as_user: str | None,
    as_json: bool,
) -> None:
    parsed = parse_json(outputs, "--outputs", want_object=True)
    answer = client.acting_as(actor_of(as_user)).complete(run_id, step_id, parsed)
    _report(cli, answer, as_json)


def _report(cli: CliContext, answer: wire.SignalAnswer, as_json: bool) -> None:
    report_answer(cli, answer.seq, answer.status, answer.outcome, as_json)


def emit(
    cli: CliContext,
    client: Client,
    topic: str,
    *,
    data: str,
    key: str,
    project_dir: Path | None,
    no_deliver: bool,
    wait_s: float,
    as_user: str | None,
    as_json: bool,
) -> None:
    """Publish through the server; it delivers to the event steps of the project it serves
    (so ``--project``, ``--no-deliver`` and ``--wait`` do not apply)."""
    value = parse_json(data, "--data")
    emitted = client.acting_as(actor_of(as_user)).emit(topic, value, key)
    report_emitted(cli, emitted.seq, emitted.topic, emitted.trace_id, as_json)


# ------------------------------------------------------------------------------ dead letters


def list_letters(cli: CliContext, client: Client, as_json: bool) -> None:
    found = client.dead_letters(LETTERS)
    letters = [letter_of(d) for d in found if d.kind == "step"][:STEP_LETTERS]
    dead = [d for d in found if d.kind == "delivery"]
    deliveries = [_delivery_json(d) for d in dead]
    rows = [[d.id, d.step, d.topic, d.run_id, str(d.attempts), d.error] for d in dead]
    show_letters(cli, letters, deliveries, rows, as_json)


def _delivery_json(letter: wire.DeadLetterView) -> dict[str, Any]:
    """What the API tells of a dead delivery, under the names of ``dlq list --json``."""
    return {
        "id": letter.id,
        "step": letter.step,
        "topic": letter.topic,
        "message": letter.message,
        "trace_id": letter.run_id,
        "status": "dead",
        "attempts": letter.attempts,
        "error": letter.error,
        "created_at": letter.created_at,
        "finished_at": letter.finished_at,
    }


# ------------------------------------------------------------------------------ steps


def steps_list(cli: CliContext, client: Client, project_dir: Path | None, as_json: bool) -> None:
    listing = _listing(cli, client)
    problems = _problems(listing)
    rows = [[s.name, s.type, s.trigger, s.emits, s.flows, s.active, s.file] for s in listing.steps]
    show_steps(cli, rows, as_json)
    exit_if_errors(problems)


def _problems(listing: wire.StepList) -> list[Diagnostic]:
    return [diagnostic_of(d) for d in listing.diagnostics]


def _listing(cli: CliContext, client: Client) -> wire.StepList:
    """The served project's steps, its load problems printed first, as in process."""
    listing = client.steps()
    problems = _problems(listing)
    print_load_problems(cli, problems)
    if not listing.steps and not any(p.severity is Severity.ERROR for p in problems):
        raise no_step_files(listing.folders, listing.root)
    return listing


def activate(cli: CliContext, client: Client, name: str, project_dir: Path | None) -> None:
    _say_activation(cli, client.activate(name), "activated")


def deactivate(cli: CliContext, client: Client, name: str, project_dir: Path | None) -> None:
    _say_activation(cli, client.deactivate(name), "deactivated")


def _say_activation(cli: CliContext, step: wire.StepInfo, done: str) -> None:
    cli.out.print(f"{step.name}: {done} (on the server)", soft_wrap=True, markup=False)


def flows(cli: CliContext, client: Client, project_dir: Path | None, as_json: bool) -> None:
    _listing(cli, client)
    show_flows(cli, [_flow_graph(flow) for flow in client.flows()], as_json)


def _flow_graph(flow: wire.FlowView) -> FlowGraph:
    # The steps package is imported by the commands that use it (see cli.steps.DEV_SERVERS).
    from wayang.steps.registry import FlowEdge, FlowGraph, FlowNode  # noqa: PLC0415

    nodes = tuple(
        FlowNode(
            n.name,
            cast("StepType", n.type),
            n.file,
            n.line,
            active=n.active,
            description=n.description,
            trigger=n.trigger,
        )
        for n in flow.nodes
    )
    edges = tuple(
        FlowEdge(e.source, e.target, e.topic, e.label, e.conditional, e.virtual) for e in flow.edges
    )
    return FlowGraph(flow.name, nodes, edges)
