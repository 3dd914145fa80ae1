"""RuleGate: compliance first, then rules in order; the first denial wins, errors deny."""

from __future__ import annotations

from typing import Any

import pytest

from wayang.engine.gate import PolicyGate, PolicyRequest, Verdict
from wayang.model.spec import Policy
from wayang.policy import RuleGate


def gate(*rules: dict[str, Any], **fields: Any) -> RuleGate:
    return RuleGate(Policy.model_validate({"rules": list(rules), **fields}))


def rule(name: str, action: str | list[str] = "execute", **fields: Any) -> dict[str, Any]:
    return {"name": name, "action": action, **fields}


def ask(action: str = "execute", **fields: Any) -> PolicyRequest:
    return PolicyRequest(action=action, **fields)


def test_a_rule_gate_is_a_policy_gate() -> None:
    checker: PolicyGate = gate()
    assert checker.check(ask()) == Verdict(True)


# --- require / deny ----------------------------------------------------------------------------


def test_require_true_allows_and_names_the_rule() -> None:
    verdict = gate(rule("prod-only", require="params.env == 'prod'")).check(
        ask(scope={"params": {"env": "prod"}})
    )
    assert verdict.allowed
    assert verdict.rule == "prod-only"
    assert verdict.applied == ("prod-only",)


def test_require_false_denies_with_the_expression() -> None:
    checker = gate(rule("finance-approves", "approve", require="'finance' in actor.roles"))
    verdict = checker.check(ask("approve", actor="bob", roles=("dev",)))
    assert verdict == Verdict(
        False, "finance-approves", "rule 'finance-approves' requires 'finance' in actor.roles"
    )


def test_the_rule_message_is_the_reason() -> None:
    checker = gate(rule("r", require="false", message="ask the finance team"))
    assert checker.check(ask()) == Verdict(False, "r", "ask the finance team")


def test_deny_denies_whenever_it_applies() -> None:
    checker = gate(rule("freeze", deny=True, when="params.frozen"))
    denied = checker.check(ask(step_id="deploy", scope={"params": {"frozen": True}}))
    assert denied == Verdict(
        False, "freeze", "rule 'freeze' denies execute of step 'deploy' when params.frozen"
    )
    allowed = checker.check(ask(step_id="deploy", scope={"params": {"frozen": False}}))
    assert allowed == Verdict(True)


def test_a_rule_whose_when_is_false_does_not_apply() -> None:
    checker = gate(rule("r", when="params.env == 'prod'", require="false"))
    verdict = checker.check(ask(scope={"params": {"env": "dev"}}))
    assert verdict == Verdict(True)


def test_other_actions_are_out_of_reach() -> None:
    checker = gate(rule("r", ["approve", "reject"], deny=True))
    assert checker.check(ask("execute")).allowed
    assert not checker.check(ask("reject")).allowed


# --- steps and kinds ---------------------------------------------------------------------------


def test_steps_filter() -> None:
    checker = gate(rule("r", steps=["deploy"], deny=True))
    assert not checker.check(ask(step_id="deploy")).allowed
    assert checker.check(ask(step_id="build")).allowed


def test_kinds_filter() -> None:
    checker = gate(rule("r", "complete", kinds=["agent", "approval"], deny=True))
    assert not checker.check(ask("complete", step_kind="agent")).allowed
    assert checker.check(ask("complete", step_kind="task")).allowed


def test_steps_and_kinds_together_must_both_match() -> None:
    checker = gate(rule("r", steps=["a"], kinds=["task"], deny=True))
    assert not checker.check(ask(step_id="a", step_kind="task")).allowed
    assert checker.check(ask(step_id="a", step_kind="agent")).allowed
    assert checker.check(ask(step_id="b", step_kind="task")).allowed


# --- order ---------------------------------------------------------------------------------------


def test_the_first_denial_wins() -> None:
    checker = gate(
        rule("ok", require="true"),
        rule("first", require="false"),
        rule("second", deny=True),
    )
    verdict = checker.check(ask())
    assert (verdict.allowed, verdict.rule) == (False, "first")


def test_allowed_lists_every_rule_that_applied() -> None:
    checker = gate(
        rule("a", require="true"),
        rule("skipped", "start", deny=True),
        rule("b", require="actor.name == 'ann'"),
    )
    verdict = checker.check(ask(actor="ann"))
    assert verdict == Verdict(True, "a", "allowed by 'a', 'b'", ("a", "b"))


# --- fail closed -------------------------------------------------------------------------------


def test_comparing_a_string_with_a_number_denies() -> None:
    checker = gate(rule("cheap", "offer", require="offer.terms.price <= 100"))
    verdict = checker.check(ask("offer", scope={"offer": {"terms": {"price": "lots"}}}))
    assert not verdict.allowed
    assert verdict.rule == "cheap"
    assert verdict.reason.startswith(
        "rule 'cheap' could not be evaluated (offer.terms.price <= 100): cannot compare string "
        "with integer"
    )


def test_a_missing_key_reads_null_and_ordering_null_denies() -> None:
    checker = gate(rule("cheap", "offer", require="offer.terms.price <= 100"))
    verdict = checker.check(ask("offer", scope={"offer": {"terms": {}}}))
    assert not verdict.allowed
    assert "could not be evaluated" in verdict.reason
    assert "cannot compare null with integer" in verdict.reason


def test_a_name_missing_from_the_scope_denies() -> None:
    checker = gate(rule("r", when="vote.decision == 'approve'", require="true"))
    verdict = checker.check(ask())
    assert not verdict.allowed
    assert "could not be evaluated (vote.decision == 'approve')" in verdict.reason
    assert "unknown name 'vote'" in verdict.reason


def test_a_failing_rule_denies_even_with_a_message() -> None:
    checker = gate(rule("r", require="length(1) > 0", message="custom"))
    verdict = checker.check(ask())
    assert not verdict.allowed
    assert "could not be evaluated" in verdict.reason


def test_an_evaluation_error_stops_at_the_rule_even_if_a_later_rule_denies() -> None:
    checker = gate(rule("broken", require="params.n > 1"), rule("later", deny=True))
    verdict = checker.check(ask(scope={"params": {}}))
    assert verdict.rule == "broken"


# --- the scope -----------------------------------------------------------------------------------


def test_actor_and_step_are_in_scope() -> None:
    checker = gate(
        rule(
            "r",
            require="actor.name == 'ann' and 'ops' in actor.roles and step.id == 'deploy' "
            "and step.kind == 'task'",
        )
    )
    verdict = checker.check(ask(actor="ann", roles=("ops",), step_id="deploy", step_kind="task"))
    assert verdict.allowed and verdict.applied == ("r",)


def test_request_scope_keys_are_kept() -> None:
    checker = gate(rule("r", require="run.started_by == 'ann' and steps.build.status == 'ok'"))
    scope = {"run": {"started_by": "ann"}, "steps": {"build": {"status": "ok"}}}
    assert checker.check(ask(scope=scope)).allowed


def test_actor_and_step_are_the_requests_own() -> None:
    checker = gate(rule("r", require="actor.name == 'ann'"))
    verdict = checker.check(ask(actor="ann", scope={"actor": {"name": "mallory"}}))
    assert verdict.allowed


def test_roles_from_the_policy_join_the_requests() -> None:
    checker = gate(
        rule("r", "approve", require="'finance' in actor.roles"),
        roles={"finance": ["carol"]},
    )
    assert checker.check(ask("approve", actor="carol")).allowed
    assert not checker.check(ask("approve", actor="dave")).allowed


def test_offer_terms() -> None:
    checker = gate(rule("budget", "offer", require="offer.terms.price <= 100"))
    assert checker.check(ask("offer", scope={"offer": {"terms": {"price": 99.5}}})).allowed
    denied = checker.check(ask("offer", scope={"offer": {"terms": {"price": 150}}}))
    assert denied == Verdict(False, "budget", "rule 'budget' requires offer.terms.price <= 100")


# --- compliance ----------------------------------------------------------------------------------


def test_allowed_tools_denies_another_tool() -> None:
    checker = gate(allowed_tools=["git", "python3"])
    verdict = checker.check(ask(command="curl -s https://example.com"))
    assert verdict == Verdict(
        False,
        "policy.allowed_tools",
        "tool 'curl' is not allowed here; allowed: git, python3 (policy.allowed_tools)",
    )


@pytest.mark.parametrize("command", ["git status", "/usr/bin/git status", "'git' log", "python3"])
def test_allowed_tools_takes_the_basename_of_the_first_word(command: str) -> None:
    checker = gate(allowed_tools=["git", "python3"])
    assert checker.check(ask(command=command)).allowed


def test_an_unparsable_command_is_denied() -> None:
    verdict = gate(allowed_tools=["git"]).check(ask(command="git commit -m 'oops"))
    assert not verdict.allowed
    assert verdict.rule == "policy.allowed_tools"
    assert "cannot tell which tool" in verdict.reason


def test_allowed_tools_ignores_steps_without_a_command_and_other_actions() -> None:
    checker = gate(allowed_tools=["git"])
    assert checker.check(ask(command=None)).allowed
    assert checker.check(ask("transition", command="curl x")).allowed


def test_compliance_comes_before_rules() -> None:
    checker = gate(rule("first", deny=True), allowed_tools=["git"])
    assert checker.check(ask(command="curl x")).rule == "policy.allowed_tools"


def test_allowed_env_names_the_extra_variables() -> None:
    checker = gate(allowed_env=["HOME", "PATH"])
    verdict = checker.check(ask(env_keys=("PATH", "TOKEN", "AWS_KEY", "WAYANG_RUN_ID")))
    assert verdict == Verdict(
        False,
        "policy.allowed_env",
        "environment variables AWS_KEY, TOKEN are not allowed here; allowed: HOME, PATH "
        "(policy.allowed_env)",
    )


def test_allowed_env_lets_wayang_variables_and_listed_ones_through() -> None:
    checker = gate(allowed_env=["PATH"])
    assert checker.check(ask(env_keys=("PATH", "WAYANG_STEP_ID"))).allowed
    assert not checker.check(ask(env_keys=("HOME",))).allowed


def test_an_empty_allowed_env_allows_only_wayang_variables() -> None:
    verdict = gate(allowed_env=[]).check(ask(env_keys=("HOME",)))
    assert verdict.reason == (
        "environment variable HOME is not allowed here; allowed: none (policy.allowed_env)"
    )


# --- roles and limits ------------------------------------------------------------------------


def test_roles_of_lists_the_users_roles_sorted() -> None:
    checker = gate(roles={"ops": ["ann", "bob"], "admins": ["ann"], "finance": ["carol"]})
    assert checker.roles_of("ann") == ("admins", "ops")
    assert checker.roles_of("carol") == ("finance",)
    assert checker.roles_of("nobody") == ()


def test_limits_come_from_the_policy() -> None:
    checker = gate(max_parallel=3, max_duration="1h")
    assert (checker.max_parallel, checker.max_duration) == (3, 3600.0)
    assert (gate().max_parallel, gate().max_duration) == (None, None)
