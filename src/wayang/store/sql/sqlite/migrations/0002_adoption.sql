-- Version 2: what an engine needs to take over a run another engine left behind.

-- A run's open tasks (queued or leased), found when an engine adopts the run.
CREATE INDEX tasks_open_by_run ON tasks (run_id) WHERE status IN ('queued', 'claimed');

-- A run's pending timers, re-armed when an engine adopts the run.
CREATE INDEX timers_by_run ON timers (run_id);
