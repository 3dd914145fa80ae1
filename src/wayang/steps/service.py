"""A steps project, served: its steps loaded and reloaded, which of them are active (kept in the
store per environment), its state adapter, the runtime, the API routes and the cron schedule.

``wayang dev``, ``wayang emit`` (in process) and the tests build one of these; the pieces stay
separate modules so each can be tested alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from wayang.errors import Diagnostic
from wayang.steps.asgi import StepsApp
from wayang.steps.discovery import StepLoader
from wayang.steps.project import Project
from wayang.steps.registry import StepRegistry
from wayang.steps.runtime import DeliveryWrapper, Finished, RuntimeSettings, StepRuntime
from wayang.steps.schedule import CronScheduler
from wayang.steps.state import StateAdapter, open_state
from wayang.store.port import LogLine, Store

ACTIVATION = "step-registry"
"""The store's key-value namespace holding, per environment, the names of deactivated steps."""


def saved_inactive(store: Store, env: str) -> set[str]:
    value = store.kv_get(ACTIVATION, env)
    return set(value.get("inactive", [])) if isinstance(value, dict) else set()


def save_inactive(store: Store, env: str, names: Iterable[str]) -> None:
    store.kv_set(ACTIVATION, env, {"inactive": sorted(names)})


class StepsProject:
    """A project's steps as a registry, reloadable, with activation kept in ``store``."""

    def __init__(self, project: Project, store: Store) -> None:
        self.project = project
        self.store = store
        self.env = project.config.environment
        self.loader = StepLoader(project.root, project.config.steps.folders)
        self.registry = StepRegistry.build((), ())

    @property
    def root(self) -> Path:
        return self.project.root

    def load(self) -> StepRegistry:
        steps, diagnostics = self.loader.load()
        return self._build(steps, diagnostics)

    def reload(self, changed: Iterable[Path]) -> StepRegistry:
        steps, diagnostics = self.loader.reload(changed)
        return self._build(steps, diagnostics)

    def _build(self, steps: list[Any], diagnostics: list[Diagnostic]) -> StepRegistry:
        inactive = saved_inactive(self.store, self.env)
        self.registry = StepRegistry.build(steps, diagnostics, inactive=inactive)
        return self.registry

    def refresh_activation(self) -> bool:
        """Pick up activations made by other processes; True when something changed."""
        wanted = saved_inactive(self.store, self.env) & set(self.registry.steps)
        if wanted == self.registry.inactive:
            return False
        self.registry.inactive.clear()
        self.registry.inactive.update(wanted)
        return True

    def set_active(self, name: str, active: bool) -> str:
        """Activate or deactivate step ``name`` (UsageError naming the closest if unknown)."""
        step = self.registry.get(name)
        inactive = saved_inactive(self.store, self.env)
        if active:
            inactive.discard(step.name)
            self.registry.activate(step.name)
        else:
            inactive.add(step.name)
            self.registry.deactivate(step.name)
        save_inactive(self.store, self.env, inactive)
        return step.name

    def state(self) -> StateAdapter:
        config = self.project.config.state
        return open_state(config.adapter, root=self.root, store=self.store, url=config.url or None)

    def close(self) -> None:
        self.loader.close()


class StepsServer:
    """The runtime, the HTTP app and the cron schedule of one project, over one store."""

    def __init__(
        self,
        steps: StepsProject,
        *,
        owner: str,
        settings: RuntimeSettings | None = None,
        on_finished: Callable[[Finished], None] | None = None,
        on_log: Callable[[LogLine], None] | None = None,
        around: DeliveryWrapper | None = None,
    ) -> None:
        self.steps = steps
        self.settings = settings or RuntimeSettings(env=steps.env)
        self.runtime = StepRuntime(
            steps.store,
            steps.registry,
            steps.state(),
            owner=owner,
            settings=self.settings,
            on_finished=on_finished,
            on_log=on_log,
            around=around,
        )
        self.http = StepsApp(self.runtime, lambda: self.steps.registry)
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> StepsServer:
        await self.runtime.__aenter__()
        cron = CronScheduler(
            self.runtime, self.steps.store, lambda: self.steps.registry.crons, env=self.steps.env
        )
        self._tasks = [
            asyncio.create_task(cron.run(), name="wayang-cron"),
            asyncio.create_task(self._watch_activation(), name="wayang-activation"),
        ]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.runtime.close()
        with contextlib.suppress(Exception):
            await self.runtime.state.close()

    def swap(self, registry: StepRegistry) -> None:
        """Serve a reloaded registry from the next delivery and request on."""
        self.runtime.steps = registry

    async def _watch_activation(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.steps.refresh_activation()
