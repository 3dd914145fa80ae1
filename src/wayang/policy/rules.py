"""The rule engine: a project's policy and a workflow's ``[policy]``, merged and enforced.

:func:`merge` combines the two (the narrower limit wins, rules run project first);
:class:`RuleGate` answers the core's :class:`~wayang.engine.gate.PolicyRequest` with a
:class:`~wayang.engine.gate.Verdict`. Everything here is pure: the same request gets the same
verdict, which recovery and replay rely on.

Checking the first word of a command against ``allowed_tools`` guards against mistakes; it is not
a sandbox (a shell script can still call anything it can reach).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from wayang.engine.gate import PolicyRequest, Verdict
from wayang.errors import ExpressionError
from wayang.model.expr import Expression, truthy
from wayang.model.spec import Policy, PolicyRule

_N = TypeVar("_N", int, float)
_SYSTEM_ENV_PREFIX = "WAYANG_"


# --- merging ---------------------------------------------------------------------------------


def merge(project: Policy | None, workflow: Policy) -> Policy:
    """One policy from a project's and a workflow's: whichever is stricter wins.

    Rules: the project's first, then the workflow's. Roles: the union of members per role.
    ``allowed_tools`` / ``allowed_env``: the intersection when both are set, else whichever is.
    ``max_parallel`` / ``max_duration``: the smaller when both are set. ``engine``: the
    project's (a workflow cannot pick who judges it).
    """
    if project is None:
        return workflow.model_copy(update={"engine": None})
    return Policy().model_copy(
        update={
            "max_parallel": _smaller(project.max_parallel, workflow.max_parallel),
            "max_duration": _smaller(project.max_duration, workflow.max_duration),
            "allowed_tools": _intersect(project.allowed_tools, workflow.allowed_tools),
            "allowed_env": _intersect(project.allowed_env, workflow.allowed_env),
            "roles": _merge_roles(project.roles, workflow.roles),
            "rules": [*project.rules, *workflow.rules],
            "engine": project.engine,
        }
    )


def _smaller(first: _N | None, second: _N | None) -> _N | None:
    if first is None:
        return second
    if second is None:
        return first
    return min(first, second)


def _intersect(first: list[str] | None, second: list[str] | None) -> list[str] | None:
    if first is None:
        return None if second is None else list(second)
    if second is None:
        return list(first)
    allowed = set(second)
    return list(dict.fromkeys(item for item in first if item in allowed))


def _merge_roles(*tables: Mapping[str, list[str]]) -> dict[str, list[str]]:
    roles: dict[str, list[str]] = {}
    for table in tables:
        for role, members in table.items():
            merged = roles.setdefault(role, [])
            merged.extend(member for member in members if member not in merged)
    return roles


# --- the gate --------------------------------------------------------------------------------


class RuleGate:
    """Enforces a (merged) :class:`~wayang.model.spec.Policy`: compliance, then rules."""

    __slots__ = ("_members", "_policy", "allows_everything")

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._members = {role: frozenset(members) for role, members in policy.roles.items()}
        # Limits alone deny nothing here (the run's plan applies them): the core need not ask.
        self.allows_everything = (
            not policy.rules and policy.allowed_tools is None and policy.allowed_env is None
        )

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def max_parallel(self) -> int | None:
        """At most this many steps of a run at once (``None``: no policy limit)."""
        return self._policy.max_parallel

    @property
    def max_duration(self) -> float | None:
        """A run may take at most this many seconds (``None``: no policy limit)."""
        return self._policy.max_duration

    def roles_of(self, user: str) -> tuple[str, ...]:
        """The roles whose members include ``user``, sorted."""
        return tuple(sorted(role for role, members in self._members.items() if user in members))

    def check(self, request: PolicyRequest) -> Verdict:
        """The verdict on ``request``: the first denial, else allowed with the rules that
        applied. A rule that cannot be evaluated denies (fail closed)."""
        if request.action == "execute":
            denial = self._compliance(request)
            if denial is not None:
                return denial
        scope = self._scope(request)
        applied: list[str] = []
        for rule in self._policy.rules:
            if not _in_reach(rule, request):
                continue
            current = rule.when
            try:
                if rule.when is not None and not truthy(rule.when.evaluate(scope)):
                    continue
                current = rule.require
                denied = rule.deny or (
                    rule.require is not None and not truthy(rule.require.evaluate(scope))
                )
            except Exception as exc:  # fail closed on anything, not just expression errors
                return Verdict(False, rule.name, _unevaluable(rule, current, exc))
            if denied:
                return Verdict(False, rule.name, rule.message or _denial(rule, request))
            applied.append(rule.name)
        if not applied:
            return Verdict(True)
        names = ", ".join(f"'{name}'" for name in applied)
        return Verdict(True, applied[0], f"allowed by {names}", tuple(applied))

    # --- compliance ------------------------------------------------------------------------

    def _compliance(self, request: PolicyRequest) -> Verdict | None:
        tools = self._policy.allowed_tools
        if tools is not None and request.command is not None:
            denial = _tool_denial(request.command, tools)
            if denial is not None:
                return Verdict(False, "policy.allowed_tools", denial)
        allowed_env = self._policy.allowed_env
        if allowed_env is not None:
            allowed = set(allowed_env)
            extra = sorted(
                {
                    name
                    for name in request.env_keys
                    if not name.startswith(_SYSTEM_ENV_PREFIX) and name not in allowed
                }
            )
            if extra:
                reason = (
                    f"environment {_plural(extra, 'variable')} {_listed(extra)} "
                    f"{'is' if len(extra) == 1 else 'are'} not allowed here; "
                    f"allowed: {_listed(allowed_env) or 'none'} (policy.allowed_env)"
                )
                return Verdict(False, "policy.allowed_env", reason)
        return None

    # --- rules -----------------------------------------------------------------------------

    def _scope(self, request: PolicyRequest) -> dict[str, Any]:
        roles = list(dict.fromkeys((*request.roles, *self.roles_of(request.actor))))
        return {
            **request.scope,
            "actor": {"name": request.actor, "roles": roles},
            "step": {"id": request.step_id, "kind": request.step_kind},
        }


def _tool_denial(command: str, tools: Sequence[str]) -> str | None:
    allowed = _listed(tools) or "none"
    try:
        words = shlex.split(command)
    except ValueError as exc:
        return (
            f"cannot tell which tool the command runs ({exc}); allowed: {allowed} "
            "(policy.allowed_tools)"
        )
    if not words:
        return None  # an empty command runs nothing
    tool = words[0].rsplit("/", 1)[-1]
    if tool in tools:
        return None
    return f"tool '{tool}' is not allowed here; allowed: {allowed} (policy.allowed_tools)"


def _in_reach(rule: PolicyRule, request: PolicyRequest) -> bool:
    """Whether the rule is about this action, step and kind (``when`` aside)."""
    return (
        request.action in rule.action
        and (not rule.steps or request.step_id in rule.steps)
        and (not rule.kinds or request.step_kind in rule.kinds)
    )


def _denial(rule: PolicyRule, request: PolicyRequest) -> str:
    if rule.require is not None:
        return f"rule '{rule.name}' requires {rule.require.source}"
    where = f" of step '{request.step_id}'" if request.step_id else ""
    when = f" when {rule.when.source}" if rule.when is not None else ""
    return f"rule '{rule.name}' denies {request.action}{where}{when}"


def _unevaluable(rule: PolicyRule, expression: Expression | None, exc: Exception) -> str:
    why = exc.message if isinstance(exc, ExpressionError) else f"{type(exc).__name__}: {exc}"
    text = f" ({expression.source})" if expression is not None else ""
    return f"rule '{rule.name}' could not be evaluated{text}: {why}; denied to be safe"


def _listed(items: Iterable[str]) -> str:
    return ", ".join(items)


def _plural(items: Sequence[str], word: str) -> str:
    return word if len(items) == 1 else word + "s"


__all__ = ["RuleGate", "merge"]
