"""The server's workspace retention: every ``--retention-every`` (1h by default), the same clean
as ``wayang workspace clean`` with no arguments, for the repositories this server's runs use.

Each repository's workspaces folder under the root (the server's: ``$WAYANG_WORKSPACES``, else
``[workspaces] root`` of the ``wayang.toml`` where the server started) is cleaned by the
``[workspaces.retention]`` its newest run recorded; a folder none of whose runs are in the
server's store is not its own and is left alone. Expired artifacts are pruned too. The first
clean is at start; each runs in a thread, and what it removed goes to the server's log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from wayang.app import App
from wayang.errors import WayangError
from wayang.runtime.workspace_retention import (
    Cleaning,
    busy_rule,
    clean_by_policy,
    namespaces_under,
    recorded_policy,
    run_activity,
)
from wayang.steps.project import load_project
from wayang.store.port import Store
from wayang.workspace.settings import RetentionSettings, WorkspaceSettings, workspaces_root

log = logging.getLogger("wayang.server")

DEFAULT_EVERY_S = 3600.0


class RetentionLoop:
    """Cleans workspaces and artifacts every ``every_s`` seconds while open (``async with``)."""

    def __init__(
        self,
        store: Store,
        root: Path,
        artifacts_root: Path | None,
        default: RetentionSettings,
        *,
        every_s: float = DEFAULT_EVERY_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.root = root
        self.artifacts_root = artifacts_root
        self.default = default
        self.every_s = every_s
        self.clock = clock
        self.sweeps = 0
        self._task: asyncio.Task[None] | None = None
        self._sweeping: asyncio.Future[None] | None = None

    @classmethod
    def for_app(cls, app: App, folder: Path, every_s: float) -> RetentionLoop:
        """The loop of a server started in ``folder`` (its project's ``[workspaces]``)."""
        settings = project_settings(folder)
        root = workspaces_root(settings, os.environ)
        return cls(app.store, root, app.artifacts_root, settings.retention, every_s=every_s)

    async def __aenter__(self) -> RetentionLoop:
        self._task = asyncio.create_task(self._loop(), name="wayang-retention")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._sweeping is not None:  # a clean in its thread: the store must outlive it
            await asyncio.gather(self._sweeping, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            self._sweeping = asyncio.ensure_future(asyncio.to_thread(self.sweep_and_log))
            await asyncio.shield(self._sweeping)
            await asyncio.sleep(self.every_s)

    def sweep(self) -> Cleaning:
        """One clean, now."""
        now = self.clock()
        return clean_by_policy(
            namespaces_under(self.root),
            recorded_policy(self.store, self.default),
            now,
            busy=busy_rule(run_activity(self.store), now),
            artifacts_root=self.artifacts_root,
            store=self.store,
        )

    def sweep_and_log(self) -> None:
        try:
            log_cleaning(self.sweep())
        except Exception:  # a bad folder must not stop the next clean, nor the server
            log.exception("workspace retention: cleaning failed")
        finally:
            self.sweeps += 1


def log_cleaning(cleaning: Cleaning) -> None:
    for item in cleaning.removed:
        log.info("workspace retention: removed %s (%s)", item.info.path, item.reason)
    for item, error in cleaning.failed:
        log.warning("workspace retention: could not remove %s: %s", item.info.path, error)
    for namespace, digest in cleaning.bundles:
        log.info("workspace retention: removed unused tool bundle %s of %s", digest, namespace)
    for run_id, name in cleaning.artifacts:
        log.info("workspace retention: removed expired artifact %s of run %s", name, run_id)


def project_settings(folder: Path) -> WorkspaceSettings:
    """``[workspaces]`` of the project around ``folder``; the defaults if it cannot be read."""
    try:
        return load_project(folder).config.workspaces
    except WayangError as exc:
        log.warning("workspace retention: %s; using the default [workspaces] settings", exc)
        return WorkspaceSettings()
