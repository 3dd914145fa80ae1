"""Every example under examples/ validates and plans — examples are tests."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from support.runtime_helpers import FAST
from wayang.app import App, Settings
from wayang.engine import events as ev
from wayang.engine.state import RunState
from wayang.ids import new_run_id
from wayang.model.loader import load_workflow
from wayang.model.plan import plan_workflow
from wayang.runtime.engine import Engine
from wayang.runtime.operations import load_run, prepare_run
from wayang.runtime.signals import SignalRefusedError, deliver, publish, send_signal

ROOT = Path(__file__).parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*/workflow.toml"))
REQUIRED_PARAMS = {"order-approval": {"order_id": "ORD-1"}, "expense-approval": {"amount": 10}}


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.parent.name)
def test_example_validates_and_plans(path: Path) -> None:
    workflow = load_workflow(path)
    plan = plan_workflow(workflow, REQUIRED_PARAMS.get(path.parent.name, {}))
    assert {step.id for step in plan.steps} == set(workflow.steps)


def test_templates_match_their_examples() -> None:
    templates = ROOT / "src/wayang/cli/templates"
    for name, example in (("basic", "hello"), ("release", "release")):
        template = (templates / f"{name}.toml").read_text().split("\n", 1)[1]
        assert template == (ROOT / "examples" / example / "workflow.toml").read_text()


RUNNABLE = {
    "hello": {},
    "release": {"target": "prod"},
    "pipeline": {},
    "review-loop": {},
    "expense-approval": {"amount": "50"},
}


@pytest.mark.parametrize("name", sorted(RUNNABLE))
def test_example_runs_to_success_on_the_engine(name: str, tmp_path: Path) -> None:
    """The examples whose step kinds the engine executes today run for real."""
    app = App(Settings(store=str(tmp_path / "wayang.db")))
    path = ROOT / "examples" / name / "workflow.toml"

    async def go() -> str:
        async with app.engine() as engine:
            request = prepare_run(path, RUNNABLE[name], {}, parallel=4, timeout_s=60)
            started = request.started
            # Steps write into their workspace (the example's folder); run them elsewhere.
            started = type(started)(**{**started.to_data(), "cwd": str(tmp_path)})
            state = await engine.start(request.plan, started, new_run_id())
            return state.status.value

    try:
        assert asyncio.run(go()) == "succeeded"
    finally:
        app.close()


def _run_example(
    name: str, params: dict[str, str], tmp_path: Path, during: object = None
) -> RunState:
    """Run an example on the engine; ``during(app, run_id)`` acts while it runs (a person)."""
    app = App(Settings(store=str(tmp_path / "wayang.db"), engine=FAST))
    path = ROOT / "examples" / name / "workflow.toml"

    async def go() -> RunState:
        async with app.engine() as engine:
            request = prepare_run(path, params, {}, parallel=4, timeout_s=60)
            started = type(request.started)(**{**request.started.to_data(), "cwd": str(tmp_path)})
            run_id = new_run_id()
            future = engine.start(request.plan, started, run_id)
            if callable(during):
                await during(app, engine, run_id)
            return await asyncio.wait_for(future, 30)

    try:
        return asyncio.run(go())
    finally:
        app.close()


async def _until_waiting(engine: object, run_id: str, step_id: str) -> None:
    for _ in range(400):
        state = engine.live_state(run_id)  # type: ignore[attr-defined]
        if state is not None and state.step(step_id).status.value == "waiting":
            await engine.flush()  # type: ignore[attr-defined]  # people see the stored run
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{step_id} never waited")


def test_order_saga_rolls_back_in_reverse_order(tmp_path: Path) -> None:
    state = _run_example("order-saga", {}, tmp_path)
    assert state.status.value == "failed"
    assert state.compensation_all == ["refund", "release"]
    assert {s: state.step(s).status.value for s in ("refund", "release")} == {
        "refund": "succeeded",
        "release": "succeeded",
    }


def test_wait_for_payment_takes_the_matching_event(tmp_path: Path) -> None:
    async def pay(app: App, engine: object, run_id: str) -> None:
        await _until_waiting(engine, run_id, "paid")
        publish(app.store, "payments.received", {"order_id": "ORD-other", "amount": 1}, actor="t")
        publish(app.store, "payments.received", {"order_id": "ORD-7", "amount": 42}, actor="t")

    state = _run_example("wait-for-payment", {}, tmp_path, pay)
    assert state.status.value == "succeeded"
    assert state.step("paid").outputs["amount"] == 42


def test_expense_approval_needs_two_approvers_for_large_amounts(tmp_path: Path) -> None:
    async def approve(app: App, engine: object, run_id: str) -> None:
        await _until_waiting(engine, run_id, "approve")
        for who in ("mia", "fay"):
            data = {"comment": "ok"}
            seq = send_signal(app.store, run_id, "approve", kind="approve", actor=who, data=data)
            record = await deliver(engine, run_id, seq)  # type: ignore[arg-type]
            assert record.status == "accepted", record.outcome

    state = _run_example("expense-approval", {"amount": "5000"}, tmp_path, approve)
    assert state.status.value == "succeeded"
    assert state.step("approve").outputs["approvers"] == ["mia", "fay"]


def test_price_negotiation_agrees_within_the_budget(tmp_path: Path) -> None:
    async def haggle(app: App, engine: object, run_id: str) -> None:
        await _until_waiting(engine, run_id, "haggle")
        moves = [
            ("offer", "bo", {"terms": {"price": 80, "quantity": 10}}),
            ("offer", "sam", {"terms": {"price": 95, "quantity": 10}}),
            ("accept", "bo", {}),
        ]
        for kind, who, data in moves:
            seq = send_signal(app.store, run_id, "haggle", kind=kind, actor=who, data=data)
            record = await deliver(engine, run_id, seq)  # type: ignore[arg-type]
            assert record.status == "accepted", record.outcome

    state = _run_example("price-negotiation", {}, tmp_path, haggle)
    assert state.status.value == "succeeded"
    assert state.step("haggle").outputs["price"] == 95


Move = tuple[str, str, dict[str, object]]


async def _negotiate(app: App, engine: object, run_id: str, step: str, moves: list[Move]) -> None:
    """Each move (kind, who, data) is sent as a person would, and the engine accepts it."""
    for kind, who, data in moves:
        seq = send_signal(app.store, run_id, step, kind=kind, actor=who, data=data)
        record = await deliver(engine, run_id, seq)  # type: ignore[arg-type]
        assert record.status == "accepted", record.outcome


def _refused(app: App, run_id: str, step_id: str, move: Move) -> str:
    """The move is refused before anything is written; the refusal's text."""
    kind, who, data = move
    before = load_run(app.store, run_id).state
    with pytest.raises(SignalRefusedError) as refused:
        send_signal(app.store, run_id, step_id, kind=kind, actor=who, data=data)
    after = load_run(app.store, run_id).state
    assert after.version == before.version
    assert after.step(step_id).wait == before.step(step_id).wait
    return str(refused.value)


def _sla(availability: float, hours: int, tier: str, fee: int) -> dict[str, object]:
    terms = {"availability": availability, "response_hours": hours, "support_tier": tier}
    return {"terms": {**terms, "monthly_fee": fee}}


def test_sla_agreement_writes_the_agreed_terms(tmp_path: Path) -> None:
    async def agree(app: App, engine: object, run_id: str) -> None:
        await _until_waiting(engine, run_id, "agree")
        over = _refused(app, run_id, "agree", ("offer", "pia", _sla(99.99, 4, "premium", 5000)))
        assert "denied by policy rule 'provider-backs-its-promise'" in over
        assert "more availability than its platform backs" in over
        slow = _refused(app, run_id, "agree", ("offer", "cal", _sla(99.9, 8, "premium", 1500)))
        assert "denied by policy rule 'premium-answers-within-4h'" in slow
        moves: list[Move] = [
            ("offer", "pia", _sla(99.9, 8, "business", 1500)),
            ("offer", "cal", _sla(99.95, 4, "premium", 1800)),
            ("accept", "pia", {}),
        ]
        await _negotiate(app, engine, run_id, "agree", moves)

    state = _run_example("sla-agreement", {"customer": "Globex"}, tmp_path, agree)
    assert state.status.value == "succeeded"
    agreed = state.step("agree").outputs
    assert agreed == {
        "availability": 99.95,
        "response_hours": 4,
        "support_tier": "premium",
        "monthly_fee": 1800,
        "rounds": 2,
        "agreed_by": ["cal", "pia"],
    }
    assert state.step("publish").status.value == "succeeded"
    document = (tmp_path / "sla.md").read_text()
    assert "# Service level agreement: Globex" in document
    assert "availability: 99.95% per month" in document
    assert "within 4 hours" in document
    assert state.outputs == {"availability": 99.95, "support_tier": "premium", "document": "sla.md"}


SIX_DAYS = 6 * 86400


def test_sla_agreement_fails_at_its_deadline(tmp_path: Path) -> None:
    """Nobody accepts within five days: the negotiation fails, and the SLA is not written."""
    app = App(Settings(store=str(tmp_path / "wayang.db"), engine=FAST))
    path = ROOT / "examples" / "sla-agreement" / "workflow.toml"

    async def park() -> str:
        async with app.engine() as engine:
            request = prepare_run(path, {}, {}, parallel=4, timeout_s=None)
            started = type(request.started)(**{**request.started.to_data(), "cwd": str(tmp_path)})
            run_id = new_run_id()
            future = engine.start(request.plan, started, run_id)
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            await _until_waiting(engine, run_id, "agree")
            offer: list[Move] = [("offer", "pia", _sla(99.5, 24, "standard", 900))]
            await _negotiate(app, engine, run_id, "agree", offer)
            return run_id

    async def six_days_later(run_id: str) -> RunState:
        # The first engine stopped with the negotiation waiting; one whose clock is six days on
        # adopts the run, and the deadline's timer is past due.
        later = Engine(app.store, app.executor, settings=FAST, clock=lambda: time.time() + SIX_DAYS)
        async with later:
            return await asyncio.wait_for(await later.adopt(run_id), 30)

    try:
        run_id = asyncio.run(park())
        state = asyncio.run(six_days_later(run_id))
        history = load_run(app.store, run_id).history
        with pytest.raises(SignalRefusedError, match="has already failed"):
            send_signal(app.store, run_id, "agree", kind="accept", actor="cal", data={})
    finally:
        app.close()
    assert state.status.value == "failed"
    assert state.step("agree").status.value == "failed"
    assert "no agreement before the deadline (5d)" in (state.step("agree").error or "")
    assert state.step("publish").status.value == "skipped"
    failed = [e for e in history if isinstance(e, ev.NegotiationFailed)]
    assert [e.reason for e in failed] == ["no agreement before the deadline (5d)"]
    assert not (tmp_path / "sla.md").exists()


def _quota(cpu: int, storage: int, days: int) -> dict[str, object]:
    return {"terms": {"cpu_cores": cpu, "storage_gb": storage, "duration_days": days}}


def test_quota_negotiation_applies_the_agreed_quota_after_sign_off(tmp_path: Path) -> None:
    async def request(app: App, engine: object, run_id: str) -> None:
        await _until_waiting(engine, run_id, "request")
        long = _refused(app, run_id, "request", ("offer", "lee", _quota(16, 500, 90)))
        assert "denied by policy rule 'long-grants-by-admins'" in long
        assert "only platform admins offer 90-day grants" in long
        greedy = _refused(app, run_id, "request", ("offer", "lee", _quota(128, 500, 30)))
        assert "denied by policy rule 'within-spare-capacity'" in greedy
        huge = _refused(app, run_id, "request", ("offer", "lee", _quota(512, 500, 30)))
        assert "cpu_cores must be ≤ 256" in huge
        moves: list[Move] = [
            ("offer", "lee", _quota(64, 2000, 30)),
            ("offer", "ada", _quota(32, 1500, 90)),
            ("offer", "lee", _quota(32, 1500, 30)),
            ("accept", "ada", {}),
        ]
        await _negotiate(app, engine, run_id, "request", moves)
        await _until_waiting(engine, run_id, "sign-off")
        approval: list[Move] = [("approve", "fin", {"comment": "within the storage budget"})]
        await _negotiate(app, engine, run_id, "sign-off", approval)

    state = _run_example("quota-negotiation", {"team": "search"}, tmp_path, request)
    assert state.status.value == "succeeded"
    agreed = state.step("request").outputs
    assert (agreed["cpu_cores"], agreed["storage_gb"], agreed["duration_days"]) == (32, 1500, 30)
    assert agreed["rounds"] == 3
    assert state.step("standard").status.value == "skipped"
    assert state.step("sign-off").outputs["approvers"] == ["fin"]
    assert state.step("apply").outputs == {
        "team": "search",
        "cpu_cores": 32,
        "storage_gb": 1500,
        "expires_in_days": 30,
    }


def test_quota_negotiation_applies_a_small_grant_without_sign_off(tmp_path: Path) -> None:
    async def request(app: App, engine: object, run_id: str) -> None:
        await _until_waiting(engine, run_id, "request")
        moves: list[Move] = [("offer", "lee", _quota(8, 200, 7)), ("accept", "ada", {})]
        await _negotiate(app, engine, run_id, "request", moves)

    state = _run_example("quota-negotiation", {"team": "ads"}, tmp_path, request)
    assert state.status.value == "succeeded"
    assert state.step("sign-off").status.value == "skipped"
    assert state.step("apply").outputs["storage_gb"] == 200


def test_quota_negotiation_fails_past_its_round_limit(tmp_path: Path) -> None:
    refusal: list[str] = []

    async def haggle(app: App, engine: object, run_id: str) -> None:
        await _until_waiting(engine, run_id, "request")
        moves: list[Move] = [
            ("offer", "lee", _quota(64, 2000, 30)),
            ("offer", "ada", _quota(16, 500, 7)),
            ("offer", "lee", _quota(48, 1500, 30)),
            ("offer", "ada", _quota(24, 800, 7)),
        ]
        await _negotiate(app, engine, run_id, "request", moves)
        # A fifth offer is past max_rounds = 4: it is refused and ends the negotiation.
        seq = send_signal(
            app.store, run_id, "request", kind="offer", actor="lee", data=_quota(32, 1000, 30)
        )
        refusal.append((await deliver(engine, run_id, seq)).outcome)  # type: ignore[arg-type]

    state = _run_example("quota-negotiation", {}, tmp_path, haggle)
    assert "round limit (4)" in refusal[0]
    assert state.status.value == "failed"
    assert "round limit (4) was reached" in (state.step("request").error or "")
    assert state.step("apply").status.value == "skipped"


def _split(share: int, window: str, preemptible: bool) -> dict[str, object]:
    return {"terms": {"vision_share": share, "window": window, "preemptible": preemptible}}


def test_resource_allocation_splits_the_pool_among_three_parties(tmp_path: Path) -> None:
    async def split(app: App, engine: object, run_id: str) -> None:
        await _until_waiting(engine, run_id, "split")
        greedy = _refused(app, run_id, "split", ("offer", "vic", _split(90, "nights", False)))
        assert "denied by policy rule 'guaranteed-shares'" in greedy
        nonstop = _refused(
            app, run_id, "split", ("offer", "sol", _split(50, "round-the-clock", False))
        )
        assert "denied by policy rule 'round-the-clock-is-preemptible'" in nonstop
        stranger = _refused(app, run_id, "split", ("offer", "mal", _split(50, "nights", False)))
        assert "not a party" in stranger
        moves: list[Move] = [
            ("offer", "vic", _split(70, "nights", False)),
            ("offer", "nia", _split(40, "nights", False)),
            ("offer", "sol", _split(55, "round-the-clock", True)),
            ("offer", "nia", _split(55, "round-the-clock", True)),
        ]
        await _negotiate(app, engine, run_id, "split", moves)
        team_accepts = _refused(app, run_id, "split", ("accept", "vic", {}))
        assert "denied by policy rule 'scheduler-commits'" in team_accepts
        await _negotiate(app, engine, run_id, "split", [("accept", "sol", {})])

    state = _run_example("resource-allocation", {"pool_hours": "400"}, tmp_path, split)
    assert state.status.value == "succeeded"
    agreed = state.step("split").outputs
    assert agreed["vision_share"] == 55
    assert agreed["window"] == "round-the-clock"
    assert agreed["preemptible"] is True
    assert agreed["rounds"] == 4
    assert agreed["agreed_by"] == ["nia", "sol"]
    assert state.step("allocate").outputs == {"vision_hours": "220", "nlp_hours": "180"}
