"""Deliveries in the store: fan-out once per (message, step), outcomes fenced, retries, leases,
dead letters and replay, all on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from wayang.store.port import DeliveryOutcome, FanOut, NewTopicMessage
from wayang.store.postgres import PostgresStore
from wayang.store.sqlite import SQLiteStore

SUBS = {"order.created": [("Charge", 3), ("Notify", 1)], "order.charged": [("Ship", 2)]}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SQLiteStore:
    db: SQLiteStore | PostgresStore
    if request.param == "postgresql":
        db = PostgresStore(request.getfixturevalue("postgres_url"))
    else:
        db = SQLiteStore(tmp_path / "w.db")
    yield db  # type: ignore[misc]
    db.close()


def fan(owner: str = "me", env: str = "dev") -> FanOut:
    return FanOut(env, SUBS, owner, lease_s=10)


def message(topic: str, data: object, trace: str = "t1") -> NewTopicMessage:
    return NewTopicMessage(topic, data, 1.0, trace_id=trace, source="test")


def test_a_message_reaches_each_subscriber_once(store: SQLiteStore) -> None:
    store.publish(message("order.created", {"id": 1}))
    store.publish(message("nobody.listens", {}))
    first = store.commit_deliveries([], [], fan(), now=10.0)
    assert sorted(d.step for d in first.started) == ["Charge", "Notify"]
    assert {(d.attempt, d.status, d.fencing_token) for d in first.started} == {(1, "running", 1)}
    assert first.started[0].data == {"id": 1} and first.started[0].trace_id == "t1"
    assert first.cursor == 2
    again = store.commit_deliveries([], [], fan(), now=11.0)
    assert again.started == [] and again.cursor == 2
    other_env = store.commit_deliveries([], [], fan(env="prod"), now=11.0)
    assert len(other_env.started) == 2


def test_emits_of_a_counted_outcome_are_published_and_fanned_out(store: SQLiteStore) -> None:
    store.publish(message("order.created", {"id": 1}))
    charge = next(
        d for d in store.commit_deliveries([], [], fan(), 10.0).started if d.step == "Charge"
    )
    done = DeliveryOutcome(
        charge.delivery_id, charge.fencing_token, "succeeded",
        emits=[message("order.charged", {"id": 1})],
    )  # fmt: skip
    result = store.commit_deliveries([done], [], fan(), now=11.0)
    assert result.accepted == [charge.delivery_id] and result.stale == []
    assert [d.step for d in result.started] == ["Ship"]
    assert [m.topic for m in store.trace_messages("t1")] == ["order.created", "order.charged"]
    [stored] = store.list_deliveries(step="Charge")
    assert stored.status == "succeeded" and stored.finished_at == 11.0


def test_a_stale_outcome_is_fenced_off_with_its_emits(store: SQLiteStore) -> None:
    store.publish(message("order.charged", {"id": 1}))
    [ship] = store.commit_deliveries([], [], fan("a"), 10.0).started
    # a's lease runs out; b takes the delivery over with a new fencing token
    [taken] = store.claim_deliveries("dev", "b", now=30.0, lease_s=10)
    assert (taken.attempt, taken.fencing_token) == (2, 2)
    late = DeliveryOutcome(
        ship.delivery_id, ship.fencing_token, "succeeded", emits=[message("x", {})]
    )
    result = store.commit_deliveries([late], [], None, now=31.0)
    assert result.stale == [ship.delivery_id] and result.published == []
    assert [m.topic for m in store.trace_messages("t1")] == ["order.charged"]


def test_retry_waits_for_its_due_time_then_dead_then_replay(store: SQLiteStore) -> None:
    store.publish(message("order.charged", {"id": 1}))
    [ship] = store.commit_deliveries([], [], fan(), 10.0).started
    retry = DeliveryOutcome(ship.delivery_id, 1, "retry", error="boom", due_at=15.0)
    store.commit_deliveries([retry], [], None, now=11.0)
    assert store.claim_deliveries("dev", "me", now=14.0, lease_s=10) == []
    [again] = store.claim_deliveries("dev", "me", now=15.0, lease_s=10)
    assert again.attempt == 2 and again.error == "boom"
    dead = DeliveryOutcome(ship.delivery_id, again.fencing_token, "dead", error="boom twice")
    store.commit_deliveries([dead], [], None, now=16.0)
    [letter] = store.list_deliveries(status="dead")
    assert letter.error == "boom twice" and letter.attempt == 2
    replayed = store.replay_delivery(ship.delivery_id, now=20.0)
    assert replayed is not None and replayed.status == "pending" and replayed.attempt == 0
    assert store.replay_delivery(ship.delivery_id, now=20.0) is None  # not dead any more
    [fresh] = store.claim_deliveries("dev", "me", now=20.0, lease_s=10)
    assert fresh.attempt == 1


def test_deliveries_of_inactive_steps_are_held(store: SQLiteStore) -> None:
    store.publish(message("order.charged", {"id": 1}))
    [ship] = store.commit_deliveries([], [], fan(), 10.0).started
    store.commit_deliveries(
        [DeliveryOutcome(ship.delivery_id, 1, "retry", due_at=11.0)], [], None, 10.5
    )
    assert store.claim_deliveries("dev", "me", 12.0, 10, inactive=["Ship"]) == []
    assert len(store.claim_deliveries("dev", "me", 12.0, 10)) == 1


def test_renewed_leases_are_not_taken_over(store: SQLiteStore) -> None:
    store.publish(message("order.charged", {"id": 1}))
    store.commit_deliveries([], [], fan("a"), 10.0)
    store.renew_delivery_leases("a", now=18.0, lease_s=10)
    assert store.claim_deliveries("dev", "b", now=25.0, lease_s=10) == []
    assert len(store.claim_deliveries("dev", "b", now=29.0, lease_s=10)) == 1
