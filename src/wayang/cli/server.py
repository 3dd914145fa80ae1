"""``wayang server``: run the daemon (API, Workbench, engine, queue, steps, cron, timers)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import click

from wayang.app import App, Settings
from wayang.cli.context import CliContext, pass_cli
from wayang.cli.driver import (
    STORE_KEY,
    cpus_option,
    defer_full_collections,
    freeze_startup_heap,
    pin_to,
)
from wayang.cli.runs import duration_option
from wayang.runtime.engine import EngineSettings


@click.command("server")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--socket",
    "socket_path",
    default=None,
    metavar="PATH",
    help="Unix socket to listen on too [default: one derived from the store; '' for none].",
)
@click.option(
    "--project",
    "project_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Serve this steps project too: its event steps, API steps (under /steps) and crons.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 1024),
    default=None,
    help="Step attempts run at once per run [default: the number of CPUs; with --hand-off or "
    "--no-tasks no bound, since the steps run on workers, each within its --slots].",
)
@click.option(
    "--tasks/--no-tasks",
    "run_tasks",
    default=True,
    show_default=True,
    help="Run steps here; --no-tasks leaves every step to workers (wayang worker).",
)
@click.option(
    "--hand-off",
    is_flag=True,
    help="Record each run and leave it to drivers (wayang worker --drive), which run its "
    "steps one after another without a queue between them; runs with a workspace stay here.",
)
@click.option(
    "--max-runs",
    type=click.IntRange(1),
    default=64,
    show_default=True,
    help="Busy runs at once; more wait in the queue.",
)
@click.option(
    "--max-runs-per-workflow",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Busy runs of one workflow at once (0: no limit).",
)
@click.option(
    "--max-queued",
    type=click.IntRange(1),
    default=10_000,
    show_default=True,
    help="Runs the queue holds; more are refused (HTTP 429).",
)
@click.option(
    "--grace",
    "grace_s",
    type=click.FloatRange(0),
    default=30.0,
    show_default=True,
    help="Seconds busy runs get on SIGTERM before they are handed back.",
)
@click.option(
    "--lease",
    "lease_s",
    type=click.FloatRange(1.0),
    default=EngineSettings.lease_s,
    show_default=True,
    help="Seconds this server's runs stay its own without renewal; a server sharing the "
    "store adopts them after that (how long a killed server's runs wait).",
)
@click.option(
    "--retention-every",
    metavar="DURATION",
    default="1h",
    show_default=True,
    help="Clean workspaces and artifacts by [workspaces.retention] this often ('0s': never).",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File holding the API token [default: $WAYANG_API_TOKEN]; required off loopback.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Server log lines: readable text, or one JSON object per line.",
)
@cpus_option()
@pass_cli
def server(
    cli: CliContext,
    *,
    host: str,
    port: int,
    socket_path: str | None,
    project_dir: Path | None,
    workers: int | None,
    run_tasks: bool,
    hand_off: bool,
    max_runs: int,
    max_runs_per_workflow: int,
    max_queued: int,
    grace_s: float,
    lease_s: float,
    retention_every: str,
    token_file: Path | None,
    log_format: str,
    cpus: str | None,
) -> None:
    """Run the Wayang server: the HTTP API (/api/v1, docs at /api/docs), the Workbench (/),
    the engine with its queue of runs, and the steps of --project.

    Unfinished runs in the store are carried on, including those a stopped server or CLI left.
    SIGTERM or Ctrl-C stops taking new runs, lets busy ones finish for --grace seconds, then
    hands the rest back to the store and exits 0.
    """
    from wayang.observe import Metrics, Tracing, configure_logging  # noqa: PLC0415
    from wayang.server.core import CoreSettings, ServerCore  # noqa: PLC0415
    from wayang.server.daemon import Listen, read_token, serve  # noqa: PLC0415
    from wayang.server.queue import Limits  # noqa: PLC0415

    pin = pin_to(cpus)  # before anything starts a thread
    configure_logging("json" if log_format == "json" else "text")
    store = click.get_current_context().meta.get(STORE_KEY)
    settings = Settings.from_environment(store)
    settings = replace(
        settings,
        cpu_pin=pin,
        engine=EngineSettings(
            lease_s=lease_s,
            renew_every_s=lease_s / 5,
            adopt_orphans=True,
            run_tasks=run_tasks,
            hand_off=hand_off,
        ),
        parallel=workers or (0 if hand_off or not run_tasks else settings.parallel),
    )
    listen = Listen(host, port, socket_path, read_token(None, token_file))
    limits = Limits(max_runs, max_runs_per_workflow, max_queued)
    every_s = duration_option(retention_every, "--retention-every") or 0.0
    core_settings = CoreSettings(limits, project_dir, grace_s, settings.parallel, every_s)
    app = App(settings)
    tracing = Tracing.from_environment(os.environ)
    try:
        core = ServerCore(app, core_settings, metrics=Metrics(), tracing=tracing)
        freeze_startup_heap()
        defer_full_collections()
        with asyncio.Runner(loop_factory=fast_loop()) as runner:
            runner.run(serve(core, listen, settings.store))
    finally:
        tracing.shutdown()
        app.close()


def fast_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (it comes with uvicorn[standard]): socket I/O
    was a fifth of a run start on the default loop. None: asyncio's own."""
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        return None
    return uvloop.new_event_loop
