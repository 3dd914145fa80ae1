"""The planner: a validated workflow + parameter values + environment → an execution plan.

A plan is the step graph in a runnable order with every command, input and environment value that
can be known before the run already resolved. Values that read ``steps.*`` or ``run.*`` can only be
known while the run executes; they stay *deferred* (their template is kept) and the engine renders
them at dispatch. Planning is pure: the caller passes the environment in.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from wayang.errors import Diagnostic, ExpressionError, PlanError
from wayang.model.expr import Expression, Template, evaluate_template
from wayang.model.graph import StepGraph
from wayang.model.keys import did_you_mean
from wayang.model.params import parse_parameter_text, value_problems
from wayang.model.placement import placement_tokens
from wayang.model.spec import Action, Retry, StepBase, TaskStep, Workflow, names_action
from wayang.model.validate import build_graph, compensation_steps

RUNTIME_ROOTS = frozenset({"steps", "run"})
_COMMON_KEYS = frozenset(StepBase.model_fields) | {"kind", "run", "uses", "queue", "runs_on"}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A step's effective retry policy, with durations in seconds and jitter as a fraction."""

    attempts: int = 1
    backoff: str = "exponential"
    delay_s: float = 1.0
    max_delay_s: float = 300.0
    jitter: float = 0.2

    @classmethod
    def from_spec(cls, retry: Retry | None) -> RetryPolicy:
        if retry is None:
            return cls()
        jitter = (
            retry.jitter if not isinstance(retry.jitter, bool) else (0.2 if retry.jitter else 0.0)
        )
        return cls(retry.attempts, retry.backoff, retry.delay, retry.max_delay, float(jitter))


@dataclass(frozen=True, slots=True)
class PlannedStep:
    """One step, ready for the engine: resolved where possible, deferred where not."""

    id: str
    kind: str
    name: str
    needs: tuple[str, ...]
    command: str | None
    uses: str | None
    inputs: dict[str, Any]
    env: dict[str, str]
    deferred: tuple[str, ...]
    when: str | None
    workspace: str
    timeout_s: float | None
    retry: RetryPolicy
    continue_on_error: bool
    compensate: str | None
    compensation_only: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    # Where the step's tasks run: their queue, and the placement tokens of its ``runs_on``.
    queue: str = "default"
    runs_on: tuple[str, ...] = ()
    run_template: Template | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "run_template"}
        data["needs"] = list(self.needs)
        data["runs_on"] = list(self.runs_on)
        data["deferred"] = list(self.deferred)
        data["retry"] = {k: getattr(self.retry, k) for k in self.retry.__dataclass_fields__}
        return data


@dataclass(frozen=True, slots=True)
class Plan:
    """A whole run's plan: steps in an order that respects every dependency."""

    workflow_id: str
    workflow_name: str
    version: str
    params: dict[str, Any]
    steps: tuple[PlannedStep, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "workflow": {
                "id": self.workflow_id,
                "name": self.workflow_name,
                "version": self.version,
            },
            "params": self.params,
            "steps": [step.to_dict() for step in self.steps],
        }


def plan_workflow(
    workflow: Workflow,
    params: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    env_overrides: Mapping[str, str] | None = None,
    params_are_text: bool = False,
    graph: StepGraph | None = None,
) -> Plan:
    """Resolve ``workflow`` with parameter values and environment into a :class:`Plan`.

    ``params`` are typed values, or text from ``--param k=v`` when ``params_are_text``.
    ``environ`` is what ``env.*`` reads (the caller's process environment, typically);
    ``env_overrides`` are layered over it and exported to every step. ``graph``: the
    workflow's step graph, when the caller has built it already.
    """
    values = resolve_parameters(workflow, params or {}, params_are_text)
    overrides = dict(env_overrides or {})
    context = _Context(workflow, values, {**(environ or {}), **overrides}, overrides)
    graph = graph or build_graph(workflow)
    undo = compensation_steps(workflow)
    steps = tuple(
        context.plan_step(
            step_id, workflow.steps[step_id], tuple(graph.forward_predecessors(step_id))
        )
        for step_id in graph.topological_order()
    )
    steps = tuple(replace(s, compensation_only=True) if s.id in undo else s for s in steps)
    return Plan(workflow.id, workflow.title, workflow.version, values, steps)


def resolve_parameters(
    workflow: Workflow, given: Mapping[str, Any], given_as_text: bool = False
) -> dict[str, Any]:
    """Every declared parameter's value; ``PlanError`` naming each problem if any."""
    problems: list[Diagnostic] = []
    declared = workflow.parameters
    for name in given:
        if name not in declared:
            hint = did_you_mean(name, declared) or (
                "; this workflow declares no parameters" if not declared else ""
            )
            problems.append(_param_problem(name, f"unknown parameter '{name}'{hint}"))
    values: dict[str, Any] = {}
    for name, parameter in declared.items():
        if name not in given:
            if parameter.required:
                message = f"missing required parameter '{name}': pass --param {name}=VALUE"
                problems.append(_param_problem(name, message))
            values[name] = parameter.default
            continue
        value = given[name]
        try:
            if given_as_text and isinstance(value, str):
                value = parse_parameter_text(parameter, value)
        except ValueError as exc:
            problems.append(_param_problem(name, f"parameter '{name}' {exc}"))
            continue
        problems.extend(
            _param_problem(name, f"parameter '{name}' {p}")
            for p in value_problems(parameter, value)
        )
        values[name] = value
    if problems:
        raise PlanError(problems)
    return values


def _param_problem(name: str, message: str) -> Diagnostic:
    return Diagnostic(f"--param {name}", 0, 0, message, code="parameter")


def _stringify(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _runtime_roots(value: Expression | Template) -> set[str]:
    expressions = (value,) if isinstance(value, Expression) else value.expressions
    return {ref.path[0] for e in expressions for ref in e.references} & RUNTIME_ROOTS


@dataclass(frozen=True, slots=True)
class ResolvedStep:
    """A step with every value rendered, at the moment it is dispatched."""

    command: str | None
    uses: str | None
    inputs: dict[str, Any]
    env: dict[str, str]


def resolve_at_runtime(
    workflow: Workflow,
    step_id: str,
    params: Mapping[str, Any],
    *,
    environ: Mapping[str, str],
    env_overrides: Mapping[str, str],
    steps: Mapping[str, Any],
    run: Mapping[str, Any],
    inputs: Mapping[str, Any] | None = None,
) -> ResolvedStep:
    """Render ``step_id`` with the run's values so far; ``ExpressionError`` if one fails.

    ``inputs`` (from transitions' ``map``) replace the step's own inputs of the same name
    before anything that reads ``inputs.*`` is rendered.
    """
    context = _Context(
        workflow, dict(params), {**environ, **env_overrides}, dict(env_overrides), final=True
    )
    context.runtime = {"steps": steps, "run": run}
    context.given_inputs = dict(inputs or {})
    planned = context.plan_step(step_id, workflow.steps[step_id], ())
    return ResolvedStep(planned.command, planned.uses, planned.inputs, planned.env)


class _Context:
    """What planning one run knows: the workflow, parameter values and environment.

    With ``final`` (at dispatch time) the run-time names are in scope and nothing is deferred.
    """

    def __init__(
        self,
        workflow: Workflow,
        params: dict[str, Any],
        environ: dict[str, str],
        overrides: dict[str, str],
        final: bool = False,
    ) -> None:
        self.workflow = workflow
        self.params = params
        self.environ = environ
        self.overrides = overrides
        self.final = final
        self.runtime: dict[str, Any] = {}
        self.given_inputs: dict[str, Any] = {}
        self.param_env = {f"WAYANG_PARAM_{k.upper()}": _stringify(v) for k, v in params.items()}

    def _defers(self, value: Expression | Template) -> bool:
        return not self.final and bool(_runtime_roots(value))

    def plan_step(self, step_id: str, step: StepBase, needs: tuple[str, ...]) -> PlannedStep:
        defaults = self.workflow.defaults
        action = self._action_of(step)
        deferred: list[str] = []
        inputs = self._inputs(step, action, deferred)
        scope = {"params": self.params, "env": self.environ, "inputs": inputs, **self.runtime}
        run_template = self._run_template(step, action)
        command = self._render(run_template, scope, "run", deferred, quote=True)
        env = self._env(step, action, scope, deferred)
        return PlannedStep(
            id=step_id,
            kind=step.kind,  # type: ignore[attr-defined]
            name=step.name or step_id,
            needs=needs,
            command=command,
            uses=self._uses_ref(step, action),
            inputs=inputs,
            env=env,
            deferred=tuple(deferred),
            when=step.when.source if step.when is not None else None,
            workspace=step.workspace or defaults.workspace or "inherit",
            timeout_s=step.timeout if step.timeout is not None else defaults.timeout,
            retry=RetryPolicy.from_spec(step.retry or defaults.retry),
            continue_on_error=step.continue_on_error,
            compensate=step.compensate,
            config=step.model_dump(mode="json", by_alias=True, exclude=set(_COMMON_KEYS)),
            run_template=run_template,
            queue=getattr(step, "queue", None) or defaults.queue or "default",
            runs_on=placement_tokens(getattr(step, "runs_on", None) or defaults.runs_on),
        )

    def _action_of(self, step: StepBase) -> Action | None:
        if isinstance(step, TaskStep) and names_action(step.uses):
            return self.workflow.actions[step.uses]
        return None

    @staticmethod
    def _run_template(step: StepBase, action: Action | None) -> Template | None:
        if action is not None:
            return action.run
        return step.run if isinstance(step, TaskStep) else None

    @staticmethod
    def _uses_ref(step: StepBase, action: Action | None) -> str | None:
        if action is not None:
            return action.uses
        return step.uses if isinstance(step, TaskStep) else None

    def _inputs(self, step: StepBase, action: Action | None, deferred: list[str]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        if action is not None:
            merged = {k: v.default for k, v in action.inputs.items() if v.default is not None}
        scope = {"params": self.params, "env": self.environ, **self.runtime}
        for key, value in step.inputs.items():
            if key not in self.given_inputs:
                merged[key] = self._resolve_value(value, scope, f"inputs.{key}", deferred)
        merged.update(self.given_inputs)
        return merged

    def _resolve_value(
        self, value: Any, scope: dict[str, Any], label: str, deferred: list[str]
    ) -> Any:
        if isinstance(value, Template):
            if self._defers(value):
                deferred.append(label)
                return value.source
            return self._evaluate_template(value, scope, label)
        if isinstance(value, list):
            return [self._resolve_value(v, scope, label, deferred) for v in value]
        if isinstance(value, dict):
            return {k: self._resolve_value(v, scope, label, deferred) for k, v in value.items()}
        return value

    @staticmethod
    def _evaluate_template(template: Template, scope: dict[str, Any], label: str) -> Any:
        try:
            return evaluate_template(template, scope)
        except ExpressionError as exc:
            raise PlanError([Diagnostic(label, 0, 0, exc.message, code="expression")]) from None

    def _render(
        self,
        template: Template | None,
        scope: dict[str, Any],
        label: str,
        deferred: list[str],
        quote: bool = False,
    ) -> str | None:
        if template is None:
            return None
        if self._defers(template) or label in deferred or self._reads_deferred(template, deferred):
            deferred.append(label)
            return None
        try:
            return template.render(scope, shlex.quote if quote else None)
        except ExpressionError as exc:
            raise PlanError([Diagnostic(label, 0, 0, exc.message, code="expression")]) from None

    @staticmethod
    def _reads_deferred(template: Template, deferred: list[str]) -> bool:
        names = {
            f"inputs.{ref.path[1]}"
            for e in template.expressions
            for ref in e.references
            if ref.path[0] == "inputs" and len(ref.path) > 1
        }
        return bool(names & set(deferred))

    def _env(
        self, step: StepBase, action: Action | None, scope: dict[str, Any], deferred: list[str]
    ) -> dict[str, str]:
        layers = [self.workflow.defaults.env, action.env if action else {}, step.env]
        env: dict[str, str] = dict(self.param_env)
        for layer in layers:
            for key, template in layer.items():
                label = f"env.{key}"
                rendered = self._render(template, scope, label, deferred)
                env[key] = rendered if rendered is not None else template.source
        env.update(self.overrides)
        return env
