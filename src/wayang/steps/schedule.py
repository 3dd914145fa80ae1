"""Cron steps: fire each at the times its 5-field expression names.

A fire time is claimed in the store before the handler runs (the key-value row
``cron-fires/<env>/<step>`` holds the last time fired, moved by compare-and-set), so a restart
never fires a time twice and two processes on one store do not both fire it. Times missed while
nothing ran are not made up: a schedule resumes at its next time, as cron does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from croniter import croniter

from wayang.steps.model import StepDef
from wayang.steps.runtime import StepRuntime
from wayang.store.port import Store

CRON_FIRES = "cron-fires"


def next_fire(expression: str, after: float) -> float:
    """The first time ``expression`` names after ``after`` (seconds since the epoch, UTC)."""
    start = datetime.fromtimestamp(after, UTC)
    return float(croniter(expression, start).get_next(float))


def claim_fire(store: Store, key: str, due: float) -> bool:
    """Whether this process fires schedule ``key`` at ``due``: a compare-and-set on the last time
    fired, so of several processes on one store exactly one wins each time."""
    while True:
        last = store.kv_get(CRON_FIRES, key)
        if isinstance(last, (int, float)) and last >= due:
            return False  # fired already, by this process before a restart or by another
        if store.kv_swap(CRON_FIRES, key, last, due):
            return True


class CronScheduler:
    """Fires the cron steps ``steps()`` returns (read again after every fire, so a reload that
    adds or removes a cron step takes effect)."""

    def __init__(
        self,
        runtime: StepRuntime,
        store: Store,
        steps: Callable[[], Sequence[StepDef]],
        *,
        env: str,
        clock: Callable[[], float] = time.time,
        on_error: Callable[[StepDef, BaseException], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.steps = steps
        self.env = env
        self._clock = clock
        self._on_error = on_error
        self._due: dict[str, float] = {}
        self._firing: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Fire schedules until cancelled."""
        while True:
            now = self._clock()
            crons = {s.name: s for s in self.steps() if s.cron}
            self._due = {
                name: self._due.get(name) or next_fire(step.cron, now)
                for name, step in crons.items()
            }
            for name, due in list(self._due.items()):
                if due <= now:
                    self._due[name] = next_fire(crons[name].cron, now)
                    if self._claim(name, due):
                        task = asyncio.create_task(self._fire(crons[name]))
                        self._firing.add(task)
                        task.add_done_callback(self._firing.discard)
            soonest = min(self._due.values(), default=now + 1.0)
            await asyncio.sleep(min(1.0, max(0.01, soonest - self._clock())))

    def _claim(self, name: str, due: float) -> bool:
        return claim_fire(self.store, f"{self.env}/{name}", due)

    async def _fire(self, step: StepDef) -> None:
        try:
            await self.runtime.fire_cron(step)
        except Exception as exc:  # the handler's error is in the trace's log already
            if self._on_error is not None:
                with contextlib.suppress(Exception):
                    self._on_error(step, exc)
