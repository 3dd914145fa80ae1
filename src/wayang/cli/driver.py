"""Driving one run in this process: an engine, a progress view, and what signals do.

While a run is driven, the first Ctrl-C (SIGINT) cancels it and keeps waiting for the cancel to
be recorded; a second one stops driving at once, leaving the run resumable. SIGTERM stops at once
too: a process being shut down is not a user giving up on the run. Stopping closes the engine,
which stops the steps it runs and hands the run back, so ``wayang resume`` can take it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import signal
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import click

from wayang.app import App, Settings
from wayang.cli.context import CliContext
from wayang.cli.progress import Progress, progress_for
from wayang.cli.run_render import run_json
from wayang.engine.runplan import RunPlan
from wayang.engine.state import RunState, RunStatus
from wayang.runtime.cpus import CpuPin, parse_cpus
from wayang.runtime.engine import Engine
from wayang.runtime.names import CANCEL_REQUESTS, RunBusyError
from wayang.runtime.operations import load_run, needs_adoption, request_cancel

STORE_KEY = "wayang.store"
"""Where the root group leaves ``--store`` in ``click.Context.meta`` for the commands."""

INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
TERMINATED = 143  # 128 + SIGTERM
CANCEL_WAIT_S = 10.0
POLL_S = 0.2

Begin = Callable[[Engine], Awaitable[asyncio.Future[RunState]]]
"""Starts or adopts the run on the engine; returns the future of its final state."""


@contextlib.contextmanager
def open_app(cpu_pin: CpuPin | None = None) -> Iterator[App]:
    """The process's :class:`App`, over the store named by ``--store`` (or its defaults);
    ``cpu_pin``: the process was pinned to CPUs (:func:`pin_to`)."""
    store = click.get_current_context().meta.get(STORE_KEY)
    app = App(replace(Settings.from_environment(store), cpu_pin=cpu_pin))
    try:
        yield app
    finally:
        app.close()


def freeze_startup_heap() -> None:
    """Before a long-lived process (a server, a worker) starts its work: collect, then move
    what start-up made (modules, schemas, the store) out of the garbage collector's sight. It
    lives as long as the process, yet every full collection walked it again; an engine
    starting 1,000 runs ran 12-18% faster without (docs/performance.md)."""
    gc.collect()
    gc.freeze()


FULL_COLLECTION_AFTER = 100
"""Collections of the collector's middle generation between two looks at a full collection
(CPython's default: 10)."""


def defer_full_collections() -> None:
    """Before an engine drives runs: look at a full collection ten times less often. An
    engine's heap grows with the runs it drives (a wide run's plan and states), nearly all of
    it alive and free of cycles, and each full collection walks all of it: a fanout of 20,000
    steps spent 2.1 s of its 4.4 in 21 full collections that freed nothing, and ran 35-45%
    faster with this (docs/performance.md, session 16). Young objects are collected as
    before."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_AFTER)


CPUS_HELP = (
    "Pin this process to these CPUs (e.g. 0, 2-3): its threads hand work to one another "
    "faster on one CPU. Shell steps still get all the CPUs; Python steps' own threads and "
    "subprocesses do not (docs/workers.md, 'Pinning a process to CPUs')."
)


def cpus_option(more: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--cpus LIST`` option of the commands that may pin their process (:func:`pin_to`);
    ``more``: what it means for that command besides."""
    return click.option("--cpus", default=None, metavar="LIST", help=CPUS_HELP + more)


def pin_to(cpus: str | None) -> CpuPin | None:
    """Pin the process to ``cpus`` (``--cpus``); call it before anything starts a thread."""
    return CpuPin.apply(parse_cpus(cpus)) if cpus else None


@dataclass(frozen=True)
class Ending:
    """How driving ended: the run's final state, or its durable state when ``stopped_by`` a
    signal before the end; ``interrupted`` when Ctrl-C asked for the cancel."""

    state: RunState
    stopped_by: str | None = None
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        if self.stopped_by is not None:
            return TERMINATED if self.stopped_by == "terminated" else INTERRUPTED
        return exit_code(self.state.status, self.interrupted)


def exit_code(status: RunStatus, interrupted: bool = False) -> int:
    """0 for a run that succeeded; 130 for one cancelled by Ctrl-C here; 1 otherwise."""
    if status is RunStatus.SUCCEEDED:
        return 0
    return INTERRUPTED if interrupted and status is RunStatus.CANCELLED else 1


class Signals:
    """What SIGINT and SIGTERM do while a run is driven or followed (see the module docstring):
    ``cancel(run_id, reason)`` cancels the run; ``goes_on`` says what becomes of it when this
    process stops at once."""

    def __init__(self, progress: Progress, goes_on: str) -> None:
        self.progress = progress
        self.goes_on = goes_on
        self.cancel: Callable[[str, str], object] | None = None
        self.interrupted = False
        self.stopped: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def interrupt(self) -> None:
        if self.interrupted or self.cancel is None:
            self.stop("interrupted again")
            return
        self.interrupted = True
        self.cancel(self.progress.run_id, "interrupted")
        self.progress.note(
            f"interrupted: cancelling the run; press Ctrl-C again to stop at once ({self.goes_on})"
        )

    def terminate(self) -> None:
        self.stop("terminated")

    def stop(self, why: str) -> None:
        if self.stopped.done():
            return
        self.stopped.set_result("terminated" if why == "terminated" else "interrupted")
        run_id = self.progress.run_id
        self.progress.note(f"{why}: stopping now; {self.after_stop(run_id)}")

    def after_stop(self, run_id: str) -> str:
        return f"'wayang resume {run_id}' continues the run"

    def ending(self, state: RunState) -> Ending:
        """How it ended when the signals stopped it, or left ``state`` (the final one) alone."""
        if self.stopped.done():
            return Ending(state, stopped_by=self.stopped.result())
        return Ending(state, interrupted=self.interrupted)


class RemoteSignals(Signals):
    """:class:`Signals` of a run followed through a server: stopping leaves it to the server."""

    def after_stop(self, run_id: str) -> str:
        return f"the server carries the run on ('wayang logs {run_id} --follow' follows it)"


@contextlib.contextmanager
def handlers(loop: asyncio.AbstractEventLoop, signals: Signals) -> Iterator[None]:
    installed = []
    for number, handler in (
        (signal.SIGINT, signals.interrupt),
        (signal.SIGTERM, signals.terminate),
    ):
        # Only the main thread may handle signals; elsewhere the defaults stay.
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(number, handler)
            installed.append(number)
    try:
        yield
    finally:
        for number in installed:
            loop.remove_signal_handler(number)


async def drive(app: App, progress: Progress, begin: Begin) -> Ending:
    """Start or adopt a run (``begin``) on a new engine and wait for its end or a signal."""
    loop = asyncio.get_running_loop()
    signals = Signals(progress, "the run stays resumable")
    with handlers(loop, signals):
        async with app.engine(on_events=progress.on_events, on_log=progress.on_log) as engine:
            signals.cancel = engine.cancel
            done = await begin(engine)
            done.add_done_callback(_retrieve)
            async with progress.showing():
                waiting: list[asyncio.Future[Any]] = [done, signals.stopped]
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            final = done.result() if done.done() else None  # raises if the run was lost
    if final is not None:
        return Ending(final, interrupted=signals.interrupted)
    return Ending(progress.state, stopped_by=signals.stopped.result())


def _retrieve(future: asyncio.Future[RunState]) -> None:
    # A run the engine drops on close fails its future; nobody waits for it then.
    if not future.cancelled():
        future.exception()


def drive_and_report(
    cli: CliContext,
    app: App,
    begin: Begin,
    plan: RunPlan,
    state: RunState,
    *,
    as_json: bool,
    mode: str = "auto",
) -> int:
    """Drive with run-like output (progress, then a summary or one JSON object); the exit code."""
    progress = progress_for("json" if as_json else mode, plan, state, cli.out, cli.err)
    defer_full_collections()
    ending = asyncio.run(drive(app, progress, begin))
    still = f"'wayang resume {state.run_id}' continues it"
    return report_ending(cli, progress, ending, plan.order, as_json=as_json, still=still)


def report_ending(
    cli: CliContext,
    progress: Progress,
    ending: Ending,
    order: Sequence[str],
    *,
    as_json: bool,
    still: str,
) -> int:
    """A summary or one JSON object for the run's end (``still``: what to do when it has not
    ended); the exit code."""
    if as_json:
        click.echo(json_text(run_json(ending.state, order)))
    elif ending.stopped_by is None:
        progress.finish(ending.state)
    else:
        cli.err.print(
            f"run {ending.state.run_id} is still {ending.state.status.value}; {still}",
            soft_wrap=True,
            markup=False,
        )
    return ending.exit_code


def json_text(data: object) -> str:
    return json.dumps(data, indent=2, default=str)


# ------------------------------------------------------------------------------ cancelling


async def cancel(app: App, run_id: str, reason: str) -> RunState | None:
    """Cancel ``run_id`` and wait for its end; None if its engine did not end it in time.

    The request is left in the store for the engine driving the run; when nobody drives it (or
    its driver dies while we wait), this process adopts the run to cancel it itself.
    """
    store = app.store
    record = request_cancel(store, run_id, reason)
    deadline = time.monotonic() + CANCEL_WAIT_S
    while True:
        if needs_adoption(record, time.time()):
            with contextlib.suppress(RunBusyError):
                return await _adopt_to_cancel(app, run_id, reason)
        view = load_run(store, run_id)
        if view.state.finished:
            return view.state
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(POLL_S)
        record = view.record


async def _adopt_to_cancel(app: App, run_id: str, reason: str) -> RunState:
    async with app.engine() as engine:
        done = await engine.adopt(run_id, cancel=reason)
        state = await done
    app.store.kv_delete(CANCEL_REQUESTS, run_id)  # answered here, not by the engine's poll
    return state
