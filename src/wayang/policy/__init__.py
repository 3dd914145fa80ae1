"""The policy engine: who may do what, in which step, under which limits.

A run's policy is its workflow's ``[policy]`` merged with the project's policy file (pinned into
the run's history when it started, see :attr:`~wayang.engine.events.RunStarted.policy_source`).
:func:`gate_for` turns the two into the :class:`~wayang.engine.gate.PolicyGate` the core asks: a
:class:`RuleGate` for the rules written here, or an external engine named by the project's
``engine`` (an entry point in the ``wayang.policy_engines`` group, see :mod:`.plugins`).
"""

from __future__ import annotations

from wayang.engine.events import RunStarted
from wayang.engine.gate import PolicyGate
from wayang.model.spec import Workflow
from wayang.policy.files import (
    POLICY_FILENAME,
    PolicyFiles,
    find_policy_file,
    load_policy_file,
    parse_policy,
    parse_policy_cached,
    project_policy,
)
from wayang.policy.plugins import ENTRY_POINT_GROUP, load_engine
from wayang.policy.rules import RuleGate, merge


def gate_for(workflow: Workflow, started: RunStarted) -> PolicyGate:
    """The gate for a run: its pinned project policy (if any) merged with the workflow's.

    Cheap to call again for the same run: the pinned text is parsed once and remembered.
    """
    project = None
    if started.policy_source:
        filename = started.policy_filename or POLICY_FILENAME
        project = parse_policy_cached(started.policy_source, filename)
    policy = merge(project, workflow.policy)
    if policy.engine:
        return load_engine(policy.engine, policy)
    return RuleGate(policy)


__all__ = [
    "ENTRY_POINT_GROUP",
    "POLICY_FILENAME",
    "PolicyFiles",
    "RuleGate",
    "find_policy_file",
    "gate_for",
    "load_engine",
    "load_policy_file",
    "merge",
    "parse_policy",
    "project_policy",
]
