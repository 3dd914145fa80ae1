-- Named queries of the SQLite store. Each block starts with a "-- name: xxx" line and is run by
-- wayang.store.sqlite with named parameters (:like_this). Column order in SELECT and RETURNING
-- lists is what the row readers in wayang.store.rows expect.

-- Store identity, read before anything is written so a foreign database is never touched.
-- name: store_identity
SELECT application_id, user_version FROM pragma_application_id(), pragma_user_version();

-- name: list_tables
SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name;

-- ---------------------------------------------------------------------------------- runs

-- ON CONFLICT DO NOTHING: the caller learns of an existing run from the row count.
-- name: insert_run
INSERT INTO runs (
    run_id, tenant, workflow_id, status, version, spec, created_at, updated_at, owner,
    lease_expires_at
)
VALUES (
    :run_id, :tenant, :workflow_id, :status, 0, :spec, :created_at, :updated_at, :owner,
    :lease_expires_at
)
ON CONFLICT (run_id) DO NOTHING;

-- Checks the expected version and moves it on in one statement; no row back means a conflict.
-- name: advance_run
UPDATE runs
SET version = :new_version, updated_at = :now, status = coalesce(:status, status)
WHERE run_id = :run_id AND version = :expected_version
RETURNING tenant;

-- name: run_version
SELECT version FROM runs WHERE run_id = :run_id;

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
    AND (:status IS NULL OR status = :status)
    AND (:workflow_id IS NULL OR workflow_id = :workflow_id)
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
WHERE run_id = :run_id AND owner IS :previous_owner;

-- A driver's run goes back to the drivers (see take_handed_off), and engines adopting orphans
-- leave it to them until its lease would have lapsed; any other run goes to nobody.
-- name: release_run
UPDATE runs
SET owner = CASE WHEN owner LIKE '%' || :driver_suffix THEN :handed_off END,
    lease_expires_at = CASE WHEN owner LIKE '%' || :driver_suffix THEN lease_expires_at END
WHERE run_id = :run_id AND owner = :owner;

-- name: renew_run_leases
UPDATE runs
SET lease_expires_at = :lease_expires_at
WHERE owner = :owner AND status NOT IN ('succeeded', 'failed', 'cancelled');

-- The status test repeats the partial index's WHERE so SQLite can use runs_unfinished.
-- Runs handed off to drivers, or drivers' whose lease lapsed, are left to the drivers for
-- :drivers_first_s seconds (take_handed_off).
-- name: orphaned_runs
SELECT run_id, tenant, workflow_id, status, version, spec, created_at, updated_at, owner,
    lease_expires_at
FROM runs
WHERE status NOT IN ('succeeded', 'failed', 'cancelled')
    AND (lease_expires_at IS NULL OR lease_expires_at <= :now)
    AND NOT (coalesce(owner, '') = :handed_off AND updated_at > :now - :drivers_first_s)
    AND NOT (coalesce(owner, '') LIKE '%' || :driver_suffix
        AND coalesce(lease_expires_at, 0) > :now - :drivers_first_s)
ORDER BY lease_expires_at, run_id
LIMIT :limit;

-- Runs handed off to drivers ('wayang worker --drive'), and drivers' runs whose lease lapsed,
-- leased to the driver :owner, oldest first.
-- name: take_handed_off
UPDATE runs
SET owner = :owner, lease_expires_at = :lease_expires_at
WHERE run_id IN (
    SELECT run_id FROM runs
    WHERE status NOT IN ('succeeded', 'failed', 'cancelled')
        AND (owner = :handed_off
            OR (owner LIKE '%' || :driver_suffix AND lease_expires_at <= :now))
    ORDER BY created_at, run_id
    LIMIT :limit
)
RETURNING run_id, tenant, workflow_id, status, version, spec, created_at, updated_at, owner,
    lease_expires_at;

-- What adopting runs needs, for all of them at once (take_handed_off; adopt_tasks and
-- run_timers with one run): their histories, unacknowledged results, open tasks (leased to
-- the new owner, each with a new fencing token) and timers.
-- name: histories_of_runs
SELECT run_id, seq, type, data, version, at
FROM events
WHERE run_id IN (SELECT value FROM json_each(:run_ids))
ORDER BY run_id, seq;

-- name: completions_of_runs
SELECT task_id, run_id, step_id, attempt, result, completed_at
FROM tasks
WHERE status = 'completed' AND run_id IN (SELECT value FROM json_each(:run_ids))
ORDER BY completed_at, task_id;

-- name: adopt_tasks_of_runs
UPDATE tasks
SET status = 'claimed', owner = :owner, lease_expires_at = :lease_expires_at,
    fencing_token = fencing_token + 1
WHERE run_id IN (SELECT value FROM json_each(:run_ids)) AND status IN ('queued', 'claimed') AND remote = 0
RETURNING task_id, run_id, step_id, attempt, idempotency_key, payload, owner, fencing_token,
    lease_expires_at, tenant, available_at;

-- name: timers_of_runs
SELECT timer_id, run_id, due_at, payload, tenant
FROM timers
WHERE run_id IN (SELECT value FROM json_each(:run_ids))
ORDER BY due_at, timer_id;

-- name: run_statuses
SELECT run_id, status FROM runs
WHERE run_id IN (SELECT value FROM json_each(:run_ids));

-- ---------------------------------------------------------------------------------- events

-- name: insert_event
INSERT INTO events (run_id, seq, tenant, type, data, version, at)
VALUES (:run_id, :seq, :tenant, :type, :data, :version, :at);

-- name: load_history
SELECT run_id, seq, type, data, version, at
FROM events
WHERE run_id = :run_id AND seq > :after_seq
ORDER BY seq;

-- ---------------------------------------------------------------------------------- tasks

-- A task the engine runs itself is inserted already leased to it (status 'claimed', token 1).
-- name: insert_task
INSERT INTO tasks (
    task_id, tenant, run_id, step_id, attempt, idempotency_key, queue, payload, available_at,
    status, owner, lease_expires_at, fencing_token, needs, remote
)
VALUES (
    :task_id, :tenant, :run_id, :step_id, :attempt, :idempotency_key, :queue, :payload,
    :available_at, :status, :owner, :lease_expires_at, :fencing_token, :needs, :remote
);

-- Claim in one statement: the oldest available queued tasks, and claimed ones whose lease ran
-- out, ordered by when they became available. Each branch reads its own partial index and stops
-- after :limit rows, so a long backlog is never sorted whole. The RETURNING rows come back in
-- no set order; the caller sorts them by the last column.
-- name: claim_tasks
UPDATE tasks
SET status = 'claimed', owner = :owner, lease_expires_at = :lease_expires_at,
    fencing_token = fencing_token + 1
WHERE task_id IN (
    SELECT task_id FROM (
        SELECT * FROM (
            SELECT task_id, available_at FROM tasks
            WHERE status = 'queued' AND queue = :queue AND available_at <= :now
                AND (:any_needs OR needs = '[]' OR NOT EXISTS (
                SELECT 1 FROM json_each(tasks.needs) AS need
                WHERE need.value NOT IN (SELECT value FROM json_each(:offers))
            ))
            ORDER BY available_at
            LIMIT :limit
        )
        UNION ALL
        SELECT * FROM (
            SELECT task_id, available_at FROM tasks
            WHERE status = 'claimed' AND lease_expires_at <= :now AND queue = :queue
                AND remote = 1 AND fencing_token < :max_claims AND (:any_needs OR needs = '[]' OR NOT EXISTS (
                SELECT 1 FROM json_each(tasks.needs) AS need
                WHERE need.value NOT IN (SELECT value FROM json_each(:offers))
            ))
            ORDER BY available_at
            LIMIT :limit
        )
    )
    ORDER BY available_at
    LIMIT :limit
)
RETURNING task_id, run_id, step_id, attempt, idempotency_key, payload, owner, fencing_token,
    lease_expires_at, tenant, available_at;

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

-- The fencing token makes the first completion win and rejects a stale worker's.
-- name: complete_task
UPDATE tasks
SET status = 'completed', result = :result, completed_at = :now, lease_expires_at = NULL
WHERE task_id = :task_id AND status = 'claimed' AND fencing_token = :fencing_token;

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

-- name: consume_completion
UPDATE tasks
SET status = 'consumed'
WHERE task_id = :task_id AND run_id = :run_id AND status = 'completed';

-- The events of the same append record the task's outcome: whatever its state, it is done.
-- name: finish_task
UPDATE tasks
SET status = 'consumed', completed_at = coalesce(completed_at, :now), lease_expires_at = NULL
WHERE task_id = :task_id AND run_id = :run_id AND status != 'consumed';

-- A worker renews the tasks it says it runs (:every: all it holds, for one that does not say).
-- name: renew_task_leases
UPDATE tasks
SET lease_expires_at = :lease_expires_at
WHERE owner = :owner AND status = 'claimed'
    AND (:every OR task_id IN (SELECT value FROM json_each(:task_ids)));

-- A worker starting under an id that holds tasks (an earlier process with that id, killed)
-- runs none of them: their leases end now, so they are claimed again at once rather than
-- renewed for ever by the new process's heartbeats.
-- name: lapse_worker_tasks
UPDATE tasks
SET lease_expires_at = :now
WHERE owner = :owner AND status = 'claimed';

-- A task an engine leased to itself and has not started, queued for any worker instead (a
-- driver's steps that would wait too long for its slots: runtime/spill.py). No worker ever
-- held it, so no fencing token is spent on it yet.
-- name: spill_task
UPDATE tasks
SET status = 'queued', owner = NULL, lease_expires_at = NULL, fencing_token = 0,
    remote = 1, queue = :queue, needs = :needs
WHERE task_id = :task_id AND owner = :owner AND status = 'claimed' AND NOT remote;

-- name: requeue_expired
UPDATE tasks
SET status = 'queued', owner = NULL, lease_expires_at = NULL
WHERE status = 'claimed' AND lease_expires_at <= :now;

-- Results workers recorded for the runs ``:owner`` drives, not yet folded into their histories.
-- name: worker_completions
SELECT t.task_id, t.run_id, t.step_id, t.attempt, t.result, t.completed_at
FROM tasks AS t
JOIN runs AS r ON r.run_id = t.run_id
WHERE t.status = 'completed' AND t.remote = 1 AND r.owner = :owner
ORDER BY t.completed_at, t.task_id
LIMIT :limit;

-- Worker tasks of the runs ``:owner`` drives whose lease lapsed once too often: the worker
-- holding them died (or hung) :max_claims times, so the attempt fails instead of going round.
-- name: lapsed_tasks
SELECT t.task_id, t.run_id, t.step_id, t.attempt, t.idempotency_key, t.payload, t.owner,
    t.fencing_token, t.lease_expires_at, t.tenant, t.available_at
FROM tasks AS t
JOIN runs AS r ON r.run_id = t.run_id
WHERE t.status = 'claimed' AND t.lease_expires_at <= :now AND t.remote = 1
    AND t.fencing_token >= :max_claims AND r.owner = :owner
ORDER BY t.available_at
LIMIT :limit;

-- Worker tasks running now in one queue (a queue's max_running caps them).
-- name: queue_running
SELECT count(*) FROM tasks
WHERE status = 'claimed' AND queue = :queue AND remote = 1;

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

-- The status test repeats the partial index's WHERE so SQLite can use signals_pending.
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
WHERE run_id IN (SELECT value FROM json_each(:run_ids)) AND status = 'pending'
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

-- A cursor for "from now on": max of the rowid is one index lookup.
-- name: latest_topic_seq
SELECT coalesce(max(seq), 0) FROM topic_messages;

-- ---------------------------------------------------------------------------------- counters

-- name: bump_counter
INSERT INTO counters (name, value) VALUES (:name, 1)
ON CONFLICT (name) DO UPDATE SET value = value + 1;

-- name: read_counter
SELECT value FROM counters WHERE name = :name;

-- ---------------------------------------------------------------------------------- logs

-- LogLine has no tenant: a line takes its run's.
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

-- name: kv_scan
SELECT key, value FROM kv WHERE namespace = :namespace ORDER BY key;

-- A namespace's keys, counted and searched in the store: what holds many large values is not
-- read to count them or to find one.
-- name: kv_count
SELECT count(*) FROM kv WHERE namespace = :namespace;

-- name: kv_key_ending
SELECT key FROM kv
WHERE namespace = :namespace AND substr(key, length(key) - :length + 1) = :suffix
ORDER BY key LIMIT 1;

-- name: kv_page
SELECT key, value FROM kv WHERE namespace = :namespace AND key > :after ORDER BY key
LIMIT :limit;

-- name: kv_namespaces
SELECT DISTINCT namespace FROM kv
WHERE namespace >= :prefix AND substr(namespace, 1, length(:prefix)) = :prefix
ORDER BY namespace;

-- name: kv_delete
DELETE FROM kv WHERE namespace = :namespace AND key = :key;

-- name: kv_set
INSERT INTO kv (namespace, key, value) VALUES (:namespace, :key, :value)
ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value;

-- ---------------------------------------------------------------------------------- deliveries

-- name: delivery_cursor
SELECT seq FROM delivery_cursors WHERE tenant = :tenant AND env = :env;

-- name: move_delivery_cursor
INSERT INTO delivery_cursors (tenant, env, seq) VALUES (:tenant, :env, :seq)
ON CONFLICT (tenant, env) DO UPDATE SET seq = excluded.seq;

-- What the fan-out has not seen yet, across topics, in publishing order. The unary + keeps the
-- planner off the (tenant, topic, seq) index, which would read every message and sort them: a
-- range of the primary key is what this wants.
-- name: messages_after
SELECT seq, topic, data, created_at, key, trace_id, source, tenant
FROM topic_messages
WHERE +tenant = :tenant AND seq > :after_seq
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
-- inactive steps are held where they are.
-- name: claim_deliveries
UPDATE deliveries
SET status = 'running', owner = :owner, lease_expires_at = :now + :lease_s,
    attempt = attempt + 1, fencing_token = fencing_token + 1
WHERE delivery_id IN (
    SELECT delivery_id FROM deliveries
    WHERE tenant = :tenant AND env = :env
      AND ((status = 'pending' AND due_at <= :now)
           OR (status = 'running' AND lease_expires_at < :now))
      AND step NOT IN (SELECT value FROM json_each(:inactive))
    ORDER BY message_seq
    LIMIT :limit
)
RETURNING delivery_id;

-- name: renew_delivery_leases
UPDATE deliveries SET lease_expires_at = :now + :lease_s
WHERE owner = :owner AND status = 'running';

-- name: read_deliveries
SELECT d.delivery_id, d.env, d.step, d.message_seq, d.topic, m.data, d.trace_id, d.key,
       d.status, d.attempt, d.max_attempts, d.due_at, d.fencing_token, d.error, d.created_at,
       d.finished_at, m.source, d.tenant
FROM deliveries AS d JOIN topic_messages AS m ON m.seq = d.message_seq
WHERE d.delivery_id IN (SELECT value FROM json_each(:ids))
ORDER BY d.message_seq, d.step;

-- name: list_deliveries
SELECT d.delivery_id, d.env, d.step, d.message_seq, d.topic, m.data, d.trace_id, d.key,
       d.status, d.attempt, d.max_attempts, d.due_at, d.fencing_token, d.error, d.created_at,
       d.finished_at, m.source, d.tenant
FROM deliveries AS d JOIN topic_messages AS m ON m.seq = d.message_seq
WHERE d.tenant = :tenant
  AND (:trace_id IS NULL OR d.trace_id = :trace_id)
  AND (:status IS NULL OR d.status = :status)
  AND (:env IS NULL OR d.env = :env)
  AND (:step IS NULL OR d.step = :step)
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
