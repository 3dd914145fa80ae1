"""``wayang workspace``: list, show, enter, clean and refresh runs' workspaces.

The commands read the workspaces on this machine (under ``$WAYANG_WORKSPACES``, else the
``root`` of ``[workspaces]`` in ``wayang.toml``, else ``$XDG_DATA_HOME/wayang/workspaces``), of
the repository around the current folder, or with ``--all`` (or outside any repository) of
every repository. The store, when there is one, says whether a workspace's run still goes; a
workspace in use is never cleaned (the rule: :mod:`wayang.runtime.workspace_retention`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from wayang.app import App, Settings
from wayang.cli.context import CliContext, pass_cli
from wayang.cli.driver import STORE_KEY, json_text
from wayang.cli.run_render import print_rows
from wayang.cli.runs import duration_option
from wayang.cli.workspace_shell import launch_of, run_shell
from wayang.cli.workspace_views import (
    HEADER,
    cleaning_json,
    print_cleaning,
    row_cells,
    row_json,
    show_json,
    show_lines,
)
from wayang.engine import events as ev
from wayang.errors import UsageError, WayangError
from wayang.runtime.workspace_retention import (
    MAKING_GRACE_S,
    Busy,
    Cleaning,
    busy_rule,
    clean_by_policy,
    manager_of,
    namespaces_under,
    remove_workspaces,
    run_activity,
    run_started,
)
from wayang.runtime.workspaces import manager_for
from wayang.steps.project import load_project
from wayang.store.port import RunRecord, Store
from wayang.store.urls import MEMORY, is_postgres_url, sqlite_path
from wayang.workspace.backend import find_repository
from wayang.workspace.errors import WorkspaceNotFoundError
from wayang.workspace.manager import (
    REPOSITORY_FILE,
    WorkspaceInfo,
    WorkspaceManager,
    check_workspace_id,
    info_of,
    list_namespace,
    namespace_name,
)
from wayang.workspace.retention import Removal, by_request
from wayang.workspace.settings import WorkspaceSettings, workspaces_root

CLEAN_STATUSES = ("finished", "failed", "cancelled", "ready", "incomplete")
ALL_HELP = "Every repository's workspaces, not only this one's."


@click.group("workspace")
def workspace() -> None:
    """Runs' isolated workspaces: list, show, shell, clean, sync-tools.

    Each run of a workflow in a git or Jujutsu repository works in its own checkout outside
    the repository; its id is the run's id unless the run was given --workspace-id.
    """


# ------------------------------------------------------------------------------ where we are


@dataclass(frozen=True)
class Place:
    """The project settings, workspaces root and repository of the current folder."""

    settings: WorkspaceSettings
    root: Path
    repository: Path | None

    def namespaces(self, everything: bool) -> list[Path]:
        if everything or self.repository is None:
            return namespaces_under(self.root)
        return [self.root / namespace_name(self.repository)]

    def rows(self, everything: bool) -> list[WorkspaceInfo]:
        return [row for ns in self.namespaces(everything) for row in list_namespace(ns)]

    def describe(self, everything: bool) -> str:
        if everything or self.repository is None:
            return f"under {self.root}"
        return f"of {self.repository} under {self.root}"


def here() -> Place:
    """Where the command runs: a workspace counts as the repository it checks out."""
    cwd = Path.cwd()
    settings = load_project(cwd).config.workspaces
    root = workspaces_root(settings, os.environ)
    found = find_repository(cwd)
    if found is not None and found.is_relative_to(root):
        namespace = root / found.relative_to(root).parts[0]
        found = _repository_of(namespace)
    return Place(settings, root, found)


def _repository_of(namespace: Path) -> Path | None:
    """The repository a namespace folder holds workspaces of (None if it does not say)."""
    text = _repository_text(namespace)
    return Path(text) if text else None


def _repository_text(namespace: Path) -> str:
    try:
        return (namespace / REPOSITORY_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


@contextlib.contextmanager
def session() -> Iterator[tuple[App, Store | None]]:
    """The app of ``--store``, and its store if it exists (a missing store knows no run)."""
    store_option = click.get_current_context().meta.get(STORE_KEY)
    app = App(Settings.from_environment(store_option if isinstance(store_option, str) else None))
    try:
        yield app, _existing_store(app)
    finally:
        app.close()


def _existing_store(app: App) -> Store | None:
    location = app.settings.store
    try:
        if not is_postgres_url(location):
            path = sqlite_path(location)
            if path == MEMORY or not Path(path).expanduser().is_file():
                return None
        return app.store
    except WayangError:  # unreadable or unreachable: what it knows is unknown
        return None


# ------------------------------------------------------------------------------ one workspace


@dataclass(frozen=True)
class Target:
    """A workspace named on the command line, and its run when the store knows it."""

    info: WorkspaceInfo
    manager: WorkspaceManager
    run_id: str  # "" when no run is known
    started: ev.RunStarted | None
    record: RunRecord | None


def resolve(place: Place, store: Store | None, name: str) -> Target:
    """The workspace ``name``, or the workspace of the run ``name``."""
    check_workspace_id(name)
    started = run_started(store, name) if store is not None else None
    if started is not None and started.workspace:
        manager = manager_for(started.workspace)
        path = manager.path_of(started.workspace.get("id") or name)
        if path.is_dir():
            info = info_of(path, str(manager.repository))
            return Target(info, manager, name, started, _record(store, name))
    info = _find(place, name)
    run_id = info.meta.run_id if info.meta is not None else ""
    started = run_started(store, run_id) if store is not None and run_id else None
    if started is not None and started.workspace:
        manager = manager_for(started.workspace)
    else:
        manager = manager_of(info, _project_settings(place, info))
    return Target(info, manager, run_id, started, _record(store, run_id))


def _record(store: Store | None, run_id: str) -> RunRecord | None:
    return store.get_run(run_id) if store is not None and run_id else None


def _find(place: Place, name: str) -> WorkspaceInfo:
    found = [ns / name for ns in place.namespaces(False) if (ns / name).is_dir()]
    if not found and place.repository is not None:
        found = [ns / name for ns in place.namespaces(True) if (ns / name).is_dir()]
    if not found:
        raise WorkspaceNotFoundError(
            f"no workspace {name!r} {place.describe(False)}; 'wayang workspace list' shows "
            "them (--all: every repository's)"
        )
    if len(found) > 1:
        where = ", ".join(str(path) for path in found)
        raise UsageError(
            f"{name!r} names workspaces of several repositories ({where}); "
            "run the command inside the repository of the one you mean"
        )
    (path,) = found
    return info_of(path, _repository_text(path.parent))


def _project_settings(place: Place, info: WorkspaceInfo) -> WorkspaceSettings:
    """The ``[workspaces]`` settings of the workspace's repository (for its tool paths)."""
    repository = Path(info.repository) if info.repository else None
    if repository is None or repository == place.repository or not repository.is_dir():
        return place.settings
    try:
        return load_project(repository).config.workspaces
    except WayangError:
        return place.settings


def require_complete(target: Target) -> None:
    if not target.info.complete:
        name = target.info.id
        raise UsageError(
            f"workspace {name} is half made (its maker died, or is still making it); "
            f"remove it with 'wayang workspace clean {name}'"
        )


# ------------------------------------------------------------------------------ list and show


@workspace.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array for scripts.")
@click.option("--all", "everything", is_flag=True, help=ALL_HELP)
@pass_cli
def list_command(cli: CliContext, as_json: bool, everything: bool) -> None:
    """List the workspaces of this repository, oldest first."""
    place = here()
    rows = place.rows(everything)
    now = time.time()
    if as_json:
        click.echo(json_text([row_json(row, now) for row in rows]))
    elif rows:
        print_rows(cli.out, HEADER, [row_cells(row, now) for row in rows])
    else:
        cli.err.print(f"no workspaces {place.describe(everything)}", markup=False)


@workspace.command("show")
@click.argument("workspace_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object for scripts.")
@pass_cli
def show(cli: CliContext, workspace_id: str, as_json: bool) -> None:
    """Show workspace ID (or the workspace of run ID): its metadata, disk use, tool files and
    whether its run still goes."""
    place = here()
    with session() as (_app, store):
        target = resolve(place, store, workspace_id)
    data = show_json(target.info, target.record, time.time())
    if as_json:
        click.echo(json_text(data))
        return
    for line in show_lines(data, target.run_id):
        cli.out.print(line, markup=False, soft_wrap=True)


@workspace.command("shell")
@click.argument("workspace_id", metavar="ID")
@click.option("--command", "-c", metavar="CMD", help="Run 'sh -c CMD' there instead of a shell.")
def shell(workspace_id: str, command: str | None) -> None:
    """Open $SHELL in workspace ID (or in the workspace of run ID, running or not), in the
    run's folder and with its environment (WAYANG_WORKSPACE, WAYANG_WORKSPACE_ID,
    WAYANG_RUN_ID, the run's --env), through direnv when the workspace allows it. Exits with
    the shell's status."""
    place = here()
    with session() as (_app, store):
        target = resolve(place, store, workspace_id)
    require_complete(target)
    launch = launch_of(target.info, target.manager.repository, target.run_id, target.started)
    raise click.exceptions.Exit(run_shell(launch, command))


# ------------------------------------------------------------------------------ clean


def clean_one(target: Target, busy: Busy, force: bool) -> list[Removal]:
    info = target.info
    if busy(info) and not force:
        if target.run_id and target.record is not None:
            why = f"its run {target.run_id} is {target.record.status}; 'wayang cancel "
            why += f"{target.run_id}' stops it"
        else:
            why = f"it is being made (less than {MAKING_GRACE_S / 60:.0f} minutes old)"
        raise UsageError(f"workspace {info.id} is in use: {why}; --force removes it anyway")
    return [Removal(info, "asked by id")]


def clean_matching(
    rows: Sequence[WorkspaceInfo],
    now: float,
    older_than: float | None,
    status: str | None,
    busy: Busy,
) -> list[Removal]:
    if status != "incomplete":
        return by_request(rows, now, older_than=older_than, status=status, busy=busy)
    half_made = [row for row in rows if not row.complete]
    chosen = by_request(half_made, now, older_than=older_than, status=None, busy=busy)
    return [Removal(item.info, f"incomplete, {item.reason}") for item in chosen]


def check_clean_options(
    workspace_id: str | None, asked: bool, everything: bool, force: bool
) -> None:
    if workspace_id is not None and (asked or everything):
        raise UsageError("clean ID removes that workspace: drop --older-than, --status and --all")
    if force and workspace_id is None:
        raise UsageError("--force is for removing one workspace by id: wayang workspace clean ID")


@workspace.command("clean")
@click.argument("workspace_id", metavar="[ID]", required=False)
@click.option("--older-than", metavar="DURATION", help="Only workspaces untouched this long.")
@click.option("--status", type=click.Choice(CLEAN_STATUSES), help="Only with this status.")
@click.option("--all", "everything", is_flag=True, help=ALL_HELP)
@click.option("--force", is_flag=True, help="Remove workspace ID even if its run still goes.")
@click.option("--dry-run", is_flag=True, help="Print what would be removed; remove nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object for scripts.")
@pass_cli
def clean(
    cli: CliContext,
    *,
    workspace_id: str | None,
    older_than: str | None,
    status: str | None,
    everything: bool,
    force: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Remove workspace ID; or those --older-than and/or with --status; or, with neither, what
    the project's [workspaces.retention] policy says, unused tool bundles and expired
    artifacts. Workspaces in use (their run still goes, or being made) are kept."""
    check_clean_options(workspace_id, bool(older_than or status), everything, force)
    age = duration_option(older_than, "--older-than")
    place = here()
    now = time.time()
    with session() as (app, store):
        busy = busy_rule(run_activity(store), now)
        if workspace_id is not None:
            cleaning = Cleaning()
            chosen = clean_one(resolve(place, store, workspace_id), busy, force)
            remove_workspaces(chosen, cleaning, dry_run=dry_run, store=store, now=now)
        elif age is not None or status is not None:
            cleaning = Cleaning()
            chosen = clean_matching(place.rows(everything), now, age, status, busy)
            remove_workspaces(chosen, cleaning, dry_run=dry_run, store=store, now=now)
        else:
            policy = place.settings.retention
            cleaning = clean_by_policy(
                place.namespaces(everything),
                lambda _ns, _rows: policy,
                now,
                busy=busy,
                artifacts_root=app.artifacts_root,
                dry_run=dry_run,
                store=store,
            )
    if as_json:
        click.echo(json_text(cleaning_json(cleaning, dry_run)))
    else:
        print_cleaning(cli, cleaning, dry_run)
    if cleaning.failed:
        raise click.exceptions.Exit(1)


# ------------------------------------------------------------------------------ sync-tools


@workspace.command("sync-tools")
@click.argument("workspace_id", metavar="ID")
@pass_cli
def sync_tools(cli: CliContext, workspace_id: str) -> None:
    """Bring workspace ID's tool bundle (.agent-tools) up to date with the repository's
    scripts, rules and agents.just (the [workspaces] tools)."""
    place = here()
    with session() as (_app, store):
        target = resolve(place, store, workspace_id)
    require_complete(target)
    event = target.manager.sync_tools(target.info.id)
    if event is None:
        cli.out.print(f"workspace {target.info.id}: tooling already up to date", markup=False)
    else:
        line = f"workspace {target.info.id}: tooling synced: {event.detail}"
        cli.out.print(line, markup=False, soft_wrap=True)
