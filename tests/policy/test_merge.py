"""merge(): a project's policy and a workflow's, the stricter value winning."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from wayang.model.spec import Policy
from wayang.policy import merge


def policy(**fields: Any) -> Policy:
    return Policy.model_validate(fields)


def test_no_project_policy_is_the_workflows() -> None:
    workflow = policy(max_parallel=2, rules=[{"name": "r", "action": "start", "deny": True}])
    assert merge(None, workflow) == workflow


def test_project_rules_come_first() -> None:
    project = policy(rules=[{"name": "p", "action": "start", "deny": True}])
    workflow = policy(rules=[{"name": "w", "action": "start", "deny": True}])
    assert [r.name for r in merge(project, workflow).rules] == ["p", "w"]


def test_roles_are_merged_member_by_member() -> None:
    project = policy(roles={"ops": ["ann", "bob"], "finance": ["carol"]})
    workflow = policy(roles={"ops": ["bob", "dave"], "qa": ["erin"]})
    assert merge(project, workflow).roles == {
        "ops": ["ann", "bob", "dave"],
        "finance": ["carol"],
        "qa": ["erin"],
    }


def test_allowed_lists_intersect_when_both_are_set() -> None:
    project = policy(allowed_tools=["git", "python3", "make"], allowed_env=["PATH", "HOME"])
    workflow = policy(allowed_tools=["make", "git", "curl"], allowed_env=["HOME"])
    merged = merge(project, workflow)
    assert merged.allowed_tools == ["git", "make"]
    assert merged.allowed_env == ["HOME"]


def test_an_allowed_list_set_on_one_side_is_kept() -> None:
    assert merge(policy(allowed_tools=["git"]), policy()).allowed_tools == ["git"]
    assert merge(policy(), policy(allowed_env=["PATH"])).allowed_env == ["PATH"]
    assert merge(policy(), policy()).allowed_tools is None


def test_limits_take_the_smaller() -> None:
    merged = merge(
        policy(max_parallel=4, max_duration="2h"), policy(max_parallel=8, max_duration="30m")
    )
    assert (merged.max_parallel, merged.max_duration) == (4, 1800.0)
    assert merge(policy(), policy(max_parallel=2)).max_parallel == 2
    assert merge(policy(max_duration="1m"), policy()).max_duration == 60.0


def test_the_engine_is_the_projects() -> None:
    assert merge(policy(engine="opa"), policy(engine="other")).engine == "opa"
    assert merge(policy(), policy(engine="lax")).engine is None
    assert merge(None, policy(engine="lax")).engine is None


tools = st.none() | st.lists(st.sampled_from(["git", "make", "curl", "python3", "sh"]))


@given(tools, tools)
def test_merge_never_widens_allowed_tools(
    project_tools: list[str] | None, workflow_tools: list[str] | None
) -> None:
    merged = merge(
        policy(allowed_tools=project_tools), policy(allowed_tools=workflow_tools)
    ).allowed_tools
    for side in (project_tools, workflow_tools):
        if side is not None:
            assert merged is not None
            assert set(merged) <= set(side)
    if project_tools is None and workflow_tools is None:
        assert merged is None
