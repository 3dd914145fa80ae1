"""The composition root: settings → store → executors → engine. Nothing else builds these.

Interfaces (the CLI now, the server later) make one :class:`App` per process from
:class:`Settings` and ask it for what they need; there are no module-level singletons.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wayang.executors.base import Executor
from wayang.executors.local import LocalExecutor
from wayang.executors.python import PythonExecutor
from wayang.executors.shell import ShellExecutor
from wayang.runtime.cpus import CpuPin
from wayang.runtime.engine import Engine, EngineSettings, EventObserver, LogObserver
from wayang.runtime.slots import Slots
from wayang.runtime.workspaces import RunWorkspaces, WorkspaceChoice, plan_run_workspace
from wayang.steps.project import load_project
from wayang.store.port import Store
from wayang.store.urls import default_store_path, open_store
from wayang.workspace.artifacts import artifact_root
from wayang.workspace.backend import find_repository
from wayang.workspace.settings import WorkspaceSettings

STORE_VARIABLE = "WAYANG_STORE"


@dataclass(frozen=True)
class Settings:
    """Where state lives and how the engine behaves; see :meth:`from_environment`."""

    store: str
    parallel: int = field(default_factory=lambda: os.cpu_count() or 1)
    shell_grace_s: float = 1.0
    engine: EngineSettings = field(default_factory=EngineSettings)
    cpu_pin: CpuPin | None = None  # the process was pinned (--cpus): its shell steps are not

    @classmethod
    def from_environment(
        cls, store: str | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """``store`` (``--store``), else ``$WAYANG_STORE``, else the per-user default."""
        env = os.environ if environ is None else environ
        location = store or env.get(STORE_VARIABLE) or str(default_store_path())
        return cls(store=location)


class App:
    """One process's parts, made on first use and closed together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: Store | None = None
        self._executor: LocalExecutor | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(_expand(self.settings.store))
        return self._store

    @property
    def executor(self) -> LocalExecutor:
        if self._executor is None:
            pin = self.settings.cpu_pin
            child_setup = pin.child_setup() if pin is not None else None
            shell = ShellExecutor(grace_s=self.settings.shell_grace_s, child_setup=child_setup)
            self._executor = LocalExecutor(shell, PythonExecutor())
        return self._executor

    def engine(
        self,
        on_events: EventObserver | None = None,
        on_log: LogObserver | None = None,
        executor: Executor | None = None,
        on_orphan: Callable[[str], None] | None = None,
        settings: EngineSettings | None = None,
        *,
        slots: Slots | None = None,
        owner: str | None = None,
    ) -> Engine:
        """A new engine over this app's store and executors (use it in ``async with``);
        ``executor`` replaces them (the server's wraps them in tracing), ``settings`` this
        app's engine settings (a worker's driver has its own, its worker's ``slots`` and an
        ``owner`` id naming its worker)."""
        return Engine(
            self.store,
            executor or self.executor,
            settings=settings or self.settings.engine,
            on_events=on_events,
            on_log=on_log,
            on_orphan=on_orphan,
            workspaces=RunWorkspaces(self.artifacts_root),
            slots=slots,
            owner=owner,
        )

    @property
    def artifacts_root(self) -> Path:
        """Where runs' artifacts are kept (``$WAYANG_ARTIFACTS``, else beside the store)."""
        return artifact_root(_expand(self.settings.store), os.environ)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.close()
        if self._store is not None:
            self._store.close()


def _expand(location: str) -> str:
    return location if "://" in location else str(Path(location).expanduser())


def run_workspace_plan(
    workflow_file: Path,
    choice: WorkspaceChoice,
    environ: Mapping[str, str] | None = None,
    folder: Path | None = None,
) -> dict[str, Any]:
    """:func:`plan_run_workspace` with the settings of the project around the workflow file
    (``[workspaces]`` in its ``wayang.toml``); ``folder`` is where the run works, when not the
    file's own folder."""
    return WorkspacePlanner(ttl_s=0.0).plan(workflow_file, choice, environ, folder)


class WorkspacePlanner:
    """Plans runs' workspaces (:func:`run_workspace_plan`), remembering each folder's project
    settings and repository for ``ttl_s``: a server starting a thousand runs a second of one
    folder should not read its ``wayang.toml`` and walk up to its repository a thousand times."""

    def __init__(self, ttl_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._places: dict[Path, tuple[float, WorkspaceSettings, Path | None]] = {}

    def plan(
        self,
        workflow_file: Path,
        choice: WorkspaceChoice,
        environ: Mapping[str, str] | None = None,
        folder: Path | None = None,
    ) -> dict[str, Any]:
        folder = folder or workflow_file.resolve().parent
        settings, repository = self._place(folder)
        return plan_run_workspace(
            folder,
            settings,
            os.environ if environ is None else environ,
            workspace_id=choice.workspace_id,
            base=choice.base,
            uncommitted=choice.uncommitted,
            in_place=choice.in_place,
            find=lambda _folder: repository,
        )

    def _place(self, folder: Path) -> tuple[WorkspaceSettings, Path | None]:
        now = self._clock()
        known = self._places.get(folder)
        if known is not None and now < known[0]:
            return known[1], known[2]
        is_dir = folder.is_dir()
        settings = load_project(folder).config.workspaces if is_dir else WorkspaceSettings()
        repository = find_repository(folder) if is_dir else None
        if self._ttl_s > 0:
            if len(self._places) > 1000:  # folders come and go: forget them all now and then
                self._places.clear()
            self._places[folder] = (now + self._ttl_s, settings, repository)
        return settings, repository
