"""The policy gate: what the core asks before a step runs, at a transition and on every vote or
offer, and the verdict it gets back.

The core knows only this port. The rules themselves (a workflow's ``[policy]``, a project's policy
file, or an external engine behind an entry point) live in :mod:`wayang.policy`, a layer above,
and are handed to the core inside the :class:`~wayang.engine.runplan.RunPlan`. A gate must be
deterministic for the same request: recovery and replay ask it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """One question: may ``actor`` do ``action`` on ``step_id`` in this context?

    ``action`` is one of start, execute, transition, approve, reject, offer, accept, complete.
    ``scope`` holds what rule expressions may read (params, env, steps, run, inputs, offer, vote);
    ``command`` and ``env_keys`` are what compliance rules check before a task executes.
    """

    action: str
    step_id: str = ""
    step_kind: str = ""
    actor: str = ""
    roles: tuple[str, ...] = ()
    scope: Mapping[str, Any] = field(default_factory=dict)
    command: str | None = None
    env_keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer. ``rule`` decided (empty when no rule applied) and ``reason`` says why;
    ``applied`` names every rule that applied and allowed."""

    allowed: bool
    rule: str = ""
    reason: str = ""
    applied: tuple[str, ...] = ()


ALLOW = Verdict(True)


class PolicyGate(Protocol):
    """Decides policy requests; see :mod:`wayang.policy` for the rule engine."""

    def check(self, request: PolicyRequest) -> Verdict: ...


class AllowAll:
    """A gate with no rules: everything is allowed (a workflow with no policy)."""

    allows_everything = True
    """A gate that says so is not asked: the core skips building its requests (a gate may
    set this when its rules cannot deny anything)."""

    def check(self, request: PolicyRequest) -> Verdict:
        return ALLOW
