-- Version 3: what runs wait on from outside them.
--
-- Steps that wait for people (approvals, offers, ``wayang complete``) need an inbox per run that
-- the engine answers atomically with its events; steps that wait for events need one bus that
-- ``wayang emit`` and workflows publish to and read from by cursor. Both are new tables, so an
-- older store only gains them.

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
