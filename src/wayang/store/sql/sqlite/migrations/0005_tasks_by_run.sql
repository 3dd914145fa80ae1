-- Version 5: a run's tasks, all of them, by run.
--
-- The run views of the server show what each attempt ran with and which attempt runs now, from
-- the run's tasks whatever their state. One index on run_id serves that and the adoption of a
-- run's open tasks, which had a partial index of its own; a task keeps its one entry for life
-- instead of leaving the partial index when it finishes.
DROP INDEX tasks_open_by_run;
CREATE INDEX tasks_by_run ON tasks (run_id);
