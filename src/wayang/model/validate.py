"""Meaning checks on a workflow whose shape is valid: references, cycles, names, rules.

Every finding goes to the :class:`~wayang.model.source.SourceFile` as a diagnostic pointing at the
key or value at fault, so a user sees all of them at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from wayang.model.expr import Expression, Template
from wayang.model.graph import Edge, StepGraph
from wayang.model.keys import did_you_mean
from wayang.model.params import value_problems
from wayang.model.source import SourceFile
from wayang.model.spec import (
    JUST_PREFIX,
    Action,
    DecisionStep,
    EventStep,
    Parameter,
    StepBase,
    TaskStep,
    Workflow,
    names_action,
)
from wayang.model.toml_positions import Path

RUN_FIELDS = ("id", "workflow", "attempt", "started_by", "started_at")
STEP_FIELDS = ("outputs", "status", "visits")
# What a policy rule's expressions may name beyond params, env, run and steps.
POLICY_ROOTS = ("actor", "step", "offer", "vote", "inputs")
JUST_INPUTS = ("args", "justfile")
_TOML_TYPES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    list: "a list",
    dict: "a table",
}


def check_workflow(workflow: Workflow, source: SourceFile) -> None:
    """Run every meaning check on a shape-valid workflow."""
    graph = build_graph(workflow)
    _check_graph(graph, source)
    _check_parameters(workflow.parameters, source)
    _check_artifacts(workflow, source)
    _check_actions(workflow, source)
    for step_id, step in workflow.steps.items():
        _check_step(workflow, graph, step_id, step, source)
    _check_defaults_env(workflow, source)
    _check_compensation_isolated(workflow, graph, source)
    _check_transitions(workflow, graph, source)
    _check_policy(workflow, source)


# --- the graph -------------------------------------------------------------------------------


def build_graph(workflow: Workflow) -> StepGraph:
    """The step graph of a workflow: ``needs``, decision branches, ``next`` and transitions."""
    return StepGraph(list(workflow.steps), _edges(workflow))


def _edges(workflow: Workflow) -> Iterator[Edge]:
    for step_id, step in workflow.steps.items():
        for index, before in enumerate(step.needs):
            yield Edge(before, step_id, ("steps", step_id, "needs", index))
        if isinstance(step, DecisionStep):
            for index, case in enumerate(step.cases):
                where: Path = ("steps", step_id, "cases", index, "next")
                yield Edge(step_id, case.next, where, "branch")
            if step.default is not None:
                yield Edge(step_id, step.default, ("steps", step_id, "default"), "branch")
        for index, hop in enumerate(step.next):
            yield Edge(
                step_id, hop.to, ("steps", step_id, "next", index), "next", hop.when, dict(hop.map)
            )
    for index, t in enumerate(workflow.transitions):
        yield Edge(
            t.from_, t.to, ("transitions", index), "transition", t.when, dict(t.map),
            t.on, t.correlate, t.timeout,
        )  # fmt: skip


def _check_graph(graph: StepGraph, source: SourceFile) -> None:
    known = set(graph.step_ids)
    for edge in graph.edges:
        for ref in (edge.before, edge.after):
            if ref not in known:
                hint = did_you_mean(ref, graph.step_ids)
                where = (*edge.path, "from" if ref == edge.before else "to")
                path = where if edge.kind == "transition" else edge.path
                source.error(path, f"unknown step '{ref}'{hint}", "unknown-step")
        if edge.before == edge.after and edge.kind == "needs":
            source.error(edge.path, f"step '{edge.before}' cannot depend on itself", "cycle")
    # Only `needs` may not loop: a loop is written with transitions, `next` or a decision.
    needs_only = StepGraph(graph.step_ids, (e for e in graph.edges if e.kind == "needs"))
    for cycle in needs_only.find_cycles():
        if len(cycle) > 2:
            path = graph.edge_path(cycle[-2], cycle[-1])
            message = (
                f"dependency cycle: {' → '.join(cycle)}; 'needs' cannot loop — write a loop "
                "with [[transitions]] or 'next' and a max_visits limit"
            )
            source.error(path, message, "cycle")


def _check_transitions(workflow: Workflow, graph: StepGraph, source: SourceFile) -> None:
    """A transition's ``when`` reads its source's outputs (and ``event`` with ``on``)."""
    for edge in graph.edges:
        if edge.kind not in ("next", "transition") or edge.after not in workflow.steps:
            continue
        target = workflow.steps[edge.after]
        scope = Scope(workflow, graph, frozenset(target.inputs), step_id=edge.after)
        if edge.on is not None:
            scope = scope.with_roots("event")
        if edge.when is not None:
            _check_text(scope, (*edge.path, "when"), edge.when, source)
        if edge.correlate is not None:
            correlate_scope = replace(scope.with_roots("event"), step_id=None)
            _check_text(correlate_scope, (*edge.path, "correlate"), edge.correlate, source)
        if edge.after in compensation_steps(workflow):
            message = f"step '{edge.after}' is a compensation step; no transition may lead to it"
            source.error(edge.path, message, "compensate")


def _check_policy(workflow: Workflow, source: SourceFile) -> None:
    scope = Scope(workflow, None, frozenset(), extra_roots=frozenset(POLICY_ROOTS))
    scope = replace(scope, allow_inputs=False)
    if workflow.policy.engine is not None:
        message = (
            "'engine' is a project setting: name the policy engine in wayang.policy.toml, "
            "where it governs every workflow, and remove it here"
        )
        source.key_error(("policy", "engine"), message, "conflict")
    for index, rule in enumerate(workflow.policy.rules):
        where: Path = ("policy", "rules", index)
        for step_index, step_id in enumerate(rule.steps):
            if step_id not in workflow.steps:
                hint = did_you_mean(step_id, workflow.steps)
                message = f"rule '{rule.name}' names unknown step '{step_id}'{hint}"
                source.error((*where, "steps", step_index), message, "unknown-step")
        for key in ("when", "require"):
            value = getattr(rule, key)
            if value is not None:
                _check_text(scope, (*where, key), value, source)


# --- parameters, artifacts, actions ------------------------------------------------------------


def _check_parameters(parameters: Mapping[str, Parameter], source: SourceFile) -> None:
    for name, parameter in parameters.items():
        where: Path = ("parameters", name)
        for index, option in enumerate(parameter.enum or []):
            for problem in _type_problems(parameter, option):
                source.error((*where, "enum", index), f"enum value {problem}", "type")
        if parameter.default is None:
            continue
        if parameter.required:
            message = "a required parameter cannot have a default: remove 'required' or 'default'"
            source.key_error((*where, "required"), message, "conflict")
        for problem in value_problems(parameter, parameter.default):
            source.error((*where, "default"), f"default {problem}", "type")
        if parameter.pattern is not None and parameter.type not in ("string", "path"):
            message = f"'pattern' applies to string and path parameters, not {parameter.type}"
            source.key_error((*where, "pattern"), message, "conflict")


def _type_problems(parameter: Parameter, value: Any) -> list[str]:
    problems = value_problems(parameter.model_copy(update={"enum": None}), value)
    return problems[:1] if problems and "must be" in problems[0] else []


def _check_artifacts(workflow: Workflow, source: SourceFile) -> None:
    for name, artifact in workflow.artifacts.items():
        parts = artifact.path.replace("\\", "/").split("/")
        if artifact.path.startswith("/") or ".." in parts:
            message = "an artifact path is a glob inside the workspace: no leading '/' or '..'"
            source.error(("artifacts", name, "path"), message, "path")


def _check_actions(workflow: Workflow, source: SourceFile) -> None:
    for name, action in workflow.actions.items():
        scope = Scope(workflow, None, frozenset(action.inputs), allow_steps=False)
        for path, value in _action_texts(action):
            _check_text(scope, ("actions", name, *path), value, source)


def _action_texts(action: Action) -> Iterator[tuple[Path, Template]]:
    if action.run is not None:
        yield ("run",), action.run
    for key, value in action.env.items():
        yield ("env", key), value


# --- steps -----------------------------------------------------------------------------------


def _check_step(
    workflow: Workflow, graph: StepGraph, step_id: str, step: StepBase, source: SourceFile
) -> None:
    where: Path = ("steps", step_id)
    if step.compensate is not None:
        _check_compensate(workflow, step_id, step.compensate, source)
    if isinstance(step, TaskStep) and names_action(step.uses):
        _check_action_use(workflow, step_id, step, source)
    if isinstance(step, TaskStep) and (step.uses or "").startswith(JUST_PREFIX):
        _check_just_use(step_id, step, source)
    scope = Scope(workflow, graph, frozenset(step.inputs), step_id=step_id)
    for path, value in step_texts(step):
        _check_text(_scope_at(scope, step, path), (*where, *path), value, source)


def _scope_at(scope: Scope, step: StepBase, path: Path) -> Scope:
    """Inputs cannot read inputs (they are being made); only ``correlate`` sees the event;
    only ``emit`` sees the step's own outputs."""
    if path[:1] == ("inputs",):
        return scope.without_inputs()
    if isinstance(step, EventStep) and path == ("correlate",):
        return scope.with_roots("event")
    if path[:1] == ("emit",):  # published once the step succeeded: its outputs are known
        return scope.without_inputs().with_roots("outputs")
    return scope


def _check_compensate(workflow: Workflow, step_id: str, target: str, source: SourceFile) -> None:
    path: Path = ("steps", step_id, "compensate")
    if target == step_id:
        source.error(path, "a step cannot compensate itself", "compensate")
    elif target not in workflow.steps:
        hint = did_you_mean(target, workflow.steps)
        source.error(path, f"unknown compensation step '{target}'{hint}", "unknown-step")


def compensation_steps(workflow: Workflow) -> frozenset[str]:
    """Steps named by some ``compensate``: they run only to undo, never in the normal flow."""
    return frozenset(s.compensate for s in workflow.steps.values() if s.compensate is not None)


def _check_compensation_isolated(workflow: Workflow, graph: StepGraph, source: SourceFile) -> None:
    undo = compensation_steps(workflow)
    for edge in graph.edges:
        if edge.before in undo and edge.after in workflow.steps:
            message = (
                f"step '{edge.before}' is a compensation step (it only runs to undo a failure), "
                f"so '{edge.after}' cannot come after it"
            )
            source.error(edge.path, message, "compensate")


def _check_action_use(workflow: Workflow, step_id: str, step: TaskStep, source: SourceFile) -> None:
    name = step.uses or ""
    action = workflow.actions.get(name)
    if action is None:
        define = f"; define [actions.{name}] or write 'python:package.module:function'"
        message = f"unknown action '{name}'" + (did_you_mean(name, workflow.actions) or define)
        source.error(("steps", step_id, "uses"), message, "unknown-action")
        return
    for key in step.inputs:
        if key not in action.inputs:
            hint = did_you_mean(key, action.inputs)
            message = f"action '{name}' has no input '{key}'{hint}"
            source.key_error(("steps", step_id, "inputs", key), message, "unknown-input")
    for key, spec in action.inputs.items():
        if spec.required and spec.default is None and key not in step.inputs:
            message = f"action '{name}' needs input '{key}': add inputs.{key} to this step"
            source.key_error(("steps", step_id, "uses"), message, "missing-input")


def _check_just_use(step_id: str, step: TaskStep, source: SourceFile) -> None:
    where: Path = ("steps", step_id, "inputs")
    for key in step.inputs:
        if key not in JUST_INPUTS:
            hint = did_you_mean(key, JUST_INPUTS) or "; its inputs are 'args' and 'justfile'"
            message = f"a just recipe step has no input '{key}'{hint}"
            source.key_error((*where, key), message, "unknown-input")
    if "args" in step.inputs:
        _check_just_args(step.inputs["args"], (*where, "args"), source)
    if "justfile" in step.inputs:
        _check_justfile(step.inputs["justfile"], (*where, "justfile"), source)


def _check_just_args(args: Any, where: Path, source: SourceFile) -> None:
    if not isinstance(args, list):
        message = 'inputs.args of a just recipe step is a list of strings, e.g. ["--fix", "src"]'
        source.error(where, message, "type")
        return
    for index, arg in enumerate(args):
        if not isinstance(arg, Template):
            message = f"inputs.args[{index}] is {_toml_type(arg)}; write it as a string"
            source.error((*where, index), message, "type")


def _check_justfile(justfile: Any, where: Path, source: SourceFile) -> None:
    if not isinstance(justfile, Template):
        message = f"inputs.justfile is {_toml_type(justfile)}; write a path as a string"
        source.error(where, message, "type")
    elif justfile.is_literal and not _relative_inside(justfile.source):
        message = (
            "inputs.justfile is a path relative to the step's directory, without '..' "
            f"(got '{justfile.source}')"
        )
        source.error(where, message, "path")


def _relative_inside(path: str) -> bool:
    """Whether ``path`` is relative and stays below where it starts (no leading '/', no '..')."""
    parts = path.replace("\\", "/").split("/")
    return bool(path) and not path.startswith("/") and ".." not in parts


def _toml_type(value: Any) -> str:
    return _TOML_TYPES.get(type(value), "a date or time")  # the only TOML type left


def step_texts(step: StepBase) -> Iterator[tuple[Path, Expression | Template]]:
    """Every expression and template a step holds, with its path inside the step."""
    if step.when is not None:
        yield ("when",), step.when
    for key, value in step.env.items():
        yield ("env", key), value
    yield from _nested_templates(step.inputs, ("inputs",))
    for field in ("run", "prompt", "system", "until", "correlate"):
        text = getattr(step, field, None)
        if isinstance(text, Expression | Template):
            yield (field,), text
    if isinstance(step, DecisionStep):
        for index, case in enumerate(step.cases):
            yield ("cases", index, "when"), case.when
    for index, emit in enumerate(step.emit):
        yield from _nested_templates(emit.data, ("emit", index, "data"))
        for field in ("key", "when"):
            text = getattr(emit, field)
            if text is not None:
                yield ("emit", index, field), text


def _nested_templates(value: Any, path: Path) -> Iterator[tuple[Path, Template]]:
    if isinstance(value, Template):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _nested_templates(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nested_templates(item, (*path, index))


# --- names inside expressions -------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """What the expressions of one place may name."""

    workflow: Workflow
    graph: StepGraph | None
    inputs: frozenset[str]
    step_id: str | None = None
    allow_steps: bool = True
    extra_roots: frozenset[str] = frozenset()

    allow_inputs: bool = True

    def with_roots(self, *roots: str) -> Scope:
        return replace(self, extra_roots=self.extra_roots | frozenset(roots))

    def without_inputs(self) -> Scope:
        return replace(self, allow_inputs=False)

    @property
    def roots(self) -> tuple[str, ...]:
        base: tuple[str, ...] = ("params", "env", "run")
        base += ("inputs",) if self.allow_inputs else ()
        base += ("steps",) if self.allow_steps else ()
        return base + tuple(sorted(self.extra_roots))


def _check_defaults_env(workflow: Workflow, source: SourceFile) -> None:
    """``[defaults] env`` applies to every step, so it may not read any one step's values."""
    scope = Scope(workflow, None, frozenset(), allow_steps=False, allow_inputs=False)
    for key, value in workflow.defaults.env.items():
        _check_text(scope, ("defaults", "env", key), value, source)


def _check_text(scope: Scope, path: Path, value: Expression | Template, source: SourceFile) -> None:
    for ref_path, offset in references_with_offsets(value):
        problem = _reference_problem(scope, ref_path)
        if problem:
            source.error_in_string(path, offset, problem, "unknown-name")


def references_with_offsets(value: Expression | Template) -> Iterator[tuple[tuple[str, ...], int]]:
    """Each name path read by ``value`` and its offset in the text as written."""
    if isinstance(value, Expression):
        for ref in value.references:
            yield ref.path, ref.offset
        return
    for expression, start in zip(value.expressions, value.expression_offsets, strict=True):
        for ref in expression.references:
            yield ref.path, start + ref.offset


def _reference_problem(scope: Scope, path: tuple[str, ...]) -> str | None:
    root = path[0]
    if root not in scope.roots:
        names = "; names here are " + ", ".join(scope.roots)
        return f"unknown name '{root}'" + (did_you_mean(root, scope.roots) or names)
    checks = {"params": _param_ref, "steps": _step_ref, "run": _run_ref, "inputs": _input_ref}
    check = checks.get(root)
    return check(scope, path) if check and len(path) > 1 else None


def _param_ref(scope: Scope, path: tuple[str, ...]) -> str | None:
    names = scope.workflow.parameters
    if path[1] in names:
        return None
    return f"unknown parameter '{path[1]}'{did_you_mean(path[1], names)}" + (
        "" if names else "; declare it under [parameters]"
    )


def _step_ref(scope: Scope, path: tuple[str, ...]) -> str | None:
    target, steps = path[1], scope.workflow.steps
    if target not in steps:
        return f"unknown step '{target}'{did_you_mean(target, steps)}"
    if target == scope.step_id:
        return f"step '{target}' cannot read its own outputs or status"
    if (
        scope.graph is not None
        and scope.step_id
        and not scope.graph.is_ancestor(target, scope.step_id)
    ):
        return (
            f"step '{scope.step_id}' reads steps.{target} but does not come after it; "
            f'add "{target}" to its needs'
        )
    if len(path) > 2 and path[2] not in STEP_FIELDS:
        return f"steps.{target} has no '{path[2]}'; use steps.{target}.outputs.<key> or .status"
    return None


def _run_ref(scope: Scope, path: tuple[str, ...]) -> str | None:
    if path[1] in RUN_FIELDS:
        return None
    fields = ", ".join(f"run.{f}" for f in RUN_FIELDS)
    return f"run has no '{path[1]}'" + (did_you_mean(path[1], RUN_FIELDS) or f"; use {fields}")


def _input_ref(scope: Scope, path: tuple[str, ...]) -> str | None:
    if path[1] in scope.inputs:
        return None
    return f"unknown input '{path[1]}'{did_you_mean(path[1], scope.inputs)}"


__all__ = [
    "build_graph",
    "check_workflow",
    "compensation_steps",
    "step_texts",
]
