-- The Wayang store for SQLite: the whole current schema (version 7).
--
-- A new store is created from this file; an older one is brought here by migrations/. A test
-- proves both give the same schema, so a change goes into a new migration AND into this file.
--
-- Times are seconds since the epoch (REAL). Dicts are JSON text. Every table holding run data
-- carries a tenant. Indexes on the hot paths are partial: they hold only rows still in play
-- (queued or leased tasks, unconsumed completions, unfinished runs), so they stay small however
-- many runs have finished.

-- A run's summary row; ``version`` is the number of events in its history (optimistic locking).
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL DEFAULT 'default',
    workflow_id TEXT NOT NULL,
    status TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 0,
    spec TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    owner TEXT,
    lease_expires_at REAL
);

CREATE INDEX runs_by_tenant ON runs (tenant, created_at);

CREATE INDEX runs_by_tenant_status ON runs (tenant, status, created_at);

-- Finding orphans scans only unfinished runs.
CREATE INDEX runs_unfinished ON runs (lease_expires_at)
WHERE status NOT IN ('succeeded', 'failed', 'cancelled');

-- A run's append-only history, numbered from 1.
CREATE TABLE events (
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    seq INTEGER NOT NULL,
    tenant TEXT NOT NULL DEFAULT 'default',
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    version INTEGER NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- Work for workers: queued -> claimed (leased, fenced) -> completed -> consumed (folded by the
-- engine into the run's history). A requeue sends an expired claim back to queued.
CREATE TABLE tasks (
    task_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL DEFAULT 'default',
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    step_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL,
    queue TEXT NOT NULL DEFAULT 'default',
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'claimed', 'completed', 'consumed')),
    available_at REAL NOT NULL,
    owner TEXT,
    lease_expires_at REAL,
    fencing_token INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    completed_at REAL,
    -- Placement tokens a worker must offer (JSON array), and whether a worker runs it.
    needs TEXT NOT NULL DEFAULT '[]',
    remote INTEGER NOT NULL DEFAULT 0
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
    timer_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL DEFAULT 'default',
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    due_at REAL NOT NULL,
    payload TEXT NOT NULL
);

CREATE INDEX timers_by_due ON timers (due_at);

-- A run's pending timers, re-armed when an engine adopts the run.
CREATE INDEX timers_by_run ON timers (run_id);

-- Captured step output. AUTOINCREMENT so a seq is never reused once logs are pruned, which
-- keeps ``after_seq`` paging correct.
CREATE TABLE logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL DEFAULT 'default',
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    stream TEXT NOT NULL,
    line TEXT NOT NULL,
    at REAL NOT NULL
);

CREATE INDEX logs_by_run ON logs (run_id, seq);

-- Tasks that exhausted their attempts, kept for inspection and replay. No foreign key: a dead
-- letter may outlive its run.
CREATE TABLE dead_letters (
    dlq_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL DEFAULT 'default',
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    payload TEXT NOT NULL,
    at REAL NOT NULL
);

CREATE INDEX dead_letters_by_tenant ON dead_letters (tenant, at);

-- Small durable values that features (locks, schedules, rate limits) build on.
CREATE TABLE kv (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;

-- The keys alone (the table's b-tree carries the values): counted and searched cheaply.
CREATE INDEX kv_keys ON kv (namespace, key);

-- Named counters, e.g. duplicate (rejected) completions.
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

-- A run's inbox of inputs from outside it (approval votes, offers, ``wayang complete``). A
-- signal stays pending until an append answers it, in the transaction of the events that record
-- what the engine made of it. AUTOINCREMENT: a seq is never reused, so it names one signal for
-- good. No foreign key, as for logs and dead letters: a record of who sent what may outlive
-- its run.
CREATE TABLE signals (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL DEFAULT 'default',
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'accepted', 'rejected')),
    outcome TEXT NOT NULL DEFAULT '',
    handled_at REAL
);

-- A run's pending signals, read every time the engine looks at its waits.
CREATE INDEX signals_pending ON signals (run_id, seq) WHERE status = 'pending';

-- The event bus. Readers page a topic by seq, each with its own cursor; nothing is consumed.
-- AUTOINCREMENT so a seq is never reused once old messages are pruned, which keeps cursors
-- correct.
CREATE TABLE topic_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL DEFAULT 'default',
    topic TEXT NOT NULL,
    data TEXT NOT NULL,
    key TEXT NOT NULL DEFAULT '',
    trace_id TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);

CREATE INDEX topic_messages_by_topic ON topic_messages (tenant, topic, seq);

CREATE INDEX topic_messages_by_trace ON topic_messages (trace_id, seq);

-- Deliveries of topic messages to event steps: tasks with attempts, leases and fencing, one per
-- (environment, message, step) by their id '<env>/<message seq>/<step>'. The payload stays in
-- topic_messages.
CREATE TABLE deliveries (
    delivery_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL DEFAULT 'default',
    env TEXT NOT NULL,
    step TEXT NOT NULL,
    message_seq INTEGER NOT NULL,
    topic TEXT NOT NULL,
    trace_id TEXT NOT NULL DEFAULT '',
    key TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    due_at REAL NOT NULL,
    owner TEXT,
    lease_expires_at REAL,
    fencing_token INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    finished_at REAL
);

CREATE INDEX deliveries_due ON deliveries (tenant, env, status, due_at);

CREATE INDEX deliveries_by_trace ON deliveries (trace_id, message_seq);

CREATE INDEX deliveries_by_owner ON deliveries (owner) WHERE owner IS NOT NULL;

-- Each environment's fan-out cursor: the last message seq it turned into deliveries.
CREATE TABLE delivery_cursors (
    tenant TEXT NOT NULL,
    env TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (tenant, env)
);

-- Workers (wayang worker): what each offers, its slots, and its last heartbeat.
CREATE TABLE workers (
    worker_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL DEFAULT 'default',
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    version TEXT NOT NULL,
    capabilities TEXT NOT NULL,
    labels TEXT NOT NULL,
    queues TEXT NOT NULL,
    slots INTEGER NOT NULL,
    state TEXT NOT NULL,
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    running INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0
);
