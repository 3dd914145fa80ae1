-- Migration 0003: advance_runs, a group commit's version check as a function that fails
-- instead of answering (no table changes).
--
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
