"""Commands that drive runs: ``run``, ``resume``, ``retry``, ``cancel`` (and the hidden ``_drive``).

Each prints progress while the run goes (a live view on a terminal, one line per step transition
elsewhere, or with ``--json`` one JSON object at the end) and exits 0 only when the run succeeded:
1 when it failed or was cancelled, 130 when Ctrl-C cancelled or stopped it, 143 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import NoReturn

import click
from rich.markup import escape

from wayang.app import App, run_workspace_plan
from wayang.cli.authoring import parse_assignments
from wayang.cli.background import start_detached
from wayang.cli.context import CliContext, pass_cli
from wayang.cli.driver import (
    cancel,
    cpus_option,
    drive_and_report,
    exit_code,
    json_text,
    open_app,
    pin_to,
)
from wayang.cli.run_render import RunOutline, outline_of, run_json, summary
from wayang.engine.runplan import RunPlan
from wayang.engine.state import RunState, RunStatus
from wayang.errors import UsageError, WayangError
from wayang.ids import new_run_id
from wayang.model.durations import parse_duration
from wayang.policy import gate_for
from wayang.requirements import check_requirements
from wayang.runtime.cpus import parse_cpus
from wayang.runtime.engine import Engine
from wayang.runtime.operations import (
    RunRequest,
    load_run,
    prepare_retry,
    prepare_run,
    read_request_payload,
)
from wayang.runtime.queues import check_queue_room
from wayang.runtime.workspaces import WorkspaceChoice, with_workspace

JSON_HELP = "Print one JSON object at the end instead of progress."
PINNED_HERE = " The run is then driven by this process, not by a server."


@click.command("run")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), default="workflow.toml")
@click.option(
    "--param", "-p", "params", multiple=True, metavar="NAME=VALUE", help="A parameter value."
)
@click.option(
    "--env", "-e", "envs", multiple=True, metavar="NAME=VALUE", help="An environment override."
)
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    metavar="N",
    help="Run at most N steps at once [default: the number of CPUs].",
)
@click.option("--timeout", metavar="DURATION", help="Stop the run (failed) after this, e.g. 30m.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.option("--detach", is_flag=True, help="Run in the background; print the run id and return.")
@click.option(
    "--workspace-id",
    metavar="ID",
    help="Work in the workspace ID (made if new, reused if it exists) [default: one per run].",
)
@click.option("--base", metavar="REV", help="Make the workspace at this change [default: HEAD].")
@click.option(
    "--uncommitted", is_flag=True, help="Include the checkout's uncommitted changes (git)."
)
@click.option(
    "--in-place", is_flag=True, help="Work in the workflow's folder, without a workspace."
)
@cpus_option(PINNED_HERE)
@pass_cli
def run(
    cli: CliContext,
    file: Path,
    *,
    params: tuple[str, ...],
    envs: tuple[str, ...],
    parallel: int | None,
    timeout: str | None,
    as_json: bool,
    detach: bool,
    workspace_id: str | None,
    base: str | None,
    uncommitted: bool,
    in_place: bool,
    cpus: str | None,
) -> None:
    """Run FILE (default ./workflow.toml) and wait for it to end.

    Exits 0 when the run succeeded, 1 when it failed or was cancelled, 2 for bad input (nothing
    is started). Ctrl-C cancels the run (exit 130); a second Ctrl-C, or SIGTERM (exit 143),
    stops at once and leaves the run resumable with 'wayang resume'.
    """
    # Pinned before anything starts a thread; a detached run's own process pins itself.
    pin = None if detach else pin_to(cpus)
    if detach and cpus:
        parse_cpus(cpus)  # a bad list is refused here, not in the background
    values = parse_assignments(params, "--param")
    overrides = parse_assignments(envs, "--env")
    timeout_s = duration_option(timeout, "--timeout")
    with open_app(pin) as app:
        workers = parallel or app.settings.parallel
        request = prepare_run(file, values, overrides, parallel=workers, timeout_s=timeout_s)
        workspace = WorkspaceChoice(workspace_id, base, uncommitted or None, in_place)
        request = with_workspace(request, run_workspace_plan(file, workspace))
        check_requirements(request.plan.workflow, overrides)
        check_queue_room(app.store, request.plan)
        run_id = new_run_id()
        if detach:
            _detach(cli, app, request, run_id, as_json=as_json, cpus=cpus)
        else:
            exit_with(drive_new(cli, app, request, run_id, as_json))


@click.command("_drive", hidden=True)
@cpus_option()
@pass_cli
def drive_handover(cli: CliContext, cpus: str | None) -> None:
    """Create and drive the run handed over on stdin (what 'run --detach' starts)."""
    pin = pin_to(cpus)
    run_id, started, reuse = read_request_payload(sys.stdin.read())
    plan = RunPlan.from_started(started, gate_for)

    async def begin(engine: Engine) -> asyncio.Future[RunState]:
        return engine.start(plan, started, run_id, reuse=reuse)

    with open_app(pin) as app:
        exit_with(
            drive_and_report(cli, app, begin, plan, RunState(run_id), as_json=False, mode="lines")
        )


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@cpus_option(PINNED_HERE)
@pass_cli
def resume(cli: CliContext, run_id: str, as_json: bool, cpus: str | None) -> None:
    """Continue RUN from where it stopped, in this process, and wait for it to end.

    Steps that succeeded are not run again; an attempt that was in flight runs again. A run
    that already ended is only reported. Exit statuses are those of 'wayang run'.
    """
    with open_app(pin_to(cpus)) as app:
        view = load_run(app.store, run_id)
        state = view.state
        if state.finished or state.started is None:
            report_finished(cli, state, as_json)
            exit_with(exit_code(state.status))
        plan = RunPlan.from_started(state.started, gate_for)
        check_requirements(plan.workflow, state.started.env_overrides)

        async def begin(engine: Engine) -> asyncio.Future[RunState]:
            return await engine.adopt(run_id)

        exit_with(drive_and_report(cli, app, begin, plan, state, as_json=as_json))


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option(
    "--from",
    "from_step",
    metavar="STEP",
    help="Run STEP and every step after it again, even if they succeeded.",
)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@cpus_option(PINNED_HERE)
@pass_cli
def retry(
    cli: CliContext, run_id: str, from_step: str | None, as_json: bool, cpus: str | None
) -> None:
    """Run a finished RUN again as a new run, reusing the outputs of the steps that succeeded.

    Same definition, parameters and environment as RUN. Exit statuses are those of 'wayang run'.
    """
    with open_app(pin_to(cpus)) as app:
        request = prepare_retry(app.store, run_id, from_step)
        check_requirements(request.plan.workflow, request.started.env_overrides)
        new_id = new_run_id()
        if not as_json:
            say_retrying(cli, run_id, new_id)
        exit_with(drive_new(cli, app, request, new_id, as_json))


@click.command("cancel")
@click.argument("run_id", metavar="RUN")
@click.option("--json", "as_json", is_flag=True, help="Print the run's final state as JSON.")
@pass_cli
def cancel_command(cli: CliContext, run_id: str, as_json: bool) -> None:
    """Cancel RUN and wait (up to 10s) until it has stopped.

    Its running steps are stopped (SIGTERM, then SIGKILL after a grace period). If no process
    drives the run, this one takes it over to cancel it. Exits 0 once the run is cancelled, 1
    if it had already ended or ended otherwise.
    """
    with open_app() as app:
        view = load_run(app.store, run_id)
        if view.state.finished:
            raise WayangError(
                f"run {run_id} already finished ({view.state.status.value}); nothing to cancel"
            )
        final = asyncio.run(cancel(app, run_id, "cancelled by 'wayang cancel'"))
        if final is None:
            say_not_stopped(cli, run_id)
            exit_with(1)
        report_finished(cli, final, as_json)
        exit_with(0 if final.status is RunStatus.CANCELLED else 1)


# ------------------------------------------------------------------------------ helpers


def say_not_stopped(cli: CliContext, run_id: str) -> None:
    cli.err.print(
        f"cancel requested, but run {run_id} has not stopped yet; its engine will stop "
        f"it: check with 'wayang status {run_id}'",
        soft_wrap=True,
        markup=False,
    )


def say_retrying(cli: CliContext, run_id: str, new_id: str) -> None:
    cli.err.print(f"retrying run {run_id} as {new_id}", soft_wrap=True, markup=False)


def duration_option(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def drive_new(cli: CliContext, app: App, request: RunRequest, run_id: str, as_json: bool) -> int:
    async def begin(engine: Engine) -> asyncio.Future[RunState]:
        return engine.start(request.plan, request.started, run_id, reuse=request.reuse)

    return drive_and_report(cli, app, begin, request.plan, RunState(run_id), as_json=as_json)


def _detach(
    cli: CliContext, app: App, request: RunRequest, run_id: str, *, as_json: bool, cpus: str | None
) -> None:
    log = start_detached(app.store, app.settings.store, request, run_id, cpus)
    if as_json:
        click.echo(json_text({"run_id": run_id, "status": "running"}))
        return
    click.echo(run_id)
    cli.err.print(
        f"run {run_id} runs in the background; follow it with 'wayang logs {run_id} --follow' "
        f"(its engine writes to {escape(str(log))})",
        soft_wrap=True,
    )


def report_finished(
    cli: CliContext, state: RunState, as_json: bool, outline: RunOutline | None = None
) -> None:
    """A run that is not driven here: its summary line, or its JSON object."""
    if as_json:
        click.echo(json_text(run_json(state, (outline or outline_of(state)).order)))
    else:
        cli.out.print(escape(summary(state)), soft_wrap=True)


def exit_with(code: int) -> NoReturn:
    """End the command with ``code`` (``main`` returns it as the process's exit status)."""
    raise click.exceptions.Exit(code)
