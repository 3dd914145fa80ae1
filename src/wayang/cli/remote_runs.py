"""``run``, ``resume``, ``retry``, ``cancel`` and ``dlq replay`` through a server: the server
drives the run, this process follows its events (Server-Sent Events) and prints what the
in-process command prints, with the same exit statuses.

Ctrl-C cancels the run on the server (exit 130 once it is cancelled); a second Ctrl-C, or
SIGTERM, stops following at once and leaves the run to the server. A stream the server drops
(it restarted) is followed on from the last event read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from wayang import wire
from wayang.cli.authoring import parse_assignments
from wayang.cli.context import CliContext
from wayang.cli.dlq import say_replaying
from wayang.cli.driver import (
    CANCEL_WAIT_S,
    POLL_S,
    Ending,
    RemoteSignals,
    exit_code,
    handlers,
    json_text,
    report_ending,
)
from wayang.cli.progress import Progress, progress_for
from wayang.cli.remote_views import (
    TERMINAL,
    event_of,
    log_line_of,
    outline_of,
    record_of,
    run_view,
)
from wayang.cli.run_render import RunOutline
from wayang.cli.runs import (
    duration_option,
    exit_with,
    report_finished,
    say_not_stopped,
    say_retrying,
)
from wayang.client import ApiError, Client, ServerUnavailableError
from wayang.engine.state import RunState, RunStatus, fold
from wayang.errors import WayangError
from wayang.requirements import check_requirements
from wayang.runtime.operations import RunView, prepare_run

RECONNECT_S = 0.5
RECONNECT_FOR_S = 15.0
LETTERS = 1000


class DequeuedError(WayangError):
    """A queued run vanished before it started (a server of an earlier release kept no record
    of a queued run it cancelled)."""


def run(
    cli: CliContext,
    client: Client,
    file: Path,
    *,
    params: tuple[str, ...],
    envs: tuple[str, ...],
    parallel: int | None,
    timeout: str | None,
    as_json: bool,
    detach: bool,
    workspace_id: str | None = None,
    base: str | None = None,
    uncommitted: bool = False,
    in_place: bool = False,
    cpus: str | None = None,  # never set here: a pinned run is driven in its own process
) -> None:
    """Check and plan FILE here (the errors are those of a run in this process, unmet
    requirements included: the server usually runs on this machine), then have the server run
    it. ``parallel`` is capped by the server's ``--workers``."""
    values = parse_assignments(params, "--param")
    overrides = parse_assignments(envs, "--env")
    duration_option(timeout, "--timeout")
    # The plan made here shapes only the output; the server plans the run again, with its limits.
    request = prepare_run(file, values, overrides, parallel=1, timeout_s=None)
    check_requirements(request.plan.workflow, overrides)
    path = file.resolve()
    accepted = client.start_run(
        wire.StartRun(
            source=request.started.source,
            filename=str(path),
            cwd=str(path.parent),
            params=values,
            params_are_text=True,
            env=overrides,
            timeout=timeout,
            parallel=parallel,
            workspace_id=workspace_id,
            base=base,
            uncommitted=uncommitted or None,
            in_place=in_place,
        )
    )
    if detach:
        _say_detached(cli, accepted, as_json)
        return
    if accepted.status == "queued" and not as_json:
        _say_queued(cli, accepted)
    outline = RunOutline.of_plan(request.plan)
    exit_with(follow(cli, client, RunState(accepted.run_id), outline, as_json=as_json))


def _say_queued(cli: CliContext, accepted: wire.RunAccepted) -> None:
    cli.err.print(
        f"run {accepted.run_id} is queued (position {accepted.position}): the server starts it "
        "when a slot frees",
        soft_wrap=True,
        markup=False,
    )


def _say_detached(cli: CliContext, accepted: wire.RunAccepted, as_json: bool) -> None:
    run_id = accepted.run_id
    if as_json:
        click.echo(json_text({"run_id": run_id, "status": accepted.status}))
        return
    click.echo(run_id)
    cli.err.print(
        f"run {run_id} runs on the server; follow it with 'wayang logs {run_id} --follow'",
        soft_wrap=True,
        markup=False,
    )


def resume(
    cli: CliContext,
    client: Client,
    run_id: str,
    as_json: bool,
    cpus: str | None = None,  # never set here: a pinned run is driven in its own process
) -> None:
    """Have the server carry RUN on (if nobody drives it) and follow it to its end."""
    view, outline, last = run_view(client, run_id)
    state = view.state
    if state.finished or state.started is None:
        report_finished(cli, state, as_json, outline)
        exit_with(exit_code(state.status))
    client.resume(run_id)
    exit_with(follow(cli, client, state, outline, as_json=as_json, after=last))


def retry(
    cli: CliContext,
    client: Client,
    *,
    run_id: str,
    from_step: str | None,
    as_json: bool,
    cpus: str | None = None,  # never set here: a pinned run is driven in its own process
) -> None:
    accepted = client.retry(run_id, from_step)
    outline = _outline(client, run_id)  # a retry runs the definition of the run it retries
    if not as_json:
        say_retrying(cli, run_id, accepted.run_id)
    exit_with(follow(cli, client, RunState(accepted.run_id), outline, as_json=as_json))


def cancel(cli: CliContext, client: Client, run_id: str, as_json: bool) -> None:
    detail = client.run(run_id)
    if detail.status in TERMINAL:
        raise WayangError(f"run {run_id} already finished ({detail.status}); nothing to cancel")
    answer = client.cancel(run_id, "cancelled by 'wayang cancel'")
    if detail.status == "queued" and answer.status == "cancelled":  # taken off the queue
        report_finished(cli, RunState(run_id, RunStatus.CANCELLED), as_json, RunOutline("", "", ()))
        exit_with(0)
    deadline = time.monotonic() + CANCEL_WAIT_S
    view, outline, _ = run_view(client, run_id)
    while not view.state.finished:
        if time.monotonic() > deadline:
            say_not_stopped(cli, run_id)
            exit_with(1)
        time.sleep(POLL_S)
        view, outline, _ = run_view(client, run_id)
    report_finished(cli, view.state, as_json, outline)
    exit_with(0 if view.state.status is RunStatus.CANCELLED else 1)


def replay_letter(cli: CliContext, client: Client, dlq_id: str, as_json: bool) -> None:
    letter = next((d for d in client.dead_letters(LETTERS) if d.id == dlq_id), None)
    if letter is None or letter.kind == "delivery":
        _replay_delivery(cli, client, dlq_id, letter, as_json)
        return
    outline = _outline(client, letter.run_id)
    replayed = client.replay(dlq_id)
    new_id = replayed.run_id or ""
    if not as_json:
        say_replaying(cli, letter.step, letter.run_id, new_id)
    exit_with(follow(cli, client, RunState(new_id), outline, as_json=as_json))


def _replay_delivery(
    cli: CliContext,
    client: Client,
    dlq_id: str,
    letter: wire.DeadLetterView | None,
    as_json: bool,
) -> None:
    replayed = client.replay(dlq_id)  # an unknown id: the server says so
    if as_json:
        click.echo(json_text(replayed.model_dump(mode="json")))
        return
    step = f" to {letter.step}" if letter is not None else ""
    cli.out.print(
        f"delivery {dlq_id}{step} is due again; the server delivers it when it serves the "
        "project ('wayang server --project DIR')",
        soft_wrap=True,
        markup=False,
    )


def _outline(client: Client, run_id: str) -> RunOutline:
    """The outline of ``run_id`` from its summary and first event (no need for the rest)."""
    detail = client.run(run_id)
    first = [event_of(e) for e in client.events(run_id, 0, 1).items]
    return outline_of(detail, RunView(record_of(detail), first, fold(run_id, first)))


# ------------------------------------------------------------------------------ following


def follow(
    cli: CliContext,
    client: Client,
    state: RunState,
    outline: RunOutline,
    *,
    as_json: bool,
    after: int = 0,
) -> int:
    """Follow the run from event ``after`` on with run-like output; the exit code."""
    progress = progress_for("json" if as_json else "auto", outline, state, cli.out, cli.err)
    ending = asyncio.run(_follow(client, progress, after))
    still = f"the server carries it on ('wayang logs {state.run_id} --follow' follows it)"
    return report_ending(cli, progress, ending, outline.order, as_json=as_json, still=still)


async def _follow(client: Client, progress: Progress, after: int) -> Ending:
    loop = asyncio.get_running_loop()
    signals = RemoteSignals(progress, "the server carries the run on")
    signals.cancel = _canceller(loop, client, progress)
    feeding = asyncio.ensure_future(_feed(client, progress, after))
    with handlers(loop, signals):
        async with progress.showing():
            waiting: list[asyncio.Future[Any]] = [feeding, signals.stopped]
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if feeding.done():
        feeding.result()  # a server that went away for good, a refusal: raise it
    else:
        feeding.cancel()
        await asyncio.gather(feeding, return_exceptions=True)
    return signals.ending(progress.state)


def _canceller(
    loop: asyncio.AbstractEventLoop, client: Client, progress: Progress
) -> Callable[[str, str], object]:
    """Cancels the run on the server without holding up the loop (its answer waits for the
    run to stop)."""

    def done(asked: asyncio.Future[wire.RunSummary]) -> None:
        if asked.cancelled():
            return
        problem = asked.exception()
        if problem is not None:
            progress.note(f"cancelling failed: {problem}")

    def cancel(run_id: str, reason: str) -> object:
        asked = loop.run_in_executor(None, client.cancel, run_id, reason)
        asked.add_done_callback(done)
        return asked

    return cancel


async def _feed(client: Client, progress: Progress, after: int) -> None:
    """Fold the run's events into ``progress`` (and show its log lines) until it ends."""
    run_id, logs_after = progress.run_id, 0
    heard = time.monotonic()
    while not progress.state.finished:
        try:
            async for name, data in client.astream(run_id, after, logs_after):
                heard = time.monotonic()
                if name == "run-event":
                    event = wire.EventView.model_validate(data)
                    after = event.seq
                    progress.on_events(run_id, [event_of(event)])
                elif name == "log":
                    line = wire.LogLineView.model_validate(data)
                    logs_after = line.seq or logs_after
                    progress.on_log(log_line_of(run_id, line))
                elif name == "end":
                    return
        except ServerUnavailableError:
            if time.monotonic() - heard > RECONNECT_FOR_S:
                raise
        except ApiError as exc:
            if exc.kind == "run-not-found" and progress.state.started is None:
                raise DequeuedError(
                    f"run {run_id} was taken off the server's queue before it started"
                ) from None
            raise
        await asyncio.sleep(RECONNECT_S)  # the stream broke off (a restart): follow on
