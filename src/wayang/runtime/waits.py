"""What the engine watches for its runs' waiting steps: signals, topic messages, child runs.

Everything a wait needs is in the store, so a restarted engine finds it again: the signals
still pending (unanswered) in the run's inbox, every message on the wait's topic since the run
started (the core skips those already consumed), and the child runs of subworkflow steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wayang.engine import events as ev
from wayang.engine.messages import (
    CancelChildRun,
    ChildFinished,
    Signal,
    StartChildRun,
    TopicMessage,
)
from wayang.engine.state import TERMINAL_RUN, RunState, RunStatus, StepStatus, fold
from wayang.errors import WayangError
from wayang.runtime.names import CANCEL_REQUESTS, RunBusyError, RunNotFoundError
from wayang.runtime.operations import prepare_child_run
from wayang.runtime.records import read_events
from wayang.store.port import SignalRecord
from wayang.store.port import TopicMessage as StoredMessage

if TYPE_CHECKING:
    from wayang.runtime.engine import Engine, _LiveRun


def child_outcome(state: RunState) -> tuple[str, dict[str, Any], str]:
    """(status, outputs, error) of a finished child run."""
    error = "" if state.status is RunStatus.SUCCEEDED else (state.reason or "")
    return state.status.value, dict(state.outputs), error


_TERMINAL = frozenset(status.value for status in TERMINAL_RUN)

_SIGNALLED = frozenset({"approval", "negotiation", "complete"})
"""The waits a signal answers (``wayang approve``, ``decline``, ``complete``, their API)."""


class WaitWatcher:
    """Feeds a run's waiting steps from the store, and runs the children of subworkflows."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- signals and messages ------------------------------------------------------------------

    async def poll(self, lives: Sequence[_LiveRun]) -> None:
        waiting = [
            (live, {wait["kind"] for _, wait in _waiting(live.state)})
            for live in lives
            if not live.lost and live.state.count(StepStatus.WAITING)
        ]
        signalled = [live.run_id for live, kinds in waiting if kinds & _SIGNALLED]
        # One read for all: a thousand runs at an approval are one query, not a thousand.
        found = (
            await self._call(self.engine.store.pending_signals_of_runs, signalled)
            if signalled
            else {}
        )
        for live, kinds in waiting:
            if kinds & _SIGNALLED and not live.lost:
                self._take_signals(live, found.get(live.run_id, ()))
        await self._messages([live for live, kinds in waiting if "event" in kinds])
        await self._children([live for live, kinds in waiting if "subworkflow" in kinds])

    def _take_signals(self, live: _LiveRun, records: Sequence[SignalRecord]) -> None:
        for record in records:
            if record.seq in live.fed_signals:
                continue
            live.fed_signals.add(record.seq)
            data = dict(record.data)
            roles = tuple(str(r) for r in data.pop("roles", []))
            signal = Signal(record.seq, record.step_id, record.kind, record.actor, roles, data)
            self.engine._feed(live, signal)

    async def _messages(self, lives: Sequence[_LiveRun]) -> None:
        """Offer the runs waiting on events what their topics got. Runs at the same place in
        the same topic share one read (from the earliest start among them, each then taking
        what came since its own): a thousand runs waiting on one topic are about one query."""
        readers: dict[tuple[str, str, int], list[_LiveRun]] = {}
        for live in lives:
            for topic in _event_topics(live.state):
                place = (live.tenant, topic, live.cursors.get(topic, 0))
                readers.setdefault(place, []).append(live)
        for (tenant, topic, after), group in sorted(readers.items(), key=lambda item: item[0]):
            since = min(_since(live) for live in group)
            messages = await self._call(
                self.engine.store.topic_messages, topic, after, since, 1000, tenant
            )
            for live in group:
                if live.lost or live.cursors.get(topic, 0) != after:
                    continue  # a wait began on the topic meanwhile: the next poll starts over
                own = _since(live)
                self._offer(live, topic, [m for m in messages if m.created_at >= own])

    def _offer(self, live: _LiveRun, topic: str, messages: Sequence[StoredMessage]) -> bool:
        """Offer ``messages`` in order; False if a new wait on the topic began meanwhile: it
        must see every message since the run began, so the rest are offered again from there."""
        for message in messages:
            live.cursors[topic] = message.seq
            self.engine._feed(live, TopicMessage(message.seq, message.topic, message.data))
            if topic not in live.cursors:
                return False
        return True

    # --- after a restart -----------------------------------------------------------------------

    async def arrived(self, live: _LiveRun, before: float) -> Arrived:
        """The signals and messages for the run's waits that came before ``before``."""
        store, found = self.engine.store, Arrived()
        kinds = {wait["kind"] for _, wait in _waiting(live.state)}
        if kinds & _SIGNALLED:
            pending = await self._call(store.pending_signals, live.run_id)
            found.signals = [record for record in pending if record.created_at < before]
        for topic in _event_topics(live.state):
            messages = await self._call(
                store.topic_messages, topic, 0, _since(live), 1000, live.tenant
            )
            early = itertools.takewhile(lambda message: message.created_at < before, messages)
            found.messages[topic] = list(early)
        return found

    def take(self, live: _LiveRun, arrived: Arrived) -> None:
        """Feed what :meth:`arrived` found, at once: a restarted engine takes it before the
        timers of the deadlines that passed while nobody drove the run (it came first)."""
        self._take_signals(live, arrived.signals)
        for topic, messages in arrived.messages.items():
            # Each pass that stops early consumed a message; at most one pass per message.
            for _ in range(len(messages) + 1):
                if self._offer(live, topic, messages):
                    break

    def noticed(self, live: _LiveRun, events: Sequence[ev.Event]) -> None:
        """A new event wait sees every message since the run began: rewind its topic."""
        for event in events:
            if isinstance(event, ev.EventWaitStarted):
                live.cursors.pop(event.topic, None)

    # --- child runs ------------------------------------------------------------------------------

    async def _children(self, lives: Sequence[_LiveRun]) -> None:
        """Report the children that ended under another engine (those this engine drives
        report themselves): their statuses in one read, the histories of the ended in one more."""
        watched = [
            (live, step_id, child)
            for live in lives
            for step_id, wait in _waiting(live.state)
            if wait["kind"] == "subworkflow"
            and (child := wait.get("child_run_id"))
            and child not in self.engine._runs
        ]
        if not watched:
            return
        store = self.engine.store
        statuses = await self._call(store.run_statuses, sorted({c for _, _, c in watched}))
        ended = sorted({c for c, status in statuses.items() if status in _TERMINAL})
        if not ended:
            return
        histories = await self._call(store.load_histories, ended)
        for live, step_id, child in watched:
            if child in histories and not live.lost:
                history = read_events(histories[child])
                self._report(live.run_id, step_id, child, fold(child, history))

    async def resume(self, live: _LiveRun) -> None:
        """After adoption: start children that were never started, adopt orphaned ones (their
        statuses read in one call: a fan-out of subworkflows may wait on hundreds)."""
        waits = [(step_id, w) for step_id, w in _waiting(live.state) if w["kind"] == "subworkflow"]
        if not waits:
            return
        children = [wait["child_run_id"] for _, wait in waits]
        statuses = await self._call(self.engine.store.run_statuses, children)
        for step_id, wait in waits:
            child = wait["child_run_id"]
            status = statuses.get(child)
            if status is None:
                params = wait.get("params") or {}
                self.start_child(live, StartChildRun(child, step_id, wait["workflow"], params))
            elif status not in _TERMINAL:
                with contextlib.suppress(RunBusyError, RunNotFoundError):
                    future = await self.engine.adopt(child, tenant=live.tenant)
                    self._on_done(live.run_id, step_id, child, future)

    def start_child(self, live: _LiveRun, command: StartChildRun) -> None:
        started = live.state.started
        assert started is not None
        parent = f"{live.run_id}/{command.step_id}"
        try:
            request = prepare_child_run(started, command.workflow, command.params, parent)
        except WayangError as exc:
            failed = ChildFinished(command.step_id, command.child_run_id, "failed", {}, str(exc))
            self.engine._feed(live, failed)
            return
        future = self.engine.start(
            request.plan, request.started, command.child_run_id, tenant=live.tenant
        )
        self._on_done(live.run_id, command.step_id, command.child_run_id, future)

    def _on_done(
        self, parent: str, step_id: str, child: str, future: asyncio.Future[RunState]
    ) -> None:
        def done(finished: asyncio.Future[RunState]) -> None:
            if not finished.cancelled() and finished.exception() is None:
                self._report(parent, step_id, child, finished.result())

        future.add_done_callback(done)

    def _report(self, parent: str, step_id: str, child: str, state: RunState) -> None:
        live = self.engine._runs.get(parent)
        if live is not None and state.finished:
            status, outputs, error = child_outcome(state)
            self.engine._feed(live, ChildFinished(step_id, child, status, outputs, error))

    def cancel_child(self, command: CancelChildRun) -> None:
        if self.engine.cancel(command.child_run_id, command.reason):
            return
        store = self.engine.store
        call = self._call(store.kv_set, CANCEL_REQUESTS, command.child_run_id, command.reason)
        task = asyncio.get_running_loop().create_task(call)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _call(self, function: Any, *args: Any) -> Any:
        return await self.engine._require_committer().call(function, *args)


@dataclass
class Arrived:
    """Inputs that reached a run's waits while nobody drove it (see :meth:`WaitWatcher.arrived`)."""

    signals: list[SignalRecord] = field(default_factory=list)
    messages: dict[str, list[StoredMessage]] = field(default_factory=dict)


def _since(live: _LiveRun) -> float:
    """Event waits consider the messages published since the run started."""
    return live.state.started_at or 0.0


def _event_topics(state: RunState) -> list[str]:
    return sorted({wait["topic"] for _, wait in _waiting(state) if wait["kind"] == "event"})


def _waiting(state: RunState) -> list[tuple[str, dict[str, Any]]]:
    """The waiting steps and what each waits for."""
    return [
        (step_id, step.wait)
        for step_id, step in state.steps.items()
        if step.status is StepStatus.WAITING and step.wait is not None
    ]
