"""The SQLite adapter of the store port: one file, WAL, every write ``BEGIN IMMEDIATE``.

One connection per store object, shared by threads under a lock (the engine may call from a
worker thread); processes sharing the file are kept apart by SQLite's own write lock, which
``BEGIN IMMEDIATE`` takes up front so a transaction never fails half-way on an upgrade to writer.
Claim is a single ``UPDATE … RETURNING``, so no two claimers ever get the same task.

Nothing about runs is cached in the process: memory does not grow with the number of runs.
``SQLiteStore(":memory:")`` is the in-package fake for tests.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from operator import itemgetter
from pathlib import Path
from typing import Any

from wayang.store import rows, sql_files
from wayang.store.port import (
    DEFAULT_TENANT,
    Append,
    ClaimedTask,
    Completion,
    ConcurrencyError,
    DeadLetter,
    LogLine,
    NewSignal,
    NewTopicMessage,
    RunRecord,
    SignalRecord,
    StoredEvent,
    StoreError,
    TaskRecord,
    Timer,
    TopicMessage,
)
from wayang.store.sqlite_connection import DIALECT, SYNCHRONOUS_LEVELS, connect, translate
from wayang.store.sqlite_deliveries import DeliveriesMixin

DUPLICATE_COMPLETIONS = "duplicate_completions"
_by_available_at = itemgetter(-1)
_TEMP_STORES = ("DEFAULT", "FILE", "MEMORY")


class SQLiteStore(DeliveriesMixin):
    """A :class:`~wayang.store.port.Store` in one SQLite file (or in memory, for tests)."""

    def __init__(
        self, path: str | Path, *, synchronous: str = "FULL", busy_timeout_ms: int = 10_000
    ) -> None:
        self.path = str(path)
        self._sql = sql_files.queries(DIALECT)
        self._lock = threading.Lock()
        self._conn = connect(self.path, synchronous, busy_timeout_ms)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Hold the lock, and let no driver error escape untranslated."""
        with self._lock:
            try:
                yield
            except sqlite3.Error as exc:
                raise translate(exc, self.path) from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; any exception rolls all of it back."""
        with self._translated():
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # SQLite may already have rolled back on its own (e.g. disk full).
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _rows(self, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run one read query; a single statement is a consistent snapshot, no transaction."""
        with self._translated():
            return self._conn.execute(self._sql[name], params).fetchall()

    # ------------------------------------------------------------------ runs and histories

    def create_run(self, run: RunRecord, first: Append) -> None:
        """Insert ``run`` and apply its first append (``expected_version`` 0) atomically.

        The run's ``version`` is not taken from ``run``: it is the number of events in ``first``.
        Those events are stamped ``run.updated_at``. A run id already taken is a conflict.
        """
        if first.run_id != run.run_id or first.expected_version != 0:
            raise StoreError(
                f"the first append of run {run.run_id} must be for that run and expect "
                f"version 0, not {first.run_id} at {first.expected_version}"
            )
        self.commit([replace(first, create=run)], run.updated_at)

    def commit(self, appends: Sequence[Append], now: float, logs: Sequence[LogLine] = ()) -> None:
        """Apply every append, and store ``logs``, in one transaction (group commit)."""
        if not appends and not logs:
            return
        with self._write() as conn:
            self._apply(conn, appends, now)
            if logs:
                conn.executemany(self._sql["insert_log"], map(rows.log_params, logs))

    def _apply(self, conn: sqlite3.Connection, appends: Sequence[Append], now: float) -> None:
        # A group may hold several appends of one run, each expecting the version the one
        # before it left: the run's version is checked and moved once, for all of them. Rows of
        # one kind go in one executemany for the whole group; only timers keep the order of the
        # appends, so a later append may cancel a timer an earlier one set. Tasks go in before
        # any append of the group finishes them.
        sql = self._sql
        for append in appends:
            if append.create is not None:
                self._insert_run(conn, append)
        tenants = {
            run_id: self._advance(conn, moves, now) for run_id, moves in rows.by_run(appends)
        }
        tasks = [rows.task_params(task) for append in appends for task in append.tasks]
        if tasks:
            conn.executemany(sql["insert_task"], tasks)
        for append in appends:
            if append.timers or append.cancel_timers:
                self._apply_timers(conn, append)
        self._insert_rows(conn, appends, now)
        self._answer_signals(conn, appends, now)
        events = [
            row
            for append in appends
            for row in rows.event_params(append, tenants[append.run_id], now)
        ]
        if events:
            conn.executemany(sql["insert_event"], events)

    def _insert_rows(self, conn: sqlite3.Connection, appends: Sequence[Append], now: float) -> None:
        """The group's completions consumed, tasks finished, dead letters and topic messages."""
        batches: dict[str, list[rows.Params]] = {
            "consume_completion": [
                {"task_id": task_id, "run_id": append.run_id}
                for append in appends
                for task_id in append.acknowledge
            ],
            "finish_task": [
                {"task_id": task_id, "run_id": append.run_id, "now": now}
                for append in appends
                for task_id in append.finish_tasks
            ],
            "insert_dead_letter": [
                rows.dead_letter_params(d) for append in appends for d in append.dead_letters
            ],
            "append_topic_message": [
                rows.topic_message_params(m) for append in appends for m in append.publish
            ],
        }
        for name, params in batches.items():
            if params:
                conn.executemany(self._sql[name], params)

    def _insert_run(self, conn: sqlite3.Connection, append: Append) -> None:
        run = append.create
        assert run is not None
        if append.run_id != run.run_id or append.expected_version != 0:
            raise StoreError(
                f"an append creating run {run.run_id} must be for that run and expect "
                f"version 0, not {append.run_id} at {append.expected_version}"
            )
        if conn.execute(self._sql["insert_run"], rows.run_params(run)).rowcount != 1:
            raise ConcurrencyError(f"run {run.run_id} already exists", run.run_id)

    def _apply_timers(self, conn: sqlite3.Connection, append: Append) -> None:
        # Cancel before insert, so one append may cancel and re-arm the same timer id.
        sql, run_id = self._sql, append.run_id
        if append.cancel_timers:
            conn.executemany(
                sql["delete_timer"],
                [{"timer_id": t, "run_id": run_id} for t in append.cancel_timers],
            )
        if append.timers:
            conn.executemany(sql["insert_timer"], map(rows.timer_params, append.timers))

    def _answer_signals(
        self, conn: sqlite3.Connection, appends: Sequence[Append], now: float
    ) -> None:
        # Each update touches only its own run's signals, and only pending ones: the first
        # answer stands, so an engine replaying a decision cannot turn an accepted vote around.
        answers = [row for append in appends for row in rows.answer_params(append, now)]
        if answers:
            conn.executemany(self._sql["answer_signal"], answers)

    def _advance(self, conn: sqlite3.Connection, moves: rows.VersionMove, now: float) -> str:
        """Check and move the run's version in one statement; return the run's tenant."""
        params = {
            "run_id": moves.first.run_id,
            "expected_version": moves.first.expected_version,
            "new_version": moves.version,
            "status": moves.status,
            "now": now,
        }
        row = conn.execute(self._sql["advance_run"], params).fetchone()
        if row is None:
            raise self._conflict(conn, moves.first)
        return str(row[0])

    def _conflict(self, conn: sqlite3.Connection, append: Append) -> StoreError:
        found = conn.execute(self._sql["run_version"], {"run_id": append.run_id}).fetchone()
        if found is None:
            return StoreError(f"run {append.run_id} does not exist; create it with create_run")
        return ConcurrencyError(
            f"run {append.run_id} is at version {found[0]}, but the append expected "
            f"{append.expected_version}: another writer got there first; reload its history",
            append.run_id,
        )

    def load_history(self, run_id: str, after_seq: int = 0) -> list[StoredEvent]:
        found = self._rows("load_history", {"run_id": run_id, "after_seq": after_seq})
        return [rows.read_event(row) for row in found]

    def get_run(self, run_id: str, tenant: str = DEFAULT_TENANT) -> RunRecord | None:
        found = self._rows("get_run", {"run_id": run_id, "tenant": tenant})
        return rows.read_run(found[0]) if found else None

    def page_runs(
        self,
        *,
        status: str | None = None,
        workflow_id: str | None = None,
        before: tuple[float, str] | None = None,
        limit: int = 50,
        tenant: str = DEFAULT_TENANT,
    ) -> list[RunRecord]:
        """Runs newest first, optionally of one status and workflow, older than ``before``
        (the ``(created_at, run_id)`` of the last run of the page before)."""
        before_at, before_id = before if before is not None else (float("inf"), "")
        params = {
            "tenant": tenant,
            "status": status,
            "workflow_id": workflow_id,
            "before_at": before_at,
            "before_id": before_id,
            "limit": limit,
        }
        return [rows.read_run(row) for row in self._rows("page_runs", params)]

    def list_runs(
        self, status: str | None = None, limit: int = 50, tenant: str = DEFAULT_TENANT
    ) -> list[RunRecord]:
        """The newest runs of ``tenant`` first, optionally only those with ``status``."""
        params = {"tenant": tenant, "status": status, "limit": limit}
        name = "list_runs" if status is None else "list_runs_by_status"
        return [rows.read_run(row) for row in self._rows(name, params)]

    def lease_run(self, run_id: str, owner: str, now: float, lease_s: float) -> bool:
        """Take or renew the lease on driving ``run_id``; False if another owner holds it."""
        params = {"run_id": run_id, "owner": owner, "now": now, "lease_expires_at": now + lease_s}
        with self._write() as conn:
            return conn.execute(self._sql["lease_run"], params).rowcount == 1

    def steal_run(
        self, run_id: str, owner: str, previous_owner: str | None, now: float, lease_s: float
    ) -> bool:
        """Take the run from ``previous_owner`` (known gone) whatever its lease says."""
        params = {
            "run_id": run_id,
            "owner": owner,
            "previous_owner": previous_owner,
            "lease_expires_at": now + lease_s,
        }
        with self._write() as conn:
            return conn.execute(self._sql["steal_run"], params).rowcount == 1

    def release_run(self, run_id: str, owner: str) -> None:
        """Give up the lease on ``run_id`` so another engine may take it at once."""
        with self._write() as conn:
            conn.execute(self._sql["release_run"], {"run_id": run_id, "owner": owner})

    def renew_leases(self, owner: str, now: float, lease_s: float) -> None:
        """Extend every lease ``owner`` holds, on runs and on tasks, in one transaction."""
        params = {"owner": owner, "lease_expires_at": now + lease_s}
        with self._write() as conn:
            conn.execute(self._sql["renew_run_leases"], params)
            conn.execute(self._sql["renew_task_leases"], params)

    def orphaned_runs(self, now: float, limit: int = 100) -> list[RunRecord]:
        """Unfinished runs nobody drives: no lease, or one that ran out."""
        found = self._rows("orphaned_runs", {"now": now, "limit": limit})
        return [rows.read_run(row) for row in found]

    # ------------------------------------------------------------------ tasks

    def claim(
        self, owner: str, now: float, lease_s: float, limit: int = 1, queue: str = "default"
    ) -> list[ClaimedTask]:
        """Lease up to ``limit`` tasks of ``queue``, oldest first; each claim bumps the token."""
        if limit <= 0:
            return []
        params = {
            "owner": owner,
            "now": now,
            "lease_expires_at": now + lease_s,
            "limit": limit,
            "queue": queue,
        }
        with self._write() as conn:
            claimed = conn.execute(self._sql["claim_tasks"], params).fetchall()
        claimed.sort(key=_by_available_at)
        return [rows.read_claimed(row) for row in claimed]

    def heartbeat(self, task_id: str, fencing_token: int, now: float, lease_s: float) -> bool:
        """Extend the lease, if the caller still holds it (status claimed, same token)."""
        params = {
            "task_id": task_id,
            "fencing_token": fencing_token,
            "lease_expires_at": now + lease_s,
        }
        with self._write() as conn:
            return conn.execute(self._sql["heartbeat_task"], params).rowcount == 1

    def complete(
        self, task_id: str, fencing_token: int, result: dict[str, Any], now: float
    ) -> bool:
        """Record the result if the token is current; otherwise count a duplicate, return False."""
        params = {
            "task_id": task_id,
            "fencing_token": fencing_token,
            "result": rows.to_json(result),
            "now": now,
        }
        with self._write() as conn:
            done = conn.execute(self._sql["complete_task"], params).rowcount == 1
            if not done:
                conn.execute(self._sql["bump_counter"], {"name": DUPLICATE_COMPLETIONS})
        return done

    def duplicate_completions(self) -> int:
        """How many completions were rejected (stale token, or the task already completed)."""
        found = self._rows("read_counter", {"name": DUPLICATE_COMPLETIONS})
        return int(found[0][0]) if found else 0

    def completions(self, run_id: str | None = None, limit: int = 1000) -> list[Completion]:
        """Completed tasks not yet acknowledged by an append, in order of completion."""
        params = {"run_id": run_id, "limit": limit}
        name = "completions" if run_id is None else "completions_for_run"
        return [rows.read_completion(row) for row in self._rows(name, params)]

    def requeue_expired(self, now: float) -> int:
        """Send claimed tasks whose lease ran out back to the queue; return how many."""
        with self._write() as conn:
            return int(conn.execute(self._sql["requeue_expired"], {"now": now}).rowcount)

    def adopt_tasks(self, run_id: str, owner: str, now: float, lease_s: float) -> list[ClaimedTask]:
        """Lease every open task of ``run_id`` (queued, or leased by anyone) to ``owner``."""
        params = {"run_id": run_id, "owner": owner, "lease_expires_at": now + lease_s}
        with self._write() as conn:
            found = conn.execute(self._sql["adopt_tasks"], params).fetchall()
        found.sort(key=_by_available_at)
        return [rows.read_claimed(row) for row in found]

    def run_tasks(self, run_id: str) -> list[TaskRecord]:
        """Every task of ``run_id``, oldest first."""
        return [rows.read_task(row) for row in self._rows("run_tasks", {"run_id": run_id})]

    # ------------------------------------------------------------------ timers

    def due_timers(self, now: float, limit: int = 100) -> list[Timer]:
        """Timers due by ``now``, soonest first; they stay until an append cancels them."""
        found = self._rows("due_timers", {"now": now, "limit": limit})
        return [rows.read_timer(row) for row in found]

    def run_timers(self, run_id: str) -> list[Timer]:
        """The pending timers of one run, soonest first."""
        return [rows.read_timer(row) for row in self._rows("run_timers", {"run_id": run_id})]

    # ------------------------------------------------------------------ signals

    def send_signal(self, signal: NewSignal) -> int:
        """Put ``signal`` in its run's inbox, pending; return its seq, which names it for good."""
        with self._write() as conn:
            return int(
                conn.execute(self._sql["insert_signal"], rows.signal_params(signal)).fetchone()[0]
            )

    def pending_signals(self, run_id: str) -> list[SignalRecord]:
        """The run's signals no append has answered yet, oldest first."""
        found = self._rows("pending_signals", {"run_id": run_id})
        return [rows.read_signal(row) for row in found]

    def get_signal(self, seq: int) -> SignalRecord | None:
        """Signal ``seq`` whatever its status (a sender asking what became of it), or None."""
        found = self._rows("get_signal", {"seq": seq})
        return rows.read_signal(found[0]) if found else None

    # ------------------------------------------------------------------ topics

    def publish(self, message: NewTopicMessage) -> int:
        """Add ``message`` to its topic; return its seq, greater than every seq before it."""
        params = rows.topic_message_params(message)
        with self._write() as conn:
            return int(conn.execute(self._sql["insert_topic_message"], params).fetchone()[0])

    def topic_messages(
        self,
        topic: str,
        after_seq: int = 0,
        since: float = 0.0,
        limit: int = 1000,
        tenant: str = DEFAULT_TENANT,
    ) -> list[TopicMessage]:
        """``topic``'s messages after ``after_seq`` published at ``since`` or later, in order.

        Nothing is consumed: each reader keeps its cursor (the last seq it saw) and pages on.
        """
        params = {
            "tenant": tenant,
            "topic": topic,
            "after_seq": after_seq,
            "since": since,
            "limit": limit,
        }
        return [rows.read_topic_message(row) for row in self._rows("topic_messages", params)]

    def latest_topic_seq(self) -> int:
        """The highest seq published on any topic, 0 if none: a cursor for "from now on"."""
        return int(self._rows("latest_topic_seq", {})[0][0])

    # ------------------------------------------------------------------ logs

    def append_logs(self, lines: Sequence[LogLine]) -> None:
        if not lines:
            return
        with self._write() as conn:
            conn.executemany(self._sql["insert_log"], map(rows.log_params, lines))

    def read_logs(
        self, run_id: str, step_id: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[LogLine]:
        """A run's lines (or one step's) after ``after_seq``, in order: page with the last seq."""
        params = {"run_id": run_id, "step_id": step_id, "after_seq": after_seq, "limit": limit}
        name = "read_logs" if step_id is None else "read_logs_for_step"
        return [rows.read_log(row) for row in self._rows(name, params)]

    # ------------------------------------------------------------------ dead letters

    def add_dead_letter(self, letter: DeadLetter) -> None:
        with self._write() as conn:
            conn.execute(self._sql["insert_dead_letter"], rows.dead_letter_params(letter))

    def dead_letters(self, tenant: str = DEFAULT_TENANT, limit: int = 100) -> list[DeadLetter]:
        found = self._rows("dead_letters", {"tenant": tenant, "limit": limit})
        return [rows.read_dead_letter(row) for row in found]

    def remove_dead_letter(self, dlq_id: str) -> DeadLetter | None:
        """Take a dead letter out (to replay it); None if there is no such letter."""
        with self._write() as conn:
            found = conn.execute(self._sql["remove_dead_letter"], {"dlq_id": dlq_id}).fetchone()
        return rows.read_dead_letter(found) if found else None

    # ------------------------------------------------------------------ key-value

    def kv_get(self, namespace: str, key: str) -> Any:
        """The value stored under ``namespace``/``key``, or None."""
        found = self._rows("kv_get", {"namespace": namespace, "key": key})
        return rows.from_json(found[0][0]) if found else None

    def kv_set(self, namespace: str, key: str, value: Any) -> None:
        params = {"namespace": namespace, "key": key, "value": rows.to_json(value)}
        with self._write() as conn:
            conn.execute(self._sql["kv_set"], params)

    def kv_swap(self, namespace: str, key: str, expected: Any, value: Any) -> bool:
        """Set ``key`` to ``value`` only if it holds ``expected``, atomically against every other
        writer; whether it did. None stands for "absent" on both sides: expecting None means the
        key must not exist, and a ``value`` of None deletes it."""
        where = {"namespace": namespace, "key": key}
        with self._write() as conn:
            found = conn.execute(self._sql["kv_get"], where).fetchone()
            if (rows.from_json(found[0]) if found else None) != expected:
                return False
            if value is None:
                conn.execute(self._sql["kv_delete"], where)
            else:
                conn.execute(self._sql["kv_set"], {**where, "value": rows.to_json(value)})
            return True

    def kv_delete(self, namespace: str, key: str) -> None:
        with self._write() as conn:
            conn.execute(self._sql["kv_delete"], {"namespace": namespace, "key": key})

    def kv_scan(self, namespace: str) -> dict[str, Any]:
        """Every key and value of ``namespace``."""
        found = self._rows("kv_scan", {"namespace": namespace})
        return {key: rows.from_json(value) for key, value in found}

    def kv_namespaces(self, prefix: str) -> list[str]:
        """The namespaces that start with ``prefix`` and hold at least one key, in order."""
        return [namespace for (namespace,) in self._rows("kv_namespaces", {"prefix": prefix})]

    # ------------------------------------------------------------------ lifetime

    def settings(self) -> dict[str, Any]:
        """The connection's durability settings as SQLite reports them (for diagnostics)."""
        with self._translated():
            read = self._conn.execute
            return {
                "journal_mode": read("PRAGMA journal_mode").fetchone()[0],
                "synchronous": SYNCHRONOUS_LEVELS[read("PRAGMA synchronous").fetchone()[0]],
                "busy_timeout_ms": read("PRAGMA busy_timeout").fetchone()[0],
                "foreign_keys": bool(read("PRAGMA foreign_keys").fetchone()[0]),
                "temp_store": _TEMP_STORES[read("PRAGMA temp_store").fetchone()[0]],
                "schema_version": read("PRAGMA user_version").fetchone()[0],
            }

    def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        with self._lock:
            self._conn.close()
