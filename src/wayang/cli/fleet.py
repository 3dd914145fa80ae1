"""``wayang worker``, ``wayang workers``, ``wayang queues``: the fleet's processes and queues."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Sequence
from typing import Any

import click

from wayang.cli.context import CliContext, pass_cli
from wayang.cli.driver import json_text, open_app
from wayang.cli.run_render import print_rows
from wayang.errors import UsageError
from wayang.model.placement import LOCAL_CAPABILITIES
from wayang.runtime.queues import QUEUE_LIMITS
from wayang.runtime.worker import Worker, WorkerSettings, store_link
from wayang.store.port import QueueStats, WorkerRecord

LOST_AFTER_S = 45.0
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
) -> None:
    """Run tasks for the fleet: claim them from the store (--store, e.g. postgresql://…) as
    slots free up, run them here, record their results.

    Steps whose runs_on asks for capabilities or labels the server lacks wait for a worker
    offering them. SIGTERM or Ctrl-C stops claiming, lets running tasks finish for --grace
    seconds, then hands the rest back (another worker takes them) and exits 0.
    """
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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with open_app() as app:
        runner = Worker(store_link(app.store), app.executor, settings)
        cli.err.print(
            f"worker {runner.worker_id}: {settings.slots} slot(s), queues "
            f"{', '.join(settings.queues)}, offers {', '.join(sorted(settings.offers()))}",
            soft_wrap=True,
        )
        asyncio.run(_work(runner))
        counts = runner.counts
        cli.err.print(
            f"worker {runner.worker_id} stopped: {counts.done} done, {counts.failed} failed, "
            f"{counts.refused} refused",
            soft_wrap=True,
        )


async def _work(runner: Worker) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await runner.run(stop)


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
    """List the workers of the store: state, slots in use, last heartbeat, tasks done/failed.

    A worker silent for over 45 seconds that did not say it stopped is shown as lost.
    """
    now = time.time()
    with open_app() as app:
        if forget_s is not None:
            app.store.forget_workers(now - forget_s)
        found = app.store.list_workers()
    if as_json:
        click.echo(json_text([_worker_json(record, now) for record in found]))
        return
    if not found:
        cli.err.print("no workers have registered with this store")
        return
    header = ("worker", "state", "slots", "queues", "offers", "heartbeat", "done", "failed")
    print_rows(cli.out, header, [_worker_row(record, now) for record in found])


def worker_state(record: WorkerRecord, now: float) -> str:
    """What the worker said, unless it fell silent: then ``lost``."""
    if record.state != "stopped" and now - record.heartbeat_at > LOST_AFTER_S:
        return "lost"
    return record.state


def _worker_json(record: WorkerRecord, now: float) -> dict[str, Any]:
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
