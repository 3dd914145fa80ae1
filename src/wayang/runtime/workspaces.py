"""A run's own workspace: planned when the run is prepared, made before its first task runs,
and closed when it ends (status, artifacts).

The plan is pinned in the run's first event (``RunStarted.workspace``): the repository, the
change resolved at submission (so a queued run does not drift with HEAD), the id (the run's
own unless ``--workspace-id``), the folder of the workflow inside the repository, and the
manager's settings. Making the workspace is idempotent (``ensure_workspace`` reuses a finished
one and replaces a half-made one), so an engine that adopts a run after a crash just asks
again. What happened goes to the run's history (``WorkspaceNoted``) and its log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from wayang.engine import events as ev
from wayang.engine.state import RunState, RunStatus, fold
from wayang.errors import UsageError
from wayang.runtime.operations import RunRequest
from wayang.runtime.records import read_events, to_new_event
from wayang.store.port import Append, ConcurrencyError, LogLine, Store
from wayang.workspace.artifacts import ArtifactDeclaration, ArtifactManifest, collect_artifacts
from wayang.workspace.backend import find_repository
from wayang.workspace.errors import WorkspaceError
from wayang.workspace.manager import (
    Workspace,
    WorkspaceEvent,
    WorkspaceManager,
    check_workspace_id,
    make_backend,
)
from wayang.workspace.settings import (
    RetentionSettings,
    WorkspaceSettings,
    workspace_mode,
    workspaces_root,
)

log = logging.getLogger("wayang.workspace")

_END_STATUS = {
    RunStatus.SUCCEEDED: "finished",
    RunStatus.FAILED: "failed",
    RunStatus.CANCELLED: "cancelled",
}


def plan_run_workspace(
    folder: Path,
    settings: WorkspaceSettings,
    environ: Mapping[str, str],
    *,
    workspace_id: str | None = None,
    base: str | None = None,
    uncommitted: bool | None = None,
    in_place: bool = False,
    find: Callable[[Path], Path | None] = find_repository,
) -> dict[str, Any]:
    """The ``RunStarted.workspace`` of a run of the workflow in ``folder``; ``{}`` to work in
    place (no repository, ``mode = "off"``, or ``in_place``). Raises UsageError for a bad id or
    a ``base`` that names no change."""
    asked = workspace_id is not None or base is not None or bool(uncommitted)
    if in_place:
        if asked:
            raise UsageError("--in-place runs in the workflow's folder: drop --workspace-id/--base")
        return {}
    if workspace_mode(settings, environ) == "off" and not asked:
        return {}
    repository = find(folder)
    if repository is None:
        if asked:
            raise UsageError(
                f"--workspace-id, --base and --uncommitted need a git or Jujutsu repository; "
                f"{folder} is not inside one"
            )
        return {}
    if workspace_id is not None:
        check_workspace_id(workspace_id)
    folder = folder.resolve()
    backend = make_backend(repository, settings.backend)
    try:
        resolved = backend.resolve(repository, base)
    except WorkspaceError as exc:
        raise UsageError(str(exc)) from None
    return {
        "repository": str(repository),
        "backend": backend.name,
        "id": workspace_id or "",
        "base": resolved,
        "uncommitted": settings.uncommitted if uncommitted is None else uncommitted,
        "direnv": settings.direnv,
        "subdir": folder.relative_to(repository).as_posix(),
        "root": str(workspaces_root(settings, environ)),
        "tools": list(settings.tools),
        "retention": settings.retention.model_dump(),
    }


@dataclass(frozen=True, slots=True)
class WorkspaceChoice:
    """What ``wayang run`` was told about the workspace (``--workspace-id`` and the rest)."""

    workspace_id: str | None = None
    base: str | None = None
    uncommitted: bool | None = None
    in_place: bool = False


def with_workspace(request: RunRequest, plan: dict[str, Any]) -> RunRequest:
    """``request`` working in the workspace ``plan`` describes."""
    if not plan:
        return request
    return replace(request, started=replace(request.started, workspace=plan))


def manager_for(plan: Mapping[str, Any]) -> WorkspaceManager:
    """The manager a run's workspace plan describes."""
    settings = WorkspaceSettings(
        root=str(plan["root"]),
        backend=plan.get("backend", "auto"),
        direnv=plan.get("direnv", "auto"),
        uncommitted=bool(plan.get("uncommitted")),
        tools=tuple(plan.get("tools") or ()),
        retention=RetentionSettings.model_validate(plan.get("retention") or {}),
    )
    return WorkspaceManager(Path(plan["repository"]), settings, environ={})


@dataclass(frozen=True, slots=True)
class RunFolder:
    """Where a run's tasks work, and how their commands start."""

    cwd: str
    launcher: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    workspace_id: str = ""


Note = Callable[[WorkspaceEvent, str], None]
"""``(event, step_id)``: record a lifecycle event in the run's history and log."""


class RunWorkspaces:
    """Makes and closes runs' workspaces for one engine (see the module docstring)."""

    def __init__(self, artifacts_root: Path | None = None) -> None:
        self.artifacts_root = artifacts_root
        self._ready: dict[str, asyncio.Task[RunFolder]] = {}

    async def folder(self, run_id: str, started: ev.RunStarted, note: Note) -> RunFolder:
        """The run's folder, its workspace made on first use (once, however many ask)."""
        plan = started.workspace
        if not plan:
            return RunFolder(started.cwd)
        making = self._ready.get(run_id)
        if making is None or (making.done() and making.exception() is not None):
            making = asyncio.ensure_future(self._make(run_id, started, note))
            self._ready[run_id] = making
        return await asyncio.shield(making)

    async def _make(self, run_id: str, started: ev.RunStarted, note: Note) -> RunFolder:
        plan = started.workspace
        workspace_id = plan.get("id") or run_id
        manager = manager_for(plan)
        # A subworkflow's run borrows its parent's workspace: the parent's status and run stay.
        borrowed = bool(plan.get("borrowed"))
        made = await asyncio.to_thread(
            manager.ensure_workspace,
            workspace_id,
            plan.get("base") or None,
            workflow="" if borrowed else started.workflow_id,
            command="" if borrowed else f"wayang run {started.filename}",
            run_id="" if borrowed else run_id,
        )
        for event in made.events:
            note(event, "")
        if not borrowed:
            await asyncio.to_thread(manager.update_status, workspace_id, "running")
        return _run_folder(made, plan)

    def forget(self, run_id: str) -> None:
        """This engine no longer drives the run (lost, or stopped): a copy taken up again asks
        for its workspace anew, which reuses it."""
        self._ready.pop(run_id, None)

    async def ephemeral(
        self, run_id: str, started: ev.RunStarted, step_id: str, attempt: int, note: Note
    ) -> RunFolder:
        """A fresh workspace for one attempt of one step, at the run's change."""
        plan = started.workspace
        parent = plan.get("id") or run_id
        workspace_id = f"{parent}-{step_id}-{attempt}"[:128]
        manager = manager_for(plan)
        made = await asyncio.to_thread(
            manager.ensure_workspace,
            workspace_id,
            plan.get("base") or None,
            workflow=started.workflow_id,
            command=f"step {step_id}",
            run_id=run_id,
        )
        for event in made.events:
            note(event, step_id)
        return _run_folder(made, plan)

    async def end_ephemeral(
        self, started: ev.RunStarted, workspace_id: str, failed: bool, step_id: str, note: Note
    ) -> None:
        """Remove a step's workspace, unless it failed and failed workspaces are kept."""
        manager = manager_for(started.workspace)
        if failed and manager.settings.retention.keep_failed > 0:
            await asyncio.to_thread(manager.update_status, workspace_id, "failed")
            kept = f"kept for {manager.settings.retention.keep_failed:g}s (keep_failed)"
            note(WorkspaceEvent("note", workspace_id, "", kept, 0.0), step_id)
            return
        note(await asyncio.to_thread(manager.cleanup, workspace_id), step_id)

    async def finish(
        self,
        run_id: str,
        state: RunState,
        cwd: str,
        declared: Sequence[ArtifactDeclaration],
    ) -> list[str]:
        """Close a run that ended: its workspace's status, then its artifacts. Returns lines
        for its log; never raises (a run's end is already durable)."""
        self._ready.pop(run_id, None)
        started = state.started
        lines: list[str] = []
        if started is None:
            return lines
        if started.workspace:
            workspace_id = started.workspace.get("id") or run_id
            manager = manager_for(started.workspace)
            # Not ``cwd`` when no task ran here (a resumed run): that is the user's checkout.
            cwd = str(manager.path_of(workspace_id) / str(started.workspace.get("subdir") or ""))
            status = _END_STATUS.get(state.status, "finished")
            try:
                if not started.workspace.get("borrowed"):
                    await asyncio.to_thread(manager.update_status, workspace_id, status)
            except WorkspaceError as exc:
                lines.append(f"workspace {workspace_id}: {exc}")
        lines.extend(await self._collect(run_id, state, cwd, declared))
        return lines

    async def _collect(
        self, run_id: str, state: RunState, cwd: str, declared: Sequence[ArtifactDeclaration]
    ) -> list[str]:
        if self.artifacts_root is None or not declared:
            return []
        try:
            manifest = await asyncio.to_thread(
                collect_artifacts,
                Path(cwd),
                declared,
                self.artifacts_root,
                run_id,
                state.finished_at or 0.0,
            )
        except Exception as exc:  # a full disk must not stop the engine: the run is done
            log.warning("run %s: collecting artifacts failed: %s", run_id, exc)
            return [f"artifacts: collecting failed: {exc}"]
        return _manifest_lines(manifest)


def _run_folder(made: Workspace, plan: Mapping[str, Any]) -> RunFolder:
    cwd = made.path / str(plan.get("subdir") or "")
    cwd.mkdir(parents=True, exist_ok=True)  # a workflow folder not in the change: still a place
    env = {"WAYANG_WORKSPACE": str(made.path), "WAYANG_WORKSPACE_ID": made.id}
    return RunFolder(str(cwd), made.launcher, env, made.id)


def _manifest_lines(manifest: ArtifactManifest) -> list[str]:
    lines = [
        f"artifact {file.name}: {file.path} ({file.size} bytes, sha256 {file.sha256[:12]})"
        for file in manifest.files
    ]
    lines += [f"artifact {name}: nothing matched" for name in manifest.missing]
    lines += [f"artifact refused: {why}" for why in manifest.refused]
    return lines


def record_cleaned(store: Store, run_id: str, event: WorkspaceEvent, now: float) -> bool:
    """Add "cleaned" to the history of the ended run whose workspace was removed (``wayang
    workspace clean``, a server's retention); False when the run is not in ``store`` or not
    ended (a live engine owns its history then)."""
    for _ in range(3):
        stored = store.load_history(run_id)
        if not stored:
            return False
        state = fold(run_id, read_events(stored))
        if not state.finished:
            return False
        noted = ev.WorkspaceNoted(
            "cleaned", event.workspace_id, event.path, event.detail or "removed", now
        )
        append = Append(run_id, len(stored), [to_new_event(noted)])
        line = LogLine(run_id, "", 0, "log", f"workspace {event.workspace_id} cleaned", now)
        try:
            store.commit([append], now, [line])
        except ConcurrencyError:
            continue  # another cleaner got there between our read and write: read again
        return True
    return False
