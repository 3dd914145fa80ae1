"""Between the port's dataclasses and database rows: JSON text out, parameter dicts in.

Kept apart from any one adapter: the SQL files of every dialect select columns in the order these
readers unpack them, so a PostgreSQL adapter can reuse them as they are.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from wayang.store.port import (
    SIGNAL_ANSWERS,
    Append,
    ClaimedTask,
    Completion,
    ConcurrencyError,
    DeadLetter,
    Delivery,
    LogLine,
    NewSignal,
    NewTask,
    NewTopicMessage,
    QueueStats,
    RunRecord,
    SignalRecord,
    StoredEvent,
    StoreError,
    TaskRecord,
    Timer,
    TopicMessage,
    WorkerRecord,
)

Row = tuple[Any, ...]
Params = dict[str, Any]

# Compact separators: payloads are stored many times over, and nobody reads the raw text.
_encoder = json.JSONEncoder(separators=(",", ":"))


def to_json(value: Any) -> str:
    """Encode ``value`` as compact JSON text.

    orjson on the hot path (every event is encoded once); the standard encoder for what orjson
    refuses but JSON allows from Python (integers beyond 64 bits, non-string keys).
    """
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return _encoder.encode(value)


def from_json(text: str | None) -> Any:
    """Decode JSON text; a missing value (SQL NULL) reads as ``None``."""
    return None if text is None else orjson.loads(text)


# ------------------------------------------------------------------------------------ params


def run_params(run: RunRecord) -> Params:
    return {
        "run_id": run.run_id,
        "tenant": run.tenant,
        "workflow_id": run.workflow_id,
        "status": run.status,
        "spec": to_json(run.spec),
        "created_at": run.created_at,
        "updated_at": run.updated_at,
        "owner": run.owner,
        "lease_expires_at": run.lease_expires_at,
    }


def event_params(append: Append, tenant: str, now: float) -> Iterator[Params]:
    """The rows of ``append``'s events, numbered on from the version it expected."""
    for offset, event in enumerate(append.events, start=1):
        yield {
            "run_id": append.run_id,
            "seq": append.expected_version + offset,
            "tenant": tenant,
            "type": event.type,
            "data": to_json(event.data),
            "version": event.version,
            "at": now,
        }


def task_params(task: NewTask) -> Params:
    return {
        "task_id": task.task_id,
        "tenant": task.tenant,
        "run_id": task.run_id,
        "step_id": task.step_id,
        "attempt": task.attempt,
        "idempotency_key": task.idempotency_key,
        "queue": task.queue,
        "payload": to_json(task.payload),
        "available_at": task.available_at,
        "status": "queued" if task.owner is None else "claimed",
        "owner": task.owner,
        "lease_expires_at": task.lease_expires_at,
        "fencing_token": 0 if task.owner is None else 1,
        "needs": to_json(sorted(task.needs)),
        "remote": task.owner is None,
    }


def timer_params(timer: Timer) -> Params:
    return {
        "timer_id": timer.timer_id,
        "tenant": timer.tenant,
        "run_id": timer.run_id,
        "due_at": timer.due_at,
        "payload": to_json(timer.payload),
    }


def log_params(line: LogLine) -> Params:
    return {
        "run_id": line.run_id,
        "step_id": line.step_id,
        "attempt": line.attempt,
        "stream": line.stream,
        "line": line.line,
        "at": line.at,
    }


def dead_letter_params(letter: DeadLetter) -> Params:
    return {
        "dlq_id": letter.dlq_id,
        "tenant": letter.tenant,
        "run_id": letter.run_id,
        "step_id": letter.step_id,
        "attempts": letter.attempts,
        "error": letter.error,
        "payload": to_json(letter.payload),
        "at": letter.at,
    }


def signal_params(signal: NewSignal) -> Params:
    return {
        "tenant": signal.tenant,
        "run_id": signal.run_id,
        "step_id": signal.step_id,
        "kind": signal.kind,
        "actor": signal.actor,
        "data": to_json(signal.data),
        "created_at": signal.created_at,
    }


def answer_params(append: Append, now: float) -> Iterator[Params]:
    """The updates answering ``append``'s signals; an answer must say accepted or rejected.

    Checked here rather than left to the table's CHECK, which allows 'pending': an answer that
    set it would look handled to the engine and still wait in the inbox.
    """
    for answer in append.answer_signals:
        if answer.status not in SIGNAL_ANSWERS:
            raise StoreError(
                f"signal {answer.seq} of run {append.run_id} was answered {answer.status!r}; "
                f"an answer is one of {', '.join(SIGNAL_ANSWERS)}"
            )
        yield {
            "seq": answer.seq,
            "run_id": append.run_id,
            "status": answer.status,
            "outcome": answer.outcome,
            "now": now,
        }


def topic_message_params(message: NewTopicMessage) -> Params:
    return {
        "tenant": message.tenant,
        "topic": message.topic,
        "data": to_json(message.data),
        "key": message.key,
        "trace_id": message.trace_id,
        "source": message.source,
        "created_at": message.created_at,
    }


# ------------------------------------------------------------------------------------ readers


def read_run(row: Row) -> RunRecord:
    run_id, tenant, workflow_id, status, version, spec, created_at, updated_at, owner, lease = row
    return RunRecord(
        run_id=run_id,
        workflow_id=workflow_id,
        status=status,
        created_at=created_at,
        updated_at=updated_at,
        version=version,
        spec=from_json(spec),
        tenant=tenant,
        owner=owner,
        lease_expires_at=lease,
    )


def read_event(row: Row) -> StoredEvent:
    run_id, seq, type_, data, version, at = row
    return StoredEvent(run_id, seq, type_, from_json(data), version, at)


def read_claimed(row: Row) -> ClaimedTask:
    """A claimed task; the row's last column (``available_at``) only orders the claim."""
    task_id, run_id, step_id, attempt, key, payload, owner, token, lease, tenant, _ = row
    return ClaimedTask(
        task_id=task_id,
        run_id=run_id,
        step_id=step_id,
        attempt=attempt,
        idempotency_key=key,
        payload=from_json(payload),
        owner=owner,
        fencing_token=token,
        lease_expires_at=lease,
        tenant=tenant,
    )


def read_task(row: Row) -> TaskRecord:
    task_id, step_id, attempt, status, payload, owner, available_at, lease = row
    return TaskRecord(
        task_id, step_id, attempt, status, from_json(payload), owner, available_at, lease
    )


def read_completion(row: Row) -> Completion:
    task_id, run_id, step_id, attempt, result, completed_at = row
    return Completion(task_id, run_id, step_id, attempt, from_json(result), completed_at)


def read_timer(row: Row) -> Timer:
    timer_id, run_id, due_at, payload, tenant = row
    return Timer(timer_id, run_id, due_at, from_json(payload), tenant)


def read_log(row: Row) -> LogLine:
    run_id, step_id, attempt, stream, line, at, seq = row
    return LogLine(run_id, step_id, attempt, stream, line, at, seq)


def read_dead_letter(row: Row) -> DeadLetter:
    dlq_id, run_id, step_id, attempts, error, payload, at, tenant = row
    return DeadLetter(dlq_id, run_id, step_id, attempts, error, from_json(payload), at, tenant)


def read_signal(row: Row) -> SignalRecord:
    seq, run_id, step_id, kind, actor, data, created_at, status, outcome, handled_at, tenant = row
    return SignalRecord(
        seq=seq,
        run_id=run_id,
        step_id=step_id,
        kind=kind,
        actor=actor,
        data=from_json(data),
        created_at=created_at,
        status=status,
        outcome=outcome,
        handled_at=handled_at,
        tenant=tenant,
    )


def read_topic_message(row: Row) -> TopicMessage:
    seq, topic, data, created_at, key, trace_id, source, tenant = row
    return TopicMessage(seq, topic, from_json(data), created_at, key, trace_id, source, tenant)


def read_delivery(row: Row) -> Delivery:
    (delivery_id, env, step, seq, topic, data, trace_id, key, status, attempt, limit, due_at,
     token, error, created_at, finished_at, source, tenant) = row  # fmt: skip
    return Delivery(
        delivery_id, env, step, seq, topic, from_json(data), trace_id, key, status, attempt,
        limit, due_at, token, error, created_at, finished_at, source, tenant,
    )  # fmt: skip


# ------------------------------------------------------------------------------ group commits


@dataclass(slots=True)
class VersionMove:
    """One run's appends in a group: the version the first expects, where the last leaves it."""

    first: Append
    version: int
    status: str | None


def by_run(appends: Sequence[Append]) -> Iterator[tuple[str, VersionMove]]:
    """Each run's appends folded into one version move; they must chain one after another."""
    moves: dict[str, VersionMove] = {}
    for append in appends:
        move = moves.get(append.run_id)
        if move is None:
            moves[append.run_id] = VersionMove(
                append, append.expected_version + len(append.events), append.status
            )
            continue
        if append.expected_version != move.version:
            raise ConcurrencyError(
                f"appends of run {append.run_id} in one commit do not chain: one expects "
                f"version {append.expected_version} after another left it at {move.version}",
                append.run_id,
            )
        move.version += len(append.events)
        move.status = append.status or move.status
    yield from moves.items()


def worker_params(worker: WorkerRecord) -> Params:
    return {
        "worker_id": worker.worker_id,
        "tenant": worker.tenant,
        "host": worker.host,
        "pid": worker.pid,
        "version": worker.version,
        "capabilities": to_json(list(worker.capabilities)),
        "labels": to_json(dict(worker.labels)),
        "queues": to_json(list(worker.queues)),
        "slots": worker.slots,
        "state": worker.state,
        "started_at": worker.started_at,
        "heartbeat_at": worker.heartbeat_at,
    }


def read_worker(row: Row) -> WorkerRecord:
    (worker_id, host, pid, version, caps, labels, queues, slots, state, started, beat) = row[:11]
    running, done, failed, tenant = row[11:]
    return WorkerRecord(
        worker_id=worker_id,
        host=host,
        pid=pid,
        version=version,
        capabilities=from_json(caps),
        labels=from_json(labels),
        queues=from_json(queues),
        slots=slots,
        state=state,
        started_at=started,
        heartbeat_at=beat,
        running=running,
        done=done,
        failed=failed,
        tenant=tenant,
    )


def read_queue_stats(row: Row) -> QueueStats:
    queue, queued, running, oldest = row
    return QueueStats(queue, int(queued or 0), int(running or 0), oldest)
