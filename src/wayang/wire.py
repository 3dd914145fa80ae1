"""The HTTP API's wire models: what ``wayang server`` sends and accepts, and what
:mod:`wayang.client` reads and sends. One set of schemas for both ends (and for the OpenAPI
document the server publishes).

Times are ISO-8601 strings in UTC (``2026-11-21T08:54:14.123+00:00``); durations are seconds.
Requests refuse unknown fields, so a misspelt one is a 422 naming it rather than ignored.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

T = TypeVar("T")

RUN_STATUSES = ("queued", "pending", "running", "succeeded", "failed", "cancelled")


class Reply(BaseModel):
    """Base of responses: readers ignore fields a newer server adds."""

    model_config = ConfigDict(extra="ignore")


class Ask(BaseModel):
    """Base of requests: unknown fields are an error that names them."""

    model_config = ConfigDict(extra="forbid")


class Page(Reply, Generic[T]):
    """One page of a list; pass ``next`` back as ``cursor`` for the following page."""

    items: list[T]
    next: str | None = None


# ------------------------------------------------------------------------------ problems


class FieldError(Reply):
    field: str
    message: str


class Problem(Reply):
    """RFC 9457 problem details; ``type`` is stable per kind of error."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] = []


# ------------------------------------------------------------------------------ workflows


class DiagnosticView(Reply):
    file: str
    line: int
    column: int
    severity: str
    code: str
    message: str


class ParameterView(Reply):
    type: str
    required: bool
    default: Any = None
    description: str = ""
    choices: list[Any] | None = None


class WorkflowVersion(Reply):
    version: str
    sha256: str
    filename: str
    registered_at: str


class WorkflowSummary(Reply):
    id: str
    name: str
    description: str = ""
    latest: str
    versions: int


class WorkflowDetail(WorkflowSummary):
    parameters: dict[str, ParameterView]
    steps: list[str]
    history: list[WorkflowVersion]
    source: str
    graph: GraphView


class GraphNode(Reply):
    id: str
    kind: str
    label: str
    active: bool = True
    status: str | None = None


class GraphEdge(Reply):
    source: str
    target: str
    kind: str  # needs | next | transition | branch | loop | on | topic
    label: str = ""
    virtual: bool = False


class GraphView(Reply):
    nodes: list[GraphNode]
    edges: list[GraphEdge]


class WorkflowSource(Ask):
    """A ``workflow.toml`` as text; ``filename`` is what diagnostics name."""

    source: str = Field(min_length=1, max_length=1_000_000)
    filename: str = "workflow.toml"


class ValidationReport(Reply):
    valid: bool
    workflow_id: str | None = None
    diagnostics: list[DiagnosticView]


# ------------------------------------------------------------------------------ runs


class StartRun(Ask):
    """Start a run of a registered workflow (``workflow``, optionally ``version``) or of the
    definition given as ``source`` (then ``filename`` and ``cwd`` say where it lives)."""

    workflow: str | None = None
    version: str | None = None
    source: str | None = Field(default=None, max_length=1_000_000)
    filename: str = "workflow.toml"
    cwd: str | None = None
    params: dict[str, Any] = {}
    params_are_text: bool = False
    env: dict[str, str] = {}
    timeout: str | None = None
    parallel: int | None = Field(default=None, ge=1)
    """Step attempts the run may run at once; the server's ``--workers`` caps it (and is the
    value when this is left out)."""
    workspace_id: str | None = Field(default=None, max_length=128)
    """Work in this named workspace (made if new, reused if not) instead of one of its own."""
    base: str | None = Field(default=None, max_length=256)
    """The change the run's workspace is made at (default: the repository's current one)."""
    uncommitted: bool | None = None
    """Include the checkout's uncommitted changes in the workspace (git)."""
    in_place: bool = False
    """Work in ``cwd`` itself, without a workspace."""


class StepView(Reply):
    id: str
    kind: str
    status: str
    attempts: int
    max_attempts: int = 1
    """The tries a visit of the step gets (its retry policy)."""
    tries: int = 0
    """Which try of the current visit the last attempt is (retries count per visit)."""
    visits: int = 0
    outputs: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    """What the last attempt ran: ``run`` (the rendered command) or ``uses`` and ``with``."""
    error: str | None = None
    reason: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float = 0.0
    waiting_for: str | None = None


class RunSummary(Reply):
    run_id: str
    workflow_id: str
    status: str
    created_at: str | None
    updated_at: str | None


class RunDetail(RunSummary):
    reason: str | None = None
    params: dict[str, Any] = {}
    started_by: str = ""
    retry_of: str = ""
    workspace: str = ""
    """The path of the run's own workspace, once made ("" when it works in place)."""
    order: list[str] = []
    steps: dict[str, StepView] = {}
    graph: GraphView | None = None


class ArtifactFileView(Reply):
    name: str
    """The ``[artifacts.<name>]`` declaration the file matched."""
    path: str
    """Relative to the run's workspace."""
    size: int
    sha256: str
    expires_at: str | None = None


class RunArtifacts(Reply):
    """What was collected from the run's workspace when it ended (docs/artifacts.md)."""

    run_id: str
    collected_at: str | None
    files: list[ArtifactFileView] = []
    missing: list[str] = []
    """Declarations that matched no file."""
    refused: list[str] = []
    """Matches refused because they lead outside the workspace."""


class RunAccepted(Reply):
    """A run taken: ``queued`` until a slot frees, else ``running``."""

    run_id: str
    status: str
    position: int | None = None


class CancelRun(Ask):
    reason: str = "cancelled through the API"


class RetryRun(Ask):
    from_step: str | None = None


class EventView(Reply):
    seq: int
    type: str
    at: str | None
    data: dict[str, Any]


class LogLineView(Reply):
    seq: int | None
    at: str | None
    step: str
    attempt: int | None
    stream: str
    line: str


class SpanView(Reply):
    """One bar of a run's timeline: a step attempt (or a wait) from start to end."""

    step: str
    attempt: int
    status: str
    start: float
    end: float | None
    kind: str = "attempt"


class RunTrace(Reply):
    run_id: str
    workflow_id: str
    status: str
    start: float | None
    end: float | None
    spans: list[SpanView]


# ------------------------------------------------------------------------------ people


class PendingWaitView(Reply):
    run_id: str
    workflow_id: str
    step_id: str
    kind: Literal["approval", "negotiation", "complete"]
    since: str | None
    prompt: str = ""
    assignees: list[str] = []
    wait: dict[str, Any] = {}


class Vote(Ask):
    comment: str = ""
    fields: dict[str, Any] = {}


class Offer(Ask):
    terms: dict[str, Any] = Field(min_length=1)
    comment: str = ""


class Completion(Ask):
    outputs: dict[str, Any] = {}


class SignalAnswer(Reply):
    seq: int
    status: str
    outcome: str


# ------------------------------------------------------------------------------ event steps


class Emit(Ask):
    topic: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:/-]+$")
    data: Any = None
    key: str = ""


class Emitted(Reply):
    seq: int
    topic: str
    trace_id: str


class StepInfo(Reply):
    name: str
    type: str
    trigger: str
    emits: list[str]
    flows: list[str]
    active: bool
    file: str


class StepList(Reply):
    """The steps of the served project, and what loading its step files found wrong (those
    files' steps are missing from ``steps``)."""

    steps: list[StepInfo]
    diagnostics: list[DiagnosticView] = []
    root: str = ""
    """The project's folder, and the folders under it where step files are looked for."""
    folders: list[str] = []


class FlowNodeView(Reply):
    """A step in a flow, as ``wayang flows --json`` shows it."""

    id: str
    name: str
    type: str
    file: str
    line: int
    active: bool = True
    description: str = ""
    trigger: str = ""


class FlowEdgeView(Reply):
    """A topic from one step to another, as ``wayang flows --json`` shows it."""

    source: str
    target: str
    topic: str
    label: str = ""
    conditional: bool = False
    virtual: bool = False


class FlowView(Reply):
    """One flow: its steps and topics (``nodes``, ``edges``), and the same drawn as a graph."""

    name: str
    nodes: list[FlowNodeView]
    edges: list[FlowEdgeView]
    graph: GraphView


class StateGroup(Reply):
    group: str
    values: list[Any]


class DeliveryView(Reply):
    id: str
    step: str
    topic: str
    status: str
    attempt: int
    trace_id: str
    error: str = ""


# ------------------------------------------------------------------------------ dead letters


class DeadLetterView(Reply):
    id: str
    kind: Literal["step", "delivery"]
    run_id: str
    step: str
    attempts: int
    error: str
    at: str | None
    topic: str = ""
    """A dead delivery's topic, the seq of its message, and when it was made and ended."""
    message: int | None = None
    created_at: str | None = None
    finished_at: str | None = None


class Replayed(Reply):
    id: str
    run_id: str | None = None
    delivery_id: str | None = None


# ------------------------------------------------------------------------------ workers
# The worker protocol (``wayang worker --server URL``; docs/workers.md): the server stands in
# for the store, and its clock, not the worker's, decides leases.

MAX_LEASE_S = 3600.0
MAX_LOG_LINES = 10_000
MAX_BATCH_RESULTS = 4096  # a worker's most slots


class WorkerHello(Ask):
    """A worker that starts: who it is and what it offers. Registering again under the same
    id hands back the tasks an earlier process of that id still held."""

    worker_id: str = Field(min_length=1, max_length=200)
    host: str = ""
    pid: int = 0
    version: str = ""
    capabilities: list[str] = []
    labels: dict[str, str] = {}
    queues: list[str] = Field(default=["default"], min_length=1)
    slots: int = Field(ge=1)


class WorkerRegistered(Reply):
    worker_id: str
    registered_at: str
    """When the server recorded it (its own clock)."""


class WorkerHeartbeat(Ask):
    """A worker alive: its state and counts now; its leases are renewed for ``lease_s``."""

    worker_id: str = Field(min_length=1, max_length=200)
    state: Literal["running", "draining", "stopped"] = "running"
    running: int = Field(default=0, ge=0)
    done: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    lease_s: float = Field(gt=0, le=MAX_LEASE_S)
    tasks: list[str] | None = Field(
        default=None,
        max_length=10_000,
        description="the tasks it runs: only their leases are renewed (absent: all it holds)",
    )


class HeldTasks(Reply):
    """The tasks the worker still holds: one it runs that is not here was taken from it."""

    held: list[str]


class ClaimTasks(Ask):
    """Lease up to ``limit`` tasks of ``queue`` whose needs are all in ``offers``.

    ``max_running`` may only tighten the queue's own limit, which the server applies anyway.
    ``request_id``: a repeat with the same id (its answer was lost) gets the first answer."""

    worker_id: str = Field(min_length=1, max_length=200)
    queue: str = "default"
    limit: int = Field(default=1, ge=1, le=1000)
    offers: list[str]
    lease_s: float = Field(gt=0, le=MAX_LEASE_S)
    max_claims: int = Field(default=3, ge=1)
    max_running: int | None = Field(default=None, ge=0)
    request_id: str = Field(default="", max_length=200)


class ClaimedTaskView(Reply):
    """A task leased to the worker; its result is recorded only with its ``fencing_token``."""

    task_id: str
    run_id: str
    step_id: str
    attempt: int
    idempotency_key: str
    payload: dict[str, Any]
    fencing_token: int
    lease_expires_at: str
    tenant: str = "default"


class ClaimedTasks(Reply):
    tasks: list[ClaimedTaskView]


class CompleteTask(Ask):
    """A task's result. A repeat (its answer was lost) gets the first answer."""

    task_id: str = Field(min_length=1)
    fencing_token: int
    result: dict[str, Any]


class TaskCompleted(Reply):
    """Whether the result counted: ``false`` when the token is stale (the task was taken from
    the worker, or already has a result): the worker drops it."""

    task_id: str
    counted: bool


class TaskLogLine(Ask):
    run_id: str
    step_id: str
    attempt: int
    stream: str
    line: str
    at: AwareDatetime
    """When the worker saw the line (its clock), ISO-8601 with a time zone."""


class TaskLogs(Ask):
    """Lines of output of tasks the worker runs. ``request_id``: as for a claim."""

    lines: list[TaskLogLine] = Field(max_length=MAX_LOG_LINES)
    request_id: str = Field(default="", max_length=200)


class LogsAppended(Reply):
    appended: int


class CompleteTasks(Ask):
    """Several results, and the output of their tasks, recorded in one transaction: each
    result as :class:`CompleteTask` would record it. ``request_id``: a repeat with the same id
    (its answer was lost) gets the first answer."""

    results: list[CompleteTask] = Field(min_length=1, max_length=MAX_BATCH_RESULTS)
    output: list[TaskLogLine] = Field(default_factory=list, max_length=MAX_LOG_LINES)
    request_id: str = Field(min_length=1, max_length=200)


class TasksCompleted(Reply):
    """Whether each result counted, in the order sent."""

    completed: list[TaskCompleted]


class QueueLimit(Reply):
    max_running: int | None = None
    max_depth: int | None = None


class QueueLimits(Reply):
    """The task queues' limits, by queue (those without limits are left out)."""

    limits: dict[str, QueueLimit]


# ------------------------------------------------------------------------------ health


class Health(Reply):
    status: Literal["ok", "starting", "stopping"]
    version: str
    store: str
    runs_active: int = 0
    runs_queued: int = 0


WorkflowDetail.model_rebuild()
