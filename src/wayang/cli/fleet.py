"""``wayang worker``, ``wayang workers``, ``wayang queues``: the fleet's processes and queues."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from wayang.app import App
from wayang.cli.context import CliContext, pass_cli
from wayang.cli.driver import (
    STORE_KEY,
    cpus_option,
    defer_full_collections,
    freeze_startup_heap,
    json_text,
    open_app,
    pin_to,
)
from wayang.cli.run_render import print_rows
from wayang.client import ApiError, Client, HttpWorkerLink
from wayang.errors import UsageError
from wayang.model.placement import LOCAL_CAPABILITIES
from wayang.runtime.engine import Engine, EngineSettings
from wayang.runtime.hand_off import driver_owner, runs_driven_by
from wayang.runtime.liveness import worker_state
from wayang.runtime.queues import QUEUE_LIMITS
from wayang.runtime.slots import Slots
from wayang.runtime.spill import SPILL_AFTER_S
from wayang.runtime.worker import Worker, WorkerSettings, store_link
from wayang.server.locate import TOKEN_VARIABLE, read_token
from wayang.store.port import QueueStats, WorkerRecord

NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def _names(text: str, option: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    for name in names:
        if not set(name) <= NAME_CHARS:
            raise UsageError(
                f"{option}: {name!r} is not a name (letters, digits, '_', '-', '.'); "
                "separate names with commas"
            )
    return names


def _labels(pairs: Sequence[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in (part for text in pairs for part in text.split(",") if part.strip()):
        key, sep, value = pair.strip().partition("=")
        if not sep or not key or not value:
            raise UsageError(f"--labels: write each label as key=value, not {pair.strip()!r}")
        labels[key] = value
    return labels


@click.command("worker")
@click.option(
    "--capabilities",
    default=",".join(LOCAL_CAPABILITIES),
    show_default=True,
    help="What this worker can run, comma-separated (steps ask with runs_on.capabilities).",
)
@click.option(
    "--labels",
    multiple=True,
    metavar="K=V[,K=V]",
    help="Labels of this worker (steps ask with runs_on.labels); repeatable.",
)
@click.option(
    "--slots", type=click.IntRange(1, 4096), default=None, help="Tasks run at once [default: CPUs]."
)
@click.option(
    "--queues", default="default", show_default=True, help="Queues to take tasks from, in order."
)
@click.option("--id", "worker_id", default="", help="Worker id [default: host:pid:random].")
@click.option(
    "--lease",
    "lease_s",
    type=click.FloatRange(1.0),
    default=15.0,
    show_default=True,
    help="Seconds a task stays this worker's without a heartbeat.",
)
@click.option(
    "--grace",
    "drain_s",
    type=click.FloatRange(0),
    default=30.0,
    show_default=True,
    help="Seconds running tasks get on SIGTERM before they are handed back.",
)
@click.option(
    "--drive",
    is_flag=True,
    help="Also drive runs handed off by a server with --hand-off: take them from the store and "
    "run their steps here, one after another, without a queue between two steps.",
)
@click.option(
    "--drive-runs",
    type=click.IntRange(1, 4096),
    default=EngineSettings.drive_runs,
    show_default=True,
    help="With --drive: runs driven at once; more are left to other drivers.",
)
@click.option(
    "--spill-after",
    "spill_after_s",
    type=click.FloatRange(0),
    default=SPILL_AFTER_S,
    show_default=True,
    help="With --drive: steps of its runs that its slots would not start within this many "
    "seconds go to the queue, for other workers while any serve it (0: they wait here).",
)
@click.option(
    "--server",
    "server_url",
    metavar="URL",
    default=None,
    help="Work through the Wayang server at URL instead of the store (hosts that must not "
    "reach the database).",
)
@click.option(
    "--token",
    default=None,
    help="The server's API token [default: $WAYANG_API_TOKEN]; --token-file keeps it out of "
    "the process list.",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File holding the server's API token.",
)
@cpus_option()
@pass_cli
def worker(
    cli: CliContext,
    *,
    capabilities: str,
    labels: tuple[str, ...],
    slots: int | None,
    queues: str,
    worker_id: str,
    lease_s: float,
    drain_s: float,
    drive: bool,
    drive_runs: int,
    spill_after_s: float,
    server_url: str | None,
    token: str | None,
    token_file: Path | None,
    cpus: str | None,
) -> None:
    """Run tasks for the fleet: claim them from the store (--store, e.g. postgresql://…) as
    slots free up, run them here, record their results. With --server URL the worker does all
    of that through a Wayang server instead, over HTTP, and never opens the store.

    Steps whose runs_on asks for capabilities or labels the server lacks wait for a worker
    offering them. SIGTERM or Ctrl-C stops claiming, lets running tasks finish for --grace
    seconds, then hands the rest back (another worker takes them) and exits 0.
    """
    pin = pin_to(cpus)
    defaults = WorkerSettings()
    settings = WorkerSettings(
        capabilities=_names(capabilities, "--capabilities"),
        labels=_labels(labels),
        slots=slots or defaults.slots,
        queues=_names(queues, "--queues") or ("default",),
        worker_id=worker_id,
        lease_s=lease_s,
        heartbeat_every_s=max(0.5, lease_s / 5),
        drain_s=drain_s,
    )
    url = _server_url(server_url)
    if drive and url is not None:
        raise UsageError(
            "--drive needs the store (--store postgresql://…): a driver writes runs' histories; "
            "drop --server, or --drive"
        )
    secret = _token(url, token, token_file)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    with open_app(pin) as app:
        if url is None:
            shared = Slots(settings.slots)  # the worker's, shared with its driver's steps
            runner = Worker(store_link(app.store), app.executor, settings, slots=shared)
            driver = _driver(app, runner, drive_runs, spill_after_s) if drive else None
            _serve(cli, runner, driver=driver)
            return
        timeout = min(30.0, max(2.0, lease_s / 3))  # an answer within a third of a lease
        with Client(url, token=secret, timeout=timeout) as client:
            link = HttpWorkerLink(client)
            with _refusals(url):
                _serve(cli, Worker(link, app.executor, settings), link, f" through {url}")
        if link.refused is not None:
            raise _refused(url, link.refused)


def _driver(app: App, runner: Worker, runs: int, spill_after_s: float) -> Engine:
    """The engine of a worker with --drive: it drives up to ``runs`` handed-off runs at once,
    running here the steps this worker could claim, in the worker's folder, each holding one
    of its slots, under an owner id naming the worker (runtime/hand_off.py, runtime/slots.py).
    Steps its slots would not start within ``spill_after_s`` go to the worker's queues, for
    other workers (runtime/spill.py)."""
    settings = runner.settings
    driving = EngineSettings(
        lease_s=settings.lease_s,
        renew_every_s=settings.lease_s / 5,
        offers=settings.offers(),
        drive=True,
        drive_runs=runs,
        work_in=settings.cwd,
        spill_after_s=spill_after_s,
        worker_queues=settings.queues,
    )
    return app.engine(settings=driving, slots=runner.slots, owner=driver_owner(runner.worker_id))


def _serve(
    cli: CliContext,
    runner: Worker,
    over_http: HttpWorkerLink | None = None,
    where: str = "",
    *,
    driver: Engine | None = None,
) -> None:
    settings = runner.settings
    drives = ", drives handed-off runs" if driver is not None else ""
    cli.err.print(
        f"worker {runner.worker_id}{where}: {settings.slots} slot(s), queues "
        f"{', '.join(settings.queues)}, offers {', '.join(sorted(settings.offers()))}{drives}",
        soft_wrap=True,
    )
    freeze_startup_heap()
    defer_full_collections()  # a driver's engine, and a worker's tasks in flight, grow its heap
    asyncio.run(_work(runner, over_http, driver))
    counts = runner.counts
    cli.err.print(
        f"worker {runner.worker_id} stopped: {counts.done} done, {counts.failed} failed, "
        f"{counts.refused} refused",
        soft_wrap=True,
    )


def _token(url: str | None, token: str | None, token_file: Path | None) -> str | None:
    if token is not None and token_file is not None:
        raise UsageError("give --token or --token-file, not both")
    if url is None:
        if token is not None or token_file is not None:
            raise UsageError("--token and --token-file are for a worker with --server URL")
        return None
    return read_token(token, token_file)


def _server_url(given: str | None) -> str | None:
    """``--server`` after ``worker``, else before it when given on the command line (not
    $WAYANG_SERVER, which is for the commands that go through a server); never with
    ``--store``."""
    root = click.get_current_context().find_root()
    url = given
    if url is None and root.get_parameter_source("server") == ParameterSource.COMMANDLINE:
        url = root.params.get("server")
    if url and root.meta.get(STORE_KEY):
        raise UsageError(
            "--store and --server: a worker reaches the store directly or through a server, "
            "not both; drop one"
        )
    return url or None


async def _work(
    runner: Worker, over_http: HttpWorkerLink | None = None, driver: Engine | None = None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if over_http is not None:

        def refused(_: ApiError) -> None:  # for good: stop, as on SIGTERM
            loop.call_soon_threadsafe(stop.set)

        over_http.on_refused = refused
    if driver is None:
        await runner.run(stop)
        return
    async with driver:  # on leaving, its runs go back to the drivers
        drained = asyncio.create_task(_drain_on(stop, driver, runner.settings.drain_s))
        try:
            await runner.run(stop)
            await drained
        finally:
            drained.cancel()


async def _drain_on(stop: asyncio.Event, driver: Engine, grace_s: float) -> None:
    """On SIGTERM, the driver's running steps get the worker's --grace to finish, as its
    tasks do; the runs then go back to the drivers with what they recorded."""
    await stop.wait()
    await driver.drain(grace_s)


@contextlib.contextmanager
def _refusals(url: str | None) -> Iterator[None]:
    """A server refusing the worker at the start, said as a worker's problem."""
    try:
        yield
    except ApiError as exc:
        if url is None or not 400 <= exc.status < 500:
            raise
        raise _refused(url, exc) from None


def _refused(url: str, exc: ApiError) -> UsageError:
    if exc.status in (401, 403):
        return UsageError(
            f"the server at {url} refused the worker ({exc.status} {exc.title}): it needs the "
            f"server's API token; give it with --token-file FILE or ${TOKEN_VARIABLE}"
        )
    return UsageError(
        f"the server at {url} refused the worker ({exc.status} {exc.kind}): {exc.detail}; is it "
        "a Wayang server of the same version?"
    )


@click.command("workers")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array for scripts.")
@click.option(
    "--forget",
    "forget_s",
    type=click.FloatRange(0),
    default=None,
    metavar="SECONDS",
    help="First drop workers silent for this long.",
)
@pass_cli
def workers(cli: CliContext, as_json: bool, forget_s: float | None) -> None:
    """List the workers of the store: state, slots in use, last heartbeat, tasks done/failed,
    and, when runs are handed off to drivers, the runs each worker drives.

    A worker silent for over 45 seconds that did not say it stopped is shown as lost.
    """
    now = time.time()
    with open_app() as app:
        if forget_s is not None:
            app.store.forget_workers(now - forget_s)
        found = app.store.list_workers()
        driven = app.store.driven_runs()
    drives = {record.worker_id: runs_driven_by(record.worker_id, driven) for record in found}
    if as_json:
        click.echo(json_text([_worker_json(r, now, drives[r.worker_id]) for r in found]))
        return
    if not found:
        cli.err.print("no workers have registered with this store")
        return
    header: tuple[str, ...] = (
        "worker",
        "state",
        "slots",
        "queues",
        "offers",
        "heartbeat",
        "done",
        "failed",
    )
    rows = [_worker_row(record, now) for record in found]
    if driven:  # a column for drivers only when runs are handed off to them
        header = (*header, "drives")
        rows = [[*row, str(drives[r.worker_id])] for row, r in zip(rows, found, strict=True)]
    print_rows(cli.out, header, rows)


def _worker_json(record: WorkerRecord, now: float, drives: int) -> dict[str, Any]:
    return {
        "id": record.worker_id,
        "host": record.host,
        "pid": record.pid,
        "version": record.version,
        "state": worker_state(record, now),
        "capabilities": list(record.capabilities),
        "labels": dict(record.labels),
        "queues": list(record.queues),
        "slots": record.slots,
        "running": record.running,
        "done": record.done,
        "failed": record.failed,
        "drives": drives,
        "started_at": record.started_at,
        "heartbeat_at": record.heartbeat_at,
    }


def _worker_row(record: WorkerRecord, now: float) -> list[str]:
    labels = [f"{key}={value}" for key, value in record.labels.items()]
    return [
        record.worker_id,
        worker_state(record, now),
        f"{record.running}/{record.slots}",
        ",".join(record.queues),
        ",".join([*record.capabilities, *labels]),
        f"{max(0.0, now - record.heartbeat_at):.0f}s ago",
        str(record.done),
        str(record.failed),
    ]


@click.group("queues", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array for scripts.")
@click.pass_context
def queues(ctx: click.Context, as_json: bool) -> None:
    """Task queues: tasks waiting and running, the oldest wait, and each queue's limits.

    'wayang queues limit NAME' sets a queue's limits for the whole fleet.
    """
    if ctx.invoked_subcommand is not None:
        return
    cli = ctx.find_object(CliContext)
    assert cli is not None
    now = time.time()
    with open_app() as app:
        stats = {s.queue: s for s in app.store.queue_stats()}
        limits = app.store.kv_scan(QUEUE_LIMITS)
    names = sorted(set(stats) | set(limits))
    rows = [_queue_json(name, stats.get(name), limits.get(name) or {}, now) for name in names]
    if as_json:
        click.echo(json_text(rows))
        return
    if not rows:
        cli.err.print("no tasks are queued and no queue has limits")
        return
    header = ("queue", "queued", "running", "oldest wait", "max running", "max depth")
    print_rows(cli.out, header, [_queue_row(row) for row in rows])


def _queue_json(
    name: str, stats: QueueStats | None, limit: dict[str, Any], now: float
) -> dict[str, Any]:
    oldest = stats.oldest_at if stats is not None else None
    return {
        "queue": name,
        "queued": stats.queued if stats else 0,
        "running": stats.running if stats else 0,
        "oldest_wait_s": round(now - oldest, 3) if oldest is not None else None,
        "max_running": limit.get("max_running"),
        "max_depth": limit.get("max_depth"),
    }


def _queue_row(row: dict[str, Any]) -> list[str]:
    wait = row["oldest_wait_s"]
    return [
        row["queue"],
        str(row["queued"]),
        str(row["running"]),
        f"{wait:.1f}s" if wait is not None else "-",
        str(row["max_running"] or "-"),
        str(row["max_depth"] or "-"),
    ]


@queues.command("limit")
@click.argument("name")
@click.option(
    "--max-running",
    type=click.IntRange(0),
    default=None,
    help="Tasks of the queue running on workers at once (0: no limit).",
)
@click.option(
    "--max-depth",
    type=click.IntRange(0),
    default=None,
    help="Tasks waiting in the queue beyond which new runs are refused (0: no limit).",
)
@pass_cli
def limit(cli: CliContext, name: str, max_running: int | None, max_depth: int | None) -> None:
    """Set the limits of queue NAME for every worker and server of the store."""
    _names(name, "NAME")
    if max_running is None and max_depth is None:
        raise UsageError("give --max-running, --max-depth or both (0 removes a limit)")
    with open_app() as app:
        current = dict(app.store.kv_get(QUEUE_LIMITS, name) or {})
        for key, value in (("max_running", max_running), ("max_depth", max_depth)):
            if value is not None:
                current[key] = value or None
        current = {key: value for key, value in current.items() if value}
        if current:
            app.store.kv_set(QUEUE_LIMITS, name, current)
        else:
            app.store.kv_delete(QUEUE_LIMITS, name)
    shown = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in current.items())
    cli.out.print(f"queue {name}: {shown or 'no limits'}", soft_wrap=True)


FLEET_COMMANDS = (worker, workers, queues)
