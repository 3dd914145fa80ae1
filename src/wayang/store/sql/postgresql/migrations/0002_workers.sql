-- Migration 0002: workers (the SQLite store's version 6).
--
-- Processes that claim tasks from the store and run them on other machines.
--
-- A task the engine runs itself is inserted already leased to it; a task for a worker is
-- inserted queued, with ``needs``, the placement tokens a worker must offer ('cap:gpu',
-- 'label:region=eu', as a JSON array), and ``remote`` set. Only remote tasks are claimed by
-- workers after a lease lapses, and an engine adopting a run takes over only its own tasks:
-- a worker's task stays the worker's, however many engines come and go.
ALTER TABLE tasks ADD COLUMN needs TEXT NOT NULL DEFAULT '[]';
ALTER TABLE tasks ADD COLUMN remote BOOLEAN NOT NULL DEFAULT false;

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
