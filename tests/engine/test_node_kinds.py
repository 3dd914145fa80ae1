"""The node kinds beyond tasks, decided by the pure core: decisions, joins, loops, approvals,
negotiations, event waits, timers, external steps, sub-workflows, compensation and policy."""

from __future__ import annotations

from support.engine_sim import Sim
from wayang.engine import events as ev
from wayang.engine.messages import CancelRun, ChildFinished, Signal, TimerFired, TopicMessage
from wayang.engine.replay import replay
from wayang.policy import gate_for


def _types(sim: Sim) -> list[str]:
    return [e.TYPE for e in sim.history]


def _replays(sim: Sim) -> None:
    report = replay("r1", sim.history, gate_for)
    assert report.divergence is None, report.divergence
    assert sim.refold() == sim.state


def test_decision_takes_one_branch_and_skips_the_rest() -> None:
    sim = Sim.begin(
        """
        id = "d"
        [parameters.amount]
        type = "number"
        [steps.route]
        kind = "decision"
        cases = [{ when = "params.amount > 100", next = "big" }]
        default = "small"
        [steps.big]
        run = "echo big"
        [steps.small]
        run = "echo small"
        [steps.after]
        needs = ["small"]
        run = "echo after"
        """,
        {"amount": 500},
    )
    assert sim.statuses()["route"] == "succeeded"
    assert sim.statuses()["small"] == "skipped" and sim.statuses()["after"] == "skipped"
    assert "chose 'big'" in (sim.state.steps["small"].reason or "")
    sim.finish("big")
    assert sim.state.status == "succeeded"
    _replays(sim)


def test_join_any_runs_on_the_first_branch() -> None:
    sim = Sim.begin(
        """
        id = "j"
        [steps.a]
        run = "x"
        [steps.b]
        run = "y"
        [steps.c]
        needs = ["a", "b"]
        join = "any"
        run = "z"
        """
    )
    sim.finish("a")
    assert sim.statuses()["c"] == "scheduled"
    sim.finish("b")
    sim.finish("c")
    assert sim.state.status == "succeeded"


def test_join_n_skips_when_it_can_no_longer_be_met() -> None:
    sim = Sim.begin(
        """
        id = "j"
        [steps.a]
        run = "x"
        [steps.b]
        run = "y"
        when = "false"
        [steps.c]
        run = "y"
        when = "false"
        [steps.d]
        needs = ["a", "b", "c"]
        join = 2
        run = "z"
        """
    )
    assert sim.statuses()["d"] == "skipped"  # b and c skipped: a alone cannot make 2
    assert "only 0 of the 2" in (sim.state.steps["d"].reason or "")


LOOP = """
id = "loop"
[steps.write]
run = "echo draft"
[steps.review]
needs = ["write"]
run = "echo review"
max_visits = 3
[[transitions]]
from = "review"
to = "write"
when = "steps.review.outputs.ok == false"
map = { feedback = "notes" }
[steps.publish]
needs = ["review"]
when = "steps.review.outputs.ok"
run = "echo publish"
"""


def test_loop_runs_again_until_the_check_passes() -> None:
    sim = Sim.begin(LOOP)
    sim.finish("write")
    sim.finish("review", ok=False, notes="tighten")
    assert sim.statuses()["write"] == "scheduled"
    assert any(isinstance(e, ev.VisitStarted) for e in sim.history)
    second = sim.dispatched[-1]
    assert second.idempotency_key == "r1/write#2" and second.attempt == 2
    sim.finish("write")
    sim.finish("review", ok=True)
    sim.finish("publish")
    assert sim.state.status == "succeeded"
    assert sim.state.steps["write"].visits == 2
    _replays(sim)


def test_loop_visit_limit_fails_the_run_with_a_clear_reason() -> None:
    sim = Sim.begin(
        LOOP.replace("max_visits = 3", "").replace(
            "[steps.write]\n", "[steps.write]\nmax_visits = 2\n"
        )
    )
    for _ in range(2):
        sim.finish("write")
        sim.finish("review", ok=False)
    assert sim.state.status == "failed"
    assert "visit limit (2, max_visits)" in (sim.state.reason or "")
    _replays(sim)


APPROVAL = """
id = "exp"
[parameters.amount]
type = "number"
default = 50
[steps.review]
kind = "approval"
assignees = ["alice", "bob", "role:finance"]
quorum = 2
required_fields = ["comment"]
timeout = "1h"
on_timeout = "escalate"
escalate_to = ["carol"]
[steps.pay]
needs = ["review"]
run = "echo paid"
"""


def _vote(
    sim: Sim,
    seq: int,
    actor: str,
    kind: str = "approve",
    roles: tuple[str, ...] = (),
    **data: object,
) -> None:
    sim.send(Signal(seq, "review", kind, actor, roles, dict(data)))


def test_approval_needs_its_quorum_and_each_vote_once() -> None:
    sim = Sim.begin(APPROVAL, actor="dave")
    assert sim.statuses()["review"] == "waiting"
    _vote(sim, 1, "alice", comment="fine")
    _vote(sim, 2, "alice", comment="again")
    rejected = [e for e in sim.history if isinstance(e, ev.SignalRejected)]
    assert "already voted" in rejected[-1].reason
    _vote(sim, 3, "mallory", comment="me too")
    assert (
        "not an assignee" in [e for e in sim.history if isinstance(e, ev.SignalRejected)][-1].reason
    )
    _vote(sim, 4, "erin", roles=("finance",))
    assert (
        "needs comment" in [e for e in sim.history if isinstance(e, ev.SignalRejected)][-1].reason
    )
    assert sim.statuses()["review"] == "waiting"
    _vote(sim, 5, "erin", roles=("finance",), comment="ok by finance")
    assert sim.statuses()["review"] == "succeeded"
    assert sim.state.steps["review"].outputs["approvers"] == ["alice", "erin"]
    _vote(sim, 6, "bob", comment="late")
    assert (
        "already decided" in [e for e in sim.history if isinstance(e, ev.SignalRejected)][-1].reason
    )
    sim.finish("pay")
    assert sim.state.status == "succeeded"
    _replays(sim)


def test_no_self_approval_and_rejection_fails_the_step() -> None:
    sim = Sim.begin(APPROVAL, actor="alice")
    _vote(sim, 1, "alice", comment="mine")
    assert (
        "cannot approve it"
        in [e for e in sim.history if isinstance(e, ev.SignalRejected)][-1].reason
    )
    _vote(sim, 2, "bob", kind="reject", comment="too much")
    assert sim.statuses()["review"] == "failed" and sim.statuses()["pay"] == "skipped"
    assert sim.state.status == "failed"
    _replays(sim)


def test_approval_escalates_on_timeout_then_rejects() -> None:
    sim = Sim.begin(APPROVAL)
    sim.fire_timers()
    assert any(isinstance(e, ev.ApprovalEscalated) for e in sim.history)
    assert sim.state.steps["review"].wait["assignees"] == ["carol"]
    sim.fire_timers()
    assert sim.state.status == "failed"
    assert "also after escalation" in (sim.state.steps["review"].error or "")
    _replays(sim)


NEGOTIATION = """
id = "price"
[steps.haggle]
kind = "negotiation"
parties = ["role:buyer", "role:seller"]
max_rounds = 3
timeout = "2h"
terms.price = { type = "number", min = 10, max = 100 }
terms.quantity = { type = "integer", min = 1 }
[policy]
[[policy.rules]]
name = "buyer-cap"
action = "offer"
when = "'buyer' in actor.roles"
require = "offer.terms.price <= 90"
message = "buyers may not offer above 90"
"""


def _offer(sim: Sim, seq: int, actor: str, role: str, kind: str = "offer", **terms: object) -> None:
    data = {"terms": terms} if terms else {}
    sim.send(Signal(seq, "haggle", kind, actor, (role,), data))


def test_negotiation_rounds_end_in_agreement_under_policy() -> None:
    sim = Sim.begin(NEGOTIATION)
    _offer(sim, 1, "bo", "buyer", price=95, quantity=10)
    assert "buyers may not offer above 90" in sim.history[-1].reason
    _offer(sim, 2, "bo", "buyer", price=500, quantity=10)
    assert "price must be ≤ 100" in sim.history[-1].reason
    _offer(sim, 3, "bo", "buyer", price=60, quantity=10)
    _offer(sim, 4, "sam", "seller", price=85, quantity=10)
    assert [
        type(e).__name__ for e in sim.history if isinstance(e, ev.OfferMade | ev.CounterOffered)
    ] == ["OfferMade", "CounterOffered"]
    _offer(sim, 5, "sam", "seller", kind="accept")
    assert "made the current offer" in sim.history[-1].reason
    _offer(sim, 6, "bo", "buyer", kind="accept")
    outputs = sim.state.steps["haggle"].outputs
    assert outputs["price"] == 85 and outputs["rounds"] == 2
    assert sim.state.status == "succeeded"
    _replays(sim)


def test_negotiation_fails_past_its_round_limit() -> None:
    sim = Sim.begin(NEGOTIATION)
    for seq, (who, role, price) in enumerate(
        [("bo", "buyer", 20), ("sam", "seller", 99), ("bo", "buyer", 30), ("sam", "seller", 98)], 1
    ):
        _offer(sim, seq, who, role, price=price, quantity=1)
    assert sim.state.status == "failed"
    assert "round limit (3)" in (sim.state.steps["haggle"].error or "")
    _replays(sim)


EVENT = """
id = "pay"
[parameters.order]
type = "string"
[steps.wait]
kind = "event"
topic = "payments"
correlate = "event.order == params.order"
timeout = "1h"
[steps.ship]
needs = ["wait"]
run = "echo ${{ steps.wait.outputs.amount }}"
"""


def test_event_wait_matches_by_correlation_in_order() -> None:
    sim = Sim.begin(EVENT, {"order": "A1"})
    sim.send(TopicMessage(1, "payments", {"order": "B2", "amount": 5}))
    sim.send(TopicMessage(2, "other", {"order": "A1", "amount": 6}))
    assert sim.statuses()["wait"] == "waiting"
    sim.send(TopicMessage(3, "payments", {"order": "A1", "amount": 7}))
    sim.send(TopicMessage(4, "payments", {"order": "A1", "amount": 8}))
    assert sim.state.steps["wait"].outputs["amount"] == 7
    assert sim.dispatched[-1].payload["command"] == "echo 7"
    sim.finish("ship")
    assert sim.state.status == "succeeded"
    _replays(sim)


def test_event_wait_times_out() -> None:
    sim = Sim.begin(EVENT, {"order": "A1"})
    sim.fire_timers()
    assert sim.state.status == "failed"
    assert "no event on 'payments' matched within 1h" in (sim.state.steps["wait"].error or "")


def test_timer_never_fires_early() -> None:
    sim = Sim.begin('id = "t"\n[steps.nap]\nkind = "timer"\nfor = "2h"\n')
    [timer] = sim.timers.values()
    assert timer.due_at == 7200
    sim.now = 100
    sim.send(TimerFired(timer.timer_id, "sleep", "nap", timer.attempt))
    assert sim.statuses()["nap"] == "waiting" and timer.timer_id in sim.timers
    sim.now = 7200
    sim.send(TimerFired(timer.timer_id, "sleep", "nap", timer.attempt))
    assert sim.state.status == "succeeded"
    assert any(e.TYPE == "TimerFired" for e in sim.history)
    _replays(sim)


def test_external_step_waits_for_completion() -> None:
    sim = Sim.begin('id = "x"\n[steps.ops]\nkind = "noop"\nexternal = true\n')
    assert sim.statuses()["ops"] == "waiting"
    sim.send(Signal(1, "ops", "complete", "alice", (), {"outputs": {"ticket": "T-1"}}))
    assert sim.state.steps["ops"].outputs == {"ticket": "T-1"}
    assert sim.state.status == "succeeded"
    _replays(sim)


def test_subworkflow_waits_for_its_child_and_cancel_reaches_it() -> None:
    text = (
        'id = "p"\n[steps.child]\nkind = "subworkflow"\nworkflow = "c.toml"\ninputs = { n = 1 }\n'
    )
    sim = Sim.begin(text)
    started = next(e for e in sim.history if isinstance(e, ev.SubworkflowStarted))
    assert started.params == {"n": 1}
    sim.send(ChildFinished("child", started.child_run_id, "succeeded", {"total": 3}))
    assert sim.state.steps["child"].outputs == {"total": 3} and sim.state.status == "succeeded"
    _replays(sim)
    other = Sim.begin(text)
    decision = other.send(CancelRun())
    assert any(type(c).__name__ == "CancelChildRun" for c in decision.commands)
    assert other.state.status == "cancelled"


SAGA = """
id = "saga"
on_failure = "compensate"
[steps.reserve]
run = "reserve"
compensate = "release"
[steps.charge]
needs = ["reserve"]
run = "charge"
compensate = "refund"
[steps.ship]
needs = ["charge"]
run = "ship"
[steps.release]
run = "release"
[steps.refund]
run = "refund"
retry = { attempts = 2, delay = "1s", jitter = false }
"""


def test_compensation_runs_in_reverse_order_once_each() -> None:
    sim = Sim.begin(SAGA)
    sim.now = 1
    sim.finish("reserve")
    sim.now = 2
    sim.finish("charge")
    sim.finish("ship", "failed")
    assert any(isinstance(e, ev.CompensationStarted) for e in sim.history)
    started = next(e for e in sim.history if isinstance(e, ev.CompensationStarted))
    assert started.steps == ["refund", "release"]
    sim.finish("refund", "failed")  # retried by its own policy
    sim.fire_timers()
    sim.finish("refund")
    sim.finish("release")
    assert sim.state.status == "failed"
    assert [d.step_id for d in sim.dispatched].count("release") == 1
    assert isinstance(sim.history[-1], ev.RunFailed)
    _replays(sim)


def test_cancel_compensates_too() -> None:
    sim = Sim.begin(SAGA)
    sim.finish("reserve")
    sim.send(CancelRun("stop"))
    sim.finish("charge", "failed")
    assert sim.state.compensation_all == ["release"]
    sim.finish("release")
    assert sim.state.status == "cancelled"
    _replays(sim)


def test_policy_denies_a_tool_and_records_why() -> None:
    text = """
    id = "pol"
    [policy]
    allowed_tools = ["echo"]
    [steps.ok]
    run = "echo hi"
    [steps.bad]
    run = "curl http://x"
    """
    sim = Sim.begin(text)
    denied = [e for e in sim.history if isinstance(e, ev.PolicyDenied)]
    assert denied and denied[0].step_id == "bad" and "curl" in denied[0].reason
    assert sim.statuses()["bad"] == "failed"
    assert "denied by policy rule 'policy.allowed_tools'" in (sim.state.steps["bad"].error or "")


def test_policy_requires_finance_for_large_amounts() -> None:
    text = (
        APPROVAL.replace("quorum = 2", "quorum = 1")
        + """
    [policy]
    [[policy.rules]]
    name = "finance-over-1000"
    action = "approve"
    when = "params.amount > 1000"
    require = "'finance' in actor.roles"
    message = "amounts over 1000 need a finance approver"
    """
    )
    sim = Sim.begin(text, {"amount": 5000})
    _vote(sim, 1, "alice", comment="ok")
    assert "amounts over 1000 need a finance approver" in sim.history[-1].reason
    _vote(sim, 2, "erin", roles=("finance",), comment="ok")
    assert sim.statuses()["review"] == "succeeded"
    _replays(sim)
