"""What only the SQLite adapter promises: its files, migrations, settings and process safety."""

from __future__ import annotations

import ast
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from wayang.steps.schedule import claim_fire
from wayang.store import SQLiteStore, default_store_path, open_store, sql_files
from wayang.store.port import (
    Append,
    LogLine,
    NewEvent,
    NewSignal,
    NewTask,
    NewTopicMessage,
    RunRecord,
    SignalAnswer,
    StoreError,
)
from wayang.store.sqlite_connection import (
    DIALECT,
    Schema,
    ensure_schema,
    packaged_schema,
    run_script,
    split_statements,
)

T0 = 1_000.0
STORE_SRC = Path(sql_files.__file__).parent


def add_run(store: SQLiteStore, run_id: str = "r1", tasks: int = 0) -> None:
    run = RunRecord(run_id, "wf", "running", T0, T0)
    new_tasks = [
        NewTask(f"{run_id}-t{i}", run_id, "s", 1, f"k{i}", {"i": i}, T0) for i in range(tasks)
    ]
    store.create_run(run, Append(run_id, 0, [NewEvent("run_started", {})], tasks=new_tasks))


# ------------------------------------------------------------------------------ schema files


def _normalize(sql: str | None) -> str | None:
    if sql is None:
        return None
    sql = re.sub(r"--[^\n]*", " ", sql)
    sql = re.sub(r"\s+", " ", sql).strip().lower()
    return re.sub(r"\s*([(),])\s*", r"\1", sql)


def schema_of(conn: sqlite3.Connection) -> list[tuple[str, str, str, str | None]]:
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
    return [(kind, name, table, _normalize(sql)) for kind, name, table, sql in rows]


def test_migrations_in_order_build_exactly_schema_sql(tmp_path: Path) -> None:
    migrated = sqlite3.connect(tmp_path / "migrated.db", isolation_level=None)
    for migration in sql_files.migrations(DIALECT):
        run_script(migrated, migration.sql)
    fresh = sqlite3.connect(tmp_path / "fresh.db", isolation_level=None)
    run_script(fresh, sql_files.schema(DIALECT))
    assert schema_of(fresh), "schema.sql created nothing"
    assert schema_of(migrated) == schema_of(fresh)


def test_a_store_upgraded_from_every_older_version_matches_a_new_one(tmp_path: Path) -> None:
    migrations = sql_files.migrations(DIALECT)
    new = SQLiteStore(tmp_path / "new.db")
    expected = schema_of(new._conn)
    new.close()
    for version in range(1, len(migrations) + 1):
        path = tmp_path / f"from-{version}.db"
        older = Schema("\n".join(m.sql for m in migrations[:version]), migrations[:version])
        conn = sqlite3.connect(path, isolation_level=None)
        ensure_schema(conn, str(path), older)
        conn.close()
        upgraded = SQLiteStore(path)
        assert schema_of(upgraded._conn) == expected
        assert upgraded.settings()["schema_version"] == len(migrations)
        upgraded.close()


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    migrations = sql_files.migrations(DIALECT)
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "initial"
    assert sql_files.latest_version(DIALECT) == len(migrations)
    assert f"(version {len(migrations)})" in sql_files.schema(DIALECT).splitlines()[0]


def _with_extra_migration(sql: str) -> Schema:
    packaged = packaged_schema()
    extra = sql_files.Migration(packaged.version + 1, "extra", sql)
    return Schema(packaged.sql + "\n" + sql, (*packaged.migrations, extra))


def test_an_older_store_gets_the_missing_migrations_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SQLiteStore(path)
    add_run(store)
    store.close()

    newer = _with_extra_migration("CREATE TABLE extra (x INTEGER NOT NULL);")
    conn = sqlite3.connect(path, isolation_level=None)
    ensure_schema(conn, str(path), newer)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == newer.version
    assert conn.execute("SELECT count(*) FROM extra").fetchone()[0] == 0
    assert conn.execute("SELECT run_id FROM runs").fetchall() == [("r1",)]
    conn.close()


def test_a_version_2_store_gains_signals_and_topics_and_keeps_its_runs(tmp_path: Path) -> None:
    # A store written before migration 0003: built from the first two migrations, holding a
    # run that waits. Opening it with this Wayang must upgrade it in place, data intact.
    path = tmp_path / "store.db"
    v2 = sql_files.migrations(DIALECT)[:2]
    conn = sqlite3.connect(path, isolation_level=None)
    ensure_schema(conn, str(path), Schema("\n".join(m.sql for m in v2), v2))
    conn.execute(
        "INSERT INTO runs (run_id, workflow_id, status, version, created_at, updated_at) "
        "VALUES ('r1', 'wf', 'waiting', 1, ?, ?)",
        (T0, T0),
    )
    conn.execute(
        "INSERT INTO events (run_id, seq, type, data, version, at) "
        "VALUES ('r1', 1, 'run_started', '{}', 1, ?)",
        (T0,),
    )
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    assert not tables & {"signals", "topic_messages"}
    conn.close()

    store = SQLiteStore(path)
    assert store.settings()["schema_version"] == sql_files.latest_version(DIALECT) >= 3
    assert [e.type for e in store.load_history("r1")] == ["run_started"]
    seq = store.send_signal(NewSignal("r1", "review", "approve", "alice", {}, T0 + 1))
    answer = SignalAnswer(seq, "accepted", "approved")
    store.commit([Append("r1", 1, [NewEvent("approved", {})], answer_signals=[answer])], T0 + 2)
    signal = store.get_signal(seq)
    assert signal is not None
    assert (signal.status, signal.handled_at) == ("accepted", T0 + 2)
    published = store.publish(NewTopicMessage("deploys", {"ok": True}, T0))
    assert store.latest_topic_seq() == published
    store.close()


def test_a_failing_migration_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    SQLiteStore(path).close()
    broken = _with_extra_migration("CREATE TABLE extra (x);\nCREATE TABLE runs (x);")
    conn = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        ensure_schema(conn, str(path), broken)
    assert not conn.in_transaction
    assert conn.execute("PRAGMA user_version").fetchone()[0] == broken.version - 1
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    assert "extra" not in tables
    conn.close()


def test_a_store_from_a_newer_wayang_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    SQLiteStore(path).close()
    known = sql_files.latest_version(DIALECT)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA user_version = {known + 1}")
    conn.close()
    message = (
        f"the store {path} was written by a newer Wayang (schema {known + 1}, this one knows "
        f"{known}); upgrade wayang"
    )
    with pytest.raises(StoreError) as raised:
        SQLiteStore(path)
    assert str(raised.value) == message


def test_split_statements_keeps_triggers_whole_and_rejects_a_dangling_one() -> None:
    script = (
        "-- leading comment\nCREATE TABLE a (x);\n"
        "CREATE TRIGGER t AFTER INSERT ON a BEGIN\n  SELECT 1;\n  SELECT 2;\nEND;\n-- tail\n"
    )
    statements = split_statements(script)
    assert len(statements) == 2
    assert statements[1].endswith("END;")
    with pytest.raises(StoreError, match="incomplete"):
        split_statements("CREATE TABLE b (x)")


# ------------------------------------------------------------------------------ named queries


def test_parse_queries_splits_named_blocks_without_trailing_comments() -> None:
    text = "-- header\n\n-- name: one\nSELECT 1;\n\n-- about two\n-- name: two\nSELECT\n  2;\n"
    assert sql_files.parse_queries(text) == {"one": "SELECT 1;", "two": "SELECT\n  2;"}


def test_parse_queries_refuses_duplicates_and_sql_without_a_name() -> None:
    with pytest.raises(StoreError, match="defined twice"):
        sql_files.parse_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n", "q.sql")
    with pytest.raises(StoreError, match=r"q\.sql:1: SQL before"):
        sql_files.parse_queries("SELECT 1;\n-- name: a\nSELECT 2;\n", "q.sql")


def test_every_named_query_compiles_against_the_schema(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    nulls: defaultdict[str, None] = defaultdict(lambda: None)
    for name, sql in sql_files.queries(DIALECT).items():
        assert sql, name
        store._conn.execute("EXPLAIN " + sql, nulls)
    store.close()


HOT_QUERIES = [
    "advance_run",
    "claim_tasks",
    "heartbeat_task",
    "complete_task",
    "completions_for_run",
    "consume_completion",
    "requeue_expired",
    "due_timers",
    "delete_timer",
    "load_history",
    "read_logs",
    "orphaned_runs",
    "list_runs_by_status",
    "pending_signals",
    "pending_signals_of_runs",
    "answer_signal",
    "topic_messages",
    "latest_topic_seq",
    "kv_count",
    "kv_key_ending",
    "run_statuses",
    "histories_of_runs",
]


@pytest.mark.parametrize("name", HOT_QUERIES)
def test_hot_queries_never_scan_a_whole_table(name: str) -> None:
    # A full scan would make the query slower with every finished run; plans are deterministic,
    # so this guards the indexes better than a timing test could.
    store = SQLiteStore(":memory:")
    nulls: defaultdict[str, None] = defaultdict(lambda: None)
    plan = [row[3] for row in store._conn.execute("EXPLAIN QUERY PLAN " + store._sql[name], nulls)]
    store.close()
    assert plan
    assert not [step for step in plan if re.fullmatch(r"SCAN \w+", step)], plan


# ------------------------------------------------------------------------------ files that are not ours


@pytest.mark.parametrize(
    "content",
    [os.urandom(8192), b"just some notes\n" * 200, b"short text\n"],
    ids=["random-bytes", "text-file", "short-text"],
)
def test_a_file_that_is_not_sqlite_is_refused_clearly(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(content)
    with pytest.raises(StoreError, match="is not a SQLite database") as raised:
        SQLiteStore(path)
    assert str(path) in str(raised.value)
    assert "another file" in str(raised.value)
    assert path.read_bytes() == content


def test_another_programs_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    before = path.read_bytes()

    with pytest.raises(StoreError) as raised:
        SQLiteStore(path)
    message = str(raised.value)
    assert str(path) in message
    assert "from another program (tables: users)" in message
    assert "not a Wayang store" in message
    assert path.read_bytes() == before  # not switched to WAL, nothing created
    assert not Path(f"{path}-wal").exists()


def test_another_programs_empty_database_with_an_application_id_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 42")
    conn.close()
    with pytest.raises(StoreError, match="application id 0x2a"):
        SQLiteStore(path)


def test_a_missing_folder_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="check that its folder exists"):
        SQLiteStore(tmp_path / "no" / "such" / "store.db")


# ------------------------------------------------------------------------------ settings


def test_defaults_are_wal_full_sync_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    assert store.settings() == {
        "journal_mode": "wal",
        "synchronous": "FULL",
        "busy_timeout_ms": 10_000,
        "foreign_keys": True,
        "temp_store": "MEMORY",
        "schema_version": sql_files.latest_version(DIALECT),
    }
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()


def test_settings_can_be_chosen_and_are_validated(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db", synchronous="normal", busy_timeout_ms=250)
    settings = store.settings()
    assert (settings["synchronous"], settings["busy_timeout_ms"]) == ("NORMAL", 250)
    store.close()
    with pytest.raises(StoreError, match="not a SQLite level"):
        SQLiteStore(tmp_path / "store.db", synchronous="FULL; DROP TABLE runs")
    with pytest.raises(StoreError, match="busy_timeout_ms"):
        SQLiteStore(tmp_path / "store.db", busy_timeout_ms=-1)


def test_a_sqlite_without_returning_is_refused_at_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(StoreError, match=r"SQLite 3\.31\.1 is too old .* needs 3\.35\.0"):
        SQLiteStore(":memory:")


def test_a_held_write_lock_past_the_timeout_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SQLiteStore(path, busy_timeout_ms=50)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="is busy"):
            store.kv_set("ns", "k", 1)
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.kv_set("ns", "k", 1)  # the failed write left no transaction open
    assert store.kv_get("ns", "k") == 1
    store.close()


# ------------------------------------------------------------------------------ durability


def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SQLiteStore(path)
    add_run(store, tasks=2)
    [claimed] = store.claim("w", T0, 30)
    store.complete(claimed.task_id, claimed.fencing_token, {"ok": 1}, T0 + 1)
    store.append_logs([LogLine("r1", "s", 1, "stdout", "hello", T0)])
    store.kv_set("ns", "k", {"v": 1})
    store.close()

    again = SQLiteStore(path)
    assert [e.type for e in again.load_history("r1")] == ["run_started"]
    assert [c.result for c in again.completions()] == [{"ok": 1}]
    assert [t.task_id for t in again.claim("w", T0, 30)] == ["r1-t1"]
    assert [line.line for line in again.read_logs("r1")] == ["hello"]
    assert again.kv_get("ns", "k") == {"v": 1}
    again.close()


def test_two_store_objects_on_one_file_claim_disjoint_tasks(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    setup = SQLiteStore(path)
    add_run(setup, tasks=300)
    stores = [SQLiteStore(path), SQLiteStore(path)]
    claimed: list[list[str]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def work(index: int) -> None:
        store = stores[index % 2]  # two threads share each store object
        start.wait()
        while batch := store.claim(f"w{index}", T0, 600, limit=2):
            for item in batch:
                assert store.complete(item.task_id, item.fencing_token, {}, T0)
                claimed[index].append(item.task_id)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    every = [task_id for ids in claimed for task_id in ids]
    assert len(every) == len(set(every)) == 300
    assert setup.duplicate_completions() == 0
    for store in (*stores, setup):
        store.close()


CLAIMER = """
import json, sys, time
from wayang.store.sqlite import SQLiteStore

path, owner, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
store = SQLiteStore(path)
while time.time() < start:
    time.sleep(0.001)
got = []
while batch := store.claim(owner, 1000.0, 600.0, limit=3):
    for task in batch:
        assert store.complete(task.task_id, task.fencing_token, {"by": owner}, 1000.0)
        got.append(task.task_id)
    # Real workers work between claims. A tight loop would let one process starve the rest:
    # SQLite's busy handler polls with growing sleeps, so its lock is not fair.
    time.sleep(0.002)
store.close()
print(json.dumps(got))
"""


def _run_processes(args: list[list[str]]) -> list[str]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER if a[0] == "claim" else OPENER, *a[1:]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for a in args
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=50)
        assert proc.returncode == 0, err
        outputs.append(out)
    return outputs


def test_processes_sharing_a_file_never_claim_a_task_twice(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SQLiteStore(path)
    add_run(store, tasks=400)
    start = str(time.time() + 1.5)  # let every interpreter start before they race
    outputs = _run_processes([["claim", str(path), f"p{i}", start] for i in range(3)])

    claimed = [json.loads(out) for out in outputs]
    every = [task_id for ids in claimed for task_id in ids]
    assert len(every) == len(set(every)) == 400
    assert sum(1 for ids in claimed if ids) >= 2, "no contention happened"
    assert len(store.completions(limit=1000)) == 400
    assert store.duplicate_completions() == 0
    store.close()


OPENER = """
import sys, time
from wayang.store.sqlite import SQLiteStore

path, start = sys.argv[1], float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
store = SQLiteStore(path)
store.kv_set("opened", sys.argv[3], True)
store.close()
"""


def test_processes_opening_a_new_file_at_once_create_the_schema_once(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    start = str(time.time() + 1.5)
    _run_processes([["open", str(path), start, str(i)] for i in range(6)])
    store = SQLiteStore(path)
    assert store.settings()["schema_version"] == sql_files.latest_version(DIALECT)
    assert all(store.kv_get("opened", str(i)) for i in range(6))
    store.close()


# ------------------------------------------------------------------------------ URLs and paths


def test_open_store_accepts_paths_and_sqlite_urls(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    for url in (str(path), path, f"sqlite://{path}"):
        store = open_store(url)
        assert isinstance(store, SQLiteStore)
        assert store.path == str(path)
        store.close()
    memory = open_store("sqlite:///:memory:")
    assert isinstance(memory, SQLiteStore)
    assert memory.path == ":memory:"
    memory.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://host/db", "unknown store URL scheme 'mysql'"),
        ("sqlite://host/db", "three slashes"),
        ("sqlite:///", "names no file"),
    ],
)
def test_open_store_refuses_other_urls(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        open_store(url)


def test_default_store_path_follows_xdg_state_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    path = default_store_path()
    assert path == tmp_path / "state" / "wayang" / "wayang.db"
    assert path.parent.is_dir()


@pytest.mark.parametrize("xdg", [None, "", "relative/state"])
def test_default_store_path_falls_back_to_local_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, xdg: str | None
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    if xdg is None:
        monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_STATE_HOME", xdg)
    path = default_store_path()
    assert path == tmp_path / ".local" / "state" / "wayang" / "wayang.db"
    assert path.parent.is_dir()


# ------------------------------------------------------------------------------ layering


def test_the_store_imports_nothing_of_wayang_but_errors_and_itself() -> None:
    allowed = ("wayang.errors", "wayang.store")
    for module in STORE_SRC.rglob("*.py"):
        tree = ast.parse(module.read_text("utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name == "wayang" or name.startswith("wayang."):
                    assert name.startswith(allowed), f"{module.name} imports {name}"


def test_sql_files_sit_where_package_data_expects_them() -> None:
    sql_dir = STORE_SRC / "sql" / DIALECT
    assert sorted(p.name for p in sql_dir.glob("*.sql")) == ["queries.sql", "schema.sql"]
    migrations = sorted(p.name for p in (sql_dir / "migrations").glob("*.sql"))
    assert migrations[:1] == ["0001_initial.sql"]


def test_kv_swap_lets_one_of_several_stores_win_each_cron_claim(tmp_path: Path) -> None:
    """Cron fires are claimed with it: processes with their own stores race for each time."""
    path = tmp_path / "w.db"
    stores = [SQLiteStore(path) for _ in range(3)]
    wins: list[list[int]] = [[] for _ in stores]
    start = threading.Barrier(len(stores))

    def claim_all(index: int) -> None:
        start.wait()
        wins[index] = [due for due in range(1, 101) if claim_fire(stores[index], "dev/T", due)]

    threads = [threading.Thread(target=claim_all, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert sorted(due for won in wins for due in won) == list(range(1, 101))
