"""Commands for event-step projects: ``dev``, ``steps list|activate|deactivate``, ``flows``,
``lock``, and the in-process delivery behind ``emit``."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from wayang.app import App
from wayang.cli.context import CliContext, pass_cli
from wayang.cli.driver import json_text, open_app
from wayang.cli.render import print_diagnostics
from wayang.cli.run_render import clock, print_rows
from wayang.errors import DefinitionError, Diagnostic, Severity, UsageError
from wayang.runtime.owner import new_owner_id, owner_is_gone
from wayang.store.port import LogLine

if TYPE_CHECKING:
    import uvicorn

    from wayang.steps.registry import FlowGraph, StepRegistry
    from wayang.steps.runtime import Finished
    from wayang.steps.service import StepsProject, StepsServer

# The steps package (pydantic schemas, the ASGI app, Redis) is imported by the commands that use
# it, not when the CLI starts: every other command would pay for it.
DEV_SERVERS = "dev-servers"
"""Per environment, the ``wayang dev`` serving it: ``{"url", "owner"}``."""

_project_option = click.option(
    "--project",
    "project_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The project folder (default: found from the current folder).",
)


@contextlib.contextmanager
def open_steps(app: App, project_dir: Path | None) -> Iterator[StepsProject]:
    from wayang.steps.project import load_project  # noqa: PLC0415 - see DEV_SERVERS
    from wayang.steps.service import StepsProject  # noqa: PLC0415

    steps = StepsProject(load_project(project_dir), app.store)
    try:
        yield steps
    finally:
        steps.close()


def _loaded(cli: CliContext, steps: StepsProject, *, strict: bool = False) -> StepRegistry:
    """Load the project's steps and print what is wrong; with ``strict``, errors stop here."""
    registry = steps.load()
    if strict and registry.errors:
        raise DefinitionError(registry.diagnostics)  # the top level prints them, once
    print_load_problems(cli, registry.diagnostics)
    if not registry.steps and not registry.errors:
        raise no_step_files(steps.project.config.steps.folders, steps.root)
    return registry


def no_step_files(folders: Sequence[str], root: Path | str) -> UsageError:
    """What a project without step files is told (here, and through a server)."""
    return UsageError(
        f"no step files (*.step.py, *_step.py) under {', '.join(folders)} in {root}; "
        "'wayang init --template steps DIR' makes a project to start from"
    )


def print_load_problems(cli: CliContext, diagnostics: Sequence[Diagnostic]) -> None:
    """What loading the step files found wrong, on stderr, before what the command prints."""
    if diagnostics:
        print_diagnostics(cli.err, diagnostics)


def exit_if_errors(diagnostics: Sequence[Diagnostic]) -> None:
    """Exit 2, as for any bad input, when a step file could not be loaded."""
    if any(d.severity is Severity.ERROR for d in diagnostics):
        raise click.exceptions.Exit(2)


# ------------------------------------------------------------------------------ dev


@click.command("dev")
@_project_option
@click.option("--host", default=None, help="Interface to serve API steps on [127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port [3000].")
@click.option("--no-reload", is_flag=True, help="Do not reload step files when they change.")
@pass_cli
def dev(
    cli: CliContext, project_dir: Path | None, host: str | None, port: int | None, no_reload: bool
) -> None:
    """Run a steps project: API steps over HTTP, cron steps, deliveries, live reload.

    Every delivery is durable (retries, dead letters, traces); stop with Ctrl-C and start again
    to carry on where it stopped.
    """
    with open_app() as app, open_steps(app, project_dir) as steps:
        _loaded(cli, steps)
        config = steps.project.config.dev
        asyncio.run(_serve(cli, steps, host or config.host, config.port if port is None else port,
                           reload=not no_reload))  # fmt: skip


async def _serve(
    cli: CliContext, steps: StepsProject, host: str, port: int, *, reload: bool
) -> None:
    import uvicorn  # noqa: PLC0415 - only the dev server pays for importing it

    from wayang.steps.service import StepsServer  # noqa: PLC0415 - see DEV_SERVERS

    log = _LiveLog(cli)
    owner = new_owner_id()
    async with StepsServer(steps, owner=owner, on_finished=log.finished, on_log=log.line) as server:
        config = uvicorn.Config(
            server.http, host=host, port=port, log_level="warning", lifespan="off", access_log=False
        )
        http = _dev_http(config)
        watcher = asyncio.create_task(_watch(cli, steps, server)) if reload else None
        url = f"http://{host}:{port}"
        steps.store.kv_set(DEV_SERVERS, steps.env, {"url": url, "owner": owner})
        cli.out.print(_banner(steps.registry, url), soft_wrap=True, markup=False)
        try:
            await http.serve()
        finally:
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            with contextlib.suppress(Exception):
                steps.store.kv_delete(DEV_SERVERS, steps.env)


def _dev_http(config: uvicorn.Config) -> uvicorn.Server:
    """uvicorn's server, except that Ctrl-C or SIGTERM only stops it.

    uvicorn raises the signal again once it has stopped, which for SIGTERM kills the process
    before the runtime is closed and the dev-server entry removed; here ``wayang dev`` finishes
    its shutdown and exits 0.
    """
    import uvicorn  # noqa: PLC0415 - only the dev server pays for importing it

    class DevServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            stops = (signal.SIGINT, signal.SIGTERM)
            saved = {sig: signal.signal(sig, self.handle_exit) for sig in stops}
            try:
                yield
            finally:
                for sig, handler in saved.items():
                    signal.signal(sig, handler)

    return DevServer(config)


def _banner(registry: StepRegistry, url: str) -> str:
    kinds: dict[str, int] = {}
    for step in registry.steps.values():
        kinds[step.type] = kinds.get(step.type, 0) + 1
    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    flows = len(registry.flows())
    return (
        f"wayang dev: {len(registry.steps)} steps ({counts}) in {flows} flow"
        f"{'s' if flows != 1 else ''}; API steps on {url}; Ctrl-C stops"
    )


async def _watch(cli: CliContext, steps: StepsProject, server: StepsServer) -> None:
    from watchfiles import awatch  # noqa: PLC0415 - only dev mode pays for importing it

    folders = [
        steps.root / f for f in steps.project.config.steps.folders if (steps.root / f).is_dir()
    ]
    if not folders:
        return
    async for changes in awatch(*folders, debounce=200, step=50):
        changed = [Path(path) for _, path in changes if path.endswith(".py")]
        if not changed:
            continue
        registry = steps.reload(changed)
        server.swap(registry)
        if registry.diagnostics:
            print_diagnostics(cli.err, registry.diagnostics)
        names = ", ".join(sorted({p.name for p in changed}))
        cli.out.print(f"{clock(time.time())} reloaded {names}: {len(registry.steps)} steps",
                      soft_wrap=True, markup=False)  # fmt: skip


class _LiveLog:
    """The compact live log of ``wayang dev``: one line per delivery and per log line."""

    def __init__(self, cli: CliContext) -> None:
        self.cli = cli

    def finished(self, done: Finished) -> None:
        d = done.delivery
        mark = {"succeeded": "ok", "retry": "retry", "dead": "DEAD"}[done.status]
        error = f": {done.error}" if done.error else ""
        text = (
            f"{clock(time.time())} {d.trace_id[-8:]} {d.step} <- {d.topic} "
            f"[{mark}] {done.duration_s * 1000:.1f}ms{error}"
        )
        self.cli.out.print(escape(text), soft_wrap=True)

    def line(self, line: LogLine) -> None:
        text = f"{clock(line.at)} {line.run_id[-8:]} {line.step_id} {line.stream} | {line.line}"
        self.cli.out.print(escape(text), soft_wrap=True)


# ------------------------------------------------------------------------------ steps, flows, lock


@click.group("steps")
def steps_group() -> None:
    """The project's step registry: list steps, activate and deactivate them."""


@steps_group.command("list")
@_project_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array for scripts.")
@pass_cli
def steps_list(cli: CliContext, project_dir: Path | None, as_json: bool) -> None:
    """List the project's steps: name, type, trigger or topics, flows, active.

    Step files with errors are reported on stderr, the rest still listed; the exit status is
    then 2, as for any bad input.
    """
    with open_app() as app, open_steps(app, project_dir) as steps:
        registry = _loaded(cli, steps)
    show_steps(cli, [_step_row(registry, name) for name in sorted(registry.steps)], as_json)
    exit_if_errors(registry.diagnostics)


def show_steps(cli: CliContext, rows: Sequence[Sequence[Any]], as_json: bool) -> None:
    """What ``wayang steps list`` prints: a row per step (name, type, trigger, emits, flows,
    active, file)."""
    if as_json:
        keys = ("name", "type", "trigger", "emits", "flows", "active", "file")
        click.echo(json_text([dict(zip(keys, row, strict=True)) for row in rows]))
    else:
        header = ("step", "type", "trigger", "emits", "flows", "active", "file")
        print_rows(cli.out, header, [[str(c) if not isinstance(c, list) else ", ".join(c)
                                      for c in r] for r in rows])  # fmt: skip


def _step_row(registry: StepRegistry, name: str) -> list[Any]:
    step = registry.steps[name]
    trigger = {
        "api": f"{step.method} {step.path}",
        "cron": step.cron,
        "event": ", ".join(step.subscribes),
        "noop": "-",
    }[step.type]
    return [
        name,
        step.type,
        trigger,
        list(step.emit_topics),
        list(step.flows),
        registry.is_active(name),
        str(step.where),
    ]


def _activation(active: bool) -> click.Command:
    verb = "activate" if active else "deactivate"
    doc = (
        "Activate NAME: it receives messages again, including those held while it was off."
        if active
        else "Deactivate NAME: it receives nothing; messages published meanwhile are not "
        "delivered to it, and deliveries already due wait until it is active again."
    )

    @click.command(verb, help=doc)
    @click.argument("name")
    @_project_option
    @pass_cli
    def command(cli: CliContext, name: str, project_dir: Path | None) -> None:
        with open_app() as app, open_steps(app, project_dir) as steps:
            steps.load()
            found = steps.set_active(name, active)
        cli.out.print(f"{found}: {verb}d (environment {steps.env})", soft_wrap=True, markup=False)

    return command


steps_group.add_command(_activation(True))
steps_group.add_command(_activation(False))


@click.command("flows")
@_project_option
@click.option("--json", "as_json", is_flag=True, help="Nodes and edges of every flow, as JSON.")
@pass_cli
def flows(cli: CliContext, project_dir: Path | None, as_json: bool) -> None:
    """List the project's flows with their steps and the topics between them."""
    with open_app() as app, open_steps(app, project_dir) as steps:
        registry = _loaded(cli, steps)
    show_flows(cli, list(registry.flows().values()), as_json)


def show_flows(cli: CliContext, graphs: Sequence[FlowGraph], as_json: bool) -> None:
    """What ``wayang flows`` prints: each flow as text, or all of them as JSON."""
    if as_json:
        click.echo(json_text([graph.to_dict() for graph in graphs]))
        return
    if not graphs:
        cli.err.print("no flows: give steps a 'flows' list to group them", soft_wrap=True)
    for graph in graphs:
        cli.out.print(escape(graph.to_text()), soft_wrap=True)


@click.command("lock")
@_project_option
@click.option("--check", is_flag=True, help="Only compare with wayang.lock; exit 1 on a change.")
@pass_cli
def lock(cli: CliContext, project_dir: Path | None, check: bool) -> None:
    """Write wayang.lock: the resolved step registry (names, file hashes, topics).

    Production loads exactly what was tested: 'wayang lock --check' reports every change.
    """
    with open_app() as app, open_steps(app, project_dir) as steps:
        registry = _loaded(cli, steps, strict=True)
        if check:
            from wayang.steps.lock import check_lock  # noqa: PLC0415 - see DEV_SERVERS

            changes = check_lock(registry, steps.root)
            for change in changes:
                cli.out.print(escape(change), soft_wrap=True)
            if changes:
                raise click.exceptions.Exit(1)
            cli.out.print("wayang.lock matches the steps", soft_wrap=True)
            return
        from wayang.steps.lock import write_lock  # noqa: PLC0415 - see DEV_SERVERS

        path = write_lock(registry, steps.root)
    cli.out.print(f"wrote {path} ({len(registry.steps)} steps)", soft_wrap=True, markup=False)


# ------------------------------------------------------------------------------ emit, in process


def dev_server_running(app: App, env: str) -> str | None:
    """The URL of a live ``wayang dev`` serving ``env`` over this store, or None."""
    found = app.store.kv_get(DEV_SERVERS, env)
    if not isinstance(found, dict) or owner_is_gone(str(found.get("owner", ""))):
        return None
    return str(found.get("url", ""))


def deliver_in_process(
    cli: CliContext, app: App, project_dir: Path | None, timeout_s: float, *, quiet: bool = False
) -> bool:
    """Run the project's deliveries here until nothing is left to do; False if no project."""
    from wayang.steps.project import load_project  # noqa: PLC0415 - see DEV_SERVERS
    from wayang.steps.service import StepsProject, StepsServer  # noqa: PLC0415

    project = load_project(project_dir)
    steps = StepsProject(project, app.store)
    try:
        registry = steps.load()
        if not registry.steps:
            return False
        if registry.diagnostics:
            print_diagnostics(cli.err, registry.diagnostics)
        log = _LiveLog(cli)
        shown = {} if quiet else {"on_finished": log.finished, "on_log": log.line}

        async def go() -> bool:
            server = StepsServer(steps, owner=new_owner_id(), **shown)  # type: ignore[arg-type]
            async with server:
                return await server.runtime.settle(timeout_s)

        if not asyncio.run(go()):
            cli.err.print(f"deliveries still running after {timeout_s:g}s; 'wayang dev' carries "
                          "them on", soft_wrap=True)  # fmt: skip
        return True
    finally:
        steps.close()


COMMANDS = (dev, steps_group, flows, lock)
