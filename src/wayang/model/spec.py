"""The workflow *spec*: immutable, validated definitions of what a workflow is.

Nothing here runs anything. A :class:`Workflow` is what ``workflow.toml`` says, with every string
that holds ``${{ … }}`` already compiled (compile once per workflow version), every duration in
seconds and every unknown key rejected. Cross-references (``needs``, expression names, actions) are
checked by :mod:`wayang.model.validate`; turning a spec plus parameter values into something to run
is :mod:`wayang.model.plan`.

Steps are a tagged union on ``kind`` (default ``task``): each kind accepts the common keys of
:class:`StepBase` plus its own, so a key that belongs to another kind is an error.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeGuard

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from wayang.errors import ExpressionError
from wayang.model.expr import compile_template
from wayang.model.types import (
    Duration,
    ExpressionField,
    Name,
    SemVer,
    StepId,
    TemplateField,
    WorkflowId,
)

PARAMETER_TYPES = ("string", "integer", "number", "boolean", "array", "object", "path")
STEP_KINDS = (
    "task",
    "decision",
    "approval",
    "negotiation",
    "agent",
    "event",
    "timer",
    "subworkflow",
    "noop",
)
POLICY_ACTIONS = (
    "start",
    "execute",
    "transition",
    "approve",
    "reject",
    "offer",
    "accept",
    "complete",
)
TOPIC_PATTERN = r"^[A-Za-z0-9_.:/-]+$"
WORKSPACE_MODES = ("inherit", "ephemeral")
PYTHON_REF = re.compile(r"^python:([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*):([A-Za-z_]\w*)$")
JUST_PREFIX = "just:"
JUST_REF = re.compile(r"^just:([A-Za-z_][A-Za-z0-9_-]*)$")  # a recipe name, as just allows it
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def empty_list() -> Any:
    """An empty list default, made afresh for each model: pydantic deep-copies a ``[]`` default
    for every model it validates (with ``{}``, a third of parsing a 500-step workflow). The JSON
    schema still shows the default."""
    return Field(default_factory=list, json_schema_extra={"default": []})


def empty_dict() -> Any:
    """An empty dict default; see :func:`empty_list`."""
    return Field(default_factory=dict, json_schema_extra={"default": {}})


class Spec(BaseModel):
    """Base of every spec model: immutable, and strict about unknown keys."""

    # Strict: TOML values are typed, so 'yes' is not a boolean and "3" is not an integer.
    model_config = ConfigDict(
        frozen=True, extra="forbid", arbitrary_types_allowed=True, strict=True
    )


# --- values that may hold ${{ }} -------------------------------------------------------------


def _compile_strings(value: Any) -> Any:
    """Compile every string inside ``value`` (recursively) into a template."""
    if isinstance(value, str):
        try:
            return compile_template(value)
        except ExpressionError as exc:
            raise PydanticCustomError(
                "expression", "{message}", {"message": exc.message, "offset": exc.offset}
            ) from None
    if isinstance(value, list):
        return [_compile_strings(item) for item in value]
    if isinstance(value, dict):
        return {key: _compile_strings(item) for key, item in value.items()}
    return value


def _scalar_to_text(value: Any) -> Any:
    """Env values may be written as numbers or booleans; the environment only holds text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


EnvValue = Annotated[TemplateField, BeforeValidator(_scalar_to_text)]
EnvName = Annotated[str, Field(pattern=ENV_NAME)]
Env = dict[EnvName, EnvValue]
InputValue = Annotated[Any, BeforeValidator(_compile_strings)]
Inputs = Annotated[
    dict[Name, InputValue],
    WithJsonSchema({"type": "object", "description": "Inputs; strings may hold ${{ }}."}),
]


# --- the top-level tables --------------------------------------------------------------------


class Parameter(Spec):
    """``[parameters.<name>]``: one input of the workflow."""

    type: Literal["string", "integer", "number", "boolean", "array", "object", "path"] = "string"
    default: Any = None
    required: bool = False
    pattern: str | None = None
    enum: list[Any] | None = Field(default=None, min_length=1)
    description: str = ""

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise PydanticCustomError(
                    "pattern", "invalid regular expression: {error}", {"error": str(exc)}
                ) from None
        return value


class Artifact(Spec):
    """``[artifacts.<name>]``: files a run keeps, by glob relative to the workspace."""

    path: str = Field(min_length=1)
    retention: Duration | None = None
    description: str = ""


class Requirements(Spec):
    """``[requirements]``: checked before a run, naming whatever is missing."""

    tools: list[
        Annotated[str, Field(pattern=r"^\s*[\w.+-]+\s*(?:(>=|<=|==|>|<)\s*[\w.]+\s*)?$")]
    ] = empty_list()
    env: list[EnvName] = empty_list()


def _jitter(value: Any) -> Any:
    """``true`` (up to 20%), ``false``, or a fraction from 0 to 1 — one rule, one message."""
    ok_number = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1
    if isinstance(value, bool) or ok_number:
        return value
    raise PydanticCustomError(
        "jitter", "jitter is true, false or a number from 0 to 1 (got {value})", {"value": value}
    )


class Retry(Spec):
    """How a failed attempt is retried."""

    attempts: int = Field(default=1, ge=1, le=1000)
    backoff: Literal["fixed", "exponential"] = "exponential"
    delay: Duration = 1.0
    max_delay: Duration = 300.0
    jitter: Annotated[
        bool | float,
        BeforeValidator(_jitter),
        WithJsonSchema(
            {"anyOf": [{"type": "boolean"}, {"type": "number", "minimum": 0, "maximum": 1}]}
        ),
    ] = True


LABEL_VALUE = r"^[A-Za-z0-9_.:/-]{1,128}$"


class RunsOn(Spec):
    """``runs_on``: what a worker must offer to run the step (DESIGN.md §5).

    A worker started with ``--capabilities gpu --labels region=eu`` runs a step with
    ``runs_on = { capabilities = ["gpu"], labels = { region = "eu" } }``; the engine runs it
    itself only if it offers them too (it offers ``shell`` and ``python``, and no labels).
    """

    capabilities: list[Name] = empty_list()
    labels: dict[Name, Annotated[str, Field(pattern=LABEL_VALUE)]] = empty_dict()


class Defaults(Spec):
    """``[defaults]``: values every step starts from."""

    timeout: Duration | None = None
    queue: Name | None = None
    runs_on: RunsOn | None = None
    retry: Retry | None = None
    workspace: str | None = None
    env: Env = empty_dict()
    max_visits: int = Field(default=10, ge=1, le=100_000)


class ActionInput(Spec):
    """One declared input of an action."""

    description: str = ""
    default: Any = None
    required: bool = False

    @field_validator("default")
    @classmethod
    def _plain_default(cls, value: Any) -> Any:
        if isinstance(value, str) and "${{" in value:
            raise PydanticCustomError(
                "plain_default",
                "an action input's default is a plain value; pass ${{ }} values from the "
                "step's inputs instead",
            )
        return value


def _short_input(value: Any) -> Any:
    """``inputs.path = "."`` is shorthand for ``inputs.path = { default = "." }``."""
    return value if isinstance(value, dict) else {"default": value}


class Action(Spec):
    """``[actions.<name>]``: a reusable step template (``run`` or a Python function)."""

    description: str = ""
    run: TemplateField | None = None
    uses: str | None = None
    inputs: dict[Name, Annotated[ActionInput, BeforeValidator(_short_input)]] = empty_dict()
    env: Env = empty_dict()

    @field_validator("uses")
    @classmethod
    def _uses_python(cls, value: str | None) -> str | None:
        if value is not None and not PYTHON_REF.match(value):
            raise PydanticCustomError(
                "python_ref",
                "an action's 'uses' must be 'python:package.module:function'",
            )
        return value

    @model_validator(mode="after")
    def _run_or_uses(self) -> Action:
        _one_of(self.run, self.uses, "an action needs 'run' or 'uses'", "an action")
        return self


def _one_of(
    first: object,
    second: object,
    missing: str,
    subject: str,
    names: tuple[str, str] = ("run", "uses"),
) -> None:
    """Exactly one of two alternative keys must be set."""
    if first is None and second is None:
        raise PydanticCustomError("requires", missing)
    if first is not None and second is not None:
        raise PydanticCustomError(
            "conflict",
            "{subject} has '{a}' or '{b}', not both",
            {"subject": subject, "a": names[0], "b": names[1]},
        )


# --- transitions --------------------------------------------------------------------------------


def _short_next(value: Any) -> Any:
    """``next = ["b"]`` is shorthand for ``next = [{ to = "b" }]``."""
    return {"to": value} if isinstance(value, str) else value


class NextStep(Spec):
    """One outgoing transition written on its source step (``next``)."""

    to: StepId
    when: ExpressionField | None = None
    map: dict[Name, Name] = empty_dict()


class Transition(NextStep):
    """``[[transitions]]``: ``from`` → ``to`` when ``when`` holds, copying outputs to inputs.

    ``map`` names, for each input of ``to``, the output of ``from`` it takes. With ``on`` the
    transition waits, after ``from`` finishes, for an event on that topic (``correlate`` and
    ``timeout`` as for an event step); the event's payload is ``event`` in ``when``.
    """

    from_: StepId = Field(alias="from")
    on: Annotated[str, Field(pattern=TOPIC_PATTERN)] | None = None
    correlate: ExpressionField | None = None
    timeout: Duration | None = None

    @model_validator(mode="after")
    def _on_needed(self) -> Transition:
        if self.on is None and (self.correlate is not None or self.timeout is not None):
            raise PydanticCustomError(
                "requires", "'correlate' and 'timeout' belong to a transition with 'on' (a topic)"
            )
        return self


def _join(value: Any) -> Any:
    ok = value in ("all", "any") or (
        isinstance(value, int) and not isinstance(value, bool) and value >= 1
    )
    if ok:
        return value
    raise PydanticCustomError(
        "join",
        "join is 'all', 'any' or a number of inbound transitions (got {value})",
        {"value": value},
    )


Join = Annotated[
    str | int,
    BeforeValidator(_join),
    WithJsonSchema({"anyOf": [{"enum": ["all", "any"]}, {"type": "integer", "minimum": 1}]}),
]


# --- steps -----------------------------------------------------------------------------------


class StepEmit(Spec):
    """``[[steps.X.emit]]``: a message the step publishes on ``topic`` when it succeeds.

    It is committed with the step's result, so it is published exactly once per success, and
    event steps and workflow ``event`` waits on that topic receive it. ``data``, ``key`` and
    ``when`` may read ``outputs`` (the step's own), ``params``, ``env``, ``run`` and earlier steps.
    """

    topic: Annotated[str, Field(pattern=TOPIC_PATTERN)]
    data: InputValue = None
    key: TemplateField | None = None
    when: ExpressionField | None = None


class StepBase(Spec):
    """The keys every kind of step accepts."""

    name: str = ""
    description: str = ""
    needs: list[StepId] = empty_list()
    when: ExpressionField | None = None
    env: Env = empty_dict()
    workspace: str | None = None
    timeout: Duration | None = None
    retry: Retry | None = None
    continue_on_error: bool = False
    compensate: StepId | None = None
    inputs: Inputs = empty_dict()
    next: list[Annotated[NextStep, BeforeValidator(_short_next)]] = empty_list()
    join: Join = "all"
    max_visits: int | None = Field(default=None, ge=1, le=100_000)
    emit: list[StepEmit] = empty_list()

    @field_validator("needs")
    @classmethod
    def _needs_unique(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for item in value:
            if item in seen:
                raise PydanticCustomError("duplicate", "'{item}' is listed twice", {"item": item})
            seen.add(item)
        return value

    @field_validator("workspace")
    @classmethod
    def _workspace_mode(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise PydanticCustomError(
                "workspace", "workspace is 'inherit', 'ephemeral' or a path; got an empty string"
            )
        return value


class TaskStep(StepBase):
    """Runs a shell command (``run``) or an action / Python function (``uses``)."""

    kind: Literal["task"] = "task"
    run: TemplateField | None = None
    uses: str | None = None
    queue: Name | None = None
    runs_on: RunsOn | None = None

    @field_validator("uses")
    @classmethod
    def _uses_ref(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("python:") and not PYTHON_REF.match(value):
            raise PydanticCustomError(
                "python_ref", "write a Python function as 'python:package.module:function'"
            )
        if value is not None and value.startswith(JUST_PREFIX) and not JUST_REF.match(value):
            raise PydanticCustomError(
                "just_ref",
                "write a just recipe as 'just:RECIPE', where RECIPE is letters, digits, '_' and "
                "'-', starting with a letter or '_' (got '{value}')",
                {"value": value},
            )
        return value

    @model_validator(mode="after")
    def _run_or_uses(self) -> TaskStep:
        missing = (
            "a task step needs 'run' (a shell command) or 'uses' (an action name or "
            "'python:package.module:function'); for a step that does nothing use kind = 'noop'"
        )
        _one_of(self.run, self.uses, missing, "a step", ("run", "uses"))
        return self


def names_action(uses: str | None) -> TypeGuard[str]:
    """Whether a step's ``uses`` names an ``[actions]`` entry (not ``python:`` or ``just:``)."""
    if not uses:
        return False
    return not uses.startswith(("python:", JUST_PREFIX))


class DecisionCase(Spec):
    """One branch of a decision: taken when ``when`` holds."""

    when: ExpressionField
    next: StepId


class DecisionStep(StepBase):
    """Chooses one branch: the first case whose ``when`` holds, else ``default``."""

    kind: Literal["decision"]
    cases: list[DecisionCase] = Field(min_length=1)
    default: StepId | None = None


class ApprovalStep(StepBase):
    """A human decision that blocks its branch until enough assignees approve or one rejects."""

    kind: Literal["approval"]
    assignees: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    prompt: TemplateField | None = None
    required_fields: list[Name] = empty_list()
    quorum: int = Field(default=1, ge=1)
    on_timeout: Literal["reject", "approve", "escalate"] = "reject"
    escalate_to: list[Annotated[str, Field(min_length=1)]] = empty_list()
    allow_self_approval: bool = False
    # A rejection fails the step (and so the run), or with "continue" the step succeeds with
    # outputs.approved = false and later steps branch on it.
    on_reject: Literal["fail", "continue"] = "fail"

    @field_validator("quorum")
    @classmethod
    def _quorum_reachable(cls, value: int, info: ValidationInfo) -> int:
        assignees = info.data.get("assignees") or []
        has_role = any(a.startswith("role:") for a in assignees)
        if not has_role and assignees and value > len(assignees):
            raise PydanticCustomError(
                "quorum",
                "quorum {quorum} cannot be reached with {count} assignee(s); lower it or add "
                "assignees",
                {"quorum": value, "count": len(assignees)},
            )
        return value

    @model_validator(mode="after")
    def _escalation_target(self) -> ApprovalStep:
        if self.on_timeout == "escalate" and not self.escalate_to:
            raise PydanticCustomError(
                "requires", "on_timeout = 'escalate' needs 'escalate_to' (users or role:NAME)"
            )
        return self


class Term(Spec):
    """One negotiated term: its type and the bounds every offer must keep."""

    type: Literal["number", "integer", "string", "boolean"] = "number"
    min: float | None = None
    max: float | None = None
    choices: list[str | int | float] | None = Field(default=None, min_length=1)
    description: str = ""

    @model_validator(mode="after")
    def _bounds_order(self) -> Term:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise PydanticCustomError(
                "bounds", "min ({low}) is above max ({high})", {"low": self.min, "high": self.max}
            )
        return self


class NegotiationStep(StepBase):
    """Parties exchange offers over ``terms`` until one accepts the other's, in ``max_rounds``."""

    kind: Literal["negotiation"]
    parties: list[Annotated[str, Field(min_length=1)]] = Field(min_length=2)
    terms: dict[Name, Term] = Field(min_length=1)
    max_rounds: int = Field(default=10, ge=1, le=1000)
    prompt: TemplateField | None = None


class AgentStep(StepBase):
    """An AI step: a model reasons over the prompt and may call tools."""

    kind: Literal["agent"]
    model: str = Field(min_length=1)
    prompt: TemplateField
    system: TemplateField | None = None
    tools: list[str] = empty_list()
    max_turns: int = Field(default=8, ge=1, le=1000)
    temperature: float | None = Field(default=None, ge=0, le=2)


class EventStep(StepBase):
    """Waits for an event on ``topic`` whose payload matches ``correlate``."""

    kind: Literal["event"]
    topic: str = Field(min_length=1, pattern=TOPIC_PATTERN)
    correlate: ExpressionField | None = None


class TimerStep(StepBase):
    """A durable sleep: ``for`` a duration or ``until`` a time (an expression)."""

    kind: Literal["timer"]
    for_: Duration | None = Field(default=None, alias="for")
    until: ExpressionField | None = None

    @model_validator(mode="after")
    def _for_or_until(self) -> TimerStep:
        missing = "a timer needs 'for' (a duration) or 'until' (an expression)"
        _one_of(self.for_, self.until, missing, "a timer", ("for", "until"))
        return self


class SubworkflowStep(StepBase):
    """Runs another workflow (a file path or an id) and returns its outputs."""

    kind: Literal["subworkflow"]
    workflow: str = Field(min_length=1)


class NoopStep(StepBase):
    """Does nothing: a join point or a compensation anchor. With ``external`` it stands for
    work done outside Wayang and waits until ``wayang complete`` records its outputs."""

    kind: Literal["noop"]
    external: bool = False


STEP_MODELS: dict[str, type[StepBase]] = {
    "task": TaskStep,
    "decision": DecisionStep,
    "approval": ApprovalStep,
    "negotiation": NegotiationStep,
    "agent": AgentStep,
    "event": EventStep,
    "timer": TimerStep,
    "subworkflow": SubworkflowStep,
    "noop": NoopStep,
}


def step_kind(value: Any) -> str | None:
    """The union tag of a raw or validated step; ``None`` for an unknown kind."""
    kind = value.get("kind", "task") if isinstance(value, dict) else getattr(value, "kind", None)
    return kind if kind in STEP_MODELS else None


Step = Annotated[
    Annotated[TaskStep, Tag("task")]
    | Annotated[DecisionStep, Tag("decision")]
    | Annotated[ApprovalStep, Tag("approval")]
    | Annotated[NegotiationStep, Tag("negotiation")]
    | Annotated[AgentStep, Tag("agent")]
    | Annotated[EventStep, Tag("event")]
    | Annotated[TimerStep, Tag("timer")]
    | Annotated[SubworkflowStep, Tag("subworkflow")]
    | Annotated[NoopStep, Tag("noop")],
    Discriminator(
        step_kind,
        custom_error_type="step_kind",
        custom_error_message="unknown step kind",
    ),
]


# --- policy ----------------------------------------------------------------------------------


class PolicyRule(Spec):
    """One rule: where it applies (``action``, ``steps``, ``kinds``, ``when``) and what it asks.

    An applicable rule denies unless ``require`` holds (or always, with ``deny = true``).
    """

    name: Annotated[str, Field(min_length=1, max_length=128)]
    action: list[
        Literal[
            "start", "execute", "transition", "approve", "reject", "offer", "accept", "complete"
        ]
    ] = Field(min_length=1)
    steps: list[StepId] = empty_list()
    kinds: list[
        Literal[
            "task",
            "decision",
            "approval",
            "negotiation",
            "agent",
            "event",
            "timer",
            "subworkflow",
            "noop",
        ]
    ] = empty_list()
    when: ExpressionField | None = None
    require: ExpressionField | None = None
    deny: bool = False
    message: str = ""

    @field_validator("action", mode="before")
    @classmethod
    def _one_action(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _require_or_deny(self) -> PolicyRule:
        _one_of(
            self.require if self.require is not None else None,
            True if self.deny else None,
            "a rule needs 'require' (an expression that must hold) or 'deny = true'",
            "a rule",
            ("require", "deny"),
        )
        return self


class Policy(Spec):
    """``[policy]`` (and a project's policy file): limits, compliance, roles and rules."""

    max_parallel: int | None = Field(default=None, ge=1)
    max_duration: Duration | None = None
    allowed_tools: list[Annotated[str, Field(min_length=1)]] | None = None
    allowed_env: list[EnvName] | None = None
    roles: dict[Name, list[Annotated[str, Field(min_length=1)]]] = empty_dict()
    rules: list[PolicyRule] = empty_list()
    engine: str | None = None  # an external policy engine (entry point) decides instead


class Workflow(Spec):
    """A whole ``workflow.toml``."""

    id: WorkflowId
    name: str = ""
    version: SemVer = "0.1.0"
    description: str = ""
    tags: list[Annotated[str, Field(min_length=1, max_length=64)]] = empty_list()
    license: str = ""
    homepage: str = ""
    parameters: dict[Name, Parameter] = empty_dict()
    artifacts: dict[Name, Artifact] = empty_dict()
    requirements: Requirements = Requirements()
    defaults: Defaults = Defaults()
    actions: dict[StepId, Action] = empty_dict()
    steps: dict[StepId, Step] = Field(min_length=1)
    transitions: list[Transition] = empty_list()
    on_failure: Literal["stop", "compensate"] = "stop"
    outputs: dict[Name, TemplateField] = empty_dict()
    policy: Policy = Policy()

    @property
    def title(self) -> str:
        """What to call the workflow in a heading."""
        return self.name or self.id
