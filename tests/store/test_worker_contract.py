"""The store contract for workers: placement, claim limits, lapsed tasks, heartbeats, queues.

Runs against every adapter through the ``store`` fixture of the main contract suite.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from tests.store.test_store_contract import (
    LEASE,
    T0,
    ContractStore,
    new_run,
    task,
)

from wayang.store.port import (
    Append,
    ClaimRequest,
    FencedResult,
    LogLine,
    NewEvent,
    NewTask,
    WorkerBeat,
    WorkerRecord,
)

GPU_EU = frozenset({"cap:shell", "cap:gpu", "label:region=eu"})


def placed(task_id: str, *needs: str, queue: str = "default", at: float = T0) -> NewTask:
    return replace(task(task_id, at=at, queue=queue), needs=needs)


def ids(found: list[object]) -> list[str]:
    return [t.task_id for t in found]  # type: ignore[attr-defined]


def test_a_worker_claims_only_tasks_whose_needs_it_offers(store: ContractStore) -> None:
    new_run(
        store,
        tasks=(
            placed("plain", "cap:shell"),
            placed("gpu", "cap:shell", "cap:gpu", at=T0 + 1),
            placed("us", "cap:shell", "label:region=us", at=T0 + 2),
            placed("nothing", at=T0 + 3),
        ),
    )
    cpu = store.claim("cpu", T0 + 5, LEASE, limit=10, offers={"cap:shell"})
    assert ids(cpu) == ["plain", "nothing"]
    eu = store.claim("eu", T0 + 5, LEASE, limit=10, offers=GPU_EU)
    assert ids(eu) == ["gpu"]
    # Without offers (the engine's own adoption path) placement is not looked at.
    assert ids(store.claim("any", T0 + 5, LEASE, limit=10)) == ["us"]


def test_max_running_caps_a_queues_running_worker_tasks(store: ContractStore) -> None:
    new_run(store, tasks=tuple(placed(f"t{i}", queue="q", at=T0 + i) for i in range(5)))
    first = store.claim("w1", T0 + 9, LEASE, limit=10, queue="q", max_running=2)
    assert ids(first) == ["t0", "t1"]
    assert store.claim("w2", T0 + 9, LEASE, limit=10, queue="q", max_running=2) == []
    store.complete("t0", first[0].fencing_token, {"status": "succeeded"}, T0 + 10)
    assert ids(store.claim("w2", T0 + 10, LEASE, limit=10, queue="q", max_running=2)) == ["t2"]


def test_a_lapsed_worker_task_is_claimed_again_until_max_claims(store: ContractStore) -> None:
    new_run(store, tasks=(placed("t1", "cap:shell"),))
    now = T0
    for claims in (1, 2, 3):
        [taken] = store.claim(f"w{claims}", now, LEASE, offers={"cap:shell"}, max_claims=3)
        assert taken.fencing_token == claims
        now += LEASE
    # The third holder's lease lapsed too: nobody claims it a fourth time...
    assert store.claim("w4", now, LEASE, offers={"cap:shell"}, max_claims=3) == []
    # ... and the engine driving the run finds it among its lapsed tasks.
    store.lease_run("r1", "engine", now, LEASE)
    [lapsed] = store.lapsed_tasks("engine", now, max_claims=3)
    assert (lapsed.task_id, lapsed.owner, lapsed.fencing_token) == ("t1", "w3", 3)
    assert store.lapsed_tasks("another-engine", now, max_claims=3) == []


def test_an_engines_own_task_is_never_claimed_by_a_worker(store: ContractStore) -> None:
    own = replace(task("own"), owner="engine", lease_expires_at=T0 + LEASE, needs=("cap:shell",))
    new_run(store, tasks=(own,))
    late = T0 + 10 * LEASE
    assert store.claim("w", late, LEASE, offers={"cap:shell"}) == []
    assert ids(store.adopt_tasks("r1", "engine-2", late, LEASE)) == ["own"]


def test_adopting_a_run_leaves_its_worker_tasks_to_the_workers(store: ContractStore) -> None:
    new_run(store, tasks=(placed("remote", "cap:shell"),))
    store.claim("w1", T0, LEASE, offers={"cap:shell"})
    assert store.adopt_tasks("r1", "engine-2", T0 + 1, LEASE) == []
    [held] = [t for t in store.run_tasks("r1") if t.task_id == "remote"]
    assert (held.status, held.owner) == ("claimed", "w1")


def test_worker_completions_are_those_of_the_runs_an_engine_drives(store: ContractStore) -> None:
    new_run(store, tasks=(placed("a", "cap:shell"),))
    new_run(store, "r2", tasks=(replace(placed("b", "cap:shell"), run_id="r2"),))
    store.lease_run("r1", "engine", T0, LEASE)
    for claimed in store.claim("w", T0, LEASE, limit=5, offers={"cap:shell"}):
        store.complete(claimed.task_id, claimed.fencing_token, {"status": "succeeded"}, T0 + 1)
    [mine] = store.worker_completions("engine")
    assert (mine.task_id, mine.run_id, mine.result) == ("a", "r1", {"status": "succeeded"})
    store.commit([Append("r1", 1, [NewEvent("noted", {})], acknowledge=["a"])], T0 + 2)
    assert store.worker_completions("engine") == []


def test_finishing_a_worker_task_fences_off_its_worker(store: ContractStore) -> None:
    new_run(store, tasks=(placed("t1", "cap:shell"),))
    [claimed] = store.claim("w1", T0, LEASE, offers={"cap:shell"})
    store.commit([Append("r1", 1, [NewEvent("step_cancelled", {})], finish_tasks=["t1"])], T0 + 1)
    beat = WorkerBeat("w1", "running", 1, 0, 0)
    assert store.heartbeat_worker(beat, T0 + 2, LEASE) == []
    assert not store.complete("t1", claimed.fencing_token, {"status": "succeeded"}, T0 + 3)
    assert store.duplicate_completions() == 1


def test_a_task_made_and_finished_in_one_group_commit_reads_consumed(store: ContractStore) -> None:
    # A chain run by its engine: each decision finishes the step before and makes the next,
    # and one group commit carries several decisions.
    new_run(store)
    mine = replace(task("t1"), owner="engine", lease_expires_at=T0 + LEASE)
    after = replace(task("t2"), owner="engine", lease_expires_at=T0 + LEASE)
    store.commit(
        [
            Append("r1", 1, [NewEvent("step_started", {})], tasks=[mine]),
            Append("r1", 2, [NewEvent("step_succeeded", {})], tasks=[after], finish_tasks=["t1"]),
        ],
        T0 + 1,
    )
    found = {t.task_id: t for t in store.run_tasks("r1")}
    assert (found["t1"].status, found["t1"].lease_expires_at) == ("consumed", None)
    assert (found["t2"].status, found["t2"].owner) == ("claimed", "engine")
    assert [e.seq for e in store.load_history("r1")] == [1, 2, 3]
    assert store.worker_completions("engine") == []


def test_a_big_group_commit_stores_every_event_and_task(store: ContractStore) -> None:
    # Past COPY_FROM_ROWS, PostgreSQL copies the rows in rather than inserting each.
    new_run(store)
    chain = [
        Append(
            "r1",
            1 + 2 * i,
            [NewEvent("step_succeeded", {"i": i}), NewEvent("step_started", {"i": i + 1})],
            tasks=[replace(task(f"t{i + 1}"), owner="engine", lease_expires_at=T0 + LEASE)],
            finish_tasks=[f"t{i}"] if i else [],
        )
        for i in range(30)
    ]
    store.commit(chain, T0 + 1)
    history = store.load_history("r1")
    assert [e.seq for e in history] == list(range(1, 62))
    assert history[-1].data == {"i": 30}
    statuses = {t.task_id: t.status for t in store.run_tasks("r1")}
    assert statuses == {f"t{i}": "consumed" for i in range(1, 30)} | {"t30": "claimed"}


def test_complete_many_records_each_result_and_the_output_at_once(store: ContractStore) -> None:
    new_run(store, tasks=tuple(placed(f"t{i}", "cap:shell", at=T0 + i) for i in range(3)))
    t0, t1, t2 = store.claim("w1", T0 + 5, LEASE, limit=3, offers={"cap:shell"})
    lines = [LogLine("r1", "s", 1, "stdout", f"line {i}", T0 + 6) for i in range(2)]
    results = [
        FencedResult("t0", t0.fencing_token, {"status": "succeeded"}),
        FencedResult("t1", t1.fencing_token + 1, {"status": "succeeded"}),  # stale: refused
        FencedResult("t2", t2.fencing_token, {"status": "failed", "error": "boom"}),
    ]
    reported = store.complete_many(results, T0 + 7, lines)
    assert (reported.counted, reported.claimed) == ([True, False, True], [])
    assert store.duplicate_completions() == 1
    assert [line.line for line in store.read_logs("r1")] == ["line 0", "line 1"]
    status = {t.task_id: t.status for t in store.run_tasks("r1")}
    assert status == {"t0": "completed", "t1": "claimed", "t2": "completed"}
    # A repeat (its answer was lost) counts nothing twice.
    assert store.complete_many(results[:1], T0 + 8).counted == [False]


def test_complete_many_claims_the_next_tasks_in_its_transaction(store: ContractStore) -> None:
    new_run(store, tasks=tuple(placed(f"t{i}", "cap:shell", at=T0 + i) for i in range(4)))
    [first] = store.claim("w1", T0 + 5, LEASE, offers={"cap:shell"})
    ask = ClaimRequest("w1", LEASE, limit=2, offers=frozenset({"cap:shell"}))
    done = FencedResult(first.task_id, first.fencing_token, {"status": "succeeded"})
    reported = store.complete_many([done], T0 + 6, then_claim=ask)
    assert reported.counted == [True]
    assert ids(reported.claimed) == ["t1", "t2"]
    assert {t.owner for t in reported.claimed} == {"w1"}
    assert all(t.lease_expires_at == T0 + 6 + LEASE for t in reported.claimed)
    # With nothing to record it is a claim; a queue at its limit gives none.
    capped = replace(ask, limit=5, max_running=2)
    assert store.complete_many([], T0 + 7, then_claim=capped).claimed == []
    assert ids(store.complete_many([], T0 + 7, then_claim=replace(ask, limit=5)).claimed) == ["t3"]
    assert store.complete_many([], T0 + 8, then_claim=replace(ask, limit=0)).claimed == []


def worker(worker_id: str = "w1", at: float = T0) -> WorkerRecord:
    return WorkerRecord(
        worker_id=worker_id,
        host="host-a",
        pid=42,
        version="0.1.0",
        capabilities=["shell", "gpu"],
        labels={"region": "eu"},
        queues=["default", "gpu"],
        slots=4,
        state="running",
        started_at=at,
        heartbeat_at=at,
    )


def test_a_worker_registers_heartbeats_and_holds_its_tasks(store: ContractStore) -> None:
    store.register_worker(worker())
    new_run(store, tasks=(placed("t1", "cap:shell"), placed("t2", "cap:shell", at=T0 + 1)))
    claimed = store.claim("w1", T0 + 1, 10.0, limit=2, offers={"cap:shell"})
    held = store.heartbeat_worker(WorkerBeat("w1", "running", 2, 5, 1), T0 + 8, 10.0)
    assert sorted(held) == ["t1", "t2"]
    # The beat renewed both leases: nobody else may claim them at the old expiry.
    assert store.claim("w2", T0 + 12, 10.0, offers={"cap:shell"}) == []
    [record] = store.list_workers()
    assert record == replace(worker(), heartbeat_at=T0 + 8, running=2, done=5, failed=1)
    assert claimed[0].fencing_token == 1


def test_a_heartbeat_renews_only_the_tasks_the_worker_says_it_runs(store: ContractStore) -> None:
    """A claim whose answer a lost connection swallowed leaves the worker holding a task it
    never heard of: its heartbeats must not keep that task for ever."""
    store.register_worker(worker())
    new_run(store, tasks=(placed("t1", "cap:shell"), placed("t2", "cap:shell", at=T0 + 1)))
    store.claim("w1", T0 + 1, 10.0, limit=2, offers={"cap:shell"})
    beat = WorkerBeat("w1", "running", 1, 0, 0, tasks=("t1",))
    assert sorted(store.heartbeat_worker(beat, T0 + 8, 10.0)) == ["t1", "t2"]
    # t2's lease ran out at T0 + 11 (claimed at T0 + 1 for 10 s); t1's runs to T0 + 18.
    assert ids(store.claim("w2", T0 + 12, 10.0, limit=2, offers={"cap:shell"})) == ["t2"]
    assert store.heartbeat_worker(beat, T0 + 13, 10.0) == ["t1"]


def test_registering_again_updates_the_record_and_old_workers_are_forgotten(
    store: ContractStore,
) -> None:
    store.register_worker(worker("old", at=T0))
    store.register_worker(worker("new", at=T0 + 100))
    store.register_worker(replace(worker("new", at=T0 + 100), slots=8, heartbeat_at=T0 + 101))
    assert [(w.worker_id, w.slots) for w in store.list_workers()] == [("old", 4), ("new", 8)]
    assert store.forget_workers(T0 + 50) == 1
    assert [w.worker_id for w in store.list_workers()] == ["new"]


def test_a_worker_started_again_under_its_id_gives_up_what_the_old_process_held(
    store: ContractStore,
) -> None:
    # A worker killed and started again with the same --id runs none of the tasks its
    # predecessor held: its heartbeats must not keep their leases alive for ever.
    store.register_worker(worker())
    new_run(store, tasks=(placed("t1", "cap:shell"),))
    [old] = store.claim("w1", T0, LEASE, offers={"cap:shell"})
    store.register_worker(worker(at=T0 + 1))
    [again] = store.claim("w2", T0 + 1, LEASE, offers={"cap:shell"})
    assert (again.task_id, again.fencing_token) == ("t1", old.fencing_token + 1)
    assert store.heartbeat_worker(WorkerBeat("w1", "running", 0, 0, 0), T0 + 2, LEASE) == []


def test_queue_stats_count_waiting_and_running_tasks(store: ContractStore) -> None:
    new_run(
        store,
        tasks=(
            placed("a", queue="gpu", at=T0 - 5),
            placed("b", queue="gpu", at=T0 - 2),
            placed("c", queue="gpu", at=T0 - 1),
            placed("d", at=T0 - 3),
        ),
    )
    store.claim("w", T0, LEASE, queue="gpu", offers=set())
    stats = {s.queue: s for s in store.queue_stats()}
    assert (stats["gpu"].queued, stats["gpu"].running, stats["gpu"].oldest_at) == (2, 1, T0 - 2)
    assert (stats["default"].queued, stats["default"].running) == (1, 0)
    assert store.queue_depth("gpu") == 2
    assert store.queue_depth("nothing") == 0


@pytest.mark.parametrize("offers", [set(), {"cap:shell"}])
def test_a_task_needing_nothing_runs_anywhere(store: ContractStore, offers: set[str]) -> None:
    new_run(store, tasks=(placed("free"),))
    assert ids(store.claim("w", T0, LEASE, offers=offers)) == ["free"]
