"""Runs handed off to drivers: an engine that records runs, and workers that drive them.

An engine with ``EngineSettings(hand_off=True)`` (``wayang server --hand-off``) records each run
it starts, with the first decision's events, timers and tasks exactly as it would drive it, but
owned by :data:`~wayang.store.port.HANDED_OFF` instead of itself, and drives none of it. Its
tasks are held for the run's future driver (no worker claims them), except those needing
capabilities or labels, which wait in their queue for a worker as always.

A driver is an engine with ``EngineSettings(drive=True)``, inside ``wayang worker --drive``: it
takes handed-off runs from the store (``Store.take_handed_off``, woken at once on PostgreSQL) and
adopts them, so their steps run in the driver's process, one commit per decision, with no
round trip through a queue between two steps. A driver's owner id ends in
:data:`~wayang.store.port.DRIVER_SUFFIX`, so the runs of a driver that stops go back to the
drivers, and those of one that dies are taken by another once its lease lapses. Engines that
adopt orphans leave both to the drivers for :data:`~wayang.store.port.DRIVERS_FIRST_S` first,
then drive them themselves: a run nobody takes is not stranded.

The history of a handed-off run is the one its starting engine would have written, so replay and
every reader see no difference. The run's ``spec`` names the starting engine (``handed_off_by``):
its driver wakes that engine when the run ends (PostgreSQL), which then reads the run's end
(:meth:`HandOffs.watch`; at each full poll too, wake-ups being hints).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeVar

from wayang.engine import events as ev
from wayang.engine.gate import AllowAll
from wayang.engine.messages import Decision, StartChildRun
from wayang.engine.runplan import GateFactory, RunPlan
from wayang.engine.state import RunStatus, fold
from wayang.model.loader import parse_pinned
from wayang.model.spec import Workflow
from wayang.policy.rules import RuleGate
from wayang.runtime.names import RunLostError
from wayang.runtime.owner import new_owner_id
from wayang.runtime.records import read_events
from wayang.store.port import DRIVER_SUFFIX, HANDED_OFF, RunRecord

if TYPE_CHECKING:
    from wayang.runtime.engine import Engine, _LiveRun

log = logging.getLogger("wayang.engine")

DEFINITIONS_KEPT = 64
LOOK_EVERY_S = 1.0
"""How often an idle driver looks for runs unasked: a hand-off wakes it at once on PostgreSQL;
runs given back by a stopping driver, or left by a dead one, wait for this look."""
_K = TypeVar("_K")
_V = TypeVar("_V")
_ENDED = frozenset({RunStatus.SUCCEEDED.value, RunStatus.FAILED.value, RunStatus.CANCELLED.value})


def can_hand_off(plan: RunPlan, started: ev.RunStarted, decision: Decision) -> bool:
    """Whether a driver anywhere can drive the run: it has no workspace or artifacts (made
    where the run started) and starts no child run at once (its starter would drive it)."""
    return not (
        started.workspace
        or plan.workflow.artifacts
        or any(isinstance(command, StartChildRun) for command in decision.commands)
    )


def driver_owner(worker_id: str) -> str:
    """The owner id of a worker's driver: ``host:pid:random`` as every engine's (so a dead one
    on this host is known dead, and two processes given one ``--id`` stay apart), then the
    worker's id, so ``wayang workers`` can tell whose runs it drives."""
    return f"{new_owner_id()}:{worker_id}{DRIVER_SUFFIX}"


def runs_driven_by(worker_id: str, driven: Mapping[str, int]) -> int:
    """The unfinished runs the driver of ``worker_id`` holds, from ``Store.driven_runs``."""
    return sum(count for owner, count in driven.items() if worker_of_driver(owner) == worker_id)


def worker_of_driver(driver: str) -> str:
    """The worker id in a driver's owner id (see :func:`driver_owner`); empty if none."""
    parts = driver.removesuffix(DRIVER_SUFFIX).split(":", 3)  # host, pid, random, worker id
    return parts[3] if len(parts) == 4 else ""


def for_drivers(record: RunRecord) -> bool:
    """Whether the run is the drivers': handed off to them, or driven by one. Engines adopting
    orphans leave such runs to the drivers first (``Store.orphaned_runs``)."""
    owner = record.owner or ""
    return owner == HANDED_OFF or owner.endswith(DRIVER_SUFFIX)


class HandOffs:
    """An engine's side of the hand-off: waiting for handed-off runs, and taking them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._waiting: dict[str, _LiveRun] = {}
        self._taking = asyncio.Lock()
        self._again = False
        self._looked = 0.0
        self._turns: set[asyncio.Task[None]] = set()

    def handed_off(self, live: _LiveRun) -> None:
        """``live`` was handed off: its future resolves when the store says it ended."""
        self._waiting[live.run_id] = live

    def ended(self, live: _LiveRun) -> None:
        """``live`` ended in its first decision (nothing to run): no need to watch it."""
        self._waiting.pop(live.run_id, None)

    @property
    def waiting(self) -> bool:
        return bool(self._waiting)

    async def watch(self) -> None:
        """Answer whoever waits for a handed-off run that has ended, with its final state."""
        engine = self.engine
        call = engine._require_committer().call
        statuses = await call(engine.store.run_statuses, sorted(self._waiting))
        ended = sorted(run_id for run_id, status in statuses.items() if status in _ENDED)
        histories = await call(engine.store.load_histories, ended) if ended else {}
        for run_id, history in histories.items():
            live = self._waiting.pop(run_id, None)
            if live is not None and not live.done.done():
                live.done.set_result(fold(run_id, read_events(history)))

    async def look(self, woken: bool) -> None:
        """The engine's poll: take runs if woken (a run may have been handed off), or if the
        last look is :data:`LOOK_EVERY_S` old."""
        if woken or time.monotonic() - self._looked >= LOOK_EVERY_S:
            await self.take()

    async def take(self) -> None:
        """A driver's turn: lease runs waiting for a driver, as many as it has room for
        (``drive_runs``), and drive them. Asked again during a turn, it takes another after."""
        if self._taking.locked():
            self._again = True  # room freed meanwhile: one more turn when this one ends
            return
        async with self._taking:
            self._again = True
            while self._again:
                self._again = False
                await self._take_some()

    async def _take_some(self) -> None:
        engine = self.engine
        self._looked = time.monotonic()
        room = engine.settings.drive_runs - len(engine._runs)
        if room <= 0 or engine._draining:
            return
        call = engine._require_committer().call
        lease_s = engine.settings.lease_s
        taken = await call(
            engine.store.take_handed_off, engine.owner, engine._clock(), lease_s, room
        )
        for run in taken:  # each driven, or let go: none stays leased here undriven
            await engine.drive(run)
            log.debug("driving run %s", run.record.run_id)

    def room(self) -> None:
        """A driven run ended: take the next ones now rather than at the next poll."""
        task = asyncio.get_running_loop().create_task(self._turn())
        self._turns.add(task)
        task.add_done_callback(self._turns.discard)

    async def _turn(self) -> None:
        try:
            await self.take()
        except Exception as exc:  # the store away, most likely: the next poll tries again
            log.warning("taking handed-off runs failed (%s); the next poll tries again", exc)

    def close(self) -> None:
        """The engine stops: whoever still waits for a handed-off run is told it goes on."""
        for task in self._turns:
            task.cancel()
        for live in self._waiting.values():
            if not live.done.done():
                why = f"run {live.run_id} goes on in a driver; this engine stopped waiting for it"
                live.done.set_exception(RunLostError(why))
                live.done.exception()  # nobody awaiting it is no bug
        self._waiting.clear()


class Definitions:
    """The workflow definitions of adopted runs, parsed once each, and their plans, built once
    for every run of a definition started with the same inputs: a driver adopts many runs of
    one definition, and parsing and planning it is most of what taking a run up costs."""

    def __init__(self, keep: int = DEFINITIONS_KEPT) -> None:
        self._keep = keep
        self._parsed: dict[tuple[str, str], Workflow] = {}
        self._plans: dict[tuple[str, ...], RunPlan] = {}

    def parsed(self, started: ev.RunStarted) -> Workflow:
        key = (started.source, started.filename)
        found = self._parsed.get(key)
        if found is None:
            found = parse_pinned(started.source, started.filename)
            _keep(self._parsed, key, found, self._keep)
        return found

    def plan(self, started: ev.RunStarted, gates: GateFactory) -> RunPlan:
        """The run's plan. One is shared by the runs whose plans are equal: same definition,
        parameters, environment and policy, and a gate that keeps no state of its own (no
        policy engine of a plugin's, which might)."""
        key = _plan_key(started)
        found = self._plans.get(key)
        if found is None:
            found = RunPlan.from_started(started, gates, self.parsed(started))
            if isinstance(found.gate, AllowAll | RuleGate):
                _keep(self._plans, key, found, self._keep)
        return found


def _plan_key(started: ev.RunStarted) -> tuple[str, ...]:
    inputs = (started.params, started.env, started.env_overrides)
    return (
        started.source,
        started.filename,
        started.policy_source,
        started.policy_filename,
        *(json.dumps(value, sort_keys=True, default=str) for value in inputs),
    )


def _keep(kept: dict[_K, _V], key: _K, value: _V, most: int) -> None:
    """Remember ``value``, forgetting the oldest entry past ``most``."""
    if len(kept) >= most:
        kept.pop(next(iter(kept)))
    kept[key] = value
