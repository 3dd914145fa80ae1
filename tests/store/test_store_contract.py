"""The store contract: every adapter of ``wayang.store.port.Store`` must pass this suite.

The ``store`` fixture is parametrized over the adapters (SQLite in a file and in memory now;
PostgreSQL joins by adding a param). Tests use only the port, plus ``duplicate_completions``.
Times are plain numbers: the store never reads a clock of its own.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

import pytest

from wayang.store.port import (
    DRIVERS_FIRST_S,
    HANDED_OFF,
    Append,
    ConcurrencyError,
    DeadLetter,
    LogLine,
    NewEvent,
    NewSignal,
    NewTask,
    NewTopicMessage,
    RunRecord,
    SignalAnswer,
    SignalRecord,
    SpilledTask,
    Store,
    StoredEvent,
    StoreError,
    Timer,
    TopicMessage,
)

T0 = 1_000.0
LEASE = 30.0


class ContractStore(Store, Protocol):
    def duplicate_completions(self) -> int: ...


# The ``store`` fixture (every adapter) is in conftest.py, shared with the other contract files.


# ------------------------------------------------------------------------------ helpers


def event(kind: str = "noted", **data: Any) -> NewEvent:
    return NewEvent(kind, dict(data))


def task(
    task_id: str,
    run_id: str = "r1",
    *,
    at: float = T0,
    queue: str = "default",
    tenant: str = "default",
) -> NewTask:
    return NewTask(
        task_id=task_id,
        run_id=run_id,
        step_id=f"step-{task_id}",
        attempt=1,
        idempotency_key=f"{run_id}/{task_id}",
        payload={"task": task_id},
        available_at=at,
        queue=queue,
        tenant=tenant,
    )


def new_run(
    store: Store,
    run_id: str = "r1",
    *,
    tenant: str = "default",
    status: str = "running",
    created_at: float = T0,
    tasks: tuple[NewTask, ...] = (),
    timers: tuple[Timer, ...] = (),
) -> RunRecord:
    run = RunRecord(
        run_id=run_id,
        workflow_id="wf",
        status=status,
        created_at=created_at,
        updated_at=created_at,
        spec={"id": "wf", "version": "1"},
        tenant=tenant,
    )
    first = Append(run_id, 0, [event("run_started")], tasks=tasks, timers=timers)
    store.create_run(run, first)
    return run


def version_of(store: Store, run_id: str, tenant: str = "default") -> int:
    run = store.get_run(run_id, tenant)
    assert run is not None
    return run.version


def claim_ids(store: Store, *, now: float = T0, limit: int = 10, owner: str = "w1") -> list[str]:
    return [t.task_id for t in store.claim(owner, now, LEASE, limit=limit)]


# ------------------------------------------------------------------------------ runs and history


def test_create_run_stores_the_run_and_its_first_append(store: ContractStore) -> None:
    new_run(store, tasks=(task("t1"),), timers=(Timer("tm1", "r1", T0 + 5, {"why": "timeout"}),))

    run = store.get_run("r1")
    assert run is not None
    assert (run.workflow_id, run.status, run.version) == ("wf", "running", 1)
    assert run.spec == {"id": "wf", "version": "1"}
    assert (run.created_at, run.tenant, run.owner, run.lease_expires_at) == (
        T0,
        "default",
        None,
        None,
    )
    assert store.load_history("r1") == [StoredEvent("r1", 1, "run_started", {}, 1, T0)]
    assert claim_ids(store) == ["t1"]
    assert [t.timer_id for t in store.due_timers(T0 + 5)] == ["tm1"]


def test_create_run_twice_is_a_conflict(store: ContractStore) -> None:
    new_run(store)
    with pytest.raises(ConcurrencyError, match="already exists"):
        new_run(store)
    assert len(store.load_history("r1")) == 1


def test_one_commit_creates_several_runs_and_refuses_them_all_if_one_exists(
    store: ContractStore,
) -> None:
    def creating(run_id: str, owner: str | None = None) -> Append:
        run = RunRecord(run_id, "wf", "pending", T0, T0, spec={"n": run_id}, owner=owner)
        return Append(run_id, 0, [event("run_started")], create=run)

    store.commit([creating("b", owner="e1"), creating("a"), creating("c")], T0)
    found = {r: store.get_run(r) for r in ("a", "b", "c")}
    assert {r: (run.owner, run.spec, run.version) for r, run in found.items() if run} == {
        "a": (None, {"n": "a"}, 1),
        "b": ("e1", {"n": "b"}, 1),
        "c": (None, {"n": "c"}, 1),
    }
    with pytest.raises(ConcurrencyError, match="run b already exists") as caught:
        store.commit([creating("d"), creating("b")], T0)
    assert caught.value.run_id == "b"
    assert store.get_run("d") is None  # the whole group rolled back


def test_create_run_first_append_must_expect_version_zero(store: ContractStore) -> None:
    run = RunRecord("r1", "wf", "running", T0, T0)
    with pytest.raises(StoreError, match="version 0"):
        store.create_run(run, Append("r1", 3, [event()]))
    with pytest.raises(StoreError):
        store.create_run(run, Append("other", 0, [event()]))
    assert store.get_run("r1") is None


def test_create_run_rolls_back_when_its_first_append_fails(store: ContractStore) -> None:
    run = RunRecord("r1", "wf", "running", T0, T0)
    duplicate = (task("t1"), task("t1"))
    with pytest.raises(StoreError):
        store.create_run(run, Append("r1", 0, [event()], tasks=duplicate))
    assert store.get_run("r1") is None
    assert store.load_history("r1") == []
    new_run(store)  # the failed transaction left no connection in a broken state
    assert [e.seq for e in store.load_history("r1")] == [1]


def test_commit_numbers_events_on_and_updates_the_run(store: ContractStore) -> None:
    new_run(store)
    store.commit([Append("r1", 1, [event("a", n=1), event("b", n=2)], status="waiting")], T0 + 1)

    history = store.load_history("r1")
    assert [(e.seq, e.type, e.data) for e in history] == [
        (1, "run_started", {}),
        (2, "a", {"n": 1}),
        (3, "b", {"n": 2}),
    ]
    assert history[-1].at == T0 + 1
    run = store.get_run("r1")
    assert run is not None
    assert (run.version, run.status, run.updated_at) == (3, "waiting", T0 + 1)


def test_commit_without_status_keeps_the_status(store: ContractStore) -> None:
    new_run(store, status="running")
    store.commit([Append("r1", 1, [event()])], T0 + 1)
    run = store.get_run("r1")
    assert run is not None
    assert run.status == "running"


def test_event_data_round_trips_as_json(store: ContractStore) -> None:
    new_run(store)
    data = {"text": "héllo ✓", "n": 3, "x": 1.5, "none": None, "list": [1, {"a": True}]}
    store.commit([Append("r1", 1, [NewEvent("rich", data, version=2)])], T0)
    [stored] = store.load_history("r1", after_seq=1)
    assert (stored.data, stored.version) == (data, 2)


def test_load_history_after_seq(store: ContractStore) -> None:
    new_run(store)
    store.commit([Append("r1", 1, [event(n=i) for i in range(5)])], T0)
    assert [e.seq for e in store.load_history("r1", after_seq=4)] == [5, 6]
    assert store.load_history("r1", after_seq=6) == []
    assert store.load_history("nope") == []


def test_a_stale_expected_version_is_a_concurrency_error(store: ContractStore) -> None:
    new_run(store)
    store.commit([Append("r1", 1, [event()])], T0)
    with pytest.raises(ConcurrencyError, match="version 2"):
        store.commit([Append("r1", 1, [event("late")])], T0)
    assert [e.seq for e in store.load_history("r1")] == [1, 2]


def test_a_conflict_rolls_back_the_whole_group(store: ContractStore) -> None:
    new_run(store, "r1")
    new_run(store, "r2")
    group = [
        Append(
            "r1",
            1,
            [event("good")],
            tasks=[task("t1", "r1")],
            timers=[Timer("tm1", "r1", T0, {})],
            status="waiting",
        ),
        Append("r2", 7, [event("stale")], tasks=[task("t2", "r2")]),
    ]
    with pytest.raises(ConcurrencyError) as raised:
        store.commit(group, T0 + 1)
    assert raised.value.run_id == "r2"  # the committer drops that run and commits the rest

    assert [e.type for e in store.load_history("r1")] == ["run_started"]
    run = store.get_run("r1")
    assert run is not None
    assert (run.version, run.status, run.updated_at) == (1, "running", T0)
    assert claim_ids(store) == []
    assert store.due_timers(T0 + 10) == []


def test_a_group_commit_applies_every_append(store: ContractStore) -> None:
    for run_id in ("r1", "r2", "r3"):
        new_run(store, run_id)
    store.commit(
        [Append(r, 1, [event()], tasks=[task(f"t-{r}", r)]) for r in ("r1", "r2", "r3")], T0
    )
    assert [version_of(store, r) for r in ("r1", "r2", "r3")] == [2, 2, 2]
    assert sorted(claim_ids(store)) == ["t-r1", "t-r2", "t-r3"]


def test_a_group_commit_moves_each_runs_version_and_status(store: ContractStore) -> None:
    for run_id in ("r1", "r2", "r3"):
        new_run(store, run_id)
    store.commit(
        [
            Append("r3", 1, [event(), event()], status="waiting"),
            Append("r1", 1, [event()]),
            Append("r2", 1, [event()], status="succeeded"),
            Append("r1", 2, [event()], status="failed"),
        ],
        T0 + 1,
    )
    found = {r: store.get_run(r) for r in ("r1", "r2", "r3")}
    moved = {r: (run.version, run.status, run.updated_at) for r, run in found.items() if run}
    assert moved == {
        "r1": (3, "failed", T0 + 1),
        "r2": (2, "succeeded", T0 + 1),
        "r3": (3, "waiting", T0 + 1),
    }


def test_a_group_naming_an_unknown_run_fails_whole(store: ContractStore) -> None:
    new_run(store)
    with pytest.raises(StoreError, match="ghost does not exist") as raised:
        store.commit([Append("r1", 1, [event()]), Append("ghost", 3, [event()])], T0)
    assert not isinstance(raised.value, ConcurrencyError)
    assert version_of(store, "r1") == 1


def test_one_group_may_hold_several_appends_of_one_run(store: ContractStore) -> None:
    new_run(store)
    store.commit([Append("r1", 1, [event("a")]), Append("r1", 2, [event("b")])], T0)
    assert [e.type for e in store.load_history("r1")] == ["run_started", "a", "b"]


def test_commit_to_an_unknown_run_fails(store: ContractStore) -> None:
    with pytest.raises(StoreError, match="does not exist") as raised:
        store.commit([Append("ghost", 0, [event()])], T0)
    assert not isinstance(raised.value, ConcurrencyError)


def test_events_and_their_tasks_commit_together_or_not_at_all(store: ContractStore) -> None:
    # Outbox: the second task reuses an id, so the whole append (and its events) must vanish.
    new_run(store, tasks=(task("t1"),))
    with pytest.raises(StoreError):
        store.commit([Append("r1", 1, [event("scheduled")], tasks=[task("t2"), task("t1")])], T0)
    assert version_of(store, "r1") == 1
    assert [e.type for e in store.load_history("r1")] == ["run_started"]
    assert claim_ids(store) == ["t1"]


def test_empty_commit_is_a_no_op(store: ContractStore) -> None:
    store.commit([], T0)


def test_list_runs_newest_first_with_status_filter_and_limit(store: ContractStore) -> None:
    new_run(store, "a", created_at=T0, status="running")
    new_run(store, "b", created_at=T0 + 1, status="succeeded")
    new_run(store, "c", created_at=T0 + 2, status="running")
    assert [r.run_id for r in store.list_runs()] == ["c", "b", "a"]
    assert [r.run_id for r in store.list_runs(status="running")] == ["c", "a"]
    assert [r.run_id for r in store.list_runs(limit=2)] == ["c", "b"]
    assert store.list_runs(status="failed") == []


# ------------------------------------------------------------------------------ run leases


def test_lease_run_is_exclusive_until_it_expires(store: ContractStore) -> None:
    new_run(store)
    assert store.lease_run("r1", "engine-a", T0, 10)
    assert not store.lease_run("r1", "engine-b", T0 + 5, 10)
    assert store.lease_run("r1", "engine-a", T0 + 5, 10)  # the holder renews
    assert not store.lease_run("r1", "engine-b", T0 + 14, 10)
    assert store.lease_run("r1", "engine-b", T0 + 15, 10)  # expired at T0 + 15
    run = store.get_run("r1")
    assert run is not None
    assert (run.owner, run.lease_expires_at) == ("engine-b", T0 + 25)


def test_lease_run_on_an_unknown_run_fails(store: ContractStore) -> None:
    assert not store.lease_run("ghost", "engine-a", T0, 10)


def test_renewing_an_engine_s_leases_extends_its_runs_and_its_tasks(store: ContractStore) -> None:
    new_run(store, tasks=(task("t1"),))
    assert store.lease_run("r1", "engine-a", T0, LEASE)
    assert claim_ids(store, owner="engine-a") == ["t1"]
    store.renew_leases("engine-a", T0 + 25, LEASE)  # both now run to T0 + 55
    assert not store.lease_run("r1", "engine-b", T0 + 40, LEASE)
    assert claim_ids(store, now=T0 + 40, owner="engine-b") == []
    run = store.get_run("r1")
    assert run is not None
    assert (run.owner, run.lease_expires_at) == ("engine-a", T0 + 55)


def test_orphaned_runs_are_unfinished_runs_without_a_live_lease(store: ContractStore) -> None:
    new_run(store, "never-leased")
    new_run(store, "leased")
    new_run(store, "expired")
    new_run(store, "done", status="succeeded")
    new_run(store, "failed", status="failed")
    new_run(store, "cancelled", status="cancelled")
    store.lease_run("leased", "e", T0, 100)
    store.lease_run("expired", "e", T0, 10)
    store.lease_run("done", "e", T0, 10)

    orphans = store.orphaned_runs(T0 + 50)
    assert sorted(r.run_id for r in orphans) == ["expired", "never-leased"]
    assert len(store.orphaned_runs(T0 + 50, limit=1)) == 1
    assert sorted(r.run_id for r in store.orphaned_runs(T0 + 5)) == ["never-leased"]


def test_finishing_a_run_takes_it_off_the_orphan_list(store: ContractStore) -> None:
    new_run(store)
    store.commit([Append("r1", 1, [event("run_succeeded")], status="succeeded")], T0)
    assert store.orphaned_runs(T0) == []


def handed_off_run(store: Store, run_id: str, *, created_at: float = T0) -> RunRecord:
    """A run as ``EngineSettings(hand_off=True)`` writes it: its first task held for a driver."""
    run = RunRecord(
        run_id=run_id,
        workflow_id="wf",
        status="pending",
        created_at=created_at,
        updated_at=created_at,
        owner=HANDED_OFF,
    )
    held = replace(task(f"{run_id}-t1", run_id), owner=HANDED_OFF)
    store.create_run(run, Append(run_id, 0, [event("run_started")], tasks=(held,)))
    return run


def test_drivers_take_handed_off_runs_oldest_first_and_only_once(store: ContractStore) -> None:
    handed_off_run(store, "later", created_at=T0 + 1)
    handed_off_run(store, "first")
    new_run(store, "not-handed-off")
    [taken] = store.take_handed_off("host:1:a:driver", T0 + 2, LEASE, limit=1)
    record = taken.record
    assert (record.run_id, record.owner, record.lease_expires_at) == (
        "first",
        "host:1:a:driver",
        T0 + 2 + LEASE,
    )
    # Taken with what adopting it needs; its held task is leased to the driver with it.
    assert [event.type for event in taken.history] == ["run_started"]
    assert [(t.task_id, t.owner, t.fencing_token) for t in taken.tasks] == [
        ("first-t1", "host:1:a:driver", 2)
    ]
    assert (taken.completions, taken.timers) == ([], [])
    taken_ids = [t.record.run_id for t in store.take_handed_off("host:2:b:driver", T0 + 2, LEASE)]
    assert taken_ids == ["later"]
    assert store.take_handed_off("host:2:b:driver", T0 + 3, LEASE) == []
    # A held task is no worker's to claim.
    assert claim_ids(store, now=T0 + 3) == []


def test_the_runs_each_driver_holds_are_counted_until_they_end(store: ContractStore) -> None:
    for run_id in ("a", "b", "c"):
        handed_off_run(store, run_id)
    new_run(store, "engine-run")  # an engine's, not a driver's
    store.take_handed_off("w1:x:driver", T0, LEASE, limit=2)
    store.take_handed_off("w2:y:driver", T0, LEASE)
    assert store.driven_runs() == {"w1:x:driver": 2, "w2:y:driver": 1}
    store.commit([Append("a", 1, [event("run_succeeded")], status="succeeded")], T0)
    assert store.driven_runs() == {"w1:x:driver": 1, "w2:y:driver": 1}
    assert store.driven_runs(tenant="other") == {}


def test_a_lapsed_driver_s_runs_go_to_another_driver(store: ContractStore) -> None:
    handed_off_run(store, "r1")
    store.take_handed_off("host:1:a:driver", T0, LEASE)
    assert store.take_handed_off("host:2:b:driver", T0 + LEASE - 1, LEASE) == []
    taken = store.take_handed_off("host:2:b:driver", T0 + LEASE, LEASE)
    assert [t.record.owner for t in taken] == ["host:2:b:driver"]


def test_a_driver_letting_go_hands_the_run_back_to_the_drivers(store: ContractStore) -> None:
    handed_off_run(store, "r1")
    new_run(store, "r2")
    store.take_handed_off("host:1:a:driver", T0, LEASE)
    store.release_run("r1", "host:1:a:driver")
    store.lease_run("r2", "host:1:e", T0, LEASE)
    store.release_run("r2", "host:1:e")
    owners = {
        r: (run.owner, run.lease_expires_at) for r in ("r1", "r2") if (run := store.get_run(r))
    }
    assert owners == {"r1": (HANDED_OFF, T0 + LEASE), "r2": (None, None)}
    assert [t.record.run_id for t in store.take_handed_off("host:2:b:driver", T0, LEASE)] == ["r1"]


def test_engines_adopting_orphans_leave_handed_off_runs_to_drivers_first(
    store: ContractStore,
) -> None:
    handed_off_run(store, "handed")
    handed_off_run(store, "driven")
    store.take_handed_off("host:1:a:driver", T0, LEASE)  # both, oldest first
    store.release_run("handed", "host:1:a:driver")
    assert store.orphaned_runs(T0 + LEASE - 1) == []
    later = T0 + LEASE + DRIVERS_FIRST_S
    assert sorted(r.run_id for r in store.orphaned_runs(later)) == ["driven", "handed"]


def test_run_statuses_reads_several_runs_at_once(store: ContractStore) -> None:
    new_run(store, "a")
    new_run(store, "b", status="succeeded")
    assert store.run_statuses(["a", "b", "ghost"]) == {"a": "running", "b": "succeeded"}
    assert store.run_statuses([]) == {}


def test_load_histories_reads_several_runs_histories_at_once(store: ContractStore) -> None:
    new_run(store, "a")
    new_run(store, "b")
    store.commit([Append("b", 1, [event("next", n=2)])], T0 + 1)
    found = store.load_histories(["b", "a", "ghost"])
    assert {r: [(e.seq, e.type) for e in h] for r, h in found.items()} == {
        "a": [(1, "run_started")],
        "b": [(1, "run_started"), (2, "next")],
    }
    assert found["b"] == store.load_history("b")
    assert store.load_histories([]) == {}


# ------------------------------------------------------------------------------ claim


def test_claim_takes_available_tasks_oldest_first(store: ContractStore) -> None:
    new_run(store, tasks=(task("late", at=T0 + 3), task("old", at=T0 - 5), task("mid", at=T0 - 1)))
    new_run(store, "r2", tasks=(task("future", "r2", at=T0 + 20),))
    claimed = store.claim("w1", T0 + 3, LEASE, limit=10)
    assert [t.task_id for t in claimed] == ["old", "mid", "late"]
    assert claim_ids(store, now=T0 + 3) == []
    assert claim_ids(store, now=T0 + 20) == ["future"]


def test_claim_respects_limit_and_keeps_the_rest_queued(store: ContractStore) -> None:
    new_run(store, tasks=tuple(task(f"t{i}", at=T0 + i) for i in range(5)))
    assert claim_ids(store, now=T0 + 10, limit=2) == ["t0", "t1"]
    assert claim_ids(store, now=T0 + 10, limit=2) == ["t2", "t3"]
    assert claim_ids(store, now=T0 + 10, limit=0) == []
    assert claim_ids(store, now=T0 + 10, limit=2) == ["t4"]


def test_claim_sets_owner_lease_and_first_fencing_token(store: ContractStore) -> None:
    new_run(store, tasks=(task("t1", tenant="default"),))
    [claimed] = store.claim("w1", T0, LEASE)
    assert (claimed.owner, claimed.fencing_token, claimed.lease_expires_at) == ("w1", 1, T0 + LEASE)
    assert (claimed.run_id, claimed.step_id, claimed.attempt) == ("r1", "step-t1", 1)
    assert (claimed.idempotency_key, claimed.payload) == ("r1/t1", {"task": "t1"})


def test_claim_only_takes_its_queue(store: ContractStore) -> None:
    new_run(store, tasks=(task("a", queue="gpu"), task("b")))
    assert [t.task_id for t in store.claim("w", T0, LEASE, limit=5, queue="gpu")] == ["a"]
    assert [t.task_id for t in store.claim("w", T0, LEASE, limit=5, queue="gpu")] == []
    assert claim_ids(store) == ["b"]


def test_a_live_lease_is_not_claimed_again_but_an_expired_one_is(store: ContractStore) -> None:
    new_run(store, tasks=(task("t1"),))
    [first] = store.claim("w1", T0, LEASE)
    assert store.claim("w2", T0 + LEASE - 1, LEASE) == []
    [second] = store.claim("w2", T0 + LEASE, LEASE)
    assert (second.task_id, second.owner, second.fencing_token) == ("t1", "w2", 2)
    assert second.lease_expires_at == T0 + 2 * LEASE
    assert first.fencing_token == 1


def test_claim_mixes_expired_leases_and_queued_tasks_by_age(store: ContractStore) -> None:
    new_run(store, tasks=(task("old", at=T0), task("new", at=T0 + 20)))
    assert claim_ids(store, now=T0, limit=1) == ["old"]
    assert claim_ids(store, now=T0 + LEASE + 1, limit=2, owner="w2") == ["old", "new"]


# ------------------------------------------------------------------------------ fencing


def test_complete_with_the_current_token(store: ContractStore) -> None:
    new_run(store, tasks=(task("t1"),))
    [claimed] = store.claim("w1", T0, LEASE)
    assert store.complete("t1", claimed.fencing_token, {"ok": True, "out": [1]}, T0 + 2)
    [done] = store.completions()
    assert (done.task_id, done.run_id, done.step_id, done.attempt) == ("t1", "r1", "step-t1", 1)
    assert (done.result, done.completed_at) == ({"ok": True, "out": [1]}, T0 + 2)
    assert store.duplicate_completions() == 0


def test_run_tasks_lists_every_task_of_a_run_as_it_stands(store: ContractStore) -> None:
    new_run(store, tasks=(task("t1"), task("t2", at=T0 + 1)))
    new_run(store, "r2", tasks=(task("other", "r2"),))
    [claimed] = store.claim("w1", T0, LEASE, limit=1)
    store.complete("t1", claimed.fencing_token, {"ok": True}, T0 + 2)

    found = store.run_tasks("r1")
    assert [(t.task_id, t.step_id, t.attempt, t.status) for t in found] == [
        ("t1", "step-t1", 1, "completed"),
        ("t2", "step-t2", 1, "queued"),
    ]
    assert (found[0].payload, found[0].owner, found[0].available_at) == ({"task": "t1"}, "w1", T0)
    assert (found[1].owner, found[1].lease_expires_at) == (None, None)
    assert store.run_tasks("nobody") == []


def test_a_stale_token_is_rejected_and_counted(store: ContractStore) -> None:
    new_run(store, tasks=(task("t1"),))
    [stale] = store.claim("w1", T0, LEASE)
    [fresh] = store.claim("w2", T0 + LEASE, LEASE)  # w1's lease ran out; w2 took over

    assert not store.complete("t1", stale.fencing_token, {"by": "w1"}, T0 + LEASE + 1)
    assert store.completions() == []
    assert store.complete("t1", fresh.fencing_token, {"by": "w2"}, T0 + LEASE + 2)
    assert [c.result for c in store.completions()] == [{"by": "w2"}]
    assert store.duplicate_completions() == 1


def test_the_first_completion_wins_and_later_ones_are_counted(store: ContractStore) -> None:
    new_run(store, tasks=(task("t1"),))
    [claimed] = store.claim("w1", T0, LEASE)
    assert store.complete("t1", claimed.fencing_token, {"n": 1}, T0 + 1)
    assert not store.complete("t1", claimed.fencing_token, {"n": 2}, T0 + 2)
    assert not store.complete("t1", claimed.fencing_token, {"n": 3}, T0 + 3)
    assert [c.result for c in store.completions()] == [{"n": 1}]
    assert store.duplicate_completions() == 2


def test_a_completed_task_is_never_claimed_again(store: ContractStore) -> None:
    new_run(store, tasks=(task("t1"),))
    [claimed] = store.claim("w1", T0, LEASE)
    store.complete("t1", claimed.fencing_token, {}, T0 + 1)
    assert claim_ids(store, now=T0 + 10 * LEASE) == []
    assert store.requeue_expired(T0 + 10 * LEASE) == 0


def test_completing_a_task_never_claimed_is_rejected(store: ContractStore) -> None:
    new_run(store, tasks=(task("t1"),))
    assert not store.complete("t1", 0, {}, T0)
    assert not store.complete("ghost", 1, {}, T0)
    assert store.completions() == []


# ------------------------------------------------------------------------------ heartbeat


def test_heartbeat_extends_the_lease_of_the_holder(store: ContractStore) -> None:
    new_run(store, tasks=(task("t1"),))
    [claimed] = store.claim("w1", T0, LEASE)
    assert store.heartbeat("t1", claimed.fencing_token, T0 + 20, LEASE)
    assert store.claim("w2", T0 + LEASE + 1, LEASE) == []  # extended to T0 + 50
    assert claim_ids(store, now=T0 + 20 + LEASE, owner="w2") == ["t1"]


def test_heartbeat_with_a_stale_token_or_after_completion_fails(store: ContractStore) -> None:
    new_run(store, tasks=(task("t1"),))
    [old] = store.claim("w1", T0, LEASE)
    [new] = store.claim("w2", T0 + LEASE, LEASE)
    assert not store.heartbeat("t1", old.fencing_token, T0 + LEASE + 1, LEASE)
    assert store.complete("t1", new.fencing_token, {}, T0 + LEASE + 2)
    assert not store.heartbeat("t1", new.fencing_token, T0 + LEASE + 3, LEASE)
    assert not store.heartbeat("ghost", 1, T0, LEASE)


# ------------------------------------------------------------------------------ requeue


def test_requeue_expired_sends_only_expired_claims_back(store: ContractStore) -> None:
    new_run(store, tasks=(task("short"), task("long"), task("queued", at=T0 + 1000)))
    store.claim("w1", T0, 10, limit=1)
    store.claim("w1", T0, 100, limit=1)
    assert store.requeue_expired(T0 + 50) == 1
    assert store.requeue_expired(T0 + 50) == 0
    [again] = store.claim("w2", T0 + 50, LEASE)
    assert (again.task_id, again.owner, again.fencing_token) == ("short", "w2", 2)


def test_spilling_queues_only_the_engines_own_unstarted_tasks(store: ContractStore) -> None:
    mine = replace(task("mine"), owner="e1", lease_expires_at=T0 + LEASE)
    theirs = replace(task("theirs"), owner="e2", lease_expires_at=T0 + LEASE)
    new_run(store, tasks=(mine, theirs, task("queued")))
    spill = [SpilledTask(t, "gpu", ("gpu",)) for t in ("mine", "theirs", "queued", "ghost")]
    assert store.spill_tasks("e1", spill) == ["mine"]
    assert store.spill_tasks("e1", spill) == []  # queued now: nothing left to move
    assert claim_ids(store) == ["queued"]  # "mine" waits in its own queue
    assert store.claim("w1", T0, LEASE, queue="gpu", offers=["shell"]) == []  # it needs gpu
    [claimed] = store.claim("w1", T0, LEASE, queue="gpu", offers=["gpu"])
    assert (claimed.task_id, claimed.owner, claimed.fencing_token) == ("mine", "w1", 1)
    assert store.complete("mine", claimed.fencing_token, {"ok": True}, T0 + 1)
    assert [c.task_id for c in store.completions()] == ["mine"]
    statuses = {t.task_id: (t.status, t.owner) for t in store.run_tasks("r1")}
    assert statuses["theirs"] == ("claimed", "e2")


# ------------------------------------------------------------------------------ completions


def test_completions_in_completion_order_by_run_with_limit(store: ContractStore) -> None:
    new_run(store, "r1", tasks=(task("a", "r1"), task("b", "r1")))
    new_run(store, "r2", tasks=(task("c", "r2"),))
    tokens = {t.task_id: t.fencing_token for t in store.claim("w", T0, LEASE, limit=3)}
    store.complete("b", tokens["b"], {}, T0 + 1)
    store.complete("c", tokens["c"], {}, T0 + 2)
    store.complete("a", tokens["a"], {}, T0 + 3)
    assert [c.task_id for c in store.completions()] == ["b", "c", "a"]
    assert [c.task_id for c in store.completions("r1")] == ["b", "a"]
    assert [c.task_id for c in store.completions(limit=2)] == ["b", "c"]
    assert store.completions("r3") == []


def test_acknowledged_completions_are_consumed_with_the_append(store: ContractStore) -> None:
    new_run(store, "r1", tasks=(task("a", "r1"), task("b", "r1")))
    new_run(store, "r2", tasks=(task("c", "r2"),))
    for claimed in store.claim("w", T0, LEASE, limit=3):
        store.complete(claimed.task_id, claimed.fencing_token, {}, T0 + 1)

    # r1 acknowledges its task and tries r2's; only its own is consumed.
    store.commit([Append("r1", 1, [event("a_done")], acknowledge=["a", "c"])], T0 + 2)
    assert sorted(c.task_id for c in store.completions()) == ["b", "c"]


def test_acknowledging_in_a_failed_group_consumes_nothing(store: ContractStore) -> None:
    new_run(store, tasks=(task("a"),))
    [claimed] = store.claim("w", T0, LEASE)
    store.complete("a", claimed.fencing_token, {}, T0 + 1)
    with pytest.raises(ConcurrencyError):
        store.commit([Append("r1", 5, [event()], acknowledge=["a"])], T0 + 2)
    assert [c.task_id for c in store.completions()] == ["a"]


# ------------------------------------------------------------------------------ timers


def test_due_timers_soonest_first_and_kept_until_cancelled(store: ContractStore) -> None:
    timers = (
        Timer("late", "r1", T0 + 30, {"n": 3}),
        Timer("soon", "r1", T0 + 10, {"n": 1}),
        Timer("mid", "r1", T0 + 20, {"n": 2}),
    )
    new_run(store, timers=timers)
    assert store.due_timers(T0) == []
    assert [t.timer_id for t in store.due_timers(T0 + 20)] == ["soon", "mid"]
    assert [t.timer_id for t in store.due_timers(T0 + 20)] == ["soon", "mid"]  # still there
    assert [t.timer_id for t in store.due_timers(T0 + 99, limit=1)] == ["soon"]
    assert store.due_timers(T0 + 10) == [Timer("soon", "r1", T0 + 10, {"n": 1}, "default")]

    store.commit([Append("r1", 1, [event("timer_fired")], cancel_timers=["soon", "mid"])], T0 + 20)
    assert [t.timer_id for t in store.due_timers(T0 + 99)] == ["late"]


def test_an_append_may_cancel_and_rearm_a_timer_id(store: ContractStore) -> None:
    new_run(store, timers=(Timer("retry", "r1", T0 + 1, {"attempt": 1}),))
    rearm = Append(
        "r1",
        1,
        [event("retry_scheduled")],
        timers=[Timer("retry", "r1", T0 + 9, {"attempt": 2})],
        cancel_timers=["retry"],
    )
    store.commit([rearm], T0 + 1)
    [timer] = store.due_timers(T0 + 99)
    assert (timer.due_at, timer.payload) == (T0 + 9, {"attempt": 2})


def test_cancelling_an_unknown_timer_is_harmless(store: ContractStore) -> None:
    new_run(store)
    store.commit([Append("r1", 1, [event()], cancel_timers=["nope"])], T0)
    assert version_of(store, "r1") == 2


# ------------------------------------------------------------------------------ tenancy


def test_runs_are_seen_only_within_their_tenant(store: ContractStore) -> None:
    new_run(store, "a1", tenant="acme")
    new_run(store, "g1", tenant="globex")
    new_run(store, "d1")
    assert store.get_run("a1") is None
    assert store.get_run("a1", tenant="globex") is None
    found = store.get_run("a1", tenant="acme")
    assert found is not None
    assert found.tenant == "acme"
    assert [r.run_id for r in store.list_runs(tenant="acme")] == ["a1"]
    assert [r.run_id for r in store.list_runs(status="running", tenant="globex")] == ["g1"]
    assert [r.run_id for r in store.list_runs()] == ["d1"]


def test_tasks_and_timers_carry_their_tenant(store: ContractStore) -> None:
    new_run(
        store,
        "a1",
        tenant="acme",
        tasks=(task("t1", "a1", tenant="acme"),),
        timers=(Timer("tm", "a1", T0, {}, tenant="acme"),),
    )
    [claimed] = store.claim("w", T0, LEASE)
    assert claimed.tenant == "acme"
    [timer] = store.due_timers(T0)
    assert timer.tenant == "acme"


def test_dead_letters_are_listed_per_tenant(store: ContractStore) -> None:
    store.add_dead_letter(DeadLetter("d1", "r1", "s", 3, "boom", {}, T0, tenant="acme"))
    store.add_dead_letter(DeadLetter("d2", "r2", "s", 3, "boom", {}, T0))
    assert [d.dlq_id for d in store.dead_letters(tenant="acme")] == ["d1"]
    assert [d.dlq_id for d in store.dead_letters()] == ["d2"]
    assert store.dead_letters(tenant="nobody") == []


# ------------------------------------------------------------------------------ signals


def signal(
    run_id: str = "r1",
    kind: str = "approve",
    actor: str = "alice",
    *,
    step_id: str = "review",
    at: float = T0,
    tenant: str = "default",
    **data: Any,
) -> NewSignal:
    return NewSignal(run_id, step_id, kind, actor, dict(data), at, tenant)


def test_a_sent_signal_is_pending_and_can_be_read_back(store: ContractStore) -> None:
    new_run(store)
    first = store.send_signal(signal(comment="looks good"))
    second = store.send_signal(signal(kind="offer", actor="bob", at=T0 + 1, price=3))
    assert 0 < first < second

    expected = SignalRecord(
        first, "r1", "review", "approve", "alice", {"comment": "looks good"}, T0
    )
    assert store.get_signal(first) == expected
    assert (expected.status, expected.outcome, expected.handled_at) == ("pending", "", None)
    assert store.pending_signals("r1") == [
        expected,
        SignalRecord(second, "r1", "review", "offer", "bob", {"price": 3}, T0 + 1),
    ]


def test_pending_signals_are_per_run_and_missing_signals_are_none(store: ContractStore) -> None:
    new_run(store, "r1")
    new_run(store, "r2", tenant="acme")
    mine = store.send_signal(signal("r1"))
    theirs = store.send_signal(signal("r2", kind="complete", tenant="acme"))
    assert [s.seq for s in store.pending_signals("r1")] == [mine]
    [other] = store.pending_signals("r2")
    assert (other.seq, other.kind, other.tenant) == (theirs, "complete", "acme")
    assert store.pending_signals("r3") == []
    assert store.get_signal(theirs + 100) is None
    both = store.pending_signals_of_runs(["r1", "r2", "r3"])
    assert both == {"r1": store.pending_signals("r1"), "r2": [other]}
    assert store.pending_signals_of_runs([]) == {}


def test_signals_are_answered_with_the_events_that_record_them(store: ContractStore) -> None:
    new_run(store)
    approve = store.send_signal(signal(kind="approve", actor="alice"))
    reject = store.send_signal(signal(kind="reject", actor="mallory"))
    later = store.send_signal(signal(kind="approve", actor="carol", at=T0 + 1))
    store.commit(
        [
            Append(
                "r1",
                1,
                [event("vote_counted", actor="alice")],
                answer_signals=[
                    SignalAnswer(approve, "accepted", "your approval was counted"),
                    SignalAnswer(reject, "rejected", "mallory may not review this step"),
                ],
            )
        ],
        T0 + 5,
    )

    assert [e.type for e in store.load_history("r1")] == ["run_started", "vote_counted"]
    assert [s.seq for s in store.pending_signals("r1")] == [later]
    accepted = store.get_signal(approve)
    assert accepted is not None
    assert (accepted.status, accepted.outcome, accepted.handled_at) == (
        "accepted",
        "your approval was counted",
        T0 + 5,
    )
    rejected = store.get_signal(reject)
    assert rejected is not None
    assert (rejected.status, rejected.outcome) == ("rejected", "mallory may not review this step")
    assert (rejected.kind, rejected.actor, rejected.created_at) == ("reject", "mallory", T0)


def test_a_conflicting_append_leaves_its_signals_pending(store: ContractStore) -> None:
    new_run(store)
    seq = store.send_signal(signal())
    answer = SignalAnswer(seq, "accepted", "counted")
    with pytest.raises(ConcurrencyError):
        store.commit([Append("r1", 7, [event("vote_counted")], answer_signals=[answer])], T0 + 1)
    assert [s.seq for s in store.pending_signals("r1")] == [seq]
    found = store.get_signal(seq)
    assert found is not None
    assert (found.status, found.outcome, found.handled_at) == ("pending", "", None)
    assert version_of(store, "r1") == 1


def test_a_conflict_elsewhere_in_the_group_leaves_signals_pending(store: ContractStore) -> None:
    new_run(store, "r1")
    new_run(store, "r2")
    seq = store.send_signal(signal("r1"))
    group = [
        Append("r1", 1, [event()], answer_signals=[SignalAnswer(seq, "accepted", "counted")]),
        Append("r2", 9, [event("stale")]),
    ]
    with pytest.raises(ConcurrencyError):
        store.commit(group, T0 + 1)
    assert [s.seq for s in store.pending_signals("r1")] == [seq]


def test_the_first_answer_to_a_signal_stands(store: ContractStore) -> None:
    new_run(store)
    seq = store.send_signal(signal())
    store.commit(
        [Append("r1", 1, [event()], answer_signals=[SignalAnswer(seq, "accepted", "counted")])],
        T0 + 1,
    )
    store.commit(
        [Append("r1", 2, [event()], answer_signals=[SignalAnswer(seq, "rejected", "too late")])],
        T0 + 2,
    )
    found = store.get_signal(seq)
    assert found is not None
    assert (found.status, found.outcome, found.handled_at) == ("accepted", "counted", T0 + 1)
    assert version_of(store, "r1") == 3  # the second append's events still went in


def test_a_run_answers_only_its_own_signals(store: ContractStore) -> None:
    new_run(store, "r1")
    new_run(store, "r2")
    theirs = store.send_signal(signal("r2"))
    store.commit(
        [Append("r1", 1, [event()], answer_signals=[SignalAnswer(theirs, "accepted", "mine")])],
        T0 + 1,
    )
    assert [s.seq for s in store.pending_signals("r2")] == [theirs]


@pytest.mark.parametrize("status", ["pending", "maybe", ""])
def test_an_answer_must_accept_or_reject(store: ContractStore, status: str) -> None:
    new_run(store)
    seq = store.send_signal(signal())
    answer = SignalAnswer(seq, status, "hmm")
    with pytest.raises(StoreError, match="accepted, rejected"):
        store.commit([Append("r1", 1, [event()], answer_signals=[answer])], T0 + 1)
    assert version_of(store, "r1") == 1
    assert [s.seq for s in store.pending_signals("r1")] == [seq]


def test_signal_data_round_trips_as_json(store: ContractStore) -> None:
    new_run(store)
    data = {"text": "héllo ✓", "n": 3, "x": 1.5, "none": None, "list": [1, {"a": True}]}
    seq = store.send_signal(NewSignal("r1", "pay", "offer", "cli:bob", data, T0))
    found = store.get_signal(seq)
    assert found is not None
    assert found.data == data


# ------------------------------------------------------------------------------ topics


def message(
    topic: str = "orders", at: float = T0, *, tenant: str = "default", **data: Any
) -> NewTopicMessage:
    return NewTopicMessage(topic, dict(data), at, tenant=tenant)


def test_published_messages_are_read_in_seq_order(store: ContractStore) -> None:
    assert store.latest_topic_seq() == 0
    seqs = [store.publish(message(n=i, at=T0 + i)) for i in range(3)]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 3
    assert store.latest_topic_seq() == seqs[-1]

    read = store.topic_messages("orders")
    assert [m.seq for m in read] == seqs
    assert read[0] == TopicMessage(seqs[0], "orders", {"n": 0}, T0)
    assert [m.data for m in store.topic_messages("orders", limit=2)] == [{"n": 0}, {"n": 1}]
    assert store.topic_messages("nobody-publishes-here") == []


def test_topic_messages_keep_their_key_trace_and_source(store: ContractStore) -> None:
    published = NewTopicMessage(
        "deploys",
        {"service": "api"},
        T0,
        key="api",
        trace_id="trace-1",
        source="run:r1/deploy",
        tenant="acme",
    )
    seq = store.publish(published)
    assert store.topic_messages("deploys", tenant="acme") == [
        TopicMessage(
            seq, "deploys", {"service": "api"}, T0, "api", "trace-1", "run:r1/deploy", "acme"
        )
    ]


def test_topic_messages_page_after_a_cursor_and_since_a_time(store: ContractStore) -> None:
    first = store.publish(message(n=1, at=T0))
    store.publish(message("other", n=0, at=T0 + 1))
    second = store.publish(message(n=2, at=T0 + 2))
    third = store.publish(message(n=3, at=T0 + 3))

    assert [m.seq for m in store.topic_messages("orders", after_seq=first)] == [second, third]
    assert [m.seq for m in store.topic_messages("orders", after_seq=third)] == []
    assert [m.seq for m in store.topic_messages("orders", since=T0 + 2)] == [second, third]
    assert [m.seq for m in store.topic_messages("orders", since=T0 + 2.5)] == [third]
    assert [m.seq for m in store.topic_messages("orders", after_seq=second, since=T0)] == [third]
    assert store.topic_messages("orders", after_seq=first, since=T0 + 99) == []


def test_latest_topic_seq_is_a_cursor_for_what_comes_next(store: ContractStore) -> None:
    store.publish(message(n=1))
    cursor = store.latest_topic_seq()
    newer = store.publish(message("elsewhere", n=2))
    assert store.latest_topic_seq() == newer
    later = store.publish(message(n=3))
    assert [m.seq for m in store.topic_messages("orders", after_seq=cursor)] == [later]


def test_topics_are_seen_only_within_their_tenant(store: ContractStore) -> None:
    acme = store.publish(message(tenant="acme", who="acme"))
    default = store.publish(message(who="default"))
    assert [m.seq for m in store.topic_messages("orders", tenant="acme")] == [acme]
    assert [m.seq for m in store.topic_messages("orders")] == [default]
    assert store.topic_messages("orders", tenant="globex") == []
    assert store.latest_topic_seq() == default  # the cursor spans tenants


@pytest.mark.parametrize(
    "data",
    [[1, "x", {"a": None}], "text", 42, 1.5, True, None, {"nested": {"list": [1.5, "é"]}}],
)
def test_topic_data_round_trips_any_json_value(store: ContractStore, data: Any) -> None:
    store.publish(NewTopicMessage("t", data, T0))
    [read] = store.topic_messages("t")
    assert read.data == data


# ------------------------------------------------------------------------------ logs


def log(run_id: str, step_id: str, text: str, at: float = T0) -> LogLine:
    return LogLine(run_id, step_id, 1, "stdout", text, at)


def test_logs_are_read_in_order_and_paged_by_seq(store: ContractStore) -> None:
    new_run(store)
    store.append_logs([log("r1", "build", f"line {i}", T0 + i) for i in range(5)])
    first = store.read_logs("r1", limit=2)
    assert [line.line for line in first] == ["line 0", "line 1"]
    assert first[0].seq < first[1].seq
    assert (first[0].run_id, first[0].step_id, first[0].attempt, first[0].stream) == (
        "r1",
        "build",
        1,
        "stdout",
    )
    rest = store.read_logs("r1", after_seq=first[-1].seq)
    assert [line.line for line in rest] == ["line 2", "line 3", "line 4"]
    assert [line.at for line in rest] == [T0 + 2, T0 + 3, T0 + 4]
    assert store.read_logs("r1", after_seq=rest[-1].seq) == []


def test_logs_filter_by_run_and_step(store: ContractStore) -> None:
    new_run(store, "r1")
    new_run(store, "r2")
    store.append_logs(
        [log("r1", "a", "a1"), log("r1", "b", "b1"), log("r2", "a", "other"), log("r1", "a", "a2")]
    )
    assert [line.line for line in store.read_logs("r1", step_id="a")] == ["a1", "a2"]
    assert [line.line for line in store.read_logs("r1")] == ["a1", "b1", "a2"]
    assert [line.line for line in store.read_logs("r2")] == ["other"]
    store.append_logs([])
    assert store.read_logs("r3") == []


# ------------------------------------------------------------------------------ dead letters


def test_dead_letters_add_list_and_remove(store: ContractStore) -> None:
    letter = DeadLetter("d1", "r1", "deploy", 5, "exit 1", {"cmd": "make"}, T0)
    store.add_dead_letter(letter)
    store.add_dead_letter(DeadLetter("d2", "r1", "test", 3, "exit 2", {}, T0 + 1))
    assert store.dead_letters() == [letter, DeadLetter("d2", "r1", "test", 3, "exit 2", {}, T0 + 1)]
    assert [d.dlq_id for d in store.dead_letters(limit=1)] == ["d1"]
    assert store.remove_dead_letter("d1") == letter
    assert store.remove_dead_letter("d1") is None
    assert [d.dlq_id for d in store.dead_letters()] == ["d2"]


def test_a_dead_letter_id_is_used_once(store: ContractStore) -> None:
    store.add_dead_letter(DeadLetter("d1", "r1", "s", 1, "e", {}, T0))
    with pytest.raises(StoreError):
        store.add_dead_letter(DeadLetter("d1", "r1", "s", 1, "e", {}, T0))


# ------------------------------------------------------------------------------ key-value


@pytest.mark.parametrize("value", [{"a": [1, 2]}, [1, "x"], "text", 42, 1.5, True])
def test_kv_round_trips_json_values(store: ContractStore, value: Any) -> None:
    store.kv_set("ns", "k", value)
    assert store.kv_get("ns", "k") == value


def test_kv_overwrites_and_keeps_namespaces_apart(store: ContractStore) -> None:
    assert store.kv_get("ns", "k") is None
    store.kv_set("ns", "k", 1)
    store.kv_set("ns", "k", 2)
    store.kv_set("other", "k", 3)
    assert (store.kv_get("ns", "k"), store.kv_get("other", "k")) == (2, 3)


def test_kv_swap_sets_only_over_the_expected_value(store: ContractStore) -> None:
    assert store.kv_swap("ns", "k", None, 1)  # absent -> 1
    assert not store.kv_swap("ns", "k", None, 2)  # not absent any more
    assert not store.kv_swap("ns", "k", 5, 2)
    assert store.kv_get("ns", "k") == 1
    assert store.kv_swap("ns", "k", 1, {"at": 2})
    assert store.kv_swap("ns", "k", {"at": 2}, 3)
    assert store.kv_get("ns", "k") == 3
    assert store.kv_swap("ns", "k", 3, None)  # None deletes
    assert store.kv_scan("ns") == {}
    assert not store.kv_swap("ns", "k", 3, None)


def test_kv_counts_and_pages_read_a_namespace_in_key_order(store: ContractStore) -> None:
    for key in ("b", "a", "d", "c"):
        store.kv_set("ns", key, {"key": key})
    store.kv_set("other", "a0", 1)
    assert store.kv_count("ns") == 4
    assert store.kv_count("none") == 0
    assert store.kv_page("ns", limit=2) == {"a": {"key": "a"}, "b": {"key": "b"}}
    assert list(store.kv_page("ns", after="b", limit=5)) == ["c", "d"]
    assert store.kv_page("ns", after="d") == {}


def test_kv_key_ending_finds_a_key_by_its_end_in_one_namespace(store: ContractStore) -> None:
    for key in ("0001.5/r_a", "0002.0/r_ab", "0003.0/r%_"):
        store.kv_set("queue", key, {"key": key})
    store.kv_set("other", "0000.1/r_b", 1)
    assert store.kv_key_ending("queue", "/r_ab") == "0002.0/r_ab"
    assert store.kv_key_ending("queue", "/r_a") == "0001.5/r_a"
    assert store.kv_key_ending("queue", "/r%_") == "0003.0/r%_"  # no pattern characters
    assert store.kv_key_ending("queue", "/r_b") is None  # another namespace's
    assert store.kv_key_ending("queue", "0003.0/r%_/longer") is None
    assert store.kv_key_ending("none", "/r_a") is None


def test_kv_namespaces_lists_those_with_a_prefix_and_a_key(store: ContractStore) -> None:
    for namespace in ("state:b", "state:a", "state:a", "stat", "other:state:x", "state:%_"):
        store.kv_set(namespace, "k", 1)
    store.kv_set("state:gone", "k", 1)
    store.kv_delete("state:gone", "k")
    assert store.kv_namespaces("state:") == ["state:%_", "state:a", "state:b"]
    assert store.kv_namespaces("state:%") == ["state:%_"]
    assert store.kv_namespaces("nothing") == []


# ------------------------------------------------------------------------------ lifetime


def test_close_twice_is_harmless(store: ContractStore) -> None:
    store.close()
    store.close()


def test_a_closed_store_raises_store_error(store: ContractStore) -> None:
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get_run("r1")
    with pytest.raises(StoreError, match="closed"):
        store.kv_set("ns", "k", 1)
