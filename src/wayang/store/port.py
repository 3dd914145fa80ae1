"""The store port: the few primitives every durable feature is built on (DESIGN.md §5).

Runs are event-sourced: a run's history is an append-only list of events, numbered from 1. Writers
append with the version they last saw (optimistic concurrency), and the tasks and timers a decision
creates are written in the same transaction as its events (outbox), so a crash never leaves one
without the other. Workers claim tasks under a lease with a fencing token; a completion carrying a
stale token is rejected, and the first completion recorded wins. Every record carries a tenant.

Two inboxes feed runs from outside. Signals are one run's: people and tools send them (approval
votes, offers, ``wayang complete``) and the engine answers them in the same transaction as the
events that record what it made of them, so a signal is never both handled and pending. Topic
messages are the one event bus: anyone publishes to a topic, and readers page through it by
``seq`` (each keeps its own cursor), so a message is never consumed away from another reader.

Adapters implement :class:`Store`; one contract test suite runs against each of them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from wayang.errors import WayangError

DEFAULT_TENANT = "default"
# How many times a worker's task may be claimed (its holder died or hung each time before the
# attempt counts as failed: a poison task then reaches the dead letters instead of going round.
DEFAULT_MAX_CLAIMS = 3


class StoreError(WayangError):
    """The store cannot do what was asked (corrupt file, newer schema, unreachable server)."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached right now: the server is down or restarting, or it dropped
    the connection. The same call may succeed later; callers that can wait retry with backoff.

    ``in_doubt``: the connection was lost while the transaction was committing, so it may have
    committed. Otherwise nothing was written and the call is safe to repeat.
    """

    def __init__(self, message: str, *, in_doubt: bool = False) -> None:
        super().__init__(message)
        self.in_doubt = in_doubt


class ConcurrencyError(StoreError):
    """An append expected a run version that is no longer current: someone else wrote first."""

    def __init__(self, message: str, run_id: str = "") -> None:
        super().__init__(message)
        self.run_id = run_id


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append: its type name, payload and shape version."""

    type: str
    data: dict[str, Any]
    version: int = 1


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as stored: ``seq`` is its 1-based position in the run's history."""

    run_id: str
    seq: int
    type: str
    data: dict[str, Any]
    version: int
    at: float


@dataclass(frozen=True, slots=True)
class NewTask:
    """Work for a worker. ``idempotency_key`` is stable across retries of one logical step.

    With an ``owner`` the task is inserted already leased to it (fencing token 1): an engine
    that runs the task itself claims it in the same transaction that creates it. Without one it
    is a worker's task: queued in ``queue`` for a worker offering every token in ``needs``
    (``cap:shell``, ``label:region=eu``; see :mod:`wayang.model.placement`).
    """

    task_id: str
    run_id: str
    step_id: str
    attempt: int
    idempotency_key: str
    payload: dict[str, Any]
    available_at: float
    queue: str = "default"
    tenant: str = DEFAULT_TENANT
    owner: str | None = None
    lease_expires_at: float | None = None
    needs: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class ClaimedTask:
    """A task a worker holds under a lease; ``fencing_token`` grows with every claim."""

    task_id: str
    run_id: str
    step_id: str
    attempt: int
    idempotency_key: str
    payload: dict[str, Any]
    owner: str
    fencing_token: int
    lease_expires_at: float
    tenant: str = DEFAULT_TENANT


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A task as it stands, for people looking at a run: ``status`` is ``queued``, ``claimed``
    (a worker or engine holds it: the attempt runs), ``completed`` or ``consumed``."""

    task_id: str
    step_id: str
    attempt: int
    status: str
    payload: dict[str, Any]
    owner: str | None
    available_at: float
    lease_expires_at: float | None


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A worker process as it registered, and what its last heartbeat said.

    ``state`` is what the worker said (``running``, ``draining``, ``stopped``); whether it is
    still alive is for the reader to judge from ``heartbeat_at``.
    """

    worker_id: str
    host: str
    pid: int
    version: str
    capabilities: Sequence[str]
    labels: Mapping[str, str]
    queues: Sequence[str]
    slots: int
    state: str
    started_at: float
    heartbeat_at: float
    running: int = 0
    done: int = 0
    failed: int = 0
    tenant: str = DEFAULT_TENANT


@dataclass(frozen=True, slots=True)
class WorkerBeat:
    """A worker's heartbeat: its state and counts now, and (``tasks``) the ids of the tasks it
    runs. Only those tasks' leases are renewed: a task the store says it claimed but it never
    heard of (a claim whose answer a lost connection swallowed) lapses and is claimed again.
    None renews every task it holds (a worker that does not say)."""

    worker_id: str
    state: str
    running: int
    done: int
    failed: int
    tasks: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue now: tasks waiting, tasks running, and when the oldest waiting one became
    available (None if none waits)."""

    queue: str
    queued: int
    running: int
    oldest_at: float | None


@dataclass(frozen=True, slots=True)
class FencedResult:
    """A worker's result for a task it holds, fenced by the token of its claim."""

    task_id: str
    fencing_token: int
    result: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """What a claim asks for: see :meth:`Store.claim`, whose arguments these are."""

    owner: str
    lease_s: float
    limit: int = 1
    queue: str = "default"
    offers: frozenset[str] | None = None
    max_claims: int = DEFAULT_MAX_CLAIMS
    max_running: int | None = None


@dataclass(frozen=True, slots=True)
class Reported:
    """The answer to :meth:`Store.complete_many`: whether each result counted, in order, and
    the tasks claimed in the same transaction (when it was asked to claim)."""

    counted: list[bool]
    claimed: list[ClaimedTask]


@dataclass(frozen=True, slots=True)
class SpilledTask:
    """A task an engine leased to itself and has not started, sent to a queue for any worker
    instead (:meth:`Store.spill_tasks`): where it waits, and what a worker must offer for it."""

    task_id: str
    queue: str
    needs: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished task whose result the engine has not yet folded into the run's history."""

    task_id: str
    run_id: str
    step_id: str
    attempt: int
    result: dict[str, Any]
    completed_at: float


@dataclass(frozen=True, slots=True)
class Timer:
    """A durable wake-up for a run at ``due_at`` (retry back-off, timeouts, durable sleeps)."""

    timer_id: str
    run_id: str
    due_at: float
    payload: dict[str, Any]
    tenant: str = DEFAULT_TENANT


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run's summary row: what it runs, its status, and how many events its history holds."""

    run_id: str
    workflow_id: str
    status: str
    created_at: float
    updated_at: float
    version: int = 0
    spec: dict[str, Any] = field(default_factory=dict)
    tenant: str = DEFAULT_TENANT
    owner: str | None = None
    lease_expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class TakenRun:
    """A run a driver took (``Store.take_handed_off``), with what adopting it needs, read in the
    same transaction: its history, the results not yet folded in, its open tasks (now leased to
    the driver) and its timers."""

    record: RunRecord
    history: list[StoredEvent]
    completions: list[Completion]
    tasks: list[ClaimedTask]
    timers: list[Timer]


@dataclass(frozen=True, slots=True)
class NewSignal:
    """An input for one step of a run from outside it: a vote, an offer, a completion.

    ``kind`` is one of approve, reject, offer, accept, decline or complete; ``actor`` says who
    sent it, so the engine can check they may and tell them what became of it.
    """

    run_id: str
    step_id: str
    kind: str
    actor: str
    data: dict[str, Any]
    created_at: float
    tenant: str = DEFAULT_TENANT


@dataclass(frozen=True, slots=True)
class SignalRecord:
    """A signal as stored: ``seq`` orders a run's signals; pending until an append answers it."""

    seq: int
    run_id: str
    step_id: str
    kind: str
    actor: str
    data: dict[str, Any]
    created_at: float
    status: str = "pending"
    outcome: str = ""
    handled_at: float | None = None
    tenant: str = DEFAULT_TENANT


# The statuses an answer may give a signal; anything else would leave it neither pending nor done.
SIGNAL_ANSWERS = ("accepted", "rejected")


@dataclass(frozen=True, slots=True)
class SignalAnswer:
    """What the engine made of signal ``seq``, told back to whoever sent it.

    ``status`` is accepted or rejected; ``outcome`` is a sentence for the sender (why a vote did
    not count, say), so they learn more than a bare status.
    """

    seq: int
    status: str
    outcome: str


@dataclass(frozen=True, slots=True)
class NewTopicMessage:
    """A message to publish on ``topic``; ``data`` is any JSON value (usually a dict).

    ``key`` lets readers pick messages about one thing (an order id); ``source`` says who
    published (``"cli:alice"``, ``"run:<run_id>/<step>"``); ``trace_id`` links it to a trace.
    """

    topic: str
    data: Any
    created_at: float
    key: str = ""
    trace_id: str = ""
    source: str = ""
    tenant: str = DEFAULT_TENANT


@dataclass(frozen=True, slots=True)
class TopicMessage:
    """A published message; ``seq`` grows across all topics, so it serves as a reader's cursor."""

    seq: int
    topic: str
    data: Any
    created_at: float
    key: str = ""
    trace_id: str = ""
    source: str = ""
    tenant: str = DEFAULT_TENANT


@dataclass(frozen=True, slots=True)
class Append:
    """One run's part of a (possibly grouped) commit: events plus the work they create.

    ``create`` inserts the run's summary row first (its ``expected_version`` must be 0), so new
    runs join a group commit too. ``acknowledge`` lists completions whose results these events
    record, so they are consumed in the same transaction; ``finish_tasks`` does the same for
    tasks whatever their state (an engine that ran them itself never completes them apart).
    ``dead_letters`` are recorded with the events that exhausted a step's attempts. ``status``
    updates the run's summary row when set. ``publish`` holds topic messages the events' steps
    emit, published only if the events are. ``answer_signals`` answers signals of this run that
    are still pending, with the events recording what the engine made of them: a crash never
    leaves a vote counted in the history yet pending in the inbox, or the other way round.
    ``wake`` names wake-ups (:class:`Wakeups`) to send once the commit is durable.
    """

    run_id: str
    expected_version: int
    events: Sequence[NewEvent]
    tasks: Sequence[NewTask] = ()
    timers: Sequence[Timer] = ()
    cancel_timers: Sequence[str] = ()
    acknowledge: Sequence[str] = ()
    status: str | None = None
    create: RunRecord | None = None
    finish_tasks: Sequence[str] = ()
    dead_letters: Sequence[DeadLetter] = ()
    answer_signals: Sequence[SignalAnswer] = ()
    publish: Sequence[NewTopicMessage] = ()
    wake: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class LogLine:
    """One captured line of a step's output."""

    run_id: str
    step_id: str
    attempt: int
    stream: str
    line: str
    at: float
    seq: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A task that exhausted its attempts, kept for inspection and replay."""

    dlq_id: str
    run_id: str
    step_id: str
    attempts: int
    error: str
    payload: dict[str, Any]
    at: float
    tenant: str = DEFAULT_TENANT


@dataclass(frozen=True, slots=True)
class Delivery:
    """One topic message handed to one event step: a task with attempts, a lease and a fate.

    ``status`` is ``pending`` (waiting for its ``due_at``), ``running`` (leased to ``owner``),
    ``succeeded`` or ``dead`` (out of attempts, or a payload its step rejects). ``data`` is the
    message's payload; ``source`` says who published the message.
    """

    delivery_id: str
    env: str
    step: str
    message_seq: int
    topic: str
    data: Any
    trace_id: str
    key: str
    status: str
    attempt: int
    max_attempts: int
    due_at: float
    fencing_token: int
    error: str
    created_at: float
    finished_at: float | None = None
    source: str = ""
    tenant: str = DEFAULT_TENANT


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """How an attempt of a delivery ended: ``succeeded``, ``retry`` (again at ``due_at``) or
    ``dead``. ``emits`` are published only if the outcome counts (its fencing token is current)."""

    delivery_id: str
    fencing_token: int
    status: str
    error: str = ""
    due_at: float = 0.0
    emits: Sequence[NewTopicMessage] = ()


@dataclass(frozen=True, slots=True)
class FanOut:
    """Turn every message after ``env``'s cursor into deliveries, in the same transaction.

    ``subscriptions`` maps a topic to its subscribing steps and their attempt limits (active
    steps only). New deliveries start leased to ``owner`` (attempt 1), so their first attempt
    needs no separate claim.
    """

    env: str
    subscriptions: Mapping[str, Sequence[tuple[str, int]]]
    owner: str
    lease_s: float
    tenant: str = DEFAULT_TENANT
    limit: int = 5000


@dataclass(frozen=True, slots=True)
class DeliveryCommit:
    """What :meth:`Store.commit_deliveries` did: outcomes that counted and those that were
    stale (fenced off), the seqs published, the deliveries started, and the cursor after."""

    accepted: Sequence[str]
    stale: Sequence[str]
    published: Sequence[int]
    started: Sequence[Delivery]
    cursor: int


def task_wakeup(queue: str) -> str:
    """What a worker of ``queue`` waits for: a worker's task was queued there."""
    return f"task:{queue}"


HANDED_OFF = "hand-off"
"""The owner of a run handed off to the drivers (``wayang worker --drive``) and of its first
tasks, held for whichever driver takes the run (``Store.take_handed_off``)."""

DRIVER_SUFFIX = ":driver"
"""How a driver's owner id ends: its runs go back to the drivers when it lets go or dies."""

DRIVERS_FIRST_S = 5.0
"""How long engines adopting orphans leave handed-off runs, and drivers' lapsed runs, to the
drivers (``Store.orphaned_runs``)."""


def runs_wakeup() -> str:
    """What drivers wait for: a run was handed off to them."""
    return "runs"


def completion_wakeup(owner: str) -> str:
    """What the engine ``owner`` waits for: a worker recorded the result of one of its runs."""
    return f"completion:{owner}"


class Wakeups(Protocol):
    """News from the store for one listener, so it need not poll as often.

    A wake-up is a hint, never the data: it says "look now" (a task was queued, a result was
    recorded) and the listener reads the store as it would on a poll. Wake-ups may be lost
    (while the store is away), so listeners keep polling, just more slowly while
    ``listening``. A wake-up that comes while nobody waits is kept for the next :meth:`wait`.
    """

    @property
    def listening(self) -> bool:
        """Whether wake-ups come now; while not, the listener should poll at its usual pace."""
        ...

    def wait(self, timeout: float) -> bool:
        """Block (a thread) until a wake-up or ``timeout`` seconds; whether one came. Returns at
        once, True, when news came since the last call or listening started or stopped."""
        ...

    async def until(self, timeout: float) -> bool:
        """:meth:`wait`, awaited on the running event loop instead of blocking a thread."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Wakeable(Protocol):
    """Something that may wake its callers: a store, or a link standing in for one."""

    def wakeups(self, kinds: Collection[str]) -> Wakeups | None:
        """Wake-ups for news of ``kinds`` (:func:`task_wakeup`, :func:`completion_wakeup`), or
        None if this store cannot tell (its callers poll). Close them when done."""
        ...


class Store(Protocol):
    """The primitives. Every method is one transaction; ``commit`` takes many runs' appends."""

    # runs and histories
    def create_run(self, run: RunRecord, first: Append) -> None: ...
    def commit(
        self, appends: Sequence[Append], now: float, logs: Sequence[LogLine] = ()
    ) -> None: ...
    def load_history(self, run_id: str, after_seq: int = 0) -> list[StoredEvent]: ...
    def get_run(self, run_id: str, tenant: str = DEFAULT_TENANT) -> RunRecord | None: ...
    def list_runs(
        self, status: str | None = None, limit: int = 50, tenant: str = DEFAULT_TENANT
    ) -> list[RunRecord]: ...
    def lease_run(self, run_id: str, owner: str, now: float, lease_s: float) -> bool: ...
    def steal_run(
        self, run_id: str, owner: str, previous_owner: str | None, now: float, lease_s: float
    ) -> bool: ...
    def release_run(self, run_id: str, owner: str) -> None: ...
    def renew_leases(self, owner: str, now: float, lease_s: float) -> None: ...
    def orphaned_runs(self, now: float, limit: int = 100) -> list[RunRecord]: ...
    def take_handed_off(
        self, owner: str, now: float, lease_s: float, limit: int = 100
    ) -> list[TakenRun]: ...
    def run_statuses(self, run_ids: Sequence[str]) -> dict[str, str]: ...
    def load_histories(self, run_ids: Sequence[str]) -> dict[str, list[StoredEvent]]: ...
    def page_runs(
        self,
        *,
        status: str | None = None,
        workflow_id: str | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 50,
        tenant: str = DEFAULT_TENANT,
    ) -> list[RunRecord]: ...

    # tasks
    def claim(
        self,
        owner: str,
        now: float,
        lease_s: float,
        limit: int = 1,
        queue: str = "default",
        *,
        offers: Collection[str] | None = None,
        max_claims: int = DEFAULT_MAX_CLAIMS,
        max_running: int | None = None,
    ) -> list[ClaimedTask]: ...
    def heartbeat(self, task_id: str, fencing_token: int, now: float, lease_s: float) -> bool: ...
    def complete(
        self, task_id: str, fencing_token: int, result: dict[str, Any], now: float
    ) -> bool: ...
    def complete_many(
        self,
        results: Sequence[FencedResult],
        now: float,
        logs: Sequence[LogLine] = (),
        *,
        then_claim: ClaimRequest | None = None,
    ) -> Reported: ...
    def completions(self, run_id: str | None = None, limit: int = 1000) -> list[Completion]: ...
    def requeue_expired(self, now: float) -> int: ...
    def spill_tasks(self, owner: str, tasks: Sequence[SpilledTask]) -> list[str]: ...
    def adopt_tasks(
        self, run_id: str, owner: str, now: float, lease_s: float
    ) -> list[ClaimedTask]: ...
    def run_tasks(self, run_id: str) -> list[TaskRecord]: ...
    def worker_completions(self, owner: str, limit: int = 1000) -> list[Completion]: ...
    def lapsed_tasks(
        self, owner: str, now: float, max_claims: int = DEFAULT_MAX_CLAIMS, limit: int = 100
    ) -> list[ClaimedTask]: ...
    def queue_stats(self, tenant: str = DEFAULT_TENANT) -> list[QueueStats]: ...
    def queue_depth(self, queue: str, tenant: str = DEFAULT_TENANT) -> int: ...

    # workers
    def register_worker(self, worker: WorkerRecord) -> None: ...
    def heartbeat_worker(self, beat: WorkerBeat, now: float, lease_s: float) -> list[str]: ...
    def list_workers(self, tenant: str = DEFAULT_TENANT) -> list[WorkerRecord]: ...
    def driven_runs(self, tenant: str = DEFAULT_TENANT) -> dict[str, int]: ...
    def forget_workers(self, before: float, tenant: str = DEFAULT_TENANT) -> int: ...

    # timers
    def due_timers(self, now: float, limit: int = 100) -> list[Timer]: ...
    def run_timers(self, run_id: str) -> list[Timer]: ...

    # signals: a run's inbox of inputs from outside
    def send_signal(self, signal: NewSignal) -> int: ...
    def pending_signals(self, run_id: str) -> list[SignalRecord]: ...
    def pending_signals_of_runs(self, run_ids: Sequence[str]) -> dict[str, list[SignalRecord]]: ...
    def get_signal(self, seq: int) -> SignalRecord | None: ...

    # topics: the event bus
    def publish(self, message: NewTopicMessage) -> int: ...
    def topic_messages(
        self,
        topic: str,
        after_seq: int = 0,
        since: float = 0.0,
        limit: int = 1000,
        tenant: str = DEFAULT_TENANT,
    ) -> list[TopicMessage]: ...
    def latest_topic_seq(self) -> int: ...

    # logs, dead letters, key-value
    def append_logs(self, lines: Sequence[LogLine]) -> None: ...
    def read_logs(
        self, run_id: str, step_id: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[LogLine]: ...
    def add_dead_letter(self, letter: DeadLetter) -> None: ...
    def dead_letters(self, tenant: str = DEFAULT_TENANT, limit: int = 100) -> list[DeadLetter]: ...
    def remove_dead_letter(self, dlq_id: str) -> DeadLetter | None: ...
    # deliveries of topic messages to event steps
    def commit_deliveries(
        self,
        outcomes: Sequence[DeliveryOutcome],
        publish: Sequence[NewTopicMessage],
        fan_out: FanOut | None,
        now: float,
        logs: Sequence[LogLine] = (),
    ) -> DeliveryCommit: ...
    def claim_deliveries(
        self,
        env: str,
        owner: str,
        now: float,
        lease_s: float,
        *,
        limit: int = 100,
        inactive: Sequence[str] = (),
        tenant: str = DEFAULT_TENANT,
    ) -> list[Delivery]: ...
    def renew_delivery_leases(self, owner: str, now: float, lease_s: float) -> None: ...
    def list_deliveries(
        self,
        *,
        trace_id: str | None = None,
        status: str | None = None,
        env: str | None = None,
        step: str | None = None,
        limit: int = 200,
        tenant: str = DEFAULT_TENANT,
    ) -> list[Delivery]: ...
    def replay_delivery(
        self, delivery_id: str, now: float, tenant: str = DEFAULT_TENANT
    ) -> Delivery | None: ...
    def trace_messages(self, trace_id: str, limit: int = 1000) -> list[TopicMessage]: ...

    def kv_get(self, namespace: str, key: str) -> Any: ...
    def kv_set(self, namespace: str, key: str, value: Any) -> None: ...
    def kv_swap(self, namespace: str, key: str, expected: Any, value: Any) -> bool: ...
    def kv_delete(self, namespace: str, key: str) -> None: ...
    def kv_scan(self, namespace: str) -> dict[str, Any]: ...
    def kv_count(self, namespace: str) -> int: ...
    def kv_key_ending(self, namespace: str, suffix: str) -> str | None: ...
    def kv_page(self, namespace: str, after: str = "", limit: int = 100) -> dict[str, Any]: ...
    def kv_namespaces(self, prefix: str) -> list[str]: ...

    # wake-ups instead of some polling (PostgreSQL's LISTEN/NOTIFY); None if the store has none
    def wakeups(self, kinds: Collection[str]) -> Wakeups | None: ...

    def close(self) -> None: ...
