"""Commands that read runs without driving them: ``status``, ``runs``, ``logs``, ``replay``."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Protocol

import click
from rich.markup import escape

from wayang.cli.context import CliContext, pass_cli
from wayang.cli.driver import POLL_S, json_text, open_app
from wayang.cli.run_render import (
    RunOutline,
    log_json,
    note_json,
    note_line,
    print_runs,
    print_status,
    record_json,
    replay_json,
    replay_text,
    status_json,
    step_order,
    text_line,
)
from wayang.cli.trace_render import load_trace, trace_json, trace_lines
from wayang.engine import events as ev
from wayang.engine.replay import replay as replay_history
from wayang.engine.state import TERMINAL_RUN, RunStatus
from wayang.errors import UsageError
from wayang.policy import gate_for
from wayang.runtime.history_text import Note, notes
from wayang.runtime.names import RunNotFoundError
from wayang.runtime.operations import RunView, latest_run, load_run
from wayang.store.port import LogLine, RunRecord, Store

LOG_PAGE = 1000
_TERMINAL = {status.value for status in TERMINAL_RUN}


@click.command()
@click.argument("run_id", metavar="[RUN]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object for scripts.")
@pass_cli
def status(cli: CliContext, run_id: str | None, as_json: bool) -> None:
    """Show RUN (default: the latest run): its status and a row per step."""
    with open_app() as app:
        view = load_run(app.store, run_id or latest_run(app.store))
    show_status(cli, view, as_json)


def show_status(
    cli: CliContext, view: RunView, as_json: bool, outline: RunOutline | None = None
) -> None:
    """What ``wayang status RUN`` prints (``outline``: the run's plan, when not its own)."""
    if as_json:
        click.echo(json_text(status_json(view, outline)))
    else:
        print_status(cli.out, view, outline)


@click.command()
@click.option(
    "--status",
    "status_filter",
    type=click.Choice([s.value for s in RunStatus]),
    help="Only runs with this status.",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="At most N runs."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array for scripts.")
@pass_cli
def runs(cli: CliContext, status_filter: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest first."""
    with open_app() as app:
        records = app.store.list_runs(status=status_filter, limit=limit)
    show_runs(cli, records, status_filter, as_json)


def show_runs(
    cli: CliContext, records: Sequence[RunRecord], status_filter: str | None, as_json: bool
) -> None:
    """What ``wayang runs`` prints."""
    if as_json:
        click.echo(json_text([record_json(record) for record in records]))
    elif records:
        print_runs(cli.out, records)
    else:
        which = f"{status_filter} " if status_filter else ""
        cli.err.print(f"no {which}runs in this store yet", soft_wrap=True)


@click.command()
@click.argument("run_id", metavar="[RUN]", required=False)
@click.option("--step", "step_id", metavar="ID", help="Only this step's lines.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the run ends.")
@click.option("--trace", "trace_id", metavar="ID", help="Everything trace ID caused, as a tree.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (JSON Lines).")
@pass_cli
def logs(
    cli: CliContext,
    *,
    run_id: str | None,
    step_id: str | None,
    follow: bool,
    trace_id: str | None,
    as_json: bool,
) -> None:
    """Print what RUN's steps wrote (default: the latest run), or with --trace what an event
    step trace caused: each message, the deliveries it made, their log lines and emits.

    Each line reads HH:MM:SS step[attempt] stream | text; between them, events of note
    (policy denials, votes, offers, events taken, timers, compensation) read
    HH:MM:SS step event | text.
    """
    if trace_id is not None:
        if run_id is not None or follow:
            raise UsageError("--trace shows one trace; leave out RUN and --follow")
        with open_app() as app:
            trace = load_trace(app.store, trace_id)
        if as_json:
            click.echo(json_text(trace_json(trace)))
        else:
            for line in trace_lines(trace):
                click.echo(line)
        return
    with open_app() as app:
        store = app.store
        run_id = run_id or latest_run(store)
        view = load_run(store, run_id)
        source = StoredLogs(store, run_id)
        print_logs(source, step_order(view.state), step_id, follow=follow, as_json=as_json)


class LogSource(Protocol):
    """Where a run's log lines and history come from: the store, or a server."""

    run_id: str

    def lines(self, step_id: str | None, after_seq: int) -> list[LogLine]:
        """The next page of log lines after ``after_seq`` (fewer than a page: the last)."""
        ...

    def history(self) -> list[ev.Event]: ...

    def finished(self) -> bool: ...


def print_logs(
    source: LogSource, order: Sequence[str], step_id: str | None, *, follow: bool, as_json: bool
) -> None:
    """What ``wayang logs RUN`` prints (and with ``follow``, goes on printing)."""
    if step_id is not None and step_id not in order:
        raise UsageError(
            f"run {source.run_id} has no step {step_id!r}; its steps are: {', '.join(order)}"
        )
    printer = _Printer(source, step_id, as_json)
    printer.print_new()
    while follow:
        finished = source.finished()
        if not printer.print_new() and finished:
            break
        time.sleep(POLL_S)


class StoredLogs:
    """A run's log lines and history, read from the store."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store, self.run_id = store, run_id

    def lines(self, step_id: str | None, after_seq: int) -> list[LogLine]:
        return self.store.read_logs(self.run_id, step_id, after_seq=after_seq, limit=LOG_PAGE)

    def history(self) -> list[ev.Event]:
        return load_run(self.store, self.run_id).history

    def finished(self) -> bool:
        record = self.store.get_run(self.run_id)
        if record is None:
            raise RunNotFoundError(
                f"no run {self.run_id!r} in this store; 'wayang runs' lists runs"
            )
        return record.status in _TERMINAL


class _Printer:
    """Prints a run's log lines merged by time with its events of note, each once."""

    def __init__(self, source: LogSource, step_id: str | None, as_json: bool) -> None:
        self.source, self.step_id, self.as_json = source, step_id, as_json
        self.last_seq = 0
        self.notes_seen = 0

    def print_new(self) -> bool:
        """Print what came since the last call; False when nothing did."""
        lines = self._new_lines()
        fresh = notes(self.source.history())[self.notes_seen :]
        self.notes_seen += len(fresh)
        fresh = [n for n in fresh if self.step_id in (None, n.step_id)]
        merged: list[tuple[float, int, LogLine | Note]] = [
            *((line.at, 0, line) for line in lines),
            *((note.at, 1, note) for note in fresh),
        ]
        merged.sort(key=lambda item: (item[0], item[1]))
        for _, _, item in merged:
            if isinstance(item, Note):
                click.echo(json.dumps(note_json(item)) if self.as_json else note_line(item))
            else:
                click.echo(json.dumps(log_json(item)) if self.as_json else text_line(item))
        return bool(merged)

    def _new_lines(self) -> list[LogLine]:
        found: list[LogLine] = []
        while True:
            page = self.source.lines(self.step_id, self.last_seq)
            found.extend(page)
            if page:
                self.last_seq = page[-1].seq
            if len(page) < LOG_PAGE:
                return found


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object for scripts.")
@pass_cli
def replay(cli: CliContext, run_id: str, as_json: bool) -> None:
    """Check that RUN's history is what this engine decides from the same inputs.

    Exits 0 when replay reproduces the history, 1 at the first difference (which it prints).
    """
    with open_app() as app:
        view = load_run(app.store, run_id)
    report = replay_history(run_id, view.history, gate_for)
    if as_json:
        click.echo(json_text(replay_json(run_id, report)))
    else:
        for line in replay_text(run_id, report):
            cli.out.print(escape(line), soft_wrap=True)
    if report.divergence is not None:
        raise click.exceptions.Exit(1)
