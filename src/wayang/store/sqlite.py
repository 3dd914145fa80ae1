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
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wayang.store import rows, sql_files
from wayang.store.port import (
    Append,
    ConcurrencyError,
    LogLine,
    NewSignal,
    NewTopicMessage,
    StoreError,
)
from wayang.store.sql_shared import SharedStatements
from wayang.store.sqlite_connection import DIALECT, SYNCHRONOUS_LEVELS, connect, translate
from wayang.store.sqlite_deliveries import DeliveriesMixin

_TEMP_STORES = ("DEFAULT", "FILE", "MEMORY")


class SQLiteStore(DeliveriesMixin, SharedStatements):
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

    # ------------------------------------------------------------------ tasks

    # ------------------------------------------------------------------ timers

    # ------------------------------------------------------------------ signals

    def send_signal(self, signal: NewSignal) -> int:
        """Put ``signal`` in its run's inbox, pending; return its seq, which names it for good."""
        with self._write() as conn:
            return int(
                conn.execute(self._sql["insert_signal"], rows.signal_params(signal)).fetchone()[0]
            )

    # ------------------------------------------------------------------ topics

    def publish(self, message: NewTopicMessage) -> int:
        """Add ``message`` to its topic; return its seq, greater than every seq before it."""
        params = rows.topic_message_params(message)
        with self._write() as conn:
            return int(conn.execute(self._sql["insert_topic_message"], params).fetchone()[0])

    # ------------------------------------------------------------------ logs

    def append_logs(self, lines: Sequence[LogLine]) -> None:
        if not lines:
            return
        with self._write() as conn:
            conn.executemany(self._sql["insert_log"], map(rows.log_params, lines))

    # ------------------------------------------------------------------ dead letters

    # ------------------------------------------------------------------ key-value

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

    def wakeups(self, kinds: Collection[str]) -> None:
        """None: SQLite cannot tell other processes anything, so they poll the file."""
        return None

    def close(self) -> None:
        """Close the connection; closing twice is harmless."""
        with self._lock:
            self._conn.close()
