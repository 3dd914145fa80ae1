"""What only the PostgreSQL adapter promises: its URL, migrations under concurrent opens, claims
that never overlap, a bounded pool, cursors that skip nothing, and errors a user can act on.

Every test runs against the real server of ``conftest.py`` in a schema of its own.
"""

from __future__ import annotations

import logging
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from wayang.store import open_store, sql_files
from wayang.store.port import (
    Append,
    ConcurrencyError,
    FanOut,
    LogLine,
    NewEvent,
    NewTask,
    NewTopicMessage,
    RunRecord,
    StoreError,
)
from wayang.store.postgres import PostgresStore
from wayang.store.postgres_connection import (
    DIALECT,
    Connection,
    Schema,
    connect,
    ensure_schema,
    packaged_schema,
    parse_url,
    to_pyformat,
)

T0 = 1_000.0


def admin(server: str) -> Connection:
    """A plain connection to the test server, outside any store."""
    return psycopg.connect(server, autocommit=True)


def add_run(store: PostgresStore, run_id: str = "r1", tasks: int = 0) -> None:
    run = RunRecord(run_id, "wf", "running", T0, T0)
    new_tasks = [
        NewTask(f"{run_id}-t{i}", run_id, "s", 1, f"k{i}", {"i": i}, T0 + i) for i in range(tasks)
    ]
    store.create_run(run, Append(run_id, 0, [NewEvent("run_started", {})], tasks=new_tasks))


def in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads started together; their results, or the first error."""
    start = threading.Barrier(count)

    def run(i: int) -> Any:
        start.wait()
        return work(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


@pytest.fixture
def store(postgres_url: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(postgres_url)
    yield opened
    opened.close()


@pytest.fixture
def new_schema(postgres_server: str) -> Iterator[str]:
    """A schema name nobody created yet (the store creates it), dropped after the test."""
    name = f"wayang_t_{secrets.token_hex(6)}"
    yield name
    with admin(postgres_server) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def url_for(server: str, schema: str, **params: str) -> str:
    query = "&".join(f"{key}={value}" for key, value in {"schema": schema, **params}.items())
    return f"{server}{'&' if '?' in server else '?'}{query}"


# ------------------------------------------------------------------------------ URLs


def test_open_store_returns_the_postgresql_adapter(postgres_url: str) -> None:
    for url in (postgres_url, postgres_url.replace("postgresql://", "postgres://", 1)):
        store = open_store(url)
        assert isinstance(store, PostgresStore)
        store.close()


def test_the_url_keeps_wayangs_own_parameters_from_libpq() -> None:
    target = parse_url("postgresql://u:secret@db.example:6543/wf?pool_max=3&schema=w1&sslmode=off")
    assert (target.pool_max, target.schema, target.where) == (3, "w1", "db.example:6543/wf")
    assert "pool_max" not in target.conninfo and "sslmode=off" in target.conninfo
    assert "search_path=w1" in target.conninfo and "application_name=wayang" in target.conninfo
    assert "secret" not in str(target)
    assert parse_url("postgresql://h/db").pool_max == 8
    spaced = parse_url("postgresql://h/db?options=-c%20work_mem%3D8MB&schema=w2")
    assert "options='-c work_mem=8MB -c search_path=w2'" in spaced.conninfo


def test_queries_are_translated_to_psycopg_parameters() -> None:
    assert to_pyformat("WHERE a = :a AND b::text = :b_2 AND c LIKE 'x%'") == (
        "WHERE a = %(a)s AND b::text = %(b_2)s AND c LIKE 'x%%'"
    )
    assert to_pyformat("coalesce(:status::text, status)") == "coalesce(%(status)s::text, status)"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://h:notaport/db", r"port 'notaport', which is not a number"),
        ("postgresql://h/db?pool_max=0", r"pool_max='0' .* 1 or more"),
        ("postgresql://h/db?pool_max=many", r"pool_max='many'"),
        ("postgresql://h/db?schema=Bad-Name", r"schema='Bad-Name' .* not a plain schema name"),
        ("postgresql://h/db?nonsense=1", r"not a PostgreSQL URL libpq accepts .*nonsense"),
    ],
)
def test_a_bad_url_is_a_clear_store_error(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        PostgresStore(url)


def test_an_unreachable_server_is_a_clear_store_error() -> None:
    with pytest.raises(StoreError) as caught:
        PostgresStore("postgresql://postgres:hunter2@127.0.0.1:1/test?connect_timeout=2")
    message = str(caught.value)
    assert "cannot reach PostgreSQL at 127.0.0.1:1/test" in message
    assert "is the server running" in message and "hunter2" not in message


def test_a_missing_database_or_user_is_a_clear_store_error(postgres_server: str) -> None:
    base = postgres_server.rsplit("/", 1)[0]
    with pytest.raises(StoreError, match=r"has no database wayang_nope_db .*CREATE DATABASE"):
        PostgresStore(f"{base}/wayang_nope_db")
    nobody = re.sub(r"//[^@/]*@", "//wayang_nobody@", postgres_server)
    with pytest.raises(StoreError, match=r"refused the login .*wayang_nobody"):
        PostgresStore(nobody)


def test_an_unknown_host_is_a_clear_store_error() -> None:
    with pytest.raises(StoreError, match=r"no such host"):
        PostgresStore("postgresql://postgres@wayang-no-such-host.invalid/test")


# ------------------------------------------------------------------------------ migrations


def test_eight_stores_opening_a_new_schema_at_once_migrate_it_once(
    postgres_server: str, new_schema: str
) -> None:
    def open_one(_: int) -> PostgresStore:
        return PostgresStore(url_for(postgres_server, new_schema, pool_max="1"))

    stores = in_threads(8, open_one)
    try:
        assert {s.settings()["schema_version"] for s in stores} == {
            sql_files.latest_version(DIALECT)
        }
        with admin(postgres_server) as conn:
            versions = conn.execute(f"SELECT version FROM {new_schema}.wayang_schema").fetchall()
        assert versions == [(sql_files.latest_version(DIALECT),)]
        add_run(stores[0], "r1")
        assert stores[7].get_run("r1") is not None
    finally:
        for s in stores:
            s.close()


def _catalog(conn: Connection, schema: str) -> tuple[list[Any], list[Any], list[Any]]:
    columns = conn.execute(
        "SELECT table_name, column_name, data_type, is_nullable, column_default,"
        " collation_name, is_identity FROM information_schema.columns"
        " WHERE table_schema = %s ORDER BY table_name, column_name",
        [schema],
    ).fetchall()
    indexes = conn.execute(
        "SELECT indexname, replace(indexdef, %s, 'S') FROM pg_indexes"
        " WHERE schemaname = %s ORDER BY indexname",
        [schema, schema],
    ).fetchall()
    functions = conn.execute(
        "SELECT p.proname, pg_get_function_identity_arguments(p.oid), p.prosrc FROM pg_proc p"
        " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s ORDER BY 1, 2",
        [schema],
    ).fetchall()
    return columns, indexes, functions


def test_schema_file_and_migrations_give_the_same_schema(postgres_server: str) -> None:
    packaged = packaged_schema()
    assert packaged.version == sql_files.latest_version(DIALECT)
    names = [f"wayang_t_{secrets.token_hex(6)}" for _ in range(2)]
    # The first store is created from schema.sql; the second one migration after another.
    stepwise = Schema("\n".join(m.sql for m in packaged.migrations), packaged.migrations)
    try:
        for name, schema in zip(names, (packaged, stepwise), strict=True):
            target = parse_url(url_for(postgres_server, name))
            with connect(target) as conn:
                ensure_schema(conn, target, schema)
        with admin(postgres_server) as conn:
            assert _catalog(conn, names[0]) == _catalog(conn, names[1])
            columns, _, functions = _catalog(conn, names[0])
            assert columns  # not two empty schemas
            assert [name for name, _, _ in functions] == ["advance_runs"]
    finally:
        with admin(postgres_server) as conn:
            for name in names:
                conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def test_an_older_store_gets_only_the_migrations_it_lacks(
    postgres_server: str, new_schema: str
) -> None:
    first = sql_files.Migration(1, "one", "CREATE TABLE one (x INTEGER);")
    second = sql_files.Migration(2, "two", "ALTER TABLE one ADD COLUMN y TEXT;")
    target = parse_url(url_for(postgres_server, new_schema))
    with connect(target) as conn:
        ensure_schema(conn, target, Schema(first.sql, (first,)))
        ensure_schema(conn, target, Schema("unused, the store exists", (first, second)))
        ensure_schema(conn, target, Schema("unused", (first, second)))  # up to date: nothing
        assert conn.execute("SELECT version FROM wayang_schema ORDER BY version").fetchall() == [
            (1,),
            (2,),
        ]
        assert conn.execute("SELECT x, y FROM one").fetchall() == []


def test_a_failed_migration_leaves_nothing_behind(postgres_server: str, new_schema: str) -> None:
    target = parse_url(url_for(postgres_server, new_schema))
    broken = sql_files.Migration(1, "broken", "CREATE TABLE t1 (x INTEGER); CREATE TABLE t1 (x);")
    with connect(target) as conn, pytest.raises(StoreError):
        try:
            ensure_schema(conn, target, Schema(broken.sql, (broken,)))
        except psycopg.Error as exc:
            raise StoreError(str(exc)) from exc
    with admin(postgres_server) as conn:
        assert (
            conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s", [new_schema])
        ).fetchone() == (0,)


def test_a_newer_store_is_refused(
    postgres_server: str, postgres_url: str, postgres_schema: str
) -> None:
    PostgresStore(postgres_url).close()
    with admin(postgres_server) as conn:
        conn.execute(f"INSERT INTO {postgres_schema}.wayang_schema (version) VALUES (99)")
    known = sql_files.latest_version(DIALECT)
    with pytest.raises(StoreError, match=rf"newer Wayang \(schema 99, this one knows {known}\)"):
        PostgresStore(postgres_url)


def test_another_programs_tables_are_refused_and_left_alone(
    postgres_server: str, postgres_url: str, postgres_schema: str
) -> None:
    with admin(postgres_server) as conn:
        conn.execute(f"CREATE TABLE {postgres_schema}.customers (id INTEGER)")
    with pytest.raises(StoreError, match=r"another program's tables \(customers\)"):
        PostgresStore(postgres_url)
    with admin(postgres_server) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", [postgres_schema]
        ).fetchall()
    assert tables == [("customers",)]


# ------------------------------------------------------------------------------ concurrency


def test_two_stores_claiming_from_many_threads_never_take_a_task_twice(postgres_url: str) -> None:
    stores = [PostgresStore(postgres_url) for _ in range(2)]
    try:
        add_run(stores[0], tasks=200)

        def claim_all(i: int) -> list[str]:
            store, taken = stores[i % 2], []
            while batch := store.claim(f"w{i}", T0 + 500, 30.0, limit=3):
                taken += [task.task_id for task in batch]
            return taken

        claimed = [task_id for taken in in_threads(8, claim_all) for task_id in taken]
        assert len(claimed) == 200 and len(set(claimed)) == 200
    finally:
        for s in stores:
            s.close()


def test_concurrent_completions_count_every_duplicate(store: PostgresStore) -> None:
    add_run(store, tasks=1)
    [task] = store.claim("w1", T0, 30.0)
    done = in_threads(6, lambda _: store.complete(task.task_id, task.fencing_token, {}, T0 + 1))
    assert sorted(done) == [False] * 5 + [True]
    assert store.duplicate_completions() == 5


def test_an_engine_consumes_a_completion_by_its_task_s_key_before_any_statistics(
    store: PostgresStore,
) -> None:
    """Right after a wide fanout fills the table, before autovacuum has analyzed it, the
    planner took the index of completed tasks for the run's check and scanned every completed
    task of the run for each one consumed: quadratic in the width of the fanout."""
    add_run(store, tasks=2_000)
    with store._write() as conn:
        conn.execute("UPDATE tasks SET status = 'completed', completed_at = available_at")
        params = {"task_id": "r1-t7", "run_id": "r1"}
        plan = conn.execute("EXPLAIN " + store._sql["consume_completion"], params).fetchall()
    lines = "\n".join(line for (line,) in plan)
    assert "tasks_pkey" in lines and "tasks_completed" not in lines, lines


def test_a_pipelined_transaction_that_fails_halfway_leaves_nothing_behind(
    postgres_server: str, postgres_schema: str
) -> None:
    """Group commits and workers' results send BEGIN, their statements and COMMIT without
    waiting for each answer. One refused by the server after its run's version moved, or
    stopped by an error in this process, commits nothing, and its connection (the pool's only
    one) serves the next transaction."""
    store = PostgresStore(url_for(postgres_server, postgres_schema, pool_max="1"))
    try:
        add_run(store, tasks=1)
        taken = NewTask("r1-t0", "r1", "s", 1, "k9", {}, T0)  # the id of a task r1 has
        clash = Append("r1", 1, [NewEvent("step_started", {})], tasks=[taken])
        with pytest.raises(StoreError, match=r"r1-t0|duplicate"):
            store.commit([clash], T0)
        with pytest.raises(RuntimeError, match="stopped"), store._write(pipelined=True) as conn:
            conn.execute("UPDATE runs SET status = 'failed' WHERE run_id = 'r1'")
            raise RuntimeError("stopped halfway")
        assert [e.type for e in store.load_history("r1")] == ["run_started"]
        assert store.get_run("r1").status == "running"  # type: ignore[union-attr]
        store.commit([Append("r1", 1, [NewEvent("step_started", {})])], T0)
        assert [e.type for e in store.load_history("r1")] == ["run_started", "step_started"]
    finally:
        store.close()


def test_a_stale_commit_is_a_concurrency_error_and_logs_nothing(
    store: PostgresStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Two engines racing for a run is an expected outcome: the loser gets ConcurrencyError
    (raised by the schema's advance_runs), and the driver logs no aborted pipeline for it."""
    add_run(store)
    for attempt in range(20):
        with pytest.raises(ConcurrencyError, match="at version 1, but the append expected 0"):
            store.commit([Append("r1", 0, [NewEvent("late", {"n": attempt})])], T0)
    assert [e.type for e in store.load_history("r1")] == ["run_started"]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_the_pool_never_opens_more_than_pool_max_connections(
    postgres_server: str, postgres_schema: str
) -> None:
    name = f"wayang_pool_{secrets.token_hex(4)}"
    store = PostgresStore(
        url_for(postgres_server, postgres_schema, pool_max="3", application_name=name)
    )
    add_run(store, tasks=50)
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        with admin(postgres_server) as conn:
            while not stop.is_set():
                found = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [name]
                ).fetchone()
                seen.append(int(found[0]) if found else 0)
                time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:

        def busy(i: int) -> None:
            for n in range(30):
                store.claim(f"w{i}", T0 + 100, 30.0, limit=1)
                store.kv_set("ns", f"{i}-{n}", n)
                store.list_runs()

        in_threads(12, busy)
    finally:
        stop.set()
        watcher.join()
    stats = store.settings()["pool"]
    store.close()
    assert max(seen) <= 3 and stats["pool_max"] == 3 and stats["pool_size"] <= 3
    assert max(seen) > 1  # the pool did grow under load
    # close() closed them all; the server lists a closed session until its backend has exited,
    # which can take a moment on a busy machine.
    deadline = time.monotonic() + 5
    with admin(postgres_server) as conn:
        while True:
            left = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [name]
            ).fetchone()
            if left == (0,) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
    assert left == (0,)


class SlowCommits(PostgresStore):
    """Commits a moment after the transaction's work, as a busy server would: the window in
    which a later seq can commit before an earlier one, if nothing orders them."""

    @contextmanager
    def _write(self, locks: Any = (), *, pipelined: bool = False) -> Iterator[Connection]:
        with super()._write(locks, pipelined=pipelined) as conn:
            yield conn
            time.sleep(random.random() * 0.004)


def _read_while_written(
    write: Callable[[int, int], None], read: Callable[[int], list[int]], per_thread: int
) -> tuple[list[int], set[int]]:
    """Four threads call ``write(thread, n)`` while one reader pages with ``read(cursor)``;
    what the reader saw in order, and every seq there is at the end."""
    seen: list[int] = []
    done = threading.Event()

    def reader() -> None:
        cursor = 0
        while True:
            finished = done.is_set()
            page = read(cursor)
            seen.extend(page)
            cursor = page[-1] if page else cursor
            if finished and not page:
                return

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        in_threads(4, lambda i: [write(i, n) for n in range(per_thread)])
    finally:
        done.set()
        thread.join()
    every: list[int] = []
    while page := read(every[-1] if every else 0):
        every += page
    return seen, set(every)


def test_a_cursor_reader_skips_no_topic_message_published_concurrently(postgres_url: str) -> None:
    store = SlowCommits(postgres_url)
    add_run(store)

    def write(i: int, n: int) -> None:
        message = NewTopicMessage("orders", {"i": i, "n": n}, T0)
        if i == 0:  # also through an engine's commit, which publishes a run's emits
            store.commit([Append("r1", 1 + n, [NewEvent("emitted", {})], publish=[message])], T0)
        elif i == 1:  # and through a delivery commit
            store.commit_deliveries([], [message], None, T0)
        else:
            store.publish(message)

    def read(cursor: int) -> list[int]:
        return [m.seq for m in store.topic_messages("orders", after_seq=cursor, limit=7)]

    try:
        seen, every = _read_while_written(write, read, per_thread=40)
    finally:
        store.close()
    assert len(every) == 160
    assert seen == sorted(every)  # all of them, each once, in order


def test_a_cursor_reader_skips_no_log_line_written_concurrently(postgres_url: str) -> None:
    store = SlowCommits(postgres_url)
    add_run(store)

    def write(i: int, n: int) -> None:
        lines = [LogLine("r1", f"s{i}", 1, "stdout", f"{n}.{k}", T0) for k in range(2)]
        if i == 0:
            store.commit([], T0, logs=lines)
        else:
            store.append_logs(lines)

    def read(cursor: int) -> list[int]:
        return [line.seq or 0 for line in store.read_logs("r1", after_seq=cursor, limit=9)]

    try:
        seen, every = _read_while_written(write, read, per_thread=30)
    finally:
        store.close()
    assert len(every) == 240
    assert seen == sorted(every)


def test_two_engines_fanning_out_one_environment_start_each_delivery_once(
    postgres_url: str,
) -> None:
    stores = [PostgresStore(postgres_url) for _ in range(2)]
    subs = {"t": [("A", 3), ("B", 3)]}
    try:
        for n in range(60):
            stores[0].publish(NewTopicMessage("t", {"n": n}, T0))

        def fan_out(i: int) -> list[str]:
            started: list[str] = []
            for _ in range(10):
                fan = FanOut("dev", subs, f"engine{i}", 30.0, limit=7)
                started += [
                    d.delivery_id for d in stores[i % 2].commit_deliveries([], [], fan, T0).started
                ]
            return started

        started = [d for batch in in_threads(4, fan_out) for d in batch]
        assert len(started) == 120 and len(set(started)) == 120
    finally:
        for s in stores:
            s.close()


def test_kv_swap_is_atomic_across_threads(store: PostgresStore) -> None:
    def bump(_: int) -> None:
        for _ in range(25):
            while True:
                current = store.kv_get("counters", "n")
                if store.kv_swap("counters", "n", current, (current or 0) + 1):
                    break

    in_threads(6, bump)
    assert store.kv_get("counters", "n") == 150


def test_libpq_options_may_name_the_schema_instead(
    postgres_server: str, postgres_schema: str
) -> None:
    sep = "&" if "?" in postgres_server else "?"
    store = PostgresStore(f"{postgres_server}{sep}options=-csearch_path%3D{postgres_schema}")
    try:
        assert store.schema == postgres_schema
        add_run(store)
    finally:
        store.close()
    with admin(postgres_server) as conn:
        found = conn.execute(f"SELECT run_id FROM {postgres_schema}.runs").fetchall()
    assert found == [("r1",)]
