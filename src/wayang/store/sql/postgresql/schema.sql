-- The Wayang store for PostgreSQL: the whole current schema (version 3).
--
-- A new store is created from this file; an older one is brought here by migrations/. A test
-- proves both give the same schema, so a change goes into a new migration AND into this file.
-- The schema version itself lives in wayang_schema, which wayang.store.postgres_connection
-- creates and fills: it is what tells a Wayang store from another program's tables.
--
-- The tables, columns and indexes are those of the SQLite store, in PostgreSQL's words:
--   * Times are seconds since the epoch (DOUBLE PRECISION); the store never reads a clock.
--   * Dicts are JSON text (TEXT, not JSONB): the store never looks inside them, and TEXT keeps
--     exactly what was written, as SQLite does (key order, "\u0000" escapes, which JSONB
--     refuses). Cast to jsonb in an ad-hoc query to look inside.
--   * Ids and names are COLLATE "C": ORDER BY and prefix ranges compare bytes, as SQLite does,
--     whatever the database's locale (a locale would sort "r-2" and "r1" its own way).
--   * Seqs are identity columns: a sequence never hands a number out twice, even once old rows
--     are pruned, which keeps readers' cursors correct (AUTOINCREMENT on SQLite).
-- Every table holding run data carries a tenant. Indexes on the hot paths are partial: they hold
-- only rows still in play, so they stay small however many runs have finished.

-- A run's summary row; ``version`` is the number of events in its history (optimistic locking).
CREATE TABLE runs (
    run_id TEXT COLLATE "C" PRIMARY KEY,
    tenant TEXT COLLATE "C" NOT NULL DEFAULT 'default',
    workflow_id TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL DEFAULT 0,
    spec TEXT NOT NULL DEFAULT '{}',
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    owner TEXT COLLATE "C",
    lease_expires_at DOUBLE PRECISION
);

CREATE INDEX runs_by_tenant ON runs (tenant, created_at);

CREATE INDEX runs_by_tenant_status ON runs (tenant, status, created_at);

-- Finding orphans scans only unfinished runs.
CREATE INDEX runs_unfinished ON runs (lease_expires_at)
WHERE status NOT IN ('succeeded', 'failed', 'cancelled');

-- A run's append-only history, numbered from 1. Its seqs need no sequence: an append moves the
-- run's version under the run's row lock, so a run's events commit in seq order.
CREATE TABLE events (
    run_id TEXT COLLATE "C" NOT NULL REFERENCES runs (run_id),
    seq BIGINT NOT NULL,
    tenant TEXT COLLATE "C" NOT NULL DEFAULT 'default',
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    version INTEGER NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- Work for workers: queued -> claimed (leased, fenced) -> completed -> consumed (folded by the
-- engine into the run's history). A requeue sends an expired claim back to queued.
CREATE TABLE tasks (
    task_id TEXT COLLATE "C" PRIMARY KEY,
    tenant TEXT COLLATE "C" NOT NULL DEFAULT 'default',
    run_id TEXT COLLATE "C" NOT NULL REFERENCES runs (run_id),
    step_id TEXT COLLATE "C" NOT NULL,
    attempt INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL,
    queue TEXT COLLATE "C" NOT NULL DEFAULT 'default',
    payload TEXT NOT NULL,
    status TEXT COLLATE "C" NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'claimed', 'completed', 'consumed')),
    available_at DOUBLE PRECISION NOT NULL,
    owner TEXT COLLATE "C",
    lease_expires_at DOUBLE PRECISION,
    fencing_token BIGINT NOT NULL DEFAULT 0,
    result TEXT,
    completed_at DOUBLE PRECISION,
    -- Placement tokens a worker must offer (JSON array), and whether a worker runs it.
    needs TEXT NOT NULL DEFAULT '[]',
    remote BOOLEAN NOT NULL DEFAULT false
);

-- Claim: the oldest available queued tasks of a queue.
CREATE INDEX tasks_queued ON tasks (queue, available_at) WHERE status = 'queued';

-- Claim and requeue: claimed tasks whose lease has run out.
CREATE INDEX tasks_claimed ON tasks (lease_expires_at) WHERE status = 'claimed';

-- Completions the engine has not yet folded in.
CREATE INDEX tasks_completed ON tasks (run_id, completed_at) WHERE status = 'completed';

-- A run's tasks: its open ones when an engine adopts the run, all of them for the run's views.
CREATE INDEX tasks_by_run ON tasks (run_id);

-- Durable wake-ups; a timer is deleted when the engine records that it handled it.
CREATE TABLE timers (
    timer_id TEXT COLLATE "C" PRIMARY KEY,
    tenant TEXT COLLATE "C" NOT NULL DEFAULT 'default',
    run_id TEXT COLLATE "C" NOT NULL REFERENCES runs (run_id),
    due_at DOUBLE PRECISION NOT NULL,
    payload TEXT NOT NULL
);

CREATE INDEX timers_by_due ON timers (due_at);

-- A run's pending timers, re-armed when an engine adopts the run.
CREATE INDEX timers_by_run ON timers (run_id);

-- Captured step output, paged by seq per run. Writers of one run's lines take that run's
-- advisory lock, so a run's lines commit in seq order and a reader's cursor skips none.
CREATE TABLE logs (
    seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant TEXT COLLATE "C" NOT NULL DEFAULT 'default',
    run_id TEXT COLLATE "C" NOT NULL,
    step_id TEXT COLLATE "C" NOT NULL,
    attempt INTEGER NOT NULL,
    stream TEXT NOT NULL,
    line TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);

CREATE INDEX logs_by_run ON logs (run_id, seq);

-- Tasks that exhausted their attempts, kept for inspection and replay. No foreign key: a dead
-- letter may outlive its run.
CREATE TABLE dead_letters (
    dlq_id TEXT COLLATE "C" PRIMARY KEY,
    tenant TEXT COLLATE "C" NOT NULL DEFAULT 'default',
    run_id TEXT COLLATE "C" NOT NULL,
    step_id TEXT COLLATE "C" NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    payload TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);

CREATE INDEX dead_letters_by_tenant ON dead_letters (tenant, at);

-- Small durable values that features (locks, schedules, rate limits) build on.
CREATE TABLE kv (
    namespace TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
);

-- Named counters, e.g. duplicate (rejected) completions.
CREATE TABLE counters (
    name TEXT COLLATE "C" PRIMARY KEY,
    value BIGINT NOT NULL
);

-- A run's inbox of inputs from outside it (approval votes, offers, ``wayang complete``). A
-- signal stays pending until an append answers it, in the transaction of the events that record
-- what the engine made of it. A seq is never reused, so it names one signal for good. No foreign
-- key, as for logs and dead letters: a record of who sent what may outlive its run.
CREATE TABLE signals (
    seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant TEXT COLLATE "C" NOT NULL DEFAULT 'default',
    run_id TEXT COLLATE "C" NOT NULL,
    step_id TEXT COLLATE "C" NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    status TEXT COLLATE "C" NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'accepted', 'rejected')),
    outcome TEXT NOT NULL DEFAULT '',
    handled_at DOUBLE PRECISION
);

-- A run's pending signals, read every time the engine looks at its waits.
CREATE INDEX signals_pending ON signals (run_id, seq) WHERE status = 'pending';

-- The event bus. Readers page a topic by seq, each with its own cursor; nothing is consumed.
-- Publishers take the store's topic lock before they take a seq, so messages commit in seq
-- order and a cursor never passes a message that is not visible yet (see postgres.py).
CREATE TABLE topic_messages (
    seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant TEXT COLLATE "C" NOT NULL DEFAULT 'default',
    topic TEXT COLLATE "C" NOT NULL,
    data TEXT NOT NULL,
    key TEXT NOT NULL DEFAULT '',
    trace_id TEXT COLLATE "C" NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    created_at DOUBLE PRECISION NOT NULL
);

CREATE INDEX topic_messages_by_topic ON topic_messages (tenant, topic, seq);

CREATE INDEX topic_messages_by_trace ON topic_messages (trace_id, seq);

-- Deliveries of topic messages to event steps: tasks with attempts, leases and fencing, one per
-- (environment, message, step) by their id '<env>/<message seq>/<step>'. The payload stays in
-- topic_messages.
CREATE TABLE deliveries (
    delivery_id TEXT COLLATE "C" PRIMARY KEY,
    tenant TEXT COLLATE "C" NOT NULL DEFAULT 'default',
    env TEXT COLLATE "C" NOT NULL,
    step TEXT COLLATE "C" NOT NULL,
    message_seq BIGINT NOT NULL,
    topic TEXT COLLATE "C" NOT NULL,
    trace_id TEXT COLLATE "C" NOT NULL DEFAULT '',
    key TEXT NOT NULL DEFAULT '',
    status TEXT COLLATE "C" NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    due_at DOUBLE PRECISION NOT NULL,
    owner TEXT COLLATE "C",
    lease_expires_at DOUBLE PRECISION,
    fencing_token BIGINT NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    created_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION
);

CREATE INDEX deliveries_due ON deliveries (tenant, env, status, due_at);

CREATE INDEX deliveries_by_trace ON deliveries (trace_id, message_seq);

CREATE INDEX deliveries_by_owner ON deliveries (owner) WHERE owner IS NOT NULL;

-- Each environment's fan-out cursor: the last message seq it turned into deliveries.
CREATE TABLE delivery_cursors (
    tenant TEXT COLLATE "C" NOT NULL,
    env TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (tenant, env)
);

-- Workers (wayang worker): what each offers, its slots, and its last heartbeat.
CREATE TABLE workers (
    worker_id TEXT COLLATE "C" PRIMARY KEY,
    tenant TEXT COLLATE "C" NOT NULL DEFAULT 'default',
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    version TEXT NOT NULL,
    capabilities TEXT NOT NULL,
    labels TEXT NOT NULL,
    queues TEXT NOT NULL,
    slots INTEGER NOT NULL,
    state TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    running INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0
);

-- A group commit's version check, as one statement that fails instead of answering: the runs are
-- locked in id order (two commits touching the same runs wait instead of deadlocking), each must
-- be at its expected version, and each is moved to its new one. A run that is not raises
-- SQLSTATE WYV01 (another writer got there first), one that does not exist WYR01; the run's id
-- is the error's detail. Nothing waits for an answer, so the commit's statements and its COMMIT
-- go in one round trip; a failure aborts the transaction before COMMIT.
CREATE FUNCTION advance_runs(
    run_ids TEXT[],
    expected_versions BIGINT[],
    new_versions BIGINT[],
    statuses TEXT[],
    moved_at DOUBLE PRECISION
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    stale RECORD;
BEGIN
    PERFORM FROM runs WHERE run_id = ANY(run_ids) ORDER BY run_id FOR UPDATE;
    SELECT m.run_id, m.expected_version, r.version AS found INTO stale
    FROM unnest(run_ids, expected_versions) AS m (run_id, expected_version)
    LEFT JOIN runs AS r ON r.run_id = m.run_id COLLATE "C"
    WHERE r.version IS DISTINCT FROM m.expected_version
    LIMIT 1;
    IF FOUND AND stale.found IS NULL THEN
        RAISE EXCEPTION 'run % does not exist; create it with create_run', stale.run_id
            USING ERRCODE = 'WYR01', DETAIL = stale.run_id;
    ELSIF FOUND THEN
        RAISE EXCEPTION 'run % is at version %, but the append expected %: another writer got '
            'there first; reload its history', stale.run_id, stale.found, stale.expected_version
            USING ERRCODE = 'WYV01', DETAIL = stale.run_id;
    END IF;
    UPDATE runs AS r
    SET version = m.new_version, updated_at = moved_at, status = coalesce(m.status, r.status)
    FROM unnest(run_ids, new_versions, statuses) AS m (run_id, new_version, status)
    WHERE r.run_id = m.run_id COLLATE "C";
END
$$;
