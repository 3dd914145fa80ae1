"""What the SQL stores share: every store method whose statements read the same in both dialects
(SQLite and PostgreSQL name their queries alike, and both drivers take a dict of parameters).

An adapter provides the rest: ``_sql`` (its named queries), ``_rows`` (one read), ``_write`` (one
transaction), ``commit`` and the delivery row reader ``_read``; where the dialects differ (group
commits, publishing, locking) the adapter has its own method.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from wayang.store import rows
from wayang.store.port import (
    DEFAULT_MAX_CLAIMS,
    DEFAULT_TENANT,
    DRIVER_SUFFIX,
    DRIVERS_FIRST_S,
    HANDED_OFF,
    Append,
    ClaimedTask,
    ClaimRequest,
    Completion,
    DeadLetter,
    Delivery,
    FanOut,
    FencedResult,
    LogLine,
    QueueStats,
    Reported,
    RunRecord,
    SignalRecord,
    SpilledTask,
    StoredEvent,
    StoreError,
    TakenRun,
    TaskRecord,
    Timer,
    TopicMessage,
    WorkerBeat,
    WorkerRecord,
)

DUPLICATE_COMPLETIONS = "duplicate_completions"
_by_available_at = itemgetter(-1)
# The hand-off's markers, for the queries that tell drivers' runs apart (store/port.py).
_DRIVERS = {"handed_off": HANDED_OFF, "driver_suffix": DRIVER_SUFFIX}


def _by_created(run: RunRecord) -> tuple[float, str]:
    return run.created_at, run.run_id


class _OfRun(Protocol):
    @property
    def run_id(self) -> str: ...


_Row = TypeVar("_Row", bound=_OfRun)


def _by_run(items: Iterable[_Row]) -> dict[str, list[_Row]]:
    """``items`` grouped by their run, each group in the order given."""
    grouped: dict[str, list[_Row]] = {}
    for item in items:
        grouped.setdefault(item.run_id, []).append(item)
    return grouped


def delivery_id(env: str, seq: int, step: str) -> str:
    return f"{env}/{seq}/{step}"


class SharedStatements:
    """The store methods both SQL adapters run the same way."""

    if TYPE_CHECKING:  # provided by the adapter
        _sql: Mapping[str, str]

        def _write(self) -> AbstractContextManager[Any]: ...

        def _rows(self, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]: ...

        def commit(
            self, appends: Sequence[Append], now: float, logs: Sequence[LogLine] = ()
        ) -> None: ...

    _completion_params: Mapping[str, Any] = {}
    """More parameters of the adapter's ``complete_task`` (PostgreSQL's wakes the engine)."""

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
            return bool(conn.execute(self._sql["lease_run"], params).rowcount == 1)

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
            return bool(conn.execute(self._sql["steal_run"], params).rowcount == 1)

    def release_run(self, run_id: str, owner: str) -> None:
        """Give up the lease on ``run_id`` so another engine may take it at once."""
        params = {**_DRIVERS, "run_id": run_id, "owner": owner}
        with self._write() as conn:
            released = conn.execute(self._sql["release_run"], params).rowcount == 1
            if released and owner.endswith(DRIVER_SUFFIX):
                self._handed_back(conn)

    def _handed_back(self, conn: Any) -> None:
        """A driver gave a run back to the drivers, in ``conn``'s transaction: a store that can
        wake them overrides this (PostgreSQL); elsewhere they find it at their next look."""

    def renew_leases(self, owner: str, now: float, lease_s: float) -> None:
        """Extend every lease ``owner`` holds, on runs and on tasks, in one transaction."""
        params = {"owner": owner, "lease_expires_at": now + lease_s}
        every_task = {**params, "every": True, "task_ids": self._text_array([])}
        with self._write() as conn:
            conn.execute(self._sql["renew_run_leases"], params)
            conn.execute(self._sql["renew_task_leases"], every_task)

    def orphaned_runs(self, now: float, limit: int = 100) -> list[RunRecord]:
        """Unfinished runs nobody drives: no lease, or one that ran out. Runs handed off to
        the drivers, and drivers' runs, only once the drivers had ``DRIVERS_FIRST_S``."""
        params = {**_DRIVERS, "now": now, "limit": limit, "drivers_first_s": DRIVERS_FIRST_S}
        return [rows.read_run(row) for row in self._rows("orphaned_runs", params)]

    def take_handed_off(
        self, owner: str, now: float, lease_s: float, limit: int = 100
    ) -> list[TakenRun]:
        """Lease to the driver ``owner`` up to ``limit`` runs handed off to the drivers, or
        left by a driver whose lease lapsed, oldest first; each with what adopting it needs,
        its open tasks leased to ``owner`` too (one transaction, five statements however many
        runs)."""
        lease = {"owner": owner, "lease_expires_at": now + lease_s}
        params = {**_DRIVERS, **lease, "now": now, "limit": limit}
        with self._write() as conn:
            found = conn.execute(self._sql["take_handed_off"], params).fetchall()
            if not found:
                return []
            records = sorted((rows.read_run(row) for row in found), key=_by_created)
            among = {"run_ids": self._text_array([record.run_id for record in records])}

            def read(name: str, **more: Any) -> list[Any]:
                return list(conn.execute(self._sql[name], {**among, **more}).fetchall())

            history = _by_run(map(rows.read_event, read("histories_of_runs")))
            completions = _by_run(map(rows.read_completion, read("completions_of_runs")))
            tasks = read("adopt_tasks_of_runs", **lease)
            tasks.sort(key=_by_available_at)
            claimed = _by_run(map(rows.read_claimed, tasks))
            timers = _by_run(map(rows.read_timer, read("timers_of_runs")))
        return [
            TakenRun(
                record,
                history.get(record.run_id, []),
                completions.get(record.run_id, []),
                claimed.get(record.run_id, []),
                timers.get(record.run_id, []),
            )
            for record in records
        ]

    def load_histories(self, run_ids: Sequence[str]) -> dict[str, list[StoredEvent]]:
        """The histories of ``run_ids`` in one read (unknown runs are left out)."""
        if not run_ids:
            return {}
        found = self._rows("histories_of_runs", {"run_ids": self._text_array(list(run_ids))})
        return _by_run(map(rows.read_event, found))

    def run_statuses(self, run_ids: Sequence[str]) -> dict[str, str]:
        """The status of each of ``run_ids`` in the store (unknown ones are left out)."""
        if not run_ids:
            return {}
        found = self._rows("run_statuses", {"run_ids": self._text_array(list(run_ids))})
        return {run_id: status for run_id, status in found}

    def claim(
        self,
        owner: str,
        now: float,
        lease_s: float,
        limit: int = 1,
        queue: str = "default",
        *,
        offers: Collection[str] | None = None,
        max_claims: int = DEFAULT_MAX_CLAIMS,
        max_running: int | None = None,
    ) -> list[ClaimedTask]:
        """Lease up to ``limit`` tasks of ``queue``, oldest first; each claim bumps the token.

        With ``offers`` (placement tokens) only tasks that need nothing else are taken. A
        worker's task whose lease lapsed is taken again while it was claimed fewer than
        ``max_claims`` times. With ``max_running`` the queue's worker tasks running after the
        claim stay within it (claimers of one queue take turns, so two never both fill it).
        """
        request = ClaimRequest(
            owner,
            lease_s,
            limit,
            queue,
            frozenset(offers) if offers is not None else None,
            max_claims,
            max_running,
        )
        if limit <= 0:
            return []
        with self._queue_write(queue, max_running is not None) as conn:
            return self._claim_in(conn, request, now)

    def _claim_in(self, conn: Any, request: ClaimRequest, now: float) -> list[ClaimedTask]:
        """Within a transaction (holding the queue's lock if ``max_running`` is set): claim."""
        return self._claimed(self._send_claim(conn, request, now))

    def _send_claim(self, conn: Any, request: ClaimRequest, now: float) -> Any:
        """Send the claim (within a transaction, as :meth:`_claim_in`); its cursor, for
        :meth:`_claimed`, or None if there is no room to claim anything."""
        limit, queue = request.limit, request.queue
        if request.max_running is not None:
            running = conn.execute(self._sql["queue_running"], {"queue": queue}).fetchone()
            limit = min(limit, request.max_running - int(running[0]))
        if limit <= 0:
            return None
        params = {
            "owner": request.owner,
            "now": now,
            "lease_expires_at": now + request.lease_s,
            "limit": limit,
            "queue": queue,
            "any_needs": request.offers is None,
            "offers": self._text_array(sorted(request.offers or ())),
            "max_claims": request.max_claims,
        }
        return conn.execute(self._sql["claim_tasks"], params)

    @staticmethod
    def _claimed(sent: Any) -> list[ClaimedTask]:
        """The tasks the claim sent on cursor ``sent`` took, oldest first."""
        if sent is None:
            return []
        claimed = sent.fetchall()
        claimed.sort(key=_by_available_at)
        return [rows.read_claimed(row) for row in claimed]

    def _text_array(self, values: list[str]) -> Any:
        """A list of strings as the dialect's query parameter (JSON text; PostgreSQL: text[])."""
        return rows.to_json(values)

    def _queue_write(self, queue: str, exclusive: bool) -> AbstractContextManager[Any]:
        """A write transaction for claiming from ``queue`` (``exclusive``: one claimer at a time;
        SQLite's write transactions take turns anyway)."""
        return self._write()

    def heartbeat(self, task_id: str, fencing_token: int, now: float, lease_s: float) -> bool:
        """Extend the lease, if the caller still holds it (status claimed, same token)."""
        params = {
            "task_id": task_id,
            "fencing_token": fencing_token,
            "lease_expires_at": now + lease_s,
        }
        with self._write() as conn:
            return bool(conn.execute(self._sql["heartbeat_task"], params).rowcount == 1)

    def complete(
        self, task_id: str, fencing_token: int, result: dict[str, Any], now: float
    ) -> bool:
        """Record the result if the token is current; otherwise count a duplicate, return False."""
        return self.complete_many([FencedResult(task_id, fencing_token, result)], now).counted[0]

    def complete_many(
        self,
        results: Sequence[FencedResult],
        now: float,
        logs: Sequence[LogLine] = (),
        *,
        then_claim: ClaimRequest | None = None,
    ) -> Reported:
        """Record several results and ``logs`` in one transaction, and (``then_claim``) claim
        more tasks in it: whether each result counted (its token was current; a stale one is
        counted as a duplicate) and what was claimed. A worker's results that end together,
        and the tasks that take their slots, cost one commit, and its engine one wake-up.
        (PostgreSQL has its own, which sends all of it in one round trip.)"""
        claiming = then_claim is not None and then_claim.limit > 0
        if not results and not logs and not claiming:
            return Reported([], [])
        with self._write() as conn:
            self._insert_logs(conn, logs)
            sent = [self._send_completion(conn, done, now) for done in results]
            claimed = self._claim_in(conn, then_claim, now) if then_claim and claiming else []
            counted = [cursor.rowcount == 1 for cursor in sent]
            for _ in range(counted.count(False)):
                conn.execute(self._sql["bump_counter"], {"name": DUPLICATE_COMPLETIONS})
        return Reported(counted, claimed)

    def _pipelined(self, conn: Any) -> AbstractContextManager[Any]:
        """Statements sent without waiting for each answer, where the dialect can (PostgreSQL);
        every answer is in when the block ends."""
        return contextlib.nullcontext()

    def _send_completion(self, conn: Any, done: FencedResult, now: float) -> Any:
        """Send the result's completion; its cursor says whether it counted (SQLite: its
        ``rowcount``; PostgreSQL: the row it answers)."""
        params = {
            "task_id": done.task_id,
            "fencing_token": done.fencing_token,
            "result": rows.to_json(done.result),
            "now": now,
            **self._completion_params,
        }
        return conn.execute(self._sql["complete_task"], params)

    def _insert_logs(self, conn: Any, logs: Sequence[LogLine]) -> None:
        """Within a transaction: store ``logs``."""
        if logs:
            conn.executemany(self._sql["insert_log"], [rows.log_params(line) for line in logs])

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

    def spill_tasks(self, owner: str, tasks: Sequence[SpilledTask]) -> list[str]:
        """Send tasks ``owner`` leased to itself and has not started to their queues, for any
        worker offering their ``needs``; return the ids of those moved (a task finished or
        taken over meanwhile stays as it is). The queues' workers are woken at commit."""
        with self._write() as conn:
            with self._pipelined(conn):
                sent = [
                    conn.execute(
                        self._sql["spill_task"],
                        {
                            "task_id": task.task_id,
                            "owner": owner,
                            "queue": task.queue,
                            "needs": rows.to_json(sorted(task.needs)),
                        },
                    )
                    for task in tasks
                ]
            moved = [task for task, cursor in zip(tasks, sent, strict=True) if cursor.rowcount == 1]
            self._tasks_queued(conn, sorted({task.queue for task in moved}))
        return [task.task_id for task in moved]

    def _tasks_queued(self, conn: Any, queues: Sequence[str]) -> None:
        """Tasks were queued in ``queues``, in ``conn``'s transaction: a store that can wake
        their workers overrides this (PostgreSQL); elsewhere workers find them when they ask."""

    def adopt_tasks(self, run_id: str, owner: str, now: float, lease_s: float) -> list[ClaimedTask]:
        """Lease every open task of ``run_id`` (queued, or leased by anyone) to ``owner``."""
        params = {
            "run_ids": self._text_array([run_id]),
            "owner": owner,
            "lease_expires_at": now + lease_s,
        }
        with self._write() as conn:
            found = conn.execute(self._sql["adopt_tasks_of_runs"], params).fetchall()
        found.sort(key=_by_available_at)
        return [rows.read_claimed(row) for row in found]

    def run_tasks(self, run_id: str) -> list[TaskRecord]:
        """Every task of ``run_id``, oldest first."""
        return [rows.read_task(row) for row in self._rows("run_tasks", {"run_id": run_id})]

    def worker_completions(self, owner: str, limit: int = 1000) -> list[Completion]:
        """Results workers recorded for runs ``owner`` drives, not yet acknowledged."""
        found = self._rows("worker_completions", {"owner": owner, "limit": limit})
        return [rows.read_completion(row) for row in found]

    def lapsed_tasks(
        self, owner: str, now: float, max_claims: int = DEFAULT_MAX_CLAIMS, limit: int = 100
    ) -> list[ClaimedTask]:
        """Workers' tasks of runs ``owner`` drives whose lease lapsed ``max_claims`` times."""
        params = {"owner": owner, "now": now, "max_claims": max_claims, "limit": limit}
        return [rows.read_claimed(row) for row in self._rows("lapsed_tasks", params)]

    def queue_stats(self, tenant: str = DEFAULT_TENANT) -> list[QueueStats]:
        """Every queue holding open tasks: how many wait, how many run, the oldest wait."""
        found = self._rows("queue_stats", {"tenant": tenant})
        return [rows.read_queue_stats(row) for row in found]

    def queue_depth(self, queue: str, tenant: str = DEFAULT_TENANT) -> int:
        """How many tasks wait in ``queue``."""
        return int(self._rows("queue_depth", {"queue": queue, "tenant": tenant})[0][0])

    def register_worker(self, worker: WorkerRecord) -> None:
        """Record a worker that starts (or starts again under the same id: the tasks an
        earlier process of that id still held lapse now, to be claimed again)."""
        lapse = {"owner": worker.worker_id, "now": worker.started_at}
        with self._write() as conn:
            conn.execute(self._sql["register_worker"], rows.worker_params(worker))
            conn.execute(self._sql["lapse_worker_tasks"], lapse)

    def heartbeat_worker(self, beat: WorkerBeat, now: float, lease_s: float) -> list[str]:
        """Note the worker alive, extend the leases of the tasks it runs (``beat.tasks``; all it
        holds if None), and return the ids of the tasks it still holds: a task it runs that is
        not among them was taken from it (its run was cancelled, or its lease lapsed and
        another worker has it)."""
        params = {
            "worker_id": beat.worker_id,
            "now": now,
            "state": beat.state,
            "running": beat.running,
            "done": beat.done,
            "failed": beat.failed,
        }
        lease = {
            "owner": beat.worker_id,
            "lease_expires_at": now + lease_s,
            "every": beat.tasks is None,
            "task_ids": self._text_array(sorted(beat.tasks or ())),
        }
        with self._write() as conn:
            conn.execute(self._sql["beat_worker"], params)
            conn.execute(self._sql["renew_task_leases"], lease)
            held = conn.execute(self._sql["held_tasks"], {"owner": beat.worker_id}).fetchall()
        return [row[0] for row in held]

    def list_workers(self, tenant: str = DEFAULT_TENANT) -> list[WorkerRecord]:
        """Every worker that registered and was not forgotten, oldest first."""
        return [rows.read_worker(row) for row in self._rows("list_workers", {"tenant": tenant})]

    def driven_runs(self, tenant: str = DEFAULT_TENANT) -> dict[str, int]:
        """How many unfinished runs each driver holds, by its owner id (``…:driver``)."""
        params = {"tenant": tenant, "pattern": "%" + DRIVER_SUFFIX}
        return {str(owner): int(count) for owner, count in self._rows("driven_runs", params)}

    def forget_workers(self, before: float, tenant: str = DEFAULT_TENANT) -> int:
        """Drop the records of workers silent since before ``before``; return how many."""
        with self._write() as conn:
            params = {"tenant": tenant, "before": before}
            return int(conn.execute(self._sql["forget_workers"], params).rowcount)

    def due_timers(self, now: float, limit: int = 100) -> list[Timer]:
        """Timers due by ``now``, soonest first; they stay until an append cancels them."""
        found = self._rows("due_timers", {"now": now, "limit": limit})
        return [rows.read_timer(row) for row in found]

    def run_timers(self, run_id: str) -> list[Timer]:
        """The pending timers of one run, soonest first."""
        found = self._rows("timers_of_runs", {"run_ids": self._text_array([run_id])})
        return [rows.read_timer(row) for row in found]

    def pending_signals(self, run_id: str) -> list[SignalRecord]:
        """The run's signals no append has answered yet, oldest first."""
        found = self._rows("pending_signals", {"run_id": run_id})
        return [rows.read_signal(row) for row in found]

    def pending_signals_of_runs(self, run_ids: Sequence[str]) -> dict[str, list[SignalRecord]]:
        """:meth:`pending_signals` of each of ``run_ids`` in one read (runs with none are
        left out)."""
        if not run_ids:
            return {}
        params = {"run_ids": self._text_array(list(run_ids))}
        return _by_run(map(rows.read_signal, self._rows("pending_signals_of_runs", params)))

    def get_signal(self, seq: int) -> SignalRecord | None:
        """Signal ``seq`` whatever its status (a sender asking what became of it), or None."""
        found = self._rows("get_signal", {"seq": seq})
        return rows.read_signal(found[0]) if found else None

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

    def read_logs(
        self, run_id: str, step_id: str | None = None, after_seq: int = 0, limit: int = 1000
    ) -> list[LogLine]:
        """A run's lines (or one step's) after ``after_seq``, in order: page with the last seq."""
        params = {"run_id": run_id, "step_id": step_id, "after_seq": after_seq, "limit": limit}
        name = "read_logs" if step_id is None else "read_logs_for_step"
        return [rows.read_log(row) for row in self._rows(name, params)]

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

    def kv_get(self, namespace: str, key: str) -> Any:
        """The value stored under ``namespace``/``key``, or None."""
        found = self._rows("kv_get", {"namespace": namespace, "key": key})
        return rows.from_json(found[0][0]) if found else None

    def kv_set(self, namespace: str, key: str, value: Any) -> None:
        params = {"namespace": namespace, "key": key, "value": rows.to_json(value)}
        with self._write() as conn:
            conn.execute(self._sql["kv_set"], params)

    def kv_delete(self, namespace: str, key: str) -> None:
        with self._write() as conn:
            conn.execute(self._sql["kv_delete"], {"namespace": namespace, "key": key})

    def kv_scan(self, namespace: str) -> dict[str, Any]:
        """Every key and value of ``namespace``."""
        found = self._rows("kv_scan", {"namespace": namespace})
        return {key: rows.from_json(value) for key, value in found}

    def kv_count(self, namespace: str) -> int:
        """How many keys ``namespace`` holds (counted in the store: none of them is read)."""
        return int(self._rows("kv_count", {"namespace": namespace})[0][0])

    def kv_key_ending(self, namespace: str, suffix: str) -> str | None:
        """The first key of ``namespace`` that ends with ``suffix``, if any (found in the
        store, so what a namespace holds is not read to look for one key)."""
        params = {"namespace": namespace, "suffix": suffix, "length": len(suffix)}
        found = self._rows("kv_key_ending", params)
        return str(found[0][0]) if found else None

    def kv_page(self, namespace: str, after: str = "", limit: int = 100) -> dict[str, Any]:
        """The first ``limit`` keys of ``namespace`` after ``after``, with their values, in
        order."""
        params = {"namespace": namespace, "after": after, "limit": limit}
        return {key: rows.from_json(value) for key, value in self._rows("kv_page", params)}

    def kv_namespaces(self, prefix: str) -> list[str]:
        """The namespaces that start with ``prefix`` and hold at least one key, in order."""
        return [namespace for (namespace,) in self._rows("kv_namespaces", {"prefix": prefix})]


class SharedDeliveryStatements:
    """The delivery methods both SQL adapters run the same way."""

    if TYPE_CHECKING:  # provided by the adapter
        _sql: Mapping[str, str]

        def _write(self) -> AbstractContextManager[Any]: ...

        def _rows(self, name: str, params: dict[str, Any]) -> list[tuple[Any, ...]]: ...

        def _read(self, ids: Sequence[str]) -> list[Delivery]: ...

    @staticmethod
    def _deliveries_for(
        fan_out: FanOut, messages: Iterator[TopicMessage], now: float
    ) -> Iterator[dict[str, Any]]:
        lease_expires_at = now + fan_out.lease_s
        for message in messages:
            for step, max_attempts in fan_out.subscriptions.get(message.topic, ()):
                yield {
                    "delivery_id": delivery_id(fan_out.env, message.seq, step),
                    "tenant": fan_out.tenant,
                    "env": fan_out.env,
                    "step": step,
                    "message_seq": message.seq,
                    "topic": message.topic,
                    "trace_id": message.trace_id,
                    "key": message.key,
                    "max_attempts": max_attempts,
                    "now": now,
                    "owner": fan_out.owner,
                    "lease_expires_at": lease_expires_at,
                }

    def renew_delivery_leases(self, owner: str, now: float, lease_s: float) -> None:
        with self._write() as conn:
            params = {"owner": owner, "now": now, "lease_s": lease_s}
            conn.execute(self._sql["renew_delivery_leases"], params)

    def list_deliveries(
        self,
        *,
        trace_id: str | None = None,
        status: str | None = None,
        env: str | None = None,
        step: str | None = None,
        limit: int = 200,
        tenant: str = DEFAULT_TENANT,
    ) -> list[Delivery]:
        """Deliveries matching every filter given, in message order."""
        params = {
            "tenant": tenant,
            "trace_id": trace_id,
            "status": status,
            "env": env,
            "step": step,
            "limit": limit,
        }
        return [rows.read_delivery(row) for row in self._rows("list_deliveries", params)]

    def replay_delivery(
        self, delivery_id: str, now: float, tenant: str = DEFAULT_TENANT
    ) -> Delivery | None:
        """Make a dead delivery due again with fresh attempts; None if there is no such one."""
        params = {"delivery_id": delivery_id, "now": now, "tenant": tenant}
        with self._write() as conn:
            done = conn.execute(self._sql["replay_delivery"], params).fetchall()
        found = self._read([done[0][0]]) if done else []
        return found[0] if found else None

    def trace_messages(self, trace_id: str, limit: int = 1000) -> list[TopicMessage]:
        """The messages published in trace ``trace_id``, in order."""
        found = self._rows("trace_messages", {"trace_id": trace_id, "limit": limit})
        return [rows.read_topic_message(row) for row in found]
