"""People and systems answering waiting steps: votes, offers, completions, and published events.

A signal is checked first against the run as stored, with the same pure decision the engine will
make (so a vote on a decided approval, a stranger's vote or malformed terms are refused here with
the engine's own words, and nothing is written). It then goes into the run's inbox. The engine
driving the run answers it; when no live engine drives the run, :func:`deliver` adopts the run,
lets it take the signal and carries it on until it parks again or ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wayang.engine import events as ev
from wayang.engine.decide import decide
from wayang.engine.messages import Signal
from wayang.engine.runplan import RunPlan
from wayang.engine.state import ACTIVE_STEP, RunState, StepStatus, fold
from wayang.errors import UsageError
from wayang.policy import gate_for
from wayang.runtime.engine import Engine
from wayang.runtime.names import RunBusyError
from wayang.runtime.operations import load_run, needs_adoption
from wayang.store.port import (
    DEFAULT_TENANT,
    NewSignal,
    NewTopicMessage,
    SignalRecord,
    Store,
)

_ANSWERED = ("accepted", "rejected")


class SignalRefusedError(UsageError):
    """The signal cannot apply to the run as it stands; nothing was written."""


@dataclass(frozen=True)
class PendingWait:
    """A step waiting for a person: an approval, a negotiation or external work."""

    run_id: str
    workflow_id: str
    step_id: str
    kind: str
    since: float
    wait: dict[str, Any]


def roles_in_run(state: RunState, plan: RunPlan, actor: str) -> tuple[str, ...]:
    """The actor's roles by the run's pinned policy (project file + workflow)."""
    roles_of = getattr(plan.gate, "roles_of", None)
    return tuple(roles_of(actor)) if roles_of is not None else ()


def check_signal(
    store: Store, run_id: str, step_id: str, *, kind: str, actor: str, data: Mapping[str, Any]
) -> tuple[int, tuple[str, ...]]:
    """Refuse a signal that would be rejected; the run's version and the actor's roles if not."""
    view = load_run(store, run_id)
    state = view.state
    if state.started is None:
        raise SignalRefusedError(f"run {run_id} has no history")
    if state.finished:
        raise SignalRefusedError(
            f"run {run_id} has already {state.status.value}; nothing is waiting in it"
        )
    plan = RunPlan.from_started(state.started, gate_for)
    roles = roles_in_run(state, plan, actor)
    trial = fold(run_id, view.history)
    signal = Signal(0, step_id, kind, actor, roles, dict(data))
    decision = decide(plan, trial, signal, time.time())
    refused = [e for e in decision.events if isinstance(e, ev.SignalRejected)]
    # A refusal that also ends the wait (an offer past the round limit fails the negotiation)
    # must reach the engine: it is what the run records.
    ends_wait = any(isinstance(e, ev.NegotiationFailed) for e in decision.events)
    if refused and not ends_wait:
        raise SignalRefusedError(f"run {run_id}: {refused[0].reason}")
    return state.version, roles


def send_signal(
    store: Store,
    run_id: str,
    step_id: str,
    *,
    kind: str,
    actor: str,
    data: Mapping[str, Any],
    tenant: str = DEFAULT_TENANT,
) -> int:
    """Check, then put the signal in the run's inbox; its sequence number."""
    _, roles = check_signal(store, run_id, step_id, kind=kind, actor=actor, data=data)
    payload = {**data, "roles": list(roles)}
    return store.send_signal(NewSignal(run_id, step_id, kind, actor, payload, time.time(), tenant))


async def deliver(engine: Engine, run_id: str, seq: int, timeout_s: float = 30.0) -> SignalRecord:
    """Wait for the signal's answer, driving the run here when nobody else does.

    Driving here, the run goes on until nothing of it runs any more (it waits again, or ended).
    """
    store = engine.store
    future: asyncio.Future[RunState] | None = None
    deadline = time.monotonic() + timeout_s
    while True:
        record = store.get_signal(seq)
        if record is not None and record.status in _ANSWERED:
            break
        run = store.get_run(run_id)
        if future is None and run is not None and needs_adoption(run, time.time()):
            try:
                future = await engine.adopt(run_id, tenant=run.tenant)
            except RunBusyError:
                future = None
        if time.monotonic() > deadline:
            raise UsageError(
                f"no engine answered signal {seq} on run {run_id} within {timeout_s:g}s; "
                "it stays in the run's inbox and is answered when the run is next driven"
            )
        await asyncio.sleep(0.05)
    if future is not None:
        await _until_parked(engine, run_id, future)
    answered = store.get_signal(seq)
    assert answered is not None
    return answered


async def _until_parked(engine: Engine, run_id: str, future: asyncio.Future[RunState]) -> None:
    """Drive an adopted run until it ends or only waits (nothing runs or backs off)."""
    while not future.done():
        await engine.flush()
        state = engine.live_state(run_id)
        if state is None or not state.count(*ACTIVE_STEP, StepStatus.RETRYING):
            return
        await asyncio.sleep(0.05)


def publish(
    store: Store,
    topic: str,
    data: Any,
    *,
    actor: str,
    key: str = "",
    trace_id: str = "",
    tenant: str = DEFAULT_TENANT,
) -> int:
    """Publish an event on a topic; waits of any run matching it take it, and event steps
    subscribed to it get a delivery. Its sequence number."""
    message = NewTopicMessage(
        topic, data, time.time(), key=key, trace_id=trace_id, source=f"user:{actor}", tenant=tenant
    )
    return store.publish(message)


def pending_waits(
    store: Store, actor: str | None = None, tenant: str = DEFAULT_TENANT, limit: int = 500
) -> list[PendingWait]:
    """Steps waiting for people across unfinished runs; with ``actor``, only theirs."""
    found: list[PendingWait] = []
    for record in store.list_runs(status="running", limit=limit, tenant=tenant):
        view = load_run(store, record.run_id, tenant)
        state = view.state
        if state.started is None:
            continue
        plan = RunPlan.from_started(state.started, gate_for) if actor else None
        for step_id, step in state.steps.items():
            wait = step.wait
            if step.status is not StepStatus.WAITING or wait is None:
                continue
            if wait["kind"] not in ("approval", "negotiation", "complete"):
                continue
            if actor and plan is not None and not _concerns(wait, actor, state, plan):
                continue
            found.append(
                PendingWait(
                    record.run_id, record.workflow_id, step_id, wait["kind"], wait["since"], wait
                )
            )
    found.sort(key=lambda p: p.since)
    return found


def _concerns(wait: dict[str, Any], actor: str, state: RunState, plan: RunPlan) -> bool:
    members: Sequence[str] = wait.get("assignees") or wait.get("parties") or []
    if not members:
        return True
    roles = roles_in_run(state, plan, actor)
    return actor in members or any(m[5:] in roles for m in members if m.startswith("role:"))
