-- Version 4: deliveries of topic messages to event steps.
--
-- A message published on a topic is handed to each subscribing step of a steps project as a
-- delivery: a task with attempts, a lease and fencing, like a run's tasks but without a run.
-- Its id is '<env>/<message seq>/<step>', so one message reaches one step once however often
-- the fan-out runs. The payload stays in topic_messages. Each environment's fan-out keeps its
-- cursor (the last message seq it turned into deliveries) in delivery_cursors, moved in the
-- transaction that inserts the deliveries.
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

CREATE INDEX topic_messages_by_trace ON topic_messages (trace_id, seq);

CREATE TABLE delivery_cursors (
    tenant TEXT NOT NULL,
    env TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (tenant, env)
);
