"""The events of a run's history, their persisted shapes, and upgrades of old shapes.

Every event is a frozen dataclass with a ``TYPE`` name. Persisted, it is ``(type, version, data)``;
:func:`from_record` rebuilds it, running the upgrade chain first when an old shape is read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from wayang.errors import WayangError

EVENT_VERSION = 1


class EventShapeError(WayangError):
    """A stored event has a type or shape this version of Wayang cannot read."""


@dataclass(frozen=True, slots=True)
class Event:
    """Base of all events."""

    TYPE: ClassVar[str] = ""

    def to_data(self) -> dict[str, Any]:
        """The event's fields by name. Shallow on purpose: events are immutable and the data is
        encoded straight away, so the deep copy ``dataclasses.asdict`` makes is wasted."""
        return {name: getattr(self, name) for name in _field_names(type(self))}


_FIELD_NAMES: dict[type[Event], tuple[str, ...]] = {}
"""The field names of each event type, found once (a memo: types are fixed once defined)."""


def _field_names(kind: type[Event]) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(kind)
    if names is None:  # once per event type: dataclasses.fields() filters on every call
        names = _FIELD_NAMES[kind] = tuple(f.name for f in fields(kind))
    return names


@dataclass(frozen=True, slots=True)
class RunStarted(Event):
    """A run began. It pins everything needed to rebuild its plan: the definition and inputs."""

    TYPE: ClassVar[str] = "RunStarted"
    workflow_id: str
    workflow_version: str
    source: str
    filename: str
    params: dict[str, Any]
    env: dict[str, str]
    env_overrides: dict[str, str]
    at: float
    timeout_s: float | None = None
    parallel: int = 0
    cwd: str = ""  # the run's workspace: where steps that inherit it run
    retry_of: str = ""  # the run this one retries, reusing its succeeded steps' outputs
    actor: str = ""  # who started the run (for "no self-approval" and audit)
    policy_source: str = ""  # the project's policy file, pinned like the definition
    policy_filename: str = ""
    parent: str = ""  # "<run_id>/<step_id>" when a subworkflow step started this run
    actor_roles: list[str] = field(default_factory=list)
    # Where the run works when it has its own workspace (runtime/workspaces.py): repository,
    # backend, id ("" = the run's id), base, subdir, ...; empty when it works in place.
    workspace: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StepScheduled(Event):
    TYPE: ClassVar[str] = "StepScheduled"
    step_id: str
    attempt: int
    task_id: str
    idempotency_key: str
    at: float


@dataclass(frozen=True, slots=True)
class StepReused(Event):
    """A retried run took this step's outputs from the run it retries instead of running it."""

    TYPE: ClassVar[str] = "StepReused"
    step_id: str
    outputs: dict[str, Any]
    from_run: str
    at: float


@dataclass(frozen=True, slots=True)
class StepStarted(Event):
    TYPE: ClassVar[str] = "StepStarted"
    step_id: str
    attempt: int
    at: float


@dataclass(frozen=True, slots=True)
class StepSucceeded(Event):
    TYPE: ClassVar[str] = "StepSucceeded"
    step_id: str
    attempt: int
    outputs: dict[str, Any]
    duration_s: float
    at: float


@dataclass(frozen=True, slots=True)
class StepFailed(Event):
    """An attempt failed. ``final`` when no attempt follows (the step has failed for good)."""

    TYPE: ClassVar[str] = "StepFailed"
    step_id: str
    attempt: int
    error: str
    exit_code: int | None
    duration_s: float
    final: bool
    at: float
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class StepRetrying(Event):
    TYPE: ClassVar[str] = "StepRetrying"
    step_id: str
    next_attempt: int
    delay_s: float
    due_at: float
    at: float


@dataclass(frozen=True, slots=True)
class StepSkipped(Event):
    TYPE: ClassVar[str] = "StepSkipped"
    step_id: str
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class StepCancelled(Event):
    TYPE: ClassVar[str] = "StepCancelled"
    step_id: str
    attempt: int
    at: float


@dataclass(frozen=True, slots=True)
class RunCancelRequested(Event):
    TYPE: ClassVar[str] = "RunCancelRequested"
    reason: str
    at: float
    as_failure: bool = False  # a run timeout stops the run like a cancel, but it has failed


@dataclass(frozen=True, slots=True)
class RunSucceeded(Event):
    TYPE: ClassVar[str] = "RunSucceeded"
    at: float
    outputs: dict[str, Any] = field(default_factory=dict)  # the workflow's [outputs]


@dataclass(frozen=True, slots=True)
class RunFailed(Event):
    TYPE: ClassVar[str] = "RunFailed"
    reason: str
    failed_steps: list[str] = field(default_factory=list)
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class RunCancelled(Event):
    TYPE: ClassVar[str] = "RunCancelled"
    reason: str
    at: float


# --- flow: decisions, loops, policy ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecisionMade(Event):
    """A decision chose ``chosen``: case ``case`` held (-1 for the default)."""

    TYPE: ClassVar[str] = "DecisionMade"
    step_id: str
    chosen: str
    case: int
    at: float


@dataclass(frozen=True, slots=True)
class VisitStarted(Event):
    """A loop's transition ``via`` → ``step_id`` was taken: ``reset`` steps run again."""

    TYPE: ClassVar[str] = "VisitStarted"
    step_id: str
    visit: int
    via: str
    reset: list[str]
    at: float


@dataclass(frozen=True, slots=True)
class VisitLimitReached(Event):
    TYPE: ClassVar[str] = "VisitLimitReached"
    step_id: str
    visits: int
    limit: int
    via: str
    at: float


@dataclass(frozen=True, slots=True)
class PolicyDenied(Event):
    """A policy rule denied ``action`` on ``step_id``; ``rule`` decided and ``reason`` says why."""

    TYPE: ClassVar[str] = "PolicyDenied"
    step_id: str
    action: str
    rule: str
    reason: str
    actor: str
    at: float


@dataclass(frozen=True, slots=True)
class PolicyAllowed(Event):
    """Rules applied to ``action`` on ``step_id`` and allowed it (recorded for the audit)."""

    TYPE: ClassVar[str] = "PolicyAllowed"
    step_id: str
    action: str
    rules: list[str]
    actor: str
    at: float


@dataclass(frozen=True, slots=True)
class SignalRejected(Event):
    """A vote, offer or completion that could not apply; nothing else changed."""

    TYPE: ClassVar[str] = "SignalRejected"
    signal: int
    step_id: str
    kind: str
    actor: str
    reason: str
    at: float
    rule: str = ""
    roles: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


# --- waits: approvals, negotiations, events, timers, external work, sub-workflows ---------------


@dataclass(frozen=True, slots=True)
class ApprovalRequested(Event):
    TYPE: ClassVar[str] = "ApprovalRequested"
    step_id: str
    assignees: list[str]
    quorum: int
    prompt: str
    required_fields: list[str]
    due_at: float | None
    at: float


@dataclass(frozen=True, slots=True)
class ApprovalVoted(Event):
    """One assignee's vote, with everything the audit needs: who, as what, when, why."""

    TYPE: ClassVar[str] = "ApprovalVoted"
    step_id: str
    signal: int
    actor: str
    roles: list[str]
    vote: str
    comment: str
    fields: dict[str, Any]
    at: float


@dataclass(frozen=True, slots=True)
class ApprovalEscalated(Event):
    TYPE: ClassVar[str] = "ApprovalEscalated"
    step_id: str
    assignees: list[str]
    due_at: float | None
    at: float


@dataclass(frozen=True, slots=True)
class ApprovalGranted(Event):
    TYPE: ClassVar[str] = "ApprovalGranted"
    step_id: str
    approvers: list[str]
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class ApprovalRejected(Event):
    TYPE: ClassVar[str] = "ApprovalRejected"
    step_id: str
    actor: str
    comment: str
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class NegotiationStarted(Event):
    TYPE: ClassVar[str] = "NegotiationStarted"
    step_id: str
    parties: list[str]
    terms: dict[str, Any]
    max_rounds: int
    prompt: str
    due_at: float | None
    at: float


@dataclass(frozen=True, slots=True)
class OfferMade(Event):
    """The first offer of a negotiation (``CounterOffered`` has the same shape)."""

    TYPE: ClassVar[str] = "OfferMade"
    step_id: str
    signal: int
    actor: str
    party: str
    terms: dict[str, Any]
    round: int
    comment: str
    at: float
    roles: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CounterOffered(OfferMade):
    """An offer answering the other party's."""

    TYPE: ClassVar[str] = "CounterOffered"


@dataclass(frozen=True, slots=True)
class AgreementReached(Event):
    TYPE: ClassVar[str] = "AgreementReached"
    step_id: str
    signal: int
    actor: str
    party: str
    terms: dict[str, Any]
    round: int
    at: float
    roles: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class NegotiationFailed(Event):
    TYPE: ClassVar[str] = "NegotiationFailed"
    step_id: str
    reason: str
    actor: str
    at: float
    signal: int = 0
    roles: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class EventWaitStarted(Event):
    TYPE: ClassVar[str] = "EventWaitStarted"
    step_id: str
    topic: str
    correlate: str
    due_at: float | None
    at: float


@dataclass(frozen=True, slots=True)
class MessagePublished(Event):
    """A succeeded step published a message (its ``emit``), in the same commit as this event."""

    TYPE: ClassVar[str] = "MessagePublished"
    step_id: str
    topic: str
    key: str
    at: float


@dataclass(frozen=True, slots=True)
class EventReceived(Event):
    TYPE: ClassVar[str] = "EventReceived"
    step_id: str
    topic: str
    seq: int
    data: Any
    at: float


@dataclass(frozen=True, slots=True)
class TimerStarted(Event):
    TYPE: ClassVar[str] = "TimerStarted"
    step_id: str
    due_at: float
    at: float


@dataclass(frozen=True, slots=True)
class StepTimerFired(Event):
    """A timer step came due (``TimerFired`` in the history)."""

    TYPE: ClassVar[str] = "TimerFired"
    step_id: str
    due_at: float
    at: float


@dataclass(frozen=True, slots=True)
class CompletionRequested(Event):
    """An external noop step waits for ``wayang complete``."""

    TYPE: ClassVar[str] = "CompletionRequested"
    step_id: str
    due_at: float | None
    at: float


@dataclass(frozen=True, slots=True)
class StepCompleted(Event):
    """Someone recorded an external step's outputs (``wayang complete``)."""

    TYPE: ClassVar[str] = "StepCompleted"
    step_id: str
    signal: int
    actor: str
    outputs: dict[str, Any]
    at: float
    roles: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class WaitTimedOut(Event):
    TYPE: ClassVar[str] = "WaitTimedOut"
    step_id: str
    waited_s: float
    at: float


@dataclass(frozen=True, slots=True)
class SubworkflowStarted(Event):
    TYPE: ClassVar[str] = "SubworkflowStarted"
    step_id: str
    child_run_id: str
    workflow: str
    params: dict[str, Any]
    at: float


@dataclass(frozen=True, slots=True)
class SubworkflowFinished(Event):
    TYPE: ClassVar[str] = "SubworkflowFinished"
    step_id: str
    child_run_id: str
    status: str
    outputs: dict[str, Any]
    error: str
    at: float


# --- compensation --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompensationStarted(Event):
    """The run failed or was cancelled: ``steps`` undo ``undoing``, in this order."""

    TYPE: ClassVar[str] = "CompensationStarted"
    reason: str
    steps: list[str]
    undoing: list[str]
    at: float


@dataclass(frozen=True, slots=True)
class CompensationFinished(Event):
    TYPE: ClassVar[str] = "CompensationFinished"
    compensated: list[str]
    failed: list[str]
    at: float


@dataclass(frozen=True, slots=True)
class WorkspaceNoted(Event):
    """Something happened to a workspace of the run: created, reused, direnv allowed, tooling
    synced, cleaned, or a note (``kind``). ``step_id`` names the step of an ephemeral one."""

    TYPE: ClassVar[str] = "WorkspaceNoted"
    kind: str
    workspace_id: str
    path: str
    detail: str
    at: float
    step_id: str = ""


EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (
        RunStarted,
        StepScheduled,
        StepReused,
        StepStarted,
        StepSucceeded,
        StepFailed,
        StepRetrying,
        StepSkipped,
        StepCancelled,
        RunCancelRequested,
        RunSucceeded,
        RunFailed,
        RunCancelled,
        WorkspaceNoted,
        DecisionMade,
        VisitStarted,
        VisitLimitReached,
        PolicyDenied,
        PolicyAllowed,
        SignalRejected,
        ApprovalRequested,
        ApprovalVoted,
        ApprovalEscalated,
        ApprovalGranted,
        ApprovalRejected,
        NegotiationStarted,
        OfferMade,
        CounterOffered,
        AgreementReached,
        NegotiationFailed,
        EventWaitStarted,
        EventReceived,
        MessagePublished,
        TimerStarted,
        StepTimerFired,
        CompletionRequested,
        StepCompleted,
        WaitTimedOut,
        SubworkflowStarted,
        SubworkflowFinished,
        CompensationStarted,
        CompensationFinished,
    )
}

# (type, version) → function turning that shape into the next version's. Empty while every
# event is at version 1; each future change adds one small function with a docstring.
UPGRADES: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


def from_record(type_name: str, version: int, data: Mapping[str, Any]) -> Event:
    """Rebuild an event from its stored ``(type, version, data)``, upgrading old shapes."""
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise EventShapeError(
            f"unknown event type {type_name!r}; was it written by a newer Wayang?"
        )
    if version > EVENT_VERSION:
        raise EventShapeError(
            f"{type_name} v{version} is newer than this Wayang reads (v{EVENT_VERSION})"
        )
    payload = dict(data)
    for step in range(version, EVENT_VERSION):
        payload = UPGRADES[(type_name, step)](payload)
    names = _field_names(cls)
    try:
        return cls(**{k: v for k, v in payload.items() if k in names})
    except TypeError as exc:
        raise EventShapeError(f"cannot read {type_name}: {exc}") from None
