"""PostgreSQL's wake-ups (LISTEN/NOTIFY) and what a store call says when the server goes away.

Every test runs against the real server of ``tests/support/postgres_fixtures.py`` in a schema of
its own. Sessions are ended with ``pg_terminate_backend`` (what a restart does to them, without
stopping the server the other tests use), only the test's own: its store names them with an
``application_name`` of the schema's name. The real restart is in tests/runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg_pool import PoolClosed, PoolTimeout

from wayang.store.port import (
    DRIVER_SUFFIX,
    HANDED_OFF,
    Append,
    ConcurrencyError,
    NewEvent,
    NewTask,
    RunRecord,
    StoreError,
    StoreUnavailableError,
    completion_wakeup,
    runs_wakeup,
    task_wakeup,
)
from wayang.store.postgres import PostgresStore
from wayang.store.postgres_connection import translate, unavailable
from wayang.store.postgres_wakeups import PostgresWakeups, channel_name

T0 = 1_000.0
SETTLE_S = 20.0  # what "soon" may take on a loaded machine; nothing asserts on durations


@pytest.fixture
def store(postgres_url: str, postgres_schema: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(f"{postgres_url}&application_name={postgres_schema}")
    yield opened
    opened.close()


def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + SETTLE_S
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)


def listening(wakeups: PostgresWakeups) -> PostgresWakeups:
    """``wakeups`` once it listens, with the wake-up that listening starts taken."""
    until(lambda: wakeups.listening, "listening")
    assert wakeups.wait(SETTLE_S)
    return wakeups


def terminate_sessions(server: str, name: str) -> int:
    """End every session of the store whose ``application_name`` is ``name``."""
    with psycopg.connect(server, autocommit=True) as conn:
        found = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            [name],
        ).fetchall()
    return len(found)


def new_run(store: PostgresStore, run_id: str = "r1", owner: str | None = "engine-1") -> None:
    run = RunRecord(run_id, "wf", "running", T0, T0, owner=owner, lease_expires_at=T0 + 1e9)
    store.create_run(run, Append(run_id, 0, [NewEvent("run_started", {})]))


def worker_task(task_id: str, queue: str = "default", run_id: str = "r1") -> NewTask:
    return NewTask(task_id, run_id, "s", 1, f"{run_id}/{task_id}", {}, T0, queue=queue)


def queue(store: PostgresStore, *tasks: NewTask, version: int = 1, run_id: str = "r1") -> None:
    store.commit([Append(run_id, version, [NewEvent("dispatched", {})], tasks=tasks)], T0)


# ------------------------------------------------------------------------------ channel


def test_the_channel_is_named_after_the_schema_within_postgresqls_limit() -> None:
    assert channel_name("wayang") == "wayang_wayang"
    long = channel_name("s" * 63)
    assert len(long.encode()) <= 63 and long.startswith("wayang_sss")
    assert channel_name("s" * 63) != channel_name("s" * 62 + "t")
    assert len(channel_name("é" * 40).encode()) <= 63


def test_a_store_notifies_on_its_own_schemas_channel(store: PostgresStore) -> None:
    assert store.channel == channel_name(store.schema)


# ------------------------------------------------------------------------------ wake-ups


def test_a_worker_task_queued_wakes_the_listeners_of_its_queue_at_commit(
    store: PostgresStore,
) -> None:
    new_run(store)
    default = listening(store.wakeups({task_wakeup("default")}))
    gpu = listening(store.wakeups({task_wakeup("gpu")}))
    queue(store, worker_task("t1"))
    assert default.wait(SETTLE_S)
    assert not gpu.wait(0)
    queue(store, worker_task("t2", "gpu"), version=2)
    assert gpu.wait(SETTLE_S)
    assert not default.wait(0.2)  # nothing for it; a short wait shows no stray wake-up


def test_a_task_the_engine_runs_itself_wakes_no_worker(store: PostgresStore) -> None:
    new_run(store)
    default = listening(store.wakeups({task_wakeup("default")}))
    own = NewTask("t1", "r1", "s", 1, "k", {}, T0, owner="engine-1", lease_expires_at=T0 + 30)
    queue(store, own)
    queue(store, worker_task("t2"), version=2)  # a wake-up for this one only
    assert default.wait(SETTLE_S)
    assert not default.wait(0.2)


def test_a_rolled_back_transaction_wakes_nobody(store: PostgresStore) -> None:
    new_run(store)
    default = listening(store.wakeups({task_wakeup("default")}))
    with pytest.raises(ConcurrencyError):
        queue(store, worker_task("t1"), version=7)
    assert not default.wait(0.3)


def test_a_recorded_result_wakes_the_engine_driving_its_run_only(store: PostgresStore) -> None:
    new_run(store)
    mine = listening(store.wakeups({completion_wakeup("engine-1")}))
    other = listening(store.wakeups({completion_wakeup("engine-2")}))
    queue(store, worker_task("t1"))
    [claimed] = store.claim("w1", T0, 30.0)
    assert not mine.wait(0)  # queuing a task is no news for the engine
    assert store.complete(claimed.task_id, claimed.fencing_token, {"status": "succeeded"}, T0)
    assert mine.wait(SETTLE_S)
    assert not other.wait(0)
    assert not store.complete(claimed.task_id, claimed.fencing_token, {}, T0)  # refused
    assert not mine.wait(0.2)


def test_a_run_a_driver_gives_back_wakes_the_drivers(store: PostgresStore) -> None:
    driver = "host:1:abc" + DRIVER_SUFFIX
    new_run(store, "r1", owner=driver)
    new_run(store, "r2", owner="engine-1")
    drivers = listening(store.wakeups({runs_wakeup()}))
    store.release_run("r1", "someone-else")  # not its owner: nothing given back
    store.release_run("r2", "engine-1")  # an engine's run goes to whoever adopts orphans
    assert not drivers.wait(0.2)
    store.release_run("r1", driver)
    assert drivers.wait(SETTLE_S)
    record = store.get_run("r1")
    assert record is not None and record.owner == HANDED_OFF


def test_a_wake_up_while_nobody_waits_is_kept_for_the_next_wait(store: PostgresStore) -> None:
    new_run(store)
    default = listening(store.wakeups({task_wakeup("default")}))
    queue(store, worker_task("t1"))
    queue(store, worker_task("t2"), version=2)
    until(lambda: default.wait(0), "the wake-up kept")
    assert not default.wait(0)  # two commits, one wake-up: the worker claims both


def test_a_wake_up_ends_a_wait_awaited_on_the_event_loop(store: PostgresStore) -> None:
    new_run(store)
    default = listening(store.wakeups({task_wakeup("default")}))

    async def scenario() -> list[bool]:
        seen = [await default.until(0.05)]  # nothing new: the timeout ends it
        waiting = asyncio.create_task(default.until(SETTLE_S))
        await asyncio.sleep(0.05)
        await asyncio.to_thread(queue, store, worker_task("t1"))
        seen.append(await waiting)
        # A wait cancelled (as when a worker is stopped) leaves nothing behind.
        cancelled = asyncio.create_task(default.until(SETTLE_S))
        await asyncio.sleep(0.05)
        cancelled.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cancelled
        await asyncio.to_thread(queue, store, worker_task("t2"), version=2)
        seen.append(await default.until(SETTLE_S))  # kept for the next wait
        closing = asyncio.create_task(default.until(SETTLE_S))
        await asyncio.sleep(0.05)
        await asyncio.to_thread(default.close)
        seen.append(await asyncio.wait_for(closing, SETTLE_S))
        return seen

    assert asyncio.run(scenario()) == [False, True, True, False]


def test_wakeups_listen_again_after_their_session_is_ended(
    store: PostgresStore, postgres_server: str
) -> None:
    new_run(store)
    default = listening(store.wakeups({task_wakeup("default")}))
    assert terminate_sessions(postgres_server, store.schema) >= 1
    # Losing the connection wakes the listener (it may have missed news), and so does
    # getting it back; in between it polls.
    until(lambda: default.wait(0) and default.listening, "listening again")
    default.wait(0)
    with contextlib.suppress(StoreUnavailableError):
        store.get_run("r1")  # the pool's connection was ended too: this call may fail
    queue(store, worker_task("t1"))
    assert default.wait(SETTLE_S)


def test_closed_wakeups_return_at_once(store: PostgresStore) -> None:
    wakeups = listening(store.wakeups({task_wakeup("default")}))
    wakeups.close()
    wakeups.close()
    assert not wakeups.wait(SETTLE_S)
    assert not wakeups.listening


def test_closing_the_store_closes_its_wakeups(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    wakeups = listening(store.wakeups({task_wakeup("default")}))
    store.close()
    assert not wakeups.wait(SETTLE_S) and not wakeups.listening
    with pytest.raises(StoreError, match="closed"):
        store.wakeups({task_wakeup("default")})


# ------------------------------------------------------------------------------ outages


def test_driver_errors_are_told_apart_by_whether_trying_again_may_work() -> None:
    gone = [
        psycopg.OperationalError("server closed the connection unexpectedly"),
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.CannotConnectNow("the database system is starting up"),
        psycopg.errors.ConnectionFailure("connection failure"),
        psycopg.errors.TooManyConnections("sorry, too many clients already"),
        PoolTimeout("couldn't get a connection after 30.00 sec"),
    ]
    final = [
        psycopg.errors.UniqueViolation("duplicate key"),
        psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
        psycopg.errors.SyntaxError("syntax error"),
        PoolClosed("the pool is closed"),
    ]
    assert [unavailable(exc) for exc in gone] == [True] * len(gone)
    assert [unavailable(exc) for exc in final] == [False] * len(final)
    lost = translate(gone[0], "db:5432/x", committing=True)
    assert isinstance(lost, StoreUnavailableError) and lost.in_doubt
    assert "may or may not have been committed" in str(lost)
    assert not isinstance(translate(final[0], "db:5432/x"), StoreUnavailableError)


def test_a_call_on_a_lost_connection_is_unavailable_and_the_next_one_works(
    store: PostgresStore, postgres_server: str
) -> None:
    new_run(store)
    # Open several pooled connections, so that every one of them is broken below.
    holders = [store._pool.getconn() for _ in range(3)]
    for conn in holders:
        store._pool.putconn(conn)
    assert terminate_sessions(postgres_server, store.schema) >= 3
    with pytest.raises(StoreUnavailableError) as lost:
        store.get_run("r1")
    assert not lost.value.in_doubt
    # The failed call had the pool test its idle connections: the next call gets a good one.
    record = store.get_run("r1")
    assert record is not None and record.version == 1


def test_a_write_whose_connection_drops_before_commit_is_not_in_doubt(
    store: PostgresStore, postgres_server: str
) -> None:
    new_run(store)
    with pytest.raises(StoreUnavailableError) as lost, store._write() as conn:
        gone_away(conn, postgres_server)
        conn.execute("SELECT 1")
    assert not lost.value.in_doubt


def test_a_write_whose_connection_drops_at_commit_is_in_doubt(
    store: PostgresStore, postgres_server: str
) -> None:
    new_run(store)
    with pytest.raises(StoreUnavailableError) as lost, store._write() as conn:
        conn.execute("UPDATE runs SET status = 'odd' WHERE run_id = 'r1'")
        gone_away(conn, postgres_server)
    assert lost.value.in_doubt
    record = store.get_run("r1")
    assert record is not None and record.status == "running"  # here it had not committed


def gone_away(conn: psycopg.Connection[tuple[object, ...]], server: str) -> None:
    """End ``conn``'s session from another one, and wait until it is gone."""
    pid = conn.info.backend_pid
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        until(
            lambda: (
                not admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
            ),
            "the session ended",
        )
