-- Named queries of the PostgreSQL store. Each block starts with a "-- name: xxx" line; the names
-- are those of the SQLite store's queries wherever the two do the same thing. Parameters are
-- written :like_this, as for SQLite; wayang.store.postgres_connection turns them into psycopg's
-- %(like_this)s when the file is loaded (a "::" cast is left alone, and a literal % needs no
-- escaping here). A parameter that may be NULL where nothing else says its type carries a cast
-- (:status::text IS NULL), since PostgreSQL types every parameter before it sees the values.
-- Column order in SELECT and RETURNING lists is what the row readers in wayang.store.rows
-- expect.
--
-- Locks. Claims lock what they take with FOR UPDATE SKIP LOCKED, so concurrent claimers pass
-- each other's rows by instead of waiting or taking them twice. A statement that changes many
-- rows others may change too (renewing leases, adopting a run's tasks) locks them first in id
-- order, so two such transactions never wait on each other in a circle (a deadlock).

-- ---------------------------------------------------------------------------------- store

-- The store's tables in the schema it lives in: with no wayang_schema among them, a schema that
-- holds tables belongs to another program and is never touched.
-- name: list_tables
SELECT tablename FROM pg_tables WHERE schemaname = :schema ORDER BY tablename;

-- name: schema_exists
SELECT 1 FROM pg_namespace WHERE nspname = :schema;

-- The schema version, once wayang_schema is known to exist.
-- name: schema_version
SELECT coalesce(max(version), 0) FROM wayang_schema;

-- One row per schema version applied: the marker of a Wayang store, and its history.
-- name: create_schema_table
CREATE TABLE wayang_schema (
    version INTEGER PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- name: record_version
INSERT INTO wayang_schema (version) VALUES (:version);

-- Transaction-scoped advisory locks, taken in the order given (the caller sorts the keys, so
-- every transaction takes them in one global order) and released by COMMIT or ROLLBACK.
-- name: take_locks
SELECT pg_advisory_xact_lock(lock_key) FROM unnest(:keys::bigint[]) AS lock_key;

-- ---------------------------------------------------------------------------------- runs

-- ON CONFLICT DO NOTHING: the caller learns of an existing run from the empty answer.
-- name: insert_run
INSERT INTO runs (
    run_id, tenant, workflow_id, status, version, spec, created_at, updated_at, owner,
    lease_expires_at
)
VALUES (
    :run_id, :tenant, :workflow_id, :status, 0, :spec, :created_at, :updated_at, :owner,
    :lease_expires_at
)
ON CONFLICT (run_id) DO NOTHING
RETURNING run_id;

-- Several runs created by one group commit, in one statement; a run missing from the answer
-- existed already.
-- name: insert_runs
INSERT INTO runs (
    run_id, tenant, workflow_id, status, version, spec, created_at, updated_at, owner,
    lease_expires_at
)
SELECT n.run_id, n.tenant, n.workflow_id, n.status, 0, n.spec, n.created_at, n.updated_at,
    n.owner, n.lease_expires_at
FROM unnest(
    :run_ids::text[], :tenants::text[], :workflow_ids::text[], :statuses::text[],
    :specs::text[], :created_ats::float8[], :updated_ats::float8[], :owners::text[],
    :lease_expires_ats::float8[]
) AS n (
    run_id, tenant, workflow_id, status, spec, created_at, updated_at, owner, lease_expires_at
)
ON CONFLICT (run_id) DO NOTHING
RETURNING run_id;

-- A group commit's runs: checked at their expected versions and moved on, or the transaction
-- fails (advance_runs in schema.sql). Nothing comes back, so nothing waits for it.
-- name: advance_runs
SELECT advance_runs(
    :run_ids::text[], :expected_versions::bigint[], :new_versions::bigint[], :statuses::text[],
    :now
);

-- The tenants of a group commit's runs, for events copied in (COPY names every column).
-- name: run_tenants
SELECT run_id, tenant FROM runs WHERE run_id = ANY(:run_ids::text[]);

-- name: get_run
SELECT run_id, tenant, workflow_id, status, version, spec, created_at, updated_at, owner,
    lease_expires_at
FROM runs
WHERE run_id = :run_id AND tenant = :tenant;

-- name: list_runs
SELECT run_id, tenant, workflow_id, status, version, spec, created_at, updated_at, owner,
    lease_expires_at
FROM runs
WHERE tenant = :tenant
ORDER BY created_at DESC, run_id DESC
LIMIT :limit;

-- A page of runs, newest first, after the cursor (created_at, run_id) of the page before.
-- name: page_runs
SELECT run_id, tenant, workflow_id, status, version, spec, created_at, updated_at, owner,
    lease_expires_at
FROM runs
WHERE tenant = :tenant
    AND (:status::text IS NULL OR status = :status)
    AND (:workflow_id::text IS NULL OR workflow_id = :workflow_id)
    AND (created_at < :before_at OR (created_at = :before_at AND run_id < :before_id))
ORDER BY created_at DESC, run_id DESC
LIMIT :limit;

-- name: list_runs_by_status
SELECT run_id, tenant, workflow_id, status, version, spec, created_at, updated_at, owner,
    lease_expires_at
FROM runs
WHERE tenant = :tenant AND status = :status
ORDER BY created_at DESC, run_id DESC
LIMIT :limit;

-- name: lease_run
UPDATE runs
SET owner = :owner, lease_expires_at = :lease_expires_at
WHERE run_id = :run_id
    AND (owner IS NULL OR owner = :owner OR lease_expires_at IS NULL OR lease_expires_at <= :now);

-- Take a run from a given owner (NULL for none) whatever its lease: the caller knows that
-- owner is gone (a dead process on this host).
-- name: steal_run
UPDATE runs
SET owner = :owner, lease_expires_at = :lease_expires_at
WHERE run_id = :run_id AND owner IS NOT DISTINCT FROM :previous_owner::text;

-- A driver's run goes back to the drivers (see take_handed_off), and engines adopting orphans
-- leave it to them until its lease would have lapsed; any other run goes to nobody.
-- name: release_run
UPDATE runs
SET owner = CASE WHEN owner LIKE '%' || :driver_suffix::text THEN :handed_off::text END,
    lease_expires_at = CASE WHEN owner LIKE '%' || :driver_suffix::text THEN lease_expires_at END
WHERE run_id = :run_id AND owner = :owner;

-- name: renew_run_leases
WITH held AS (
    SELECT run_id FROM runs
    WHERE owner = :owner AND status NOT IN ('succeeded', 'failed', 'cancelled')
    ORDER BY run_id
    FOR UPDATE
)
UPDATE runs
SET lease_expires_at = :lease_expires_at
FROM held
WHERE runs.run_id = held.run_id;

-- The status test repeats the partial index's WHERE so the planner can use runs_unfinished.
-- Runs handed off to drivers, or drivers' whose lease lapsed, are left to the drivers for
-- :drivers_first_s seconds (take_handed_off).
-- name: orphaned_runs
SELECT run_id, tenant, workflow_id, status, version, spec, created_at, updated_at, owner,
    lease_expires_at
FROM runs
WHERE status NOT IN ('succeeded', 'failed', 'cancelled')
    AND (lease_expires_at IS NULL OR lease_expires_at <= :now)
    AND NOT (coalesce(owner, '') = :handed_off::text AND updated_at > :now - :drivers_first_s)
    AND NOT (coalesce(owner, '') LIKE '%' || :driver_suffix::text
        AND coalesce(lease_expires_at, 0) > :now - :drivers_first_s)
ORDER BY lease_expires_at NULLS FIRST, run_id
LIMIT :limit;

-- Runs handed off to drivers ('wayang worker --drive'), and drivers' runs whose lease lapsed,
-- leased to the driver :owner, oldest first; runs another driver is taking are skipped.
-- name: take_handed_off
WITH picked AS (
    SELECT run_id FROM runs
    WHERE status NOT IN ('succeeded', 'failed', 'cancelled')
        AND (owner = :handed_off::text
            OR (owner LIKE '%' || :driver_suffix::text AND lease_expires_at <= :now))
    ORDER BY created_at, run_id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
UPDATE runs
SET owner = :owner, lease_expires_at = :lease_expires_at
FROM picked
WHERE runs.run_id = picked.run_id
RETURNING runs.run_id, runs.tenant, runs.workflow_id, runs.status, runs.version, runs.spec,
    runs.created_at, runs.updated_at, runs.owner, runs.lease_expires_at;

-- What adopting runs needs, for all of them at once (take_handed_off; adopt_tasks and
-- run_timers with one run): their histories, unacknowledged results, open tasks (leased to
-- the new owner, each with a new fencing token) and timers.
-- name: histories_of_runs
SELECT run_id, seq, type, data, version, at
FROM events
WHERE run_id = ANY(:run_ids::text[])
ORDER BY run_id, seq;

-- name: completions_of_runs
SELECT task_id, run_id, step_id, attempt, result, completed_at
FROM tasks
WHERE status = 'completed' AND run_id = ANY(:run_ids::text[])
ORDER BY completed_at, task_id;

-- name: adopt_tasks_of_runs
WITH open_tasks AS (
    SELECT task_id FROM tasks
    WHERE run_id = ANY(:run_ids::text[]) AND status IN ('queued', 'claimed') AND NOT remote
    ORDER BY task_id
    FOR UPDATE
)
UPDATE tasks
SET status = 'claimed', owner = :owner, lease_expires_at = :lease_expires_at,
    fencing_token = tasks.fencing_token + 1
FROM open_tasks
WHERE tasks.task_id = open_tasks.task_id AND tasks.status IN ('queued', 'claimed')
RETURNING tasks.task_id, tasks.run_id, tasks.step_id, tasks.attempt, tasks.idempotency_key,
    tasks.payload, tasks.owner, tasks.fencing_token, tasks.lease_expires_at, tasks.tenant,
    tasks.available_at;

-- name: timers_of_runs
SELECT timer_id, run_id, due_at, payload, tenant
FROM timers
WHERE run_id = ANY(:run_ids::text[])
ORDER BY due_at, timer_id;

-- name: run_statuses
SELECT run_id, status FROM runs
WHERE run_id = ANY(:run_ids::text[]);

-- ---------------------------------------------------------------------------------- events

-- A group commit's events: an INSERT a row when they are few, copied in when they are many
-- (COPY costs two round trips, but far less work for the server a row). An INSERT takes the
-- event's tenant from its run, so the commit need not read it first.
-- name: insert_event
INSERT INTO events (run_id, seq, tenant, type, data, version, at)
SELECT :run_id, :seq, tenant, :type, :data, :version, :at FROM runs WHERE run_id = :run_id;

-- name: copy_events
COPY events (run_id, seq, tenant, type, data, version, at) FROM STDIN

-- name: load_history
SELECT run_id, seq, type, data, version, at
FROM events
WHERE run_id = :run_id AND seq > :after_seq
ORDER BY seq;

-- ---------------------------------------------------------------------------------- tasks

-- A group commit's tasks, as its events: an INSERT each when few, copied in when many. A task
-- the engine runs itself goes in already leased to it (status 'claimed', token 1); one the same
-- group also finishes, consumed.
-- name: insert_task
INSERT INTO tasks (
    task_id, tenant, run_id, step_id, attempt, idempotency_key, queue, payload, available_at,
    status, owner, lease_expires_at, fencing_token, needs, remote, completed_at
)
VALUES (
    :task_id, :tenant, :run_id, :step_id, :attempt, :idempotency_key, :queue, :payload,
    :available_at, :status, :owner, :lease_expires_at, :fencing_token, :needs, :remote,
    :completed_at
);

-- name: copy_tasks
COPY tasks (
    task_id, tenant, run_id, step_id, attempt, idempotency_key, queue, payload, available_at,
    status, owner, lease_expires_at, fencing_token, needs, remote, completed_at
) FROM STDIN

-- Claim in one statement: the oldest available queued tasks, and claimed ones whose lease ran
-- out, ordered by when they became available. Each branch reads its own partial index, locks
-- what it finds with SKIP LOCKED (a task another claimer is taking right now is passed by, not
-- waited for, and never taken twice) and stops after :limit rows. FOR UPDATE is not allowed
-- on a UNION, hence a CTE per branch; rows a branch locked beyond the final :limit stay as they
-- were and are unlocked at commit. The RETURNING rows come back in no set order; the caller
-- sorts them by the last column.
-- name: claim_tasks
WITH queued AS (
    SELECT task_id, available_at FROM tasks
    WHERE status = 'queued' AND queue = :queue AND available_at <= :now
        AND (:any_needs OR needs = '[]' OR NOT EXISTS (
            SELECT 1 FROM json_array_elements_text(tasks.needs::json) AS need (token)
            WHERE NOT need.token = ANY(:offers::text[])
        ))
    ORDER BY available_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
), expired AS (
    SELECT task_id, available_at FROM tasks
    WHERE status = 'claimed' AND lease_expires_at <= :now AND queue = :queue
        AND remote AND fencing_token < :max_claims
        AND (:any_needs OR needs = '[]' OR NOT EXISTS (
        SELECT 1 FROM json_array_elements_text(tasks.needs::json) AS need (token)
        WHERE NOT need.token = ANY(:offers::text[])
    ))
    ORDER BY available_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT task_id FROM (SELECT * FROM queued UNION ALL SELECT * FROM expired) AS candidates
    ORDER BY available_at
    LIMIT :limit
)
UPDATE tasks
SET status = 'claimed', owner = :owner, lease_expires_at = :lease_expires_at,
    fencing_token = tasks.fencing_token + 1
FROM picked
WHERE tasks.task_id = picked.task_id
RETURNING tasks.task_id, tasks.run_id, tasks.step_id, tasks.attempt, tasks.idempotency_key,
    tasks.payload, tasks.owner, tasks.fencing_token, tasks.lease_expires_at, tasks.tenant,
    tasks.available_at;

-- A run's tasks, oldest first (what each attempt ran with, and whether it runs now).
-- name: run_tasks
SELECT task_id, step_id, attempt, status, payload, owner, available_at, lease_expires_at
FROM tasks
WHERE run_id = :run_id
ORDER BY available_at, task_id;

-- name: heartbeat_task
UPDATE tasks
SET lease_expires_at = :lease_expires_at
WHERE task_id = :task_id AND status = 'claimed' AND fencing_token = :fencing_token;

-- The fencing token makes the first completion win and rejects a stale worker's. The engine
-- driving the task's run hears of it (a wake-up, sent once however many of its tasks a
-- transaction completes), in the same statement: one round trip, not two. A row if it counted;
-- if not, the statement counts the refusal itself (duplicate_completions), so nothing waits for
-- its answer before COMMIT.
-- name: complete_task
WITH done AS (
    UPDATE tasks
    SET status = 'completed', result = :result, completed_at = :now, lease_expires_at = NULL
    WHERE task_id = :task_id AND status = 'claimed' AND fencing_token = :fencing_token
    RETURNING run_id
), refused AS (
    INSERT INTO counters (name, value)
    SELECT 'duplicate_completions', 1 WHERE NOT EXISTS (SELECT FROM done)
    ON CONFLICT (name) DO UPDATE SET value = counters.value + 1
)
SELECT (
    SELECT pg_notify(:channel, 'completion:' || r.owner)
    FROM runs AS r
    WHERE r.run_id = done.run_id AND r.owner IS NOT NULL
)
FROM done;

-- Wake-ups (NOTIFY): delivered to listeners only when the transaction commits, and only once
-- per channel and payload however often a transaction sends it. Payloads say what happened to
-- whom ("task:<queue>", "completion:<engine>"), so a listener decides without a query.
-- name: notify
SELECT pg_notify(:channel, payload) FROM unnest(:payloads::text[]) AS payload;

-- name: completions
SELECT task_id, run_id, step_id, attempt, result, completed_at
FROM tasks
WHERE status = 'completed'
ORDER BY completed_at, task_id
LIMIT :limit;

-- name: completions_for_run
SELECT task_id, run_id, step_id, attempt, result, completed_at
FROM tasks
WHERE status = 'completed' AND run_id = :run_id
ORDER BY completed_at, task_id
LIMIT :limit;

-- The tasks an append consumes or finishes, locked in id order before it changes them.
-- name: lock_tasks
SELECT task_id FROM tasks
WHERE task_id = ANY(:task_ids::text[])
ORDER BY task_id
FOR UPDATE;

-- The run's check is written so that no index can serve it and the primary key finds the
-- row: on a table without statistics yet (just filled), the planner took tasks_completed for
-- run_id and scanned every completed task of the run for each one consumed, which made a
-- fanout through workers quadratic (docs/performance.md, session 15).
-- name: consume_completion
UPDATE tasks
SET status = 'consumed'
WHERE task_id = :task_id AND status = 'completed' AND (run_id = :run_id) IS TRUE;

-- The events of the same append record the task's outcome: whatever its state, it is done.
-- name: finish_task
UPDATE tasks
SET status = 'consumed', completed_at = coalesce(completed_at, :now), lease_expires_at = NULL
WHERE task_id = :task_id AND run_id = :run_id AND status != 'consumed';

-- A worker renews the tasks it says it runs (:every: all it holds, for one that does not say).
-- name: renew_task_leases
WITH held AS (
    SELECT task_id FROM tasks
    WHERE owner = :owner AND status = 'claimed'
        AND (:every OR task_id = ANY(:task_ids::text[]))
    ORDER BY task_id
    FOR UPDATE
)
UPDATE tasks
SET lease_expires_at = :lease_expires_at
FROM held
WHERE tasks.task_id = held.task_id AND tasks.status = 'claimed';

-- A worker starting under an id that holds tasks (an earlier process with that id, killed)
-- runs none of them: their leases end now, so they are claimed again at once rather than
-- renewed for ever by the new process's heartbeats.
-- name: lapse_worker_tasks
WITH held AS (
    SELECT task_id FROM tasks
    WHERE owner = :owner AND status = 'claimed'
    ORDER BY task_id
    FOR UPDATE
)
UPDATE tasks
SET lease_expires_at = :now
FROM held
WHERE tasks.task_id = held.task_id AND tasks.status = 'claimed';

-- A task an engine leased to itself and has not started, queued for any worker instead (a
-- driver's steps that would wait too long for its slots: runtime/spill.py). No worker ever
-- held it, so no fencing token is spent on it yet.
-- name: spill_task
UPDATE tasks
SET status = 'queued', owner = NULL, lease_expires_at = NULL, fencing_token = 0,
    remote = true, queue = :queue, needs = :needs
WHERE task_id = :task_id AND owner = :owner AND status = 'claimed' AND NOT remote;

-- A task locked right now (being completed, or claimed) is passed by: its holder decides.
-- name: requeue_expired
WITH expired AS (
    SELECT task_id FROM tasks
    WHERE status = 'claimed' AND lease_expires_at <= :now
    FOR UPDATE SKIP LOCKED
)
UPDATE tasks
SET status = 'queued', owner = NULL, lease_expires_at = NULL
FROM expired
WHERE tasks.task_id = expired.task_id;

-- Results workers recorded for the runs ``:owner`` drives, not yet folded into their histories.
-- name: worker_completions
SELECT t.task_id, t.run_id, t.step_id, t.attempt, t.result, t.completed_at
FROM tasks AS t
JOIN runs AS r ON r.run_id = t.run_id
WHERE t.status = 'completed' AND t.remote AND r.owner = :owner
ORDER BY t.completed_at, t.task_id
LIMIT :limit;

-- Worker tasks of the runs ``:owner`` drives whose lease lapsed once too often: the worker
-- holding them died (or hung) :max_claims times, so the attempt fails instead of going round.
-- name: lapsed_tasks
SELECT t.task_id, t.run_id, t.step_id, t.attempt, t.idempotency_key, t.payload, t.owner,
    t.fencing_token, t.lease_expires_at, t.tenant, t.available_at
FROM tasks AS t
JOIN runs AS r ON r.run_id = t.run_id
WHERE t.status = 'claimed' AND t.lease_expires_at <= :now AND t.remote
    AND t.fencing_token >= :max_claims AND r.owner = :owner
ORDER BY t.available_at
LIMIT :limit;

-- Worker tasks running now in one queue (a queue's max_running caps them).
-- name: queue_running
SELECT count(*) FROM tasks
WHERE status = 'claimed' AND queue = :queue AND remote;

-- Per queue: tasks waiting, tasks running (on workers and engines), and the oldest wait.
-- name: queue_stats
SELECT queue,
    sum(CASE WHEN status = 'queued' THEN 1 ELSE 0 END),
    sum(CASE WHEN status = 'claimed' THEN 1 ELSE 0 END),
    min(CASE WHEN status = 'queued' THEN available_at END)
FROM tasks
WHERE tenant = :tenant AND status IN ('queued', 'claimed')
GROUP BY queue
ORDER BY queue;

-- name: queue_depth
SELECT count(*) FROM tasks
WHERE tenant = :tenant AND queue = :queue AND status = 'queued';

-- The tasks a worker holds now: whatever it runs that is not here was taken from it.
-- name: held_tasks
SELECT task_id FROM tasks
WHERE owner = :owner AND status = 'claimed';

-- --------------------------------------------------------------------------------- workers

-- name: register_worker
INSERT INTO workers (
    worker_id, tenant, host, pid, version, capabilities, labels, queues, slots, state,
    started_at, heartbeat_at
)
VALUES (
    :worker_id, :tenant, :host, :pid, :version, :capabilities, :labels, :queues, :slots,
    :state, :started_at, :heartbeat_at
)
ON CONFLICT (worker_id) DO UPDATE SET
    host = excluded.host, pid = excluded.pid, version = excluded.version,
    capabilities = excluded.capabilities, labels = excluded.labels, queues = excluded.queues,
    slots = excluded.slots, state = excluded.state, heartbeat_at = excluded.heartbeat_at;

-- name: beat_worker
UPDATE workers
SET heartbeat_at = :now, state = :state, running = :running, done = :done, failed = :failed
WHERE worker_id = :worker_id;

-- name: list_workers
SELECT worker_id, host, pid, version, capabilities, labels, queues, slots, state, started_at,
    heartbeat_at, running, done, failed, tenant
FROM workers
WHERE tenant = :tenant
ORDER BY started_at, worker_id;

-- The unfinished runs of each driver (owner ids matching :pattern, '%:driver').
-- name: driven_runs
SELECT owner, count(*) FROM runs
WHERE tenant = :tenant AND owner LIKE :pattern AND status NOT IN ('succeeded', 'failed', 'cancelled')
GROUP BY owner
ORDER BY owner;

-- Workers that said they stopped, or fell silent, before :before.
-- name: forget_workers
DELETE FROM workers
WHERE tenant = :tenant AND heartbeat_at < :before;

-- ---------------------------------------------------------------------------------- timers

-- name: insert_timer
INSERT INTO timers (timer_id, tenant, run_id, due_at, payload)
VALUES (:timer_id, :tenant, :run_id, :due_at, :payload);

-- name: delete_timer
DELETE FROM timers WHERE timer_id = :timer_id AND run_id = :run_id;

-- name: due_timers
SELECT timer_id, run_id, due_at, payload, tenant
FROM timers
WHERE due_at <= :now
ORDER BY due_at, timer_id
LIMIT :limit;

-- ---------------------------------------------------------------------------------- signals

-- name: insert_signal
INSERT INTO signals (tenant, run_id, step_id, kind, actor, data, created_at)
VALUES (:tenant, :run_id, :step_id, :kind, :actor, :data, :created_at)
RETURNING seq;

-- The status test repeats the partial index's WHERE so the planner can use signals_pending.
-- name: pending_signals
SELECT seq, run_id, step_id, kind, actor, data, created_at, status, outcome, handled_at, tenant
FROM signals
WHERE run_id = :run_id AND status = 'pending'
ORDER BY seq;

-- The pending signals of several runs at once: an engine's look at every run it drives that
-- waits on a signal, in one query however many runs wait.
-- name: pending_signals_of_runs
SELECT seq, run_id, step_id, kind, actor, data, created_at, status, outcome, handled_at, tenant
FROM signals
WHERE run_id = ANY(:run_ids::text[]) AND status = 'pending'
ORDER BY run_id, seq;

-- name: get_signal
SELECT seq, run_id, step_id, kind, actor, data, created_at, status, outcome, handled_at, tenant
FROM signals
WHERE seq = :seq;

-- Only the run's own signals, and only while pending: the first answer stands.
-- name: answer_signal
UPDATE signals
SET status = :status, outcome = :outcome, handled_at = :now
WHERE seq = :seq AND run_id = :run_id AND status = 'pending';

-- ---------------------------------------------------------------------------------- topics

-- Only ever run by a transaction that holds the store's topic lock (see postgres.py).
-- name: insert_topic_message
INSERT INTO topic_messages (tenant, topic, data, key, trace_id, source, created_at)
VALUES (:tenant, :topic, :data, :key, :trace_id, :source, :created_at)
RETURNING seq;

-- Messages a run's steps publish (their ``emit``), many at once with the events that record them.
-- name: append_topic_message
INSERT INTO topic_messages (tenant, topic, data, key, trace_id, source, created_at)
VALUES (:tenant, :topic, :data, :key, :trace_id, :source, :created_at);

-- A page of one topic after a reader's cursor; ``since`` drops what was published before a
-- wait began without the reader knowing a seq.
-- name: topic_messages
SELECT seq, topic, data, created_at, key, trace_id, source, tenant
FROM topic_messages
WHERE tenant = :tenant AND topic = :topic AND seq > :after_seq AND created_at >= :since
ORDER BY seq
LIMIT :limit;

-- A cursor for "from now on": the max of the primary key is one index lookup. Publishes
-- commit in seq order, so no message below it can still appear.
-- name: latest_topic_seq
SELECT coalesce(max(seq), 0) FROM topic_messages;

-- ---------------------------------------------------------------------------------- counters

-- name: read_counter
SELECT value FROM counters WHERE name = :name;

-- ---------------------------------------------------------------------------------- logs

-- LogLine has no tenant: a line takes its run's. Only ever run by a transaction that holds the
-- advisory lock of the line's run, so a run's lines commit in seq order.
-- name: insert_log
INSERT INTO logs (tenant, run_id, step_id, attempt, stream, line, at)
VALUES (
    coalesce((SELECT tenant FROM runs WHERE run_id = :run_id), 'default'),
    :run_id, :step_id, :attempt, :stream, :line, :at
);

-- name: read_logs
SELECT run_id, step_id, attempt, stream, line, at, seq
FROM logs
WHERE run_id = :run_id AND seq > :after_seq
ORDER BY seq
LIMIT :limit;

-- name: read_logs_for_step
SELECT run_id, step_id, attempt, stream, line, at, seq
FROM logs
WHERE run_id = :run_id AND step_id = :step_id AND seq > :after_seq
ORDER BY seq
LIMIT :limit;

-- ---------------------------------------------------------------------------------- dead letters

-- name: insert_dead_letter
INSERT INTO dead_letters (dlq_id, tenant, run_id, step_id, attempts, error, payload, at)
VALUES (:dlq_id, :tenant, :run_id, :step_id, :attempts, :error, :payload, :at);

-- name: dead_letters
SELECT dlq_id, run_id, step_id, attempts, error, payload, at, tenant
FROM dead_letters
WHERE tenant = :tenant
ORDER BY at, dlq_id
LIMIT :limit;

-- name: remove_dead_letter
DELETE FROM dead_letters
WHERE dlq_id = :dlq_id
RETURNING dlq_id, run_id, step_id, attempts, error, payload, at, tenant;

-- ---------------------------------------------------------------------------------- key-value

-- name: kv_get
SELECT value FROM kv WHERE namespace = :namespace AND key = :key;

-- What a swap compares against, locked until it commits.
-- name: kv_get_for_update
SELECT value FROM kv WHERE namespace = :namespace AND key = :key FOR UPDATE;

-- A swap from "absent": whoever inserts first wins, the other learns it from the row count.
-- name: kv_insert_new
INSERT INTO kv (namespace, key, value) VALUES (:namespace, :key, :value)
ON CONFLICT (namespace, key) DO NOTHING;

-- name: kv_scan
SELECT key, value FROM kv WHERE namespace = :namespace ORDER BY key;

-- A namespace's keys, counted and searched in the store: what holds many large values is not
-- read to count them or to find one.
-- name: kv_count
SELECT count(*) FROM kv WHERE namespace = :namespace;

-- name: kv_key_ending
SELECT key FROM kv
WHERE namespace = :namespace
  AND substr(key, length(key) - CAST(:length AS integer) + 1) = :suffix
ORDER BY key LIMIT 1;

-- name: kv_page
SELECT key, value FROM kv WHERE namespace = :namespace AND key > :after ORDER BY key
LIMIT :limit;

-- The range test lets the primary key's index find the prefix (namespace is COLLATE "C").
-- name: kv_namespaces
SELECT DISTINCT namespace FROM kv
WHERE namespace >= :prefix AND starts_with(namespace, :prefix)
ORDER BY namespace;

-- name: kv_delete
DELETE FROM kv WHERE namespace = :namespace AND key = :key;

-- name: kv_set
INSERT INTO kv (namespace, key, value) VALUES (:namespace, :key, :value)
ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value;

-- ---------------------------------------------------------------------------------- deliveries

-- Make sure an environment's cursor row exists, then lock it: one fan-out per environment at a
-- time, so two never turn the same messages into deliveries that both think they started.
-- name: ensure_delivery_cursor
INSERT INTO delivery_cursors (tenant, env, seq) VALUES (:tenant, :env, 0)
ON CONFLICT (tenant, env) DO NOTHING;

-- name: delivery_cursor
SELECT seq FROM delivery_cursors WHERE tenant = :tenant AND env = :env FOR UPDATE;

-- name: move_delivery_cursor
INSERT INTO delivery_cursors (tenant, env, seq) VALUES (:tenant, :env, :seq)
ON CONFLICT (tenant, env) DO UPDATE SET seq = excluded.seq;

-- What the fan-out has not seen yet, across topics, in publishing order (a range of the
-- primary key). Publishes commit in seq order, so a page is never missing a message that
-- commits later with a smaller seq.
-- name: messages_after
SELECT seq, topic, data, created_at, key, trace_id, source, tenant
FROM topic_messages
WHERE tenant = :tenant AND seq > :after_seq
ORDER BY seq
LIMIT :limit;

-- A delivery made by the fan-out starts leased to the fan-out's owner (its first attempt).
-- name: insert_delivery
INSERT INTO deliveries (
    delivery_id, tenant, env, step, message_seq, topic, trace_id, key, status, attempt,
    max_attempts, due_at, owner, lease_expires_at, fencing_token, created_at
)
VALUES (
    :delivery_id, :tenant, :env, :step, :message_seq, :topic, :trace_id, :key, 'running', 1,
    :max_attempts, :now, :owner, :lease_expires_at, 1, :now
)
ON CONFLICT (delivery_id) DO NOTHING;

-- The deliveries whose outcomes a commit records, locked in id order before it changes them.
-- name: lock_deliveries
SELECT delivery_id FROM deliveries
WHERE delivery_id = ANY(:ids::text[])
ORDER BY delivery_id
FOR UPDATE;

-- Only the current attempt's outcome counts: the fencing token and status must match.
-- name: finish_delivery
UPDATE deliveries
SET status = :status, error = :error, finished_at = :now, owner = NULL, lease_expires_at = NULL
WHERE delivery_id = :delivery_id AND fencing_token = :fencing_token AND status = 'running';

-- name: retry_delivery
UPDATE deliveries
SET status = 'pending', error = :error, due_at = :due_at, owner = NULL, lease_expires_at = NULL
WHERE delivery_id = :delivery_id AND fencing_token = :fencing_token AND status = 'running';

-- Due retries and deliveries whose owner's lease ran out, oldest message first; deliveries of
-- inactive steps are held where they are. SKIP LOCKED: a delivery another claimer (or a commit
-- of its outcome) holds is passed by.
-- name: claim_deliveries
WITH picked AS (
    SELECT delivery_id FROM deliveries
    WHERE tenant = :tenant AND env = :env
      AND ((status = 'pending' AND due_at <= :now)
           OR (status = 'running' AND lease_expires_at < :now))
      AND step <> ALL(:inactive::text[])
    ORDER BY message_seq
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
UPDATE deliveries
SET status = 'running', owner = :owner, lease_expires_at = :now + :lease_s,
    attempt = deliveries.attempt + 1, fencing_token = deliveries.fencing_token + 1
FROM picked
WHERE deliveries.delivery_id = picked.delivery_id
RETURNING deliveries.delivery_id;

-- name: renew_delivery_leases
WITH held AS (
    SELECT delivery_id FROM deliveries
    WHERE owner = :owner AND status = 'running'
    ORDER BY delivery_id
    FOR UPDATE
)
UPDATE deliveries SET lease_expires_at = :now + :lease_s
FROM held
WHERE deliveries.delivery_id = held.delivery_id AND deliveries.status = 'running';

-- name: read_deliveries
SELECT d.delivery_id, d.env, d.step, d.message_seq, d.topic, m.data, d.trace_id, d.key,
       d.status, d.attempt, d.max_attempts, d.due_at, d.fencing_token, d.error, d.created_at,
       d.finished_at, m.source, d.tenant
FROM deliveries AS d JOIN topic_messages AS m ON m.seq = d.message_seq
WHERE d.delivery_id = ANY(:ids::text[])
ORDER BY d.message_seq, d.step;

-- name: list_deliveries
SELECT d.delivery_id, d.env, d.step, d.message_seq, d.topic, m.data, d.trace_id, d.key,
       d.status, d.attempt, d.max_attempts, d.due_at, d.fencing_token, d.error, d.created_at,
       d.finished_at, m.source, d.tenant
FROM deliveries AS d JOIN topic_messages AS m ON m.seq = d.message_seq
WHERE d.tenant = :tenant
  AND (:trace_id::text IS NULL OR d.trace_id = :trace_id)
  AND (:status::text IS NULL OR d.status = :status)
  AND (:env::text IS NULL OR d.env = :env)
  AND (:step::text IS NULL OR d.step = :step)
ORDER BY d.message_seq, d.step
LIMIT :limit;

-- A dead delivery gets its attempts back and is due at once.
-- name: replay_delivery
UPDATE deliveries
SET status = 'pending', attempt = 0, error = '', due_at = :now, finished_at = NULL
WHERE delivery_id = :delivery_id AND tenant = :tenant AND status = 'dead'
RETURNING delivery_id;

-- name: trace_messages
SELECT seq, topic, data, created_at, key, trace_id, source, tenant
FROM topic_messages
WHERE trace_id = :trace_id
ORDER BY seq
LIMIT :limit;
